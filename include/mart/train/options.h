#pragma once
// Options of mart-train, declared once for the command line and INI files. No torch here.
#include <cstdint>
#include <string>
#include <vector>

#include "mart/core/config.h"
#include "mart/model/config.h"
#include "mart/model/options.h"
#include "mart/train/augment_options.h"

namespace mart::train {

struct TrainOptions {
  std::string data;  // folder with manifest.json
  std::string run;   // run directory: checkpoints, metrics, logs
  std::vector<std::string> splits{"train"};
  // Optimization.
  int batch_size = 48;  // global: split evenly over ranks
  int epochs = 300;
  int64_t max_steps = 0;  // 0: epochs decide
  double lr = 3e-4, weight_decay = 1e-6;
  int64_t warmup_steps = 0;
  bool cosine = false;
  double clip_grad_norm = 0;  // 0: off
  uint64_t seed = 1;
  int crops_per_track = 1;    // sampler items per track and epoch
  double crop_offset_s = 0;   // largest start offset between views A and B; 0: the same start
  bool stored_views = true;   // false: A and B both from the clean audio; fresh augmentation only
  // mart: the hierarchical contrastive loss (model.*); supervised: a positive control, the
  // cross-entropy of each track's class from the projection head (docs/results.md section 8).
  std::string objective = "mart";
  AugmentOptions augment;     // fresh log-mel augmentation every step
  // Execution.
  std::string device = "cpu";  // cpu | cuda
  bool bf16 = false;           // CUDA autocast
  bool channels_last = false;  // NHWC convolutions (slower on the CPU; measure on a GPU: gpu-check.sh --bench)
  int threads = 0;             // intra-op threads per rank; 0: cores / local ranks
  int prefetch = 4;            // batches read ahead
  bool repeat_first_batch = false;  // benchmark: read one batch, train on copies of it every step
  bool huge_pages = true;      // large CPU tensors on transparent huge pages (run/cpu_allocator.h)
  bool cpu_cache = true;       // with huge_pages: freed large blocks kept for the next step
  std::string batch_norm = "local";  // local | frozen
  bool overlap = true;         // all-reduce during backward
  double bucket_mb = 25;
  // Checkpoints and logging.
  int64_t checkpoint_every = 500;  // steps; 0: only at the end and on preemption
  int keep_checkpoints = 3;
  bool resume = false;
  int64_t log_every = 10;
  model::ModelOptions model;
};

void declare_augment_options(Config& c);
AugmentOptions augment_options_from(const Config& c);
void declare_options(Config& c);
TrainOptions options_from(const Config& c);
// mart-train's check before any work: the options, and the model against the data's input shape
// (levels, parts, mels, frames come from the shards' manifest when it exists; without one the
// per-level lists are checked for their own consistency only).
void check_options(const Config& c);

}  // namespace mart::train
