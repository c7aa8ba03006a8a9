#pragma once
// Fresh augmentation of the log-mel batch at every step (docs/augment.md): the options and the
// per-sample draws. No torch here: the draws are plain numbers, made on the CPU from
// (seed, step, global sample index, view), so any split of the global batch over ranks, and a
// resumed run, draw the same parameters for the same sample.
#include <cstdint>
#include <string>
#include <vector>

namespace mart::train {

struct AugmentOptions {  // defaults: CLMR's probabilities and ranges, plus SpecAugment-style masks
  bool enabled = true;
  double p_gain = 0.3, gain_min_db = -20, gain_max_db = -1;
  double p_noise = 0.01, noise_min = 1e-4, noise_max = 1e-2;  // noise std / signal std
  double p_filter = 0.8;  // then high-pass or low-pass, half each
  double highpass_min_hz = 200, highpass_max_hz = 1200;
  double lowpass_min_hz = 2200, lowpass_max_hz = 4000;
  double p_delay = 0.3;
  int delay_min_ms = 200, delay_max_ms = 450, delay_step_ms = 50;
  double delay_volume = 0.5;
  double p_pitch = 0.6, pitch_max_cents = 700;
  double p_time_mask = 0.5, time_mask_max = 0.1;  // width up to this fraction of the clip's T frames
  double p_freq_mask = 0.5, freq_mask_max = 0.1;  // width up to this fraction of the n_mels bands
  void validate() const;                           // throws ConfigError naming the option
};

enum class Shelf { none, highpass, lowpass };

// The audio-level parameters of one view of one sample: shared by every clip of that view's
// hierarchy, so a level's clip sees the same transformation as the whole it belongs to.
struct ViewAugment {
  double gain_db = 0;      // 0: off
  double noise_ratio = 0;  // 0: off
  Shelf filter = Shelf::none;
  double cutoff_hz = 0;
  int delay_ms = 0;         // 0: off
  double pitch_cents = 0;   // 0: off
};

// SpecAugment-style masks of one clip: frames [t0, t0 + t_width), bands [f0, f0 + f_width).
struct ClipMask {
  int64_t t0 = 0, t_width = 0, f0 = 0, f_width = 0;
};

struct SampleAugment {
  ViewAugment view;
  std::vector<ClipMask> masks;  // one per clip of the view
};

// The draws of sample `global_index` (rank * local batch + i) of step `step`, view 0 (A) or 1 (B),
// for a view of `clips` clips of [n_mels, T]. Every decision and value is drawn in a fixed order,
// applied or not, so one effect's probability never shifts another's values.
SampleAugment draw_sample_augment(const AugmentOptions& o, uint64_t seed, int64_t step, int64_t global_index,
                                  int view, int64_t clips, int64_t n_mels, int64_t frames);

}  // namespace mart::train
