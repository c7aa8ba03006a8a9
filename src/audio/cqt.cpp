#include "mart/audio/cqt.h"

#include <fftw3.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <mutex>

#include "mart/audio/logmel.h"  // fftw_planner_mutex
#include "mart/core/error.h"

namespace mart::audio {

namespace {
constexpr double kPi = 3.14159265358979323846;
}  // namespace

double ConstantQ::frequency(int k) const { return p_.f_min * std::pow(2.0, static_cast<double>(k) / p_.bins_per_octave); }

ConstantQ::ConstantQ(const CqtParams& p) : p_(p) {
  MART_CHECK(p.bins > 0 && p.bins_per_octave > 0 && p.hop > 0 && p.f_min > 0 && p.sample_rate > 0,
             "bad constant-Q parameters");
  MART_CHECK(frequency(p.bins - 1) < p.sample_rate / 2.0, "the top constant-Q bin (", frequency(p.bins - 1),
             " Hz) is above the Nyquist frequency of ", p.sample_rate, " Hz");
  const double q = 1.0 / (std::pow(2.0, 1.0 / p.bins_per_octave) - 1.0);
  for (int k = 0; k < p.bins; ++k)
    lengths_.push_back(static_cast<int>(std::ceil(q * p.sample_rate / frequency(k))));
  n_fft_ = 1;
  while (n_fft_ < lengths_[0]) n_fft_ *= 2;
  const int nf = n_fft_ / 2 + 1;
  // Spectral kernels: the temporal kernel of bin k sits at the frame's start, shifted
  // so that its sample floor(N_k / 2) is the frame's centre n_fft / 2 (magnitudes do not depend on
  // the shift's phase, but the direct definition's window position does).
  std::vector<std::complex<double>> t(static_cast<size_t>(n_fft_));
  std::vector<std::complex<double>> spec(static_cast<size_t>(n_fft_));
  offset_.push_back(0);
  for (int k = 0; k < p.bins; ++k) {
    const int nk = lengths_[static_cast<size_t>(k)];
    std::fill(t.begin(), t.end(), 0.0);
    const int start = n_fft_ / 2 - nk / 2;
    for (int n = 0; n < nk; ++n) {
      const double w = 0.5 - 0.5 * std::cos(2.0 * kPi * n / nk);
      t[static_cast<size_t>(start + n)] = w / nk * std::polar(1.0, 2.0 * kPi * q * n / nk);
    }
    // T[j] = sum_n t[n] e^{-2 pi i j n / N}: a direct DFT would be N^2. FFTW in single precision
    // (the library mart already links; relative error ~1e-6, far below the kernel threshold).
    fftwf_complex* buf = fftwf_alloc_complex(static_cast<size_t>(n_fft_));
    MART_CHECK(buf, "fftwf_alloc for the constant-Q kernels failed");
    fftwf_plan plan;
    {
      std::lock_guard<std::mutex> lock(fftw_planner_mutex());
      plan = fftwf_plan_dft_1d(n_fft_, buf, buf, FFTW_FORWARD, FFTW_ESTIMATE);
    }
    if (!plan) {
      fftwf_free(buf);
      MART_FAIL("fftwf_plan_dft_1d(", n_fft_, ") failed for the constant-Q kernels");
    }
    for (int n = 0; n < n_fft_; ++n) {
      buf[n][0] = static_cast<float>(t[static_cast<size_t>(n)].real());
      buf[n][1] = static_cast<float>(t[static_cast<size_t>(n)].imag());
    }
    fftwf_execute(plan);
    double peak = 0;
    for (int j = 0; j < n_fft_; ++j) {
      spec[static_cast<size_t>(j)] = {buf[j][0], buf[j][1]};
      peak = std::max(peak, std::abs(spec[static_cast<size_t>(j)]));
    }
    {
      std::lock_guard<std::mutex> lock(fftw_planner_mutex());
      fftwf_destroy_plan(plan);
    }
    fftwf_free(buf);
    // X_cq = sum_n x[n] conj(t[n]) = (1 / N) sum_j X[j] conj(T[j]); x is real, so the negative
    // frequencies j > N/2 contribute conj(X[N-j]) conj(T[j]): folded onto j' = N - j below.
    for (int j = 0; j < nf; ++j) {
      std::complex<double> c = std::conj(spec[static_cast<size_t>(j)]);  // pairs with X[j]
      // the mirror term X[N-j] = conj(X[j]) pairs with conj(T[N-j]): carried as a second entry
      const bool pos = std::abs(spec[static_cast<size_t>(j)]) >= p.kernel_threshold * peak;
      if (pos) {
        index_.push_back(2 * j);  // even: multiply X[j]
        re_.push_back(static_cast<float>(c.real() / n_fft_));
        im_.push_back(static_cast<float>(c.imag() / n_fft_));
      }
      if (j > 0 && j < n_fft_ / 2) {
        const std::complex<double> m = std::conj(spec[static_cast<size_t>(n_fft_ - j)]);
        if (std::abs(m) >= p.kernel_threshold * peak) {
          index_.push_back(2 * j + 1);  // odd: multiply conj(X[j])
          re_.push_back(static_cast<float>(m.real() / n_fft_));
          im_.push_back(static_cast<float>(m.imag() / n_fft_));
        }
      }
    }
    offset_.push_back(static_cast<int>(index_.size()));
  }
  in_ = fftwf_alloc_real(static_cast<size_t>(n_fft_));
  out_ = reinterpret_cast<float*>(fftwf_alloc_complex(static_cast<size_t>(nf)));
  if (in_ && out_) {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    plan_ = fftwf_plan_dft_r2c_1d(n_fft_, in_, reinterpret_cast<fftwf_complex*>(out_), FFTW_ESTIMATE);
  }
  if (!plan_) {  // the destructor does not run for a constructor that throws
    fftwf_free(in_);
    fftwf_free(out_);
    MART_FAIL("fftwf_alloc or fftwf_plan_dft_r2c_1d(", n_fft_, ") failed for the constant-Q transform");
  }
}

ConstantQ::~ConstantQ() {
  {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    if (plan_) fftwf_destroy_plan(static_cast<fftwf_plan>(plan_));
  }
  fftwf_free(in_);
  fftwf_free(out_);
}

std::vector<float> ConstantQ::magnitude(const float* x, int64_t n) {
  const int64_t total = frames(n, p_.hop);
  std::vector<float> out(static_cast<size_t>(total) * static_cast<size_t>(p_.bins));
  const int64_t half = n_fft_ / 2;
  for (int64_t m = 0; m < total; ++m) {
    const int64_t start = m * p_.hop - half;  // the frame's centre is sample m * hop
    for (int64_t i = 0; i < n_fft_; ++i) {
      const int64_t s = start + i;
      in_[i] = s >= 0 && s < n ? x[s] : 0.0f;
    }
    fftwf_execute_dft_r2c(static_cast<fftwf_plan>(plan_), in_, reinterpret_cast<fftwf_complex*>(out_));
    float* row = out.data() + m * p_.bins;
    for (int k = 0; k < p_.bins; ++k) {
      double re = 0, im = 0;
      for (int e = offset_[static_cast<size_t>(k)]; e < offset_[static_cast<size_t>(k) + 1]; ++e) {
        const int idx = index_[static_cast<size_t>(e)];
        const int j = idx >> 1;
        const double xr = out_[2 * j], xi = (idx & 1) ? -out_[2 * j + 1] : out_[2 * j + 1];
        re += xr * re_[static_cast<size_t>(e)] - xi * im_[static_cast<size_t>(e)];
        im += xr * im_[static_cast<size_t>(e)] + xi * re_[static_cast<size_t>(e)];
      }
      row[k] = static_cast<float>(std::sqrt(re * re + im * im));
    }
  }
  return out;
}

std::vector<float> ConstantQ::block_mean(const std::vector<float>& mag, int bins, int block) {
  MART_CHECK(bins > 0 && block > 0 && mag.size() % static_cast<size_t>(bins) == 0, "block_mean: bad sizes");
  const size_t frames = mag.size() / static_cast<size_t>(bins);
  const size_t blocks = (frames + static_cast<size_t>(block) - 1) / static_cast<size_t>(block);
  std::vector<float> out(blocks * static_cast<size_t>(bins), 0.0f);
  for (size_t b = 0; b < blocks; ++b) {
    const size_t first = b * static_cast<size_t>(block), last = std::min(frames, first + static_cast<size_t>(block));
    for (int k = 0; k < bins; ++k) {
      double s = 0;
      for (size_t f = first; f < last; ++f) s += mag[f * static_cast<size_t>(bins) + static_cast<size_t>(k)];
      out[b * static_cast<size_t>(bins) + static_cast<size_t>(k)] = static_cast<float>(s / static_cast<double>(last - first));
    }
  }
  return out;
}

}  // namespace mart::audio
