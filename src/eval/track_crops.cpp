#include "track_crops.h"

#include "mart/core/error.h"
#include "mart/data/manifest.h"

namespace mart::eval {

TrackCrops::TrackCrops(const std::string& dir, const EmbeddingSet& set) : tracks_(set), shards_(dir) {
  for (const auto& t : tracks_.tracks)
    MART_CHECK(t.shard >= 0, "track '", t.id, "' has no shard position (embeddings written by an older mart-eval): "
               "rerun with --eval.force true");
}

std::vector<int64_t> TrackCrops::starts(size_t track) {
  const auto& info = tracks_.tracks[track];
  return eval_crop_starts(reader(info.shard).valid_starts(info.shard_track), shards_.manifest().features.frames);
}

torch::Tensor TrackCrops::hierarchies(const std::vector<std::pair<size_t, int64_t>>& crops) {
  const auto& features = shards_.manifest().features;
  const int64_t hier = features.clips_total() * features.n_mels * features.frames;
  auto batch =
      torch::empty({static_cast<int64_t>(crops.size()), features.clips_total(), features.n_mels, features.frames});
  for (size_t index = 0; index < crops.size(); ++index) {
    const auto& [track, start] = crops[index];
    const auto& info = tracks_.tracks[track];
    float* into = batch.data_ptr<float>() + static_cast<int64_t>(index) * hier;
    reader(info.shard).crop_into(info.shard_track, start, 0, into);
  }
  return batch;
}

}  // namespace mart::eval
