#pragma once
// The log-mel crop hierarchies of an EmbeddingSet's tracks, read from the shards extract() read
// them from (each track knows its shard and position there). Whole-model fine-tuning
// (finetune.cpp) and the covers models (covers_finetune.cpp) read their batches through it.
// Private to mart-eval: torch is here because the batches are tensors.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mart/data/shard_set.h"
#include "mart/eval/embed.h"

namespace mart::eval {

class TrackCrops {
 public:
  // Every track must have a shard position (embeddings written by an older mart-eval do not:
  // the error names --eval.force).
  TrackCrops(const std::string& dir, const EmbeddingSet& set);

  // The top-clip starts of `track`'s evaluation crops (eval_crop_starts).
  std::vector<int64_t> starts(size_t track);
  // [n, clips_total, n_mels, T]: the hierarchies of the (track, top-clip start) pairs, in order.
  torch::Tensor hierarchies(const std::vector<std::pair<size_t, int64_t>>& crops);

  const data::ShardReader& reader(int64_t shard) { return shards_.shard(shard); }

 private:
  const EmbeddingSet& tracks_;
  data::ShardSet shards_;
};

}  // namespace mart::eval
