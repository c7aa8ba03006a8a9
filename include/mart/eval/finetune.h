#pragma once
// Fine-tuning protocol: the whole model (FCN encoder and part-whole transformer) plus a linear
// head on the crop embedding s^0 (the representation the probes see) is trained on the labelled
// crops of a subset of the training tracks, with early stopping on the validation loss; test
// tracks are scored like the probes (the mean of their crops' outputs). The ranks of a group
// share every batch (data parallel, gradients averaged over the group), so a slow job can be
// given more ranks. No torch in this header.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "mart/eval/embed.h"
#include "mart/eval/probe.h"
#include "mart/model/options.h"

namespace mart::eval {

struct FinetuneOptions {
  double lr = 1e-4, weight_decay = 1e-6;
  int max_epochs = 30, patience = 5, batch_size = 16;
  uint64_t seed = 1;
  // true: BatchNorm on running statistics (the result does not depend on the group size, up to
  // the order of float sums). false: batch statistics, per rank.
  bool frozen_batch_norm = true;
  // From a random initialisation with frozen BatchNorm: the running statistics, initially 0 / 1
  // (no normalisation at all), are first measured on up to this many training crops, evenly spaced
  // in the training order (estimate_batch_norm). 0: keep 0 / 1.
  int bn_estimate_crops = 512;
};

// `set` must come from extract() on `data_dir`, or from its embeddings file (its tracks know their
// shard). `checkpoint_dir` empty: start from a model initialised with `options.seed` (the
// from-scratch baseline), its BatchNorm statistics measured on the training crops
// (options.bn_estimate_crops). With frozen BatchNorm (as mart-train's frozen mode) the result does
// not depend on how a batch is split over the group. Every rank of `group` calls this with the same
// arguments and gets the same ProbeRun.
ProbeRun finetune(const std::string& data_dir, const EmbeddingSet& set, const std::string& checkpoint_dir,
                  const model::ModelOptions& model_options, const std::vector<size_t>& train,
                  const std::vector<size_t>& valid, const std::vector<size_t>& test, TaskKind task,
                  const FinetuneOptions& options, MPI_Comm group);

}  // namespace mart::eval
