#pragma once
// Constant-Q magnitude as CQTNet uses it (Yu et al., ICASSP 2020; issue 12): 84 bins, 12 per
// octave from 32.70 Hz (C1), hop 512 at 22.05 kHz, then the mean of every 20 frames.
//
// Definition (Brown 1991), bin k, frame m centred at sample m * hop, zeros outside the signal:
//   f_k = f_min 2^(k / b),  Q = 1 / (2^(1 / b) - 1),  N_k = ceil(Q sr / f_k),
//   X[k, m] = (1 / N_k) sum_{n=0}^{N_k-1} w_k[n] x[m hop - floor(N_k / 2) + n] exp(-2 pi i Q n / N_k),
// w_k the periodic Hann window of length N_k. Computed by the kernel method (Brown & Puckette
// 1992): one real FFT of N = 2^ceil(log2 N_0) samples per frame, times each bin's precomputed
// spectral kernel (Parseval), with the kernel's entries below `kernel_threshold` of its peak
// dropped (0 keeps them all). Tests compare it with a float64 evaluation of the sum above.
#include <cstddef>
#include <cstdint>
#include <vector>

namespace mart::audio {

struct CqtParams {
  int sample_rate = 22050;
  int hop = 512;
  int bins = 84;
  int bins_per_octave = 12;
  double f_min = 32.703195662574829;  // C1
  double kernel_threshold = 1e-4;     // of each kernel's peak magnitude
  int block_frames = 20;              // block_mean's block: CQTNet averages every 20 frames
};

class ConstantQ {
 public:
  explicit ConstantQ(const CqtParams& p);
  ~ConstantQ();
  ConstantQ(const ConstantQ&) = delete;
  ConstantQ& operator=(const ConstantQ&) = delete;

  const CqtParams& params() const { return p_; }
  int bins() const { return p_.bins; }
  int fft_size() const { return n_fft_; }
  double frequency(int k) const;
  int window_length(int k) const { return lengths_[static_cast<size_t>(k)]; }
  // Frames of a signal of n samples: 1 + n / hop (centred, as the STFT).
  static int64_t frames(int64_t n, int hop) { return 1 + n / hop; }

  // |X[k, m]|, row-major [frames, bins].
  std::vector<float> magnitude(const float* x, int64_t n);
  // The mean of every `block` consecutive frames of `mag` [frames, bins] (a last, shorter block
  // is the mean of what it has): CQTNet's 20-frame average, [ceil(frames / block), bins].
  static std::vector<float> block_mean(const std::vector<float>& mag, int bins, int block);

 private:
  CqtParams p_;
  int n_fft_ = 0;
  std::vector<int> lengths_;
  // Sparse spectral kernels, conjugated and scaled by 1 / N: bin k uses entries
  // [offset_[k], offset_[k + 1]) of index_/re_/im_.
  std::vector<int> offset_, index_;
  std::vector<float> re_, im_;
  void* plan_ = nullptr;
  float* in_ = nullptr;
  float* out_ = nullptr;  // interleaved complex, n_fft / 2 + 1
};

}  // namespace mart::audio
