#pragma once
// mart-preprocess: audio files -> HDF5 shards of multi-level log-mels (DESIGN.md section 2).
// Work goes out in units of `unit_tracks` tracks through an MPI counter, so ranks that drew
// short files take more units; each finished unit is one shard plus a small record beside it,
// both written under temporary names and renamed. A rerun skips every finished unit.
#include <cstdint>
#include <string>
#include <vector>

#include "mart/app/stage.h"
#include "mart/audio/augment.h"
#include "mart/core/config.h"
#include "mart/features/features.h"
#include "mart/preprocess/datasets.h"

namespace mart::preprocess {

struct PreprocessOptions {
  DatasetOptions dataset;
  features::FeatureConfig features;
  audio::AugmentConfig augment;
  uint64_t augment_seed = 1;
  std::string output;
  int unit_tracks = 32;
  double max_failures = 0.05;  // fraction of tracks that may fail before the run is an error
  bool resume = false, force = false, verify = false;
  bool cqt = false;  // features.cqt: the clean audio's constant-Q in /cqt of every shard
};

// Declares every option of the stage (dataset, features, augmentation, run control).
void declare_options(Config& cfg);
// Reads and validates them; throws ConfigError naming the option.
PreprocessOptions options_from(const Config& cfg);
// The part of the configuration that decides what the shards contain: two runs with equal
// content hashes write the same shards, so one may resume the other.
uint64_t content_hash(const PreprocessOptions& o);

// The whole stage on the world of `ctx`.
int run(app::StageContext& ctx);

}  // namespace mart::preprocess
