#pragma once
// CLMR's augmentation chain as MART uses it (DESIGN.md section 1, reverb dropped): polarity
// inversion, Gaussian noise, gain, a high- or low-pass filter, delay, pitch shift; each applied
// with its own probability. A view is a pure function of (signal, seed): the parameters are drawn
// from mart::Rng(seed_of(base_seed, track, view)) in a fixed order, so reruns write the same bytes.
#include <cstdint>
#include <string>
#include <vector>

#include "mart/core/rng.h"

namespace mart::audio {

struct AugmentConfig {  // defaults: CLMR's probabilities and ranges
  double p_polarity = 0.8;
  double p_noise = 0.01;
  double noise_min = 1e-4, noise_max = 1e-2;  // noise std as a fraction of the signal's std
  double p_gain = 0.3;
  double gain_min_db = -20, gain_max_db = -1;
  double p_filter = 0.8;  // then high-pass or low-pass, half each
  double highpass_min_hz = 200, highpass_max_hz = 1200;
  double lowpass_min_hz = 2200, lowpass_max_hz = 4000;
  double p_delay = 0.3;
  int delay_min_ms = 200, delay_max_ms = 450, delay_step_ms = 50;
  double delay_volume = 0.5;
  double p_pitch = 0.6;
  double pitch_max_cents = 700;  // shift uniform in [-max, +max]
};

enum class FilterKind { none, highpass, lowpass };

// The parameters of one view, drawn before any signal is touched.
struct AugmentParams {
  bool polarity = false;
  double noise_std_ratio = 0;  // 0: no noise
  double gain_db = 0;          // 0: no gain change
  FilterKind filter = FilterKind::none;
  double cutoff_hz = 0;
  int delay_ms = 0;            // 0: no delay
  double pitch_cents = 0;      // 0: no pitch shift
  std::string describe() const;
};

// Draws every decision and value in a fixed order (all of them, applied or not), so one
// effect's probability never shifts another's values.
AugmentParams draw_augment_params(const AugmentConfig& cfg, Rng& rng);

// Applies the chain in CLMR's order; noise draws from rng.
void apply_augment(const AugmentParams& p, int sample_rate, Rng& rng, std::vector<float>& x);

// View `view` (>= 1; view 0 is the clean audio) of track `track`.
std::vector<float> augment_view(const std::vector<float>& clean, int sample_rate,
                                const AugmentConfig& cfg, uint64_t base_seed, uint64_t track,
                                uint64_t view, AugmentParams* drawn = nullptr);

// The single effects, each testable on its own.
void invert_polarity(std::vector<float>& x);
void add_noise(std::vector<float>& x, double std_ratio, Rng& rng);  // std = ratio * std(x)
void apply_gain_db(std::vector<float>& x, double db);
// Second-order Butterworth (RBJ cookbook biquad, Q = 1/sqrt(2)); sox's highpass/lowpass default
// to the same two-pole design.
void highpass(std::vector<float>& x, int sample_rate, double cutoff_hz);
void lowpass(std::vector<float>& x, int sample_rate, double cutoff_hz);
// y = (x + volume * x delayed by ms) / 2, as CLMR's Delay.
void delay_mix(std::vector<float>& x, int sample_rate, int ms, double volume = 0.5);
// libsox's `pitch` (WSOLA time-stretch) followed by its `rate`, as torchaudio's sox effects ran
// it for CLMR; the length is kept.
void pitch_shift(std::vector<float>& x, int sample_rate, double cents);

}  // namespace mart::audio
