#pragma once
// The model's options as config keys and as the [model] INI section a checkpoint keeps, so that
// the trainer, evaluation and mart-embed read them one way. No torch here.
#include <string>

#include "mart/core/config.h"
#include "mart/features/features.h"
#include "mart/model/options.h"

namespace mart::model {

void declare_model_options(Config& c);
// Model options from the config; levels/parts/n_mels/frames come from the data, not the config.
ModelOptions model_options_from(const Config& c);
// The [model] section that reads back through declare_model_options (checkpoints keep it).
std::string model_ini(const ModelOptions& m);
// `m` with its input sizes (levels, parts, n_mels, frames) taken from the data's features.
ModelOptions with_input_of(ModelOptions m, const features::FeatureConfig& f);

}  // namespace mart::model
