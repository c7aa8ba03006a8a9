#pragma once
// MART's log-mel (DESIGN.md section 1), equal to torchaudio's
//   MelSpectrogram(sample_rate, n_fft, hop_length=hop, f_min, f_max, n_mels, power=2,
//                  center=True, pad_mode="reflect", onesided=True, norm=None, mel_scale="htk")
// followed by log(mel + eps). Each stage (window, power STFT, filterbank, log) is a function of
// its own so it can be tested against reference numbers.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mart/features/features.h"

namespace mart::audio {

// FFTW's planner (plan creation and destruction, wisdom) is not thread-safe: every planner call
// in mart (the log-mel's plans, the constant-Q's) holds this one process-wide lock. Executing a
// plan needs no lock.
std::mutex& fftw_planner_mutex();

struct MelParams {
  int sample_rate = 22050;
  int n_fft = 256;  // window length = FFT size (torchaudio's win_length defaults to n_fft)
  int64_t hop = 128;
  int n_mels = 128;
  double f_min = 0.0;
  double f_max = 0.0;  // 0: sample_rate / 2
  double log_eps = 1e-6;

  static MelParams at_level(const features::FeatureConfig& cfg, int level);
};

// HTK mel scale, as the filterbank uses it.
double hz_to_mel_htk(double hz);
double mel_to_hz_htk(double mel);
// The centre frequency (Hz) of each of the n_mels triangular filters: the filterbank's peaks.
std::vector<double> mel_centre_frequencies(int n_mels, double f_min, double f_max);

// Periodic Hann window of length n (torch.hann_window(n), periodic=True).
std::vector<float> hann_window(int n);

// A triangular HTK mel filterbank without normalisation (torchaudio.functional.melscale_fbanks
// with mel_scale="htk", norm=None), stored sparsely: each filter touches a few FFT bins only, so
// the mel product costs about 2 multiply-adds per bin instead of n_mels per bin.
class MelFilterbank {
 public:
  MelFilterbank(int sample_rate, int n_fft, int n_mels, double f_min, double f_max);
  int n_mels() const { return static_cast<int>(first_.size()); }
  int n_freqs() const { return n_freqs_; }
  // Filters with no nonzero weight: with 128 mels on a 256-point FFT at 22.05 kHz about 18 of
  // them; their log-mel rows are the constant log(eps). The stage warns about them once.
  int empty_filters() const { return empty_; }
  double weight(int mel, int bin) const;  // dense view, for tests
  // mel[m] = sum_k w[m][k] * power[k]
  void apply(const float* power, float* mel) const;
  // The same for kBatch frames at once, frame-minor: power_t[k * kBatch + b] and
  // mel_t[m * kBatch + b]. The inner loop runs over frames, so it vectorises whatever a filter's
  // width; the sums are taken in the same order as apply(), so the results are the same bytes.
  static constexpr int kBatch = 64;
  void apply_batch(const float* power_t, float* mel_t) const;

 private:
  int n_freqs_ = 0, empty_ = 0;
  std::vector<int> first_;        // first bin of filter m
  std::vector<int> offset_;       // start of filter m's weights in weights_ (size n_mels + 1)
  std::vector<float> weights_;
};

// Frames of a centered STFT of n samples: 1 + n / hop.
int64_t stft_frames(int64_t n_samples, int64_t hop);

// Computes the log-mel of a whole signal. An object owns its buffers and is meant for one thread;
// FFTW plans are shared by all objects, made once per (n_fft, batch) under a mutex (FFTW's planner
// is not thread-safe), from committed FFTW_PATIENT wisdom or else FFTW_ESTIMATE, so the same input
// gives the same bytes on every run and rank count (FFTW_MEASURE may choose another algorithm, with
// other rounding, from run to run).
class LogMel {
 public:
  explicit LogMel(const MelParams& p);
  LogMel(const features::FeatureConfig& cfg, int level) : LogMel(MelParams::at_level(cfg, level)) {}
  ~LogMel();
  LogMel(const LogMel&) = delete;
  LogMel& operator=(const LogMel&) = delete;

  const MelParams& params() const { return p_; }
  const MelFilterbank& filterbank() const { return fb_; }
  bool planned_from_wisdom() const { return planned_from_wisdom_; }  // false: FFTW_ESTIMATE
  int64_t frames(int64_t n_samples) const { return stft_frames(n_samples, p_.hop); }

  // [frames(n), n_mels] row-major into out. Needs n > n_fft / 2 (reflect padding, as torch).
  void compute(const float* x, int64_t n, float* out);
  std::vector<float> compute(const float* x, int64_t n);
  std::vector<float> compute(const std::vector<float>& x) { return compute(x.data(), x.size()); }
  // Power spectrogram only, [frames, n_fft/2 + 1] (for tests of the STFT stage).
  std::vector<float> power(const float* x, int64_t n);

 private:
  // Windowed frames [first, first + count) into the FFT input batch; reflect-pads at the edges.
  void fill_frames(const float* x, int64_t n, int64_t first, int count);
  void power_batch(int count, float* power_out, int64_t stride) const;
  void power_batch_transposed(float* power_t) const;  // [n_freqs, batch]

  MelParams p_;
  MelFilterbank fb_;
  std::vector<float> window_;
  int batch_;
  void* plan_;          // fftwf_plan, shared, owned by the plan cache
  bool planned_from_wisdom_ = false;
  float* in_ = nullptr;  // fftwf_malloc'd: [batch, n_fft]
  float* out_ = nullptr;  // fftwf_complex [batch, n_fft/2 + 1]
  std::vector<float> power_t_;  // [n_freqs, batch]
  std::vector<float> mel_t_;    // [n_mels, batch]
};

// The log-mels one track needs in a shard: with the fixed window every level is the finest level
// taken every frame_stride(n) frames, so only the finest is computed; the scaled policy needs all.
// One object per thread.
class TrackLogMels {
 public:
  explicit TrackLogMels(const features::FeatureConfig& cfg);
  // The levels computed, finest last for the scaled policy: {levels - 1} or {0, ..., levels - 1}.
  const std::vector<int>& stored_levels() const { return levels_; }
  // One [frames_n, n_mels] row-major matrix per stored level, in stored_levels() order.
  std::vector<std::vector<float>> compute(const std::vector<float>& track);
  LogMel& at(size_t i) { return *mels_[i]; }

 private:
  std::vector<int> levels_;
  std::vector<std::unique_ptr<LogMel>> mels_;
};

// The start-up warning about empty mel filters (DESIGN.md section 1), or "" when no level has
// any: e.g. "18 of 128 mel filters are empty at n_fft 256 (levels 0-3) ...".
std::string empty_filter_warning(const features::FeatureConfig& cfg);

}  // namespace mart::audio
