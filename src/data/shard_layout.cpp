// The pure parts of the shard format: which levels are stored, how many frames a track has, and
// which stored frame each crop frame is.
#include <algorithm>

#include "mart/core/error.h"
#include "mart/core/hash.h"
#include "mart/data/shard.h"
#include "shard_internal.h"

namespace mart::data {

std::vector<int> stored_levels(const features::FeatureConfig& cfg) {
  if (cfg.levels_share_frames()) return {cfg.levels - 1};
  std::vector<int> all(static_cast<size_t>(cfg.levels));
  for (int n = 0; n < cfg.levels; ++n) all[static_cast<size_t>(n)] = n;
  return all;
}

int64_t track_frames(const features::FeatureConfig& cfg, int level, int64_t samples) {
  MART_CHECK(samples >= 0, "negative track length ", samples);
  return 1 + samples / cfg.hop(level);
}

int64_t valid_top_starts(const features::FeatureConfig& cfg, const std::vector<int64_t>& frames) {
  const std::vector<int> levels = stored_levels(cfg);
  MART_CHECK(frames.size() == levels.size(), "expected frames of ", levels.size(),
             " stored levels, got ", frames.size());
  int64_t best = INT64_MAX;
  for (size_t i = 0; i < levels.size(); ++i) {
    // Stored level l moves M^l frames per top-level hop and the top clip spans M^l * T of them.
    const int64_t step = cfg.clips_at(levels[i]);
    const int64_t span = step * cfg.frames;
    best = std::min(best, frames[i] < span ? 0 : (frames[i] - span) / step + 1);
  }
  return best;
}

CropSource crop_source(const features::FeatureConfig& cfg, int64_t k, int level, int64_t clip,
                       int64_t t) {
  // Clip c of level n starts at sample k * hop_0 + c * L_n and its frame t sits at + t * hop_n.
  // Every hop divides hop_0 and L_n, so the frame of the source level is an exact division.
  const int src = cfg.levels_share_frames() ? cfg.levels - 1 : level;
  const int64_t per_top = cfg.clips_at(src);  // source frames per top-level hop
  const int64_t per_clip = cfg.level_samples(level) / cfg.hop(src);
  const int64_t per_t = cfg.hop(level) / cfg.hop(src);
  return {src, k * per_top + clip * per_clip + t * per_t};
}

namespace detail {

void write_feature_attrs(hid_t file, const features::FeatureConfig& cfg) {
  h5::write_attr(file, "sample_rate", int64_t{cfg.sample_rate});
  h5::write_attr(file, "clip_samples", cfg.clip_samples);
  h5::write_attr(file, "levels", int64_t{cfg.levels});
  h5::write_attr(file, "parts", int64_t{cfg.parts});
  h5::write_attr(file, "frames", int64_t{cfg.frames});
  h5::write_attr(file, "n_fft", int64_t{cfg.n_fft});
  h5::write_attr(file, "n_mels", int64_t{cfg.n_mels});
  h5::write_attr(file, "f_min", cfg.f_min);
  h5::write_attr(file, "f_max", cfg.f_max);
  h5::write_attr(file, "log_eps", cfg.log_eps);
  h5::write_attr(file, "window", std::string(features::to_string(cfg.window)));
  h5::write_attr(file, "views", int64_t{cfg.views});
  h5::write_attr(file, "feature_canonical", cfg.canonical());
  h5::write_attr(file, "feature_hash", hex64(cfg.hash()));
}

features::FeatureConfig read_feature_attrs(hid_t file) {
  features::FeatureConfig c;
  auto i32 = [&](const char* name) { return static_cast<int>(h5::read_attr_int(file, name)); };
  c.sample_rate = i32("sample_rate");
  c.clip_samples = h5::read_attr_int(file, "clip_samples");
  c.levels = i32("levels");
  c.parts = i32("parts");
  c.frames = i32("frames");
  c.n_fft = i32("n_fft");
  c.n_mels = i32("n_mels");
  c.f_min = h5::read_attr_double(file, "f_min");
  c.f_max = h5::read_attr_double(file, "f_max");
  c.log_eps = h5::read_attr_double(file, "log_eps");
  c.window = features::parse_window_policy(h5::read_attr_string(file, "window"));
  c.views = i32("views");
  return c;
}

}  // namespace detail
}  // namespace mart::data
