#include "track_crops.h"

#include "mart/core/error.h"
#include "mart/data/manifest.h"

namespace mart::eval {

TrackCrops::TrackCrops(const std::string& dir, const EmbeddingSet& e) : e_(e), shards_(dir) {
  for (const auto& t : e_.tracks)
    MART_CHECK(t.shard >= 0, "track '", t.id, "' has no shard position (embeddings written by an older mart-eval): "
               "rerun with --eval.force true");
}

std::vector<int64_t> TrackCrops::starts(size_t i) {
  const auto& t = e_.tracks[i];
  return eval_crop_starts(reader(t.shard).valid_starts(t.shard_track), shards_.manifest().features.frames);
}

torch::Tensor TrackCrops::hierarchies(const std::vector<std::pair<size_t, int64_t>>& crops) {
  const auto& f = shards_.manifest().features;
  const int64_t hier = f.clips_total() * f.n_mels * f.frames;
  auto x = torch::empty({static_cast<int64_t>(crops.size()), f.clips_total(), f.n_mels, f.frames});
  for (size_t k = 0; k < crops.size(); ++k) {
    const auto& t = e_.tracks[crops[k].first];
    reader(t.shard).crop_into(t.shard_track, crops[k].second, 0, x.data_ptr<float>() + static_cast<int64_t>(k) * hier);
  }
  return x;
}

}  // namespace mart::eval
