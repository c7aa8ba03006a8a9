#pragma once
// Checkpoints that can't be half-written: rank 0 writes run/checkpoints/step-<n>.tmp/, renames it
// to step-<n>/, then writes the COMPLETE marker in it. Resume takes the newest directory with a
// marker; the last K are kept.
#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <string>

#include "mart/dist/sampler.h"
#include "mart/features/features.h"
#include "mart/model/mart_model.h"

namespace mart::run {

struct TrainState {
  int64_t step = 0;              // optimizer steps taken
  dist::SamplerState sampler;    // the next batch to train on
  uint64_t seed = 0;
  std::string config_hash;       // of the run that wrote it
  std::string model_canonical;   // the model options, so eval can check them
  // The features of the training data, so mart-embed can turn raw audio into the model's input
  // (absent in checkpoints written before it was stored).
  std::optional<features::FeatureConfig> features;
};

std::string checkpoint_dir(const std::string& run, int64_t step);
// Throws OutputError (path and system reason) when a write fails; the .tmp folder is removed and the
// complete checkpoints are untouched.
void save_checkpoint(const std::string& run, const TrainState& s, model::MartModel& model,
                     torch::optim::Optimizer& optimizer, int keep);
// The newest complete checkpoint's directory, if any.
std::optional<std::string> latest_checkpoint(const std::string& run);
// What is wrong with a complete checkpoint ("" when nothing): a file whose size or hash differs
// from what state.json (and, for state.json, the COMPLETE marker) recorded when it was written.
std::string checkpoint_damage(const std::string& dir);
// Throws ConfigError naming the checkpoint, the damaged file and the fix.
void verify_checkpoint(const std::string& dir);
// The newest intact complete checkpoint: a damaged one is skipped with a warning naming it.
// Throws ConfigError when the run has checkpoints but none is intact.
std::string resume_checkpoint(const std::string& run);
// Loads model and optimizer onto `device` (the rank's own: a checkpoint written by cuda:0 resumes
// on cuda:r or on the CPU), whatever device wrote them.
TrainState load_checkpoint(const std::string& dir, model::MartModel& model, torch::optim::Optimizer* optimizer,
                           const torch::Device& device);
TrainState read_train_state(const std::string& dir);

}  // namespace mart::run
