#pragma once
// Fresh augmentation of the log-mel batch at every step, on the training device (docs/augment.md).
// The batch holds log(mel + eps) of a power mel spectrogram; each effect is the mel-domain
// counterpart of one of CLMR's waveform effects, applied in CLMR's order (noise, gain, filter,
// delay, pitch), then time and frequency masks. The parameters are drawn on the CPU per sample
// (augment_options.h) and applied as tensors, vectorised over the batch.
#include <torch/torch.h>

#include <vector>

#include "mart/features/features.h"
#include "mart/train/augment_options.h"

namespace mart::train {

class LogMelAugmenter {
 public:
  LogMelAugmenter(AugmentOptions o, const features::FeatureConfig& f, uint64_t seed);
  // x: [b, clips, n_mels, T], clips = 1 (view A's top clips) or clips_total (view B's
  // hierarchies, level 0 first); row i is global sample first_index + i; view 0 = A, 1 = B.
  torch::Tensor operator()(const torch::Tensor& x, int64_t step, int64_t first_index, int view) const;
  std::vector<SampleAugment> draw(int64_t b, int64_t step, int64_t first_index, int view, int64_t clips) const;
  torch::Tensor apply(const torch::Tensor& x, const std::vector<SampleAugment>& d) const;
  const std::vector<double>& centres_hz() const { return centres_; }

 private:
  AugmentOptions o_;
  features::FeatureConfig f_;
  uint64_t seed_;
  std::vector<double> centres_;                   // mel band centre frequencies
  std::vector<std::vector<double>> noise_share_;  // per level: white noise power per band / total
};

// The single effects on a log-mel x [b, C, n_mels, T]; per-sample parameters are tensors on x's
// device that broadcast against x. Each is exact in the power domain P = exp(x) - eps.
// Gain: a constant offset of db / 10 * ln 10 (a power gain of 10^(db/10)).
torch::Tensor gain_offset(const torch::Tensor& x, const torch::Tensor& db);
// Additive power: log(exp(x) + power).
torch::Tensor add_power(const torch::Tensor& x, const torch::Tensor& power);
// A power gain per band: log(max(exp(x) - eps, 0) * gain + eps).
torch::Tensor scale_power(const torch::Tensor& x, const torch::Tensor& gain, double eps);
// Delay on one level's clips, concatenated in time ([b, C, n_mels, T] -> C * T frames):
// P' = (P + volume^2 * P shifted later by frames[b]) / 4, the power of CLMR's (x + v x_d) / 2 for
// an uncorrelated echo; frames before the first delayed one get no echo.
torch::Tensor delay_power(const torch::Tensor& level, const torch::Tensor& frames, double volume, double eps);
// Band m takes the value at fractional band pos[b][m] (linear interpolation along the mel axis);
// positions outside [0, n_mels - 1] take `fill`.
torch::Tensor resample_mels(const torch::Tensor& x, const torch::Tensor& pos, double fill);

// Butterworth (2nd order) power response |H(f)|^2 at each frequency: high-pass 1/(1+(fc/f)^4),
// low-pass 1/(1+(f/fc)^4), none 1.
std::vector<double> shelf_power_gain(const std::vector<double>& freqs_hz, Shelf kind, double cutoff_hz);
// The fractional band each band reads from for a pitch shift of `cents`: the band whose centre
// is f_m * 2^(-cents / 1200) on the HTK scale between f_min and f_max.
std::vector<double> pitch_source_bands(const std::vector<double>& centres_hz, double cents, double f_min, double f_max);

}  // namespace mart::train
