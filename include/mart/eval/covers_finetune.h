#pragma once
// Cover-song identification trained on a covers set's training works, as the paper's table 3
// (issue 12). A model maps a track to a 300-d embedding; it is trained with the loss CQTNet's
// authors used (cross-entropy over the training works, through one more linear layer), stopped
// early on the valid works' MAP, then the test works are ranked by cosine similarity of the
// embeddings (metrics as the frozen protocol: MAP, P@10, MR1), and a second covers set (the
// transfer set, Covers80-style) is ranked with the same model, never trained on.
//
// Models (docs/metrics.md, "Fine-tuned covers"):
//   cqtnet       CQTNet from scratch on the constant-Q (features.cqt): the supervised row;
//   mart         the pretrained encoder + part-whole transformer (s^0), fine-tuned;
//   mart+cqtnet  both, fused before the embedding layer: [CQTNet's pooled features, s^0] -> 300.
// A training item is one track: a random CQT segment (the lengths in `segments`, one per batch,
// cycled, as CQTNet trains on 200/300/400 frames; shorter tracks zero-padded) and `train_crops`
// random log-mel crop hierarchies of the same track (s^0 averaged over them). Evaluation embeds a
// whole track: its whole CQT, the mean of s^0 over its non-overlapping crops.
//
// The ranks of `group` share every batch. BatchNorm uses the statistics of fixed micro-batches
// (bn_batch items; a rank takes whole micro-batches) while training, and before every evaluation
// the average of those statistics over a fixed set of training micro-batches ("precise"
// BatchNorm), so the result does not depend on the group's size (up to the order of float sums).
// No torch in this header.
#include <mpi.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mart/core/rng.h"
#include "mart/eval/embed.h"
#include "mart/metrics/retrieval.h"
#include "mart/model/options.h"

namespace mart::eval {

enum class CoversModel { cqtnet, mart, mart_cqtnet };
// "cqtnet", "mart", "mart+cqtnet"; anything else is a ConfigError listing them.
CoversModel parse_covers_model(const std::string& name);
std::string covers_model_name(CoversModel kind);

// `want` crop starts for one training item: distinct ones drawn from `starts` (a partial
// Fisher-Yates shuffle with `rng`) when there are more than `want`, else every start in order,
// repeated until there are `want`, so that the items of a batch have the same count.
std::vector<int64_t> draw_train_crops(std::vector<int64_t> starts, size_t want, Rng& rng);

struct CoversFinetuneOptions {
  double lr = 1e-3, weight_decay = 1e-5;  // CQTNet's Adam settings, for what starts untrained
  double pretrained_lr = 1e-3;            // the pretrained MART (1e-4 hardly moved it: docs/metrics.md)
  int max_epochs = 30, patience = 5;
  int batch_size = 16, bn_batch = 8;
  int train_crops = 1;  // MART crop hierarchies per training item, s^0 averaged over them (as when ranking)
  std::vector<int64_t> segments{200, 300, 400};  // CQT frames of a training segment, one per batch
  double cqtnet_width = 1.0;  // CQTNet's channels x this (model::cqtnet_options)
  int64_t embedding = 300;
  int bn_items = 128;  // training items whose micro-batch statistics set BatchNorm before evaluating
  uint64_t seed = 1;
};

// A covers dataset: a preprocess run (its shards) and the tracks extract() read from it (they
// know their shard and work).
struct CoversSet {
  std::string data_dir;
  const EmbeddingSet* tracks = nullptr;
};

struct CoversFinetuneResult {
  metrics::RetrievalSummary test, transfer;
  bool has_transfer = false;
  int epochs = 0, best_epoch = 0;
  double best_valid_map = 0;
  // Every track (an index into the training set's tracks) that entered a training batch or a
  // BatchNorm measurement, once each: the tests check it holds training works only.
  std::vector<size_t> trained;
};

// train / valid / test: indices into set.tracks->tracks, each with a work (cover_group >= 0); the
// works of valid and test must have two versions or more to be ranked. transfer.tracks null: no
// transfer set. checkpoint_dir: the pretrained MART (models mart and mart+cqtnet). Every rank of
// `group` calls this with the same arguments and gets the same result.
CoversFinetuneResult covers_finetune(CoversModel kind, const CoversSet& set, const std::vector<size_t>& train,
                                     const std::vector<size_t>& valid, const std::vector<size_t>& test,
                                     const CoversSet& transfer, const std::string& checkpoint_dir,
                                     const model::ModelOptions& model_options, const CoversFinetuneOptions& options,
                                     MPI_Comm group);

}  // namespace mart::eval
