#include "mart/audio/logmel.h"

#include <fftw3.h>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <map>
#include <mutex>
#include <utility>

#include "mart/core/error.h"

// The hot loops get an AVX2 clone picked at run time, besides the baseline SSE2 build. FMA stays
// off in both (it is a separate target flag), so every element sees the same IEEE operations in
// the same order and both clones give the same bytes (checked: only the vector width differs).
// FFTW picks its own SIMD codelets per CPU, so bytes are only promised per machine type.
#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define MART_VECTOR_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MART_VECTOR_CLONES
#endif

namespace mart::audio {

namespace {

constexpr double kPi = 3.14159265358979323846;
// Frames per FFTW call: amortises the call, and the batch's power and mel stay in L1/L2.
constexpr int kBatchFrames = MelFilterbank::kBatch;

#include "fftw_wisdom.inc"

// Batched r2c plans, one per (n_fft, batch), shared by every LogMel in the process. Only
// planning needs the lock: executing a plan on new arrays (fftwf_execute_dft_r2c) is thread-safe.
// Plans come from the committed FFTW_PATIENT wisdom when it fits this CPU, else FFTW_ESTIMATE:
// both choices are fixed, so a run's bytes never depend on timing (FFTW_MEASURE's would).
fftwf_plan shared_plan(int n_fft, int batch, bool* from_wisdom) {
  static std::map<std::pair<int, int>, std::pair<fftwf_plan, bool>> plans;
  static bool imported = false;
  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  if (!imported) {  // a wisdom string this FFTW cannot read only means ESTIMATE plans below
    fftwf_import_wisdom_from_string(kFftwWisdom);
    imported = true;
  }
  auto it = plans.find({n_fft, batch});
  if (it == plans.end()) {
    const int n_freqs = n_fft / 2 + 1;
    float* in = fftwf_alloc_real(static_cast<size_t>(n_fft) * batch);
    fftwf_complex* out = fftwf_alloc_complex(static_cast<size_t>(n_freqs) * batch);
    MART_CHECK(in && out, "fftwf_alloc for n_fft ", n_fft, " x ", batch, " failed");
    auto plan_with = [&](unsigned flags) {
      return fftwf_plan_many_dft_r2c(1, &n_fft, batch, in, nullptr, 1, n_fft, out, nullptr, 1,
                                     n_freqs, flags);
    };
    fftwf_plan plan = plan_with(FFTW_PATIENT | FFTW_WISDOM_ONLY);
    const bool wise = plan != nullptr;
    if (!plan) plan = plan_with(FFTW_ESTIMATE);
    fftwf_free(in);
    fftwf_free(out);
    MART_CHECK(plan, "fftwf_plan_many_dft_r2c(n_fft=", n_fft, ", batch=", batch, ") failed");
    it = plans.emplace(std::make_pair(n_fft, batch), std::make_pair(plan, wise)).first;
  }
  if (from_wisdom) *from_wisdom = it->second.second;
  return it->second.first;
}

// v[i] = log(v[i] + eps), for v >= 0 and eps a normal float: Cephes' logf polynomial on the
// mantissa in [sqrt(1/2), sqrt(2)), the exponent taken from the bits. std::log is a library call
// per value and took half of the log-mel's time; this loop has no branch, so it vectorises (at
// -O3, set for this library in its CMakeLists.txt), stays within 2 float ulps of std::log, and
// gives the same bytes on every machine (no libm version in the result).
MART_VECTOR_CLONES void log_eps_inplace(float* v, int64_t n, float eps) {
  for (int64_t i = 0; i < n; ++i) {
    const float x = v[i] + eps;
    int32_t bits;
    std::memcpy(&bits, &x, sizeof bits);
    int32_t mbits = (bits & 0x007fffff) | 0x3f000000;  // the mantissa as a float in [0.5, 1)
    const int32_t small = mbits < 0x3f3504f3;          // below sqrt(1/2): double it
    mbits += small << 23;
    float m;
    std::memcpy(&m, &mbits, sizeof m);
    m -= 1.0f;
    const float e = static_cast<float>((bits >> 23) - 126 - small);
    const float z = m * m;
    float y = 7.0376836292e-2f;
    y = y * m - 1.1514610310e-1f;
    y = y * m + 1.1676998740e-1f;
    y = y * m - 1.2420140846e-1f;
    y = y * m + 1.4249322787e-1f;
    y = y * m - 1.6668057665e-1f;
    y = y * m + 2.0000714765e-1f;
    y = y * m - 2.4999993993e-1f;
    y = y * m + 3.3333331174e-1f;
    y = y * m * z;
    y += -2.12194440e-4f * e;
    y += -0.5f * z;
    v[i] = m + y + 0.693359375f * e;
  }
}

// torch's reflect padding: index -1 is x[1], index n is x[n-2].
inline int64_t reflect(int64_t j, int64_t n) {
  if (j < 0) return -j;
  if (j >= n) return 2 * (n - 1) - j;
  return j;
}

}  // namespace

std::mutex& fftw_planner_mutex() {
  static std::mutex mu;
  return mu;
}

MelParams MelParams::at_level(const features::FeatureConfig& cfg, int level) {
  MART_CHECK(level >= 0 && level < cfg.levels, "level ", level, " outside [0, ", cfg.levels, ")");
  MelParams p;
  p.sample_rate = cfg.sample_rate;
  p.n_fft = static_cast<int>(cfg.n_fft_at(level));
  p.hop = cfg.hop(level);
  p.n_mels = cfg.n_mels;
  p.f_min = cfg.f_min;
  p.f_max = cfg.f_max_or_nyquist();
  p.log_eps = cfg.log_eps;
  return p;
}

std::vector<float> hann_window(int n) {
  std::vector<float> w(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) w[i] = static_cast<float>(0.5 - 0.5 * std::cos(2.0 * kPi * i / n));
  return w;
}

int64_t stft_frames(int64_t n_samples, int64_t hop) { return 1 + n_samples / hop; }

double hz_to_mel_htk(double f) { return 2595.0 * std::log10(1.0 + f / 700.0); }
double mel_to_hz_htk(double m) { return 700.0 * (std::pow(10.0, m / 2595.0) - 1.0); }

std::vector<double> mel_centre_frequencies(int n_mels, double f_min, double f_max) {
  const double m_lo = hz_to_mel_htk(f_min), m_hi = hz_to_mel_htk(f_max);
  std::vector<double> c(static_cast<size_t>(n_mels));
  for (int m = 0; m < n_mels; ++m) c[static_cast<size_t>(m)] = mel_to_hz_htk(m_lo + (m_hi - m_lo) * (m + 1) / (n_mels + 1));
  return c;
}

// torchaudio.functional.melscale_fbanks(n_freqs, f_min, f_max, n_mels, sr, norm=None, "htk"):
// bins at linspace(0, sr // 2, n_freqs), triangles between n_mels + 2 mel-spaced points.
// Computed in double: torchaudio's float32 weights are off the exact ones by up to 1.6e-5
// (rounding), which only shows in cells far below their frame's peak (tests/audio).
MelFilterbank::MelFilterbank(int sample_rate, int n_fft, int n_mels, double f_min, double f_max)
    : n_freqs_(n_fft / 2 + 1) {
  MART_CHECK(n_mels > 0 && n_fft >= 2 && f_max > f_min, "bad mel filterbank parameters");
  std::vector<double> freqs(n_freqs_), pts(n_mels + 2);
  const double top = static_cast<double>(sample_rate / 2);  // integer division, as torchaudio
  for (int k = 0; k < n_freqs_; ++k) freqs[k] = n_freqs_ > 1 ? top * k / (n_freqs_ - 1) : 0.0;
  const double m_lo = hz_to_mel_htk(f_min), m_hi = hz_to_mel_htk(f_max);
  for (int i = 0; i < n_mels + 2; ++i)
    pts[i] = mel_to_hz_htk(m_lo + (m_hi - m_lo) * i / (n_mels + 1));
  offset_.push_back(0);
  for (int m = 0; m < n_mels; ++m) {
    int first = -1;
    std::vector<float> w;
    for (int k = 0; k < n_freqs_; ++k) {
      const double down = (freqs[k] - pts[m]) / (pts[m + 1] - pts[m]);
      const double up = (pts[m + 2] - freqs[k]) / (pts[m + 2] - pts[m + 1]);
      const double v = std::max(0.0, std::min(down, up));
      if (v > 0 && first < 0) first = k;
      if (first >= 0) w.push_back(static_cast<float>(v));
    }
    while (!w.empty() && w.back() == 0.0f) w.pop_back();  // a triangle is one contiguous run
    if (w.empty()) ++empty_;
    first_.push_back(std::max(first, 0));
    weights_.insert(weights_.end(), w.begin(), w.end());
    offset_.push_back(static_cast<int>(weights_.size()));
  }
}

double MelFilterbank::weight(int mel, int bin) const {
  const int j = bin - first_[mel];
  if (j < 0 || j >= offset_[mel + 1] - offset_[mel]) return 0.0;
  return weights_[offset_[mel] + j];
}

void MelFilterbank::apply(const float* power, float* mel) const {
  const int n = n_mels();
  for (int m = 0; m < n; ++m) {
    const float* w = weights_.data() + offset_[m];
    const float* p = power + first_[m];
    const int len = offset_[m + 1] - offset_[m];
    float s = 0;
    for (int j = 0; j < len; ++j) s += w[j] * p[j];
    mel[m] = s;
  }
}

MART_VECTOR_CLONES void MelFilterbank::apply_batch(const float* power_t, float* mel_t) const {
  const int n = n_mels();
  for (int m = 0; m < n; ++m) {
    float* row = mel_t + static_cast<size_t>(m) * kBatch;
    const int len = offset_[m + 1] - offset_[m];
    if (len == 0) {  // an empty filter
      std::fill(row, row + kBatch, 0.0f);
      continue;
    }
    // The first bin sets the row (0 + w*p == w*p exactly, so this is apply()'s sum): zeroing
    // first would cost a memset call per filter.
    const float* w = weights_.data() + offset_[m];
    const float* p = power_t + static_cast<size_t>(first_[m]) * kBatch;
    for (int b = 0; b < kBatch; ++b) row[b] = w[0] * p[b];
    for (int j = 1; j < len; ++j) {
      p += kBatch;
      for (int b = 0; b < kBatch; ++b) row[b] += w[j] * p[b];
    }
  }
}

LogMel::LogMel(const MelParams& p)
    : p_(p),
      fb_(p.sample_rate, p.n_fft, p.n_mels, p.f_min, p.f_max > 0 ? p.f_max : p.sample_rate / 2.0),
      window_(hann_window(p.n_fft)),
      batch_(kBatchFrames) {
  MART_CHECK(p.hop > 0 && p.n_fft >= 2 && p.n_fft % 2 == 0, "bad STFT sizes: n_fft ", p.n_fft,
             ", hop ", p.hop);
  plan_ = shared_plan(p.n_fft, batch_, &planned_from_wisdom_);
  in_ = fftwf_alloc_real(static_cast<size_t>(p.n_fft) * batch_);
  out_ = reinterpret_cast<float*>(fftwf_alloc_complex(static_cast<size_t>(fb_.n_freqs()) * batch_));
  MART_CHECK(in_ && out_, "fftwf_alloc failed");
  // A last, partial batch transforms stale rows that nobody reads: start them at zero.
  std::fill(in_, in_ + static_cast<size_t>(p.n_fft) * batch_, 0.0f);
  power_t_.resize(static_cast<size_t>(fb_.n_freqs()) * batch_);
  mel_t_.resize(static_cast<size_t>(fb_.n_mels()) * batch_);
}

LogMel::~LogMel() {
  fftwf_free(in_);
  fftwf_free(out_);
}

MART_VECTOR_CLONES void LogMel::fill_frames(const float* x, int64_t n, int64_t first, int count) {
  const int64_t pad = p_.n_fft / 2;
  const float* w = window_.data();
  for (int b = 0; b < count; ++b) {
    float* dst = in_ + static_cast<size_t>(b) * p_.n_fft;
    const int64_t start = (first + b) * p_.hop - pad;
    if (start >= 0 && start + p_.n_fft <= n) {  // interior: the common case, vectorises
      const float* src = x + start;
      for (int i = 0; i < p_.n_fft; ++i) dst[i] = src[i] * w[i];
    } else {
      for (int i = 0; i < p_.n_fft; ++i) dst[i] = x[reflect(start + i, n)] * w[i];
    }
  }
}

void LogMel::power_batch(int count, float* power_out, int64_t stride) const {
  const int nf = fb_.n_freqs();
  for (int b = 0; b < count; ++b) {
    const float* c = out_ + 2 * static_cast<size_t>(b) * nf;
    float* p = power_out + b * stride;
    for (int k = 0; k < nf; ++k) p[k] = c[2 * k] * c[2 * k] + c[2 * k + 1] * c[2 * k + 1];
  }
}

MART_VECTOR_CLONES void LogMel::power_batch_transposed(float* power_t) const {
  const int nf = fb_.n_freqs();
  for (int b = 0; b < kBatchFrames; ++b) {
    const float* c = out_ + 2 * static_cast<size_t>(b) * nf;
    for (int k = 0; k < nf; ++k)
      power_t[static_cast<size_t>(k) * kBatchFrames + b] = c[2 * k] * c[2 * k] + c[2 * k + 1] * c[2 * k + 1];
  }
}

void LogMel::compute(const float* x, int64_t n, float* out) {
  MART_CHECK(n > p_.n_fft / 2, "signal of ", n, " samples is too short for a centered STFT with ",
             "n_fft ", p_.n_fft, " (reflect padding needs more than n_fft/2 samples)");
  const int64_t total = frames(n);
  const int nm = fb_.n_mels();
  const float eps = static_cast<float>(p_.log_eps);
  for (int64_t first = 0; first < total; first += batch_) {
    const int count = static_cast<int>(std::min<int64_t>(batch_, total - first));
    fill_frames(x, n, first, count);
    fftwf_execute_dft_r2c(static_cast<fftwf_plan>(plan_), in_,
                          reinterpret_cast<fftwf_complex*>(out_));
    power_batch_transposed(power_t_.data());
    fb_.apply_batch(power_t_.data(), mel_t_.data());
    log_eps_inplace(mel_t_.data(), static_cast<int64_t>(nm) * kBatchFrames, eps);
    float* mel = out + first * nm;  // back to [frames, n_mels]
    for (int b = 0; b < count; ++b)
      for (int m = 0; m < nm; ++m) mel[b * nm + m] = mel_t_[static_cast<size_t>(m) * kBatchFrames + b];
  }
}

std::vector<float> LogMel::compute(const float* x, int64_t n) {
  std::vector<float> out(static_cast<size_t>(frames(n)) * fb_.n_mels());
  compute(x, n, out.data());
  return out;
}

std::vector<float> LogMel::power(const float* x, int64_t n) {
  MART_CHECK(n > p_.n_fft / 2, "signal too short for a centered STFT");
  const int64_t total = frames(n);
  const int nf = fb_.n_freqs();
  std::vector<float> out(static_cast<size_t>(total) * nf);
  for (int64_t first = 0; first < total; first += batch_) {
    const int count = static_cast<int>(std::min<int64_t>(batch_, total - first));
    fill_frames(x, n, first, count);
    fftwf_execute_dft_r2c(static_cast<fftwf_plan>(plan_), in_,
                          reinterpret_cast<fftwf_complex*>(out_));
    power_batch(count, out.data() + first * nf, nf);
  }
  return out;
}

TrackLogMels::TrackLogMels(const features::FeatureConfig& cfg) {
  for (int n = 0; n < cfg.levels; ++n)
    if (!cfg.levels_share_frames() || n == cfg.levels - 1) levels_.push_back(n);
  for (int n : levels_) mels_.push_back(std::make_unique<LogMel>(cfg, n));
}

std::vector<std::vector<float>> TrackLogMels::compute(const std::vector<float>& track) {
  std::vector<std::vector<float>> out;
  for (auto& m : mels_) out.push_back(m->compute(track));
  return out;
}

std::string empty_filter_warning(const features::FeatureConfig& cfg) {
  std::string msg;
  for (int n = 0, last = 0; n < cfg.levels; n = last + 1) {
    const int64_t n_fft = cfg.n_fft_at(n);
    last = n;  // levels n..last share a window size, hence a filterbank
    while (last + 1 < cfg.levels && cfg.n_fft_at(last + 1) == n_fft) ++last;
    const int empty = MelFilterbank(cfg.sample_rate, static_cast<int>(n_fft), cfg.n_mels,
                                    cfg.f_min, cfg.f_max_or_nyquist()).empty_filters();
    if (empty == 0) continue;
    if (!msg.empty()) msg += "; ";
    msg += detail::concat(empty, " of ", cfg.n_mels, " mel filters are empty at n_fft ", n_fft);
    msg += last == n ? detail::concat(" (level ", n, ")") : detail::concat(" (levels ", n, "-", last, ")");
  }
  if (msg.empty()) return msg;
  return msg + detail::concat(" at ", cfg.sample_rate, " Hz: their log-mel rows are the constant "
                              "log(", cfg.log_eps, "); fewer mels or a larger n_fft avoid them");
}

}  // namespace mart::audio
