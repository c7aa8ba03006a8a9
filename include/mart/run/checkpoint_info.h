#pragma once
// The checkpoint an evaluation or embedding job reads: a mart-train run folder (its newest
// complete checkpoint) or one checkpoint folder, with the model options it was trained with and,
// when the checkpoint stores them, the features of its training data. No torch in this header.
#include <optional>
#include <string>

#include "mart/features/features.h"
#include "mart/model/options.h"

namespace mart::run {

struct CheckpointInfo {
  std::string dir;                               // the checkpoint folder (holds model.pt)
  model::ModelOptions model;                     // from model.ini, with the hierarchy of `features`
  std::optional<features::FeatureConfig> features;  // absent in checkpoints older than this field
};

// Resolves `path` (checkpoint folder or run folder) and reads the model options. Throws
// ConfigError naming the path and the fix when there is no complete checkpoint.
CheckpointInfo open_checkpoint(const std::string& path);

// The model options for data with features `f`: throws ConfigError (showing both) when the
// checkpoint was trained on another hierarchy or mel size.
model::ModelOptions model_for_features(const CheckpointInfo& c, const features::FeatureConfig& f);

}  // namespace mart::run
