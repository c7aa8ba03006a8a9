#pragma once
// Embedding extraction for evaluation: every track's non-overlapping top-level crops (view 0, the
// clean audio) go through a feature source; a crop's embedding per level is the mean over that
// level's clips, a track's is the mean over its crops. No torch in this header.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mart/dist/world.h"
#include "mart/features/features.h"

namespace mart::eval {

// What turns crop hierarchies into vectors: the MART encoder (+PWT), a random one, or plain
// log-mel statistics.
class FeatureSource {
 public:
  virtual ~FeatureSource() = default;
  virtual std::string name() const = 0;
  virtual int64_t dim() const = 0;
  virtual int levels() const = 0;
  // hier: [n, clips_total, n_mels, T]; out[level]: [n, dim], the mean over that level's clips.
  virtual void embed(const float* hier, int64_t n, std::vector<std::vector<float>>* out) = 0;
};

// The top-clip starts evaluation uses for a track with `valid_starts` starts: non-overlapping
// crops, k = 0, T, 2T, ... (a top clip spans T top-level hops).
std::vector<int64_t> eval_crop_starts(int64_t valid_starts, int frames);

// Mean and standard deviation of every mel band over the top clip's frames: 2 * n_mels values.
std::unique_ptr<FeatureSource> logmel_stats_source(const features::FeatureConfig& f);

struct TrackInfo {
  std::string id, split;
  std::vector<uint8_t> tags;
  int32_t class_index = -1;
  int64_t cover_group = -1;
  int64_t crop_begin = 0, crop_end = 0;  // rows of EmbeddingSet::crops
  // Where the track's audio features are: shard index in the manifest and track in that shard
  // (-1 in files of an older mart-eval, which fine-tuning cannot use).
  int64_t shard = -1, shard_track = -1;
};

struct EmbeddingSet {
  std::string source;
  std::string identity;  // what made it (model, checkpoint, data): mart-eval reuses a file only when this matches
  int64_t dim = 0;
  int levels = 0;
  std::vector<std::string> tag_names, class_names;
  std::vector<TrackInfo> tracks;
  std::vector<float> crops;                    // level 0 (s^0 after the PWT), [total_crops, dim]
  std::vector<std::vector<float>> track_level;  // [level][tracks * dim]: mean over crops and clips
  int64_t num_crops() const { return dim ? static_cast<int64_t>(crops.size()) / dim : 0; }
};

// Embeds every track of the preprocess run in `data_dir`: shards are split over the ranks of
// `world` and the result is gathered on every rank in a fixed order (the same for any rank count).
EmbeddingSet extract(const std::string& data_dir, FeatureSource& source, const dist::World& world);

// HDF5: /tracks/{id,split,shard,shard_track}, /labels/*, /crops/level_0 [crops, dim] + /crops/offsets, /level_<n> [tracks, dim].
void write_embeddings(const std::string& path, const EmbeddingSet& e);
EmbeddingSet read_embeddings(const std::string& path);
// Only the identity attribute of an embeddings file ("" when it has none). Throws ConfigError
// when the file is not a readable HDF5 file.
std::string embeddings_identity(const std::string& path);

}  // namespace mart::eval
