#pragma once
// The feature parameters of MART's multi-level log-mel (DESIGN.md section 1), in one struct, with
// every derived size computed here and nowhere else.
#include <cstdint>
#include <string>

namespace mart::features {

// fixed: the paper's 256-point window at every level (the top level's hop exceeds its window).
// scaled: n_fft_n = max(n_fft, 2 * hop_n), so every level's frames cover all of its audio.
enum class WindowPolicy { fixed, scaled };

WindowPolicy parse_window_policy(const std::string& s);  // throws ConfigError naming the choices
const char* to_string(WindowPolicy p);

// Clip counts of a hierarchy of `levels` levels with `parts` parts per whole: the one
// implementation behind FeatureConfig's sizes and the model's (model::ModelOptions).
int64_t hierarchy_clips(int parts, int level);         // M^n: clips at level n
int64_t hierarchy_clips_total(int levels, int parts);  // sum over the levels of M^n

struct FeatureConfig {
  int sample_rate = 22050;
  int64_t clip_samples = 131072;  // L0: samples of a top clip S^0
  int levels = 4;                 // N
  int parts = 2;                  // M: parts per whole
  int frames = 128;               // T: frames of every clip's spectrogram, at every level
  int n_fft = 256;
  int n_mels = 128;
  double f_min = 0.0;
  double f_max = 0.0;  // 0 means sample_rate / 2
  double log_eps = 1e-6;
  WindowPolicy window = WindowPolicy::fixed;
  int views = 2;  // augmented views V stored per track, besides the clean audio (view 0)

  // Derived sizes (DESIGN.md: L_n = L0 / M^n, hop_n = L_n / T).
  int64_t clips_at(int level) const;          // M^n
  int64_t clips_total() const;                // sum over levels
  int64_t level_samples(int level) const;     // L_n
  int64_t hop(int level) const;               // hop_n
  int64_t n_fft_at(int level) const;          // window length at that level
  double f_max_or_nyquist() const { return f_max > 0 ? f_max : sample_rate / 2.0; }
  // With the fixed policy every level is the finest level taken every M^(N-1-n) frames, so a
  // shard needs to store the finest level only.
  bool levels_share_frames() const { return window == WindowPolicy::fixed; }
  int64_t frame_stride(int level) const;      // in finest-level frames: M^(N-1-n)

  // Throws ConfigError naming the parameter when the sizes don't divide evenly.
  void validate() const;
  // Every parameter as "key=value;..." in a fixed order; shards and checkpoints store it.
  std::string canonical() const;
  uint64_t hash() const;
};

}  // namespace mart::features
