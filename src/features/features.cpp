#include "mart/features/features.h"

#include <algorithm>
#include <sstream>

#include "mart/core/error.h"
#include "mart/core/hash.h"

namespace mart::features {

WindowPolicy parse_window_policy(const std::string& s) {
  if (s == "fixed") return WindowPolicy::fixed;
  if (s == "scaled") return WindowPolicy::scaled;
  MART_CONFIG_ERROR("unknown window policy '", s, "': choose 'fixed' (the paper) or 'scaled'");
}

const char* to_string(WindowPolicy p) { return p == WindowPolicy::fixed ? "fixed" : "scaled"; }

int64_t hierarchy_clips(int parts, int level) {
  int64_t clips = 1;
  for (int i = 0; i < level; ++i) clips *= parts;
  return clips;
}

int64_t hierarchy_clips_total(int levels, int parts) {
  int64_t total = 0;
  for (int n = 0; n < levels; ++n) total += hierarchy_clips(parts, n);
  return total;
}

int64_t FeatureConfig::clips_at(int level) const { return hierarchy_clips(parts, level); }

int64_t FeatureConfig::clips_total() const { return hierarchy_clips_total(levels, parts); }

int64_t FeatureConfig::level_samples(int level) const { return clip_samples / clips_at(level); }

int64_t FeatureConfig::hop(int level) const { return level_samples(level) / frames; }

int64_t FeatureConfig::n_fft_at(int level) const {
  if (window == WindowPolicy::fixed) return n_fft;
  return std::max<int64_t>(n_fft, 2 * hop(level));
}

int64_t FeatureConfig::frame_stride(int level) const { return clips_at(levels - 1 - level); }

void FeatureConfig::validate() const {
  if (sample_rate <= 0) MART_CONFIG_ERROR("features.sample_rate must be positive, got ", sample_rate);
  if (levels < 1) MART_CONFIG_ERROR("features.levels (N) must be at least 1, got ", levels);
  if (parts < 2) MART_CONFIG_ERROR("features.parts (M) must be at least 2, got ", parts);
  if (frames < 1) MART_CONFIG_ERROR("features.frames (T) must be positive, got ", frames);
  if (n_fft < 2 || n_fft % 2) MART_CONFIG_ERROR("features.n_fft must be even and >= 2, got ", n_fft);
  if (n_mels < 1) MART_CONFIG_ERROR("features.n_mels must be positive, got ", n_mels);
  if (views < 0) MART_CONFIG_ERROR("features.views must be >= 0, got ", views);
  const int64_t finest = clips_at(levels - 1);
  if (clip_samples % (finest * frames) != 0)
    MART_CONFIG_ERROR("features.clip_samples (", clip_samples, ") must be divisible by M^(N-1) * T = ",
                      finest * frames, " so every level's hop is a whole number of samples");
  if (f_max_or_nyquist() <= f_min || f_max_or_nyquist() > sample_rate / 2.0)
    MART_CONFIG_ERROR("features.f_min/f_max must satisfy 0 <= f_min < f_max <= sample_rate/2");
}

std::string FeatureConfig::canonical() const {
  std::ostringstream os;
  os.precision(17);
  os << "sample_rate=" << sample_rate << ";clip_samples=" << clip_samples << ";levels=" << levels
     << ";parts=" << parts << ";frames=" << frames << ";n_fft=" << n_fft << ";n_mels=" << n_mels
     << ";f_min=" << f_min << ";f_max=" << f_max_or_nyquist() << ";log_eps=" << log_eps
     << ";window=" << to_string(window) << ";views=" << views;
  return os.str();
}

uint64_t FeatureConfig::hash() const { return fnv1a64(canonical()); }

}  // namespace mart::features
