#include "mart/train/augment.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "mart/audio/logmel.h"
#include "mart/core/error.h"
#include "mart/core/rng.h"

namespace mart::train {

namespace {
constexpr double kLn10 = 2.302585092994046;

void check_p(double p, const char* name) {
  if (!(p >= 0 && p <= 1)) MART_CONFIG_ERROR("train.augment.", name, " is a probability: use a value in [0, 1], got ", p);
}
void check_range(double lo, double hi, const char* lo_name, const char* hi_name) {
  if (!(lo <= hi)) MART_CONFIG_ERROR("train.augment.", lo_name, " (", lo, ") must not exceed train.augment.", hi_name, " (", hi, ")");
}

bool any_of(const std::vector<bool>& v) { return std::any_of(v.begin(), v.end(), [](bool b) { return b; }); }
}  // namespace

void AugmentOptions::validate() const {
  check_p(p_gain, "p_gain");
  check_p(p_noise, "p_noise");
  check_p(p_filter, "p_filter");
  check_p(p_delay, "p_delay");
  check_p(p_pitch, "p_pitch");
  check_p(p_time_mask, "p_time_mask");
  check_p(p_freq_mask, "p_freq_mask");
  check_range(gain_min_db, gain_max_db, "gain_min_db", "gain_max_db");
  check_range(noise_min, noise_max, "noise_min", "noise_max");
  check_range(highpass_min_hz, highpass_max_hz, "highpass_min_hz", "highpass_max_hz");
  check_range(lowpass_min_hz, lowpass_max_hz, "lowpass_min_hz", "lowpass_max_hz");
  check_range(delay_min_ms, delay_max_ms, "delay_min_ms", "delay_max_ms");
  if (noise_min < 0) MART_CONFIG_ERROR("train.augment.noise_min must be >= 0");
  if (!(highpass_min_hz > 0 && lowpass_min_hz > 0)) MART_CONFIG_ERROR("train.augment filter cut-offs must be positive");
  if (delay_min_ms < 0 || delay_step_ms < 1)
    MART_CONFIG_ERROR("train.augment.delay_min_ms must be >= 0 and train.augment.delay_step_ms >= 1");
  if (!(pitch_max_cents >= 0)) MART_CONFIG_ERROR("train.augment.pitch_max_cents must be >= 0");
  if (!(time_mask_max >= 0 && time_mask_max <= 1) || !(freq_mask_max >= 0 && freq_mask_max <= 1))
    MART_CONFIG_ERROR("train.augment.time_mask_max and freq_mask_max are fractions of the clip: use [0, 1]");
}

SampleAugment draw_sample_augment(const AugmentOptions& o, uint64_t seed, int64_t step, int64_t global_index,
                                  int view, int64_t clips, int64_t n_mels, int64_t frames) {
  Rng rng(seed_of(seed ^ 0x6175676d656e74ull /*"augment"*/, static_cast<uint64_t>(step),
                  (static_cast<uint64_t>(global_index) << 1) | static_cast<uint64_t>(view & 1)));
  SampleAugment s;
  ViewAugment& v = s.view;
  // Every value is drawn whether its effect is on or not (fixed order).
  const bool gain = rng.bernoulli(o.p_gain);
  const double db = rng.uniform(o.gain_min_db, o.gain_max_db);
  if (gain) v.gain_db = db;
  const bool noise = rng.bernoulli(o.p_noise);
  const double ratio = rng.uniform(o.noise_min, o.noise_max);
  if (noise) v.noise_ratio = ratio;
  const bool filter = rng.bernoulli(o.p_filter);
  const bool high = rng.bernoulli(0.5);
  const double hp = rng.uniform(o.highpass_min_hz, o.highpass_max_hz);
  const double lp = rng.uniform(o.lowpass_min_hz, o.lowpass_max_hz);
  if (filter) {
    v.filter = high ? Shelf::highpass : Shelf::lowpass;
    v.cutoff_hz = high ? hp : lp;
  }
  const bool delay = rng.bernoulli(o.p_delay);
  const int ms = o.delay_min_ms + o.delay_step_ms * rng.randint(0, (o.delay_max_ms - o.delay_min_ms) / o.delay_step_ms);
  if (delay) v.delay_ms = ms;
  const bool pitch = rng.bernoulli(o.p_pitch);
  const double cents = rng.uniform(-o.pitch_max_cents, o.pitch_max_cents);
  if (pitch) v.pitch_cents = cents;
  const int64_t t_max = static_cast<int64_t>(std::floor(o.time_mask_max * static_cast<double>(frames)));
  const int64_t f_max = static_cast<int64_t>(std::floor(o.freq_mask_max * static_cast<double>(n_mels)));
  s.masks.resize(static_cast<size_t>(clips));
  for (auto& m : s.masks) {
    const bool t_on = rng.bernoulli(o.p_time_mask);
    const int64_t tw = rng.randint(0, static_cast<int>(t_max));
    const int64_t t0 = rng.randint(0, static_cast<int>(frames - tw));
    const bool f_on = rng.bernoulli(o.p_freq_mask);
    const int64_t fw = rng.randint(0, static_cast<int>(f_max));
    const int64_t f0 = rng.randint(0, static_cast<int>(n_mels - fw));
    if (t_on) m.t0 = t0, m.t_width = tw;
    if (f_on) m.f0 = f0, m.f_width = fw;
  }
  return s;
}

torch::Tensor gain_offset(const torch::Tensor& x, const torch::Tensor& db) { return x + db * (kLn10 / 10.0); }

torch::Tensor add_power(const torch::Tensor& x, const torch::Tensor& power) { return torch::log(torch::exp(x) + power); }

torch::Tensor scale_power(const torch::Tensor& x, const torch::Tensor& gain, double eps) {
  return torch::log((torch::exp(x) - eps).clamp_min(0) * gain + eps);
}

torch::Tensor delay_power(const torch::Tensor& level, const torch::Tensor& frames, double volume, double eps) {
  const int64_t b = level.size(0), C = level.size(1), n_mels = level.size(2), T = level.size(3);
  // [b, C, n_mels, T] -> [b, n_mels, C * T]: the level's clips are consecutive in time.
  const auto seq = level.permute({0, 2, 1, 3}).reshape({b, n_mels, C * T});
  const auto P = (torch::exp(seq) - eps).clamp_min(0);
  const auto t = torch::arange(C * T, torch::TensorOptions().dtype(torch::kInt64).device(level.device())).view({1, 1, -1});
  const auto src = t - frames.to(torch::kInt64).view({-1, 1, 1});  // [b, 1, C*T]
  const auto valid = src.ge(0);
  const auto echo = P.gather(2, src.clamp_min(0).expand({b, n_mels, C * T})) * valid;
  const auto out = torch::log((P + (volume * volume) * echo) / 4.0 + eps);
  return out.reshape({b, n_mels, C, T}).permute({0, 2, 1, 3}).contiguous();
}

torch::Tensor resample_mels(const torch::Tensor& x, const torch::Tensor& pos, double fill) {
  const int64_t b = x.size(0), C = x.size(1), n_mels = x.size(2), T = x.size(3);
  const auto p = pos.to(x.device(), x.scalar_type());
  const auto inside = p.ge(0) & p.le(static_cast<double>(n_mels - 1));
  const auto lo = p.clamp(0, static_cast<double>(n_mels - 1)).floor();
  const auto w = (p.clamp(0, static_cast<double>(n_mels - 1)) - lo).view({b, 1, n_mels, 1});
  const auto i0 = lo.to(torch::kInt64);
  const auto i1 = (i0 + 1).clamp_max(n_mels - 1);
  auto idx = [&](const torch::Tensor& i) { return i.view({b, 1, n_mels, 1}).expand({b, C, n_mels, T}); };
  const auto v0 = x.gather(2, idx(i0)), v1 = x.gather(2, idx(i1));
  const auto out = v0 + w * (v1 - v0);
  return torch::where(inside.view({b, 1, n_mels, 1}), out, torch::full({}, fill, x.options()));
}

std::vector<double> shelf_power_gain(const std::vector<double>& freqs_hz, Shelf kind, double cutoff_hz) {
  std::vector<double> g(freqs_hz.size(), 1.0);
  for (size_t i = 0; i < g.size(); ++i) {
    const double f = freqs_hz[i];
    if (kind == Shelf::highpass) g[i] = f <= 0 ? 0.0 : 1.0 / (1.0 + std::pow(cutoff_hz / f, 4));
    if (kind == Shelf::lowpass) g[i] = 1.0 / (1.0 + std::pow(f / cutoff_hz, 4));
  }
  return g;
}

std::vector<double> pitch_source_bands(const std::vector<double>& centres_hz, double cents, double f_min, double f_max) {
  const double m_lo = audio::hz_to_mel_htk(f_min), m_hi = audio::hz_to_mel_htk(f_max);
  const double n_mels = static_cast<double>(centres_hz.size()), ratio = std::pow(2.0, -cents / 1200.0);
  std::vector<double> pos(centres_hz.size());
  // Centre of band m sits at mel m_lo + (m_hi - m_lo) (m + 1) / (n_mels + 1): invert that.
  for (size_t m = 0; m < pos.size(); ++m)
    pos[m] = (audio::hz_to_mel_htk(centres_hz[m] * ratio) - m_lo) / (m_hi - m_lo) * (n_mels + 1) - 1;
  return pos;
}

LogMelAugmenter::LogMelAugmenter(AugmentOptions o, const features::FeatureConfig& f, uint64_t seed)
    : o_(std::move(o)), f_(f), seed_(seed) {
  o_.validate();
  centres_ = audio::mel_centre_frequencies(f_.n_mels, f_.f_min, f_.f_max_or_nyquist());
  // White noise of variance s^2 puts s^2 * sum(hann^2) * sum_k W[m][k] into band m; a signal of
  // variance S^2 puts about S^2 * sum(hann^2) * n_fft / 2 into the sum of all bands (Parseval,
  // one-sided). So band m's noise power is ratio^2 * (frame's total power) * share[m].
  for (int level = 0; level < f_.levels; ++level) {
    const int n_fft = static_cast<int>(f_.n_fft_at(level));
    const audio::MelFilterbank fb(f_.sample_rate, n_fft, f_.n_mels, f_.f_min, f_.f_max_or_nyquist());
    std::vector<double> share(static_cast<size_t>(f_.n_mels));
    for (int m = 0; m < f_.n_mels; ++m) {
      double s = 0;
      for (int k = 0; k < fb.n_freqs(); ++k) s += fb.weight(m, k);
      share[static_cast<size_t>(m)] = s / (n_fft / 2.0);
    }
    noise_share_.push_back(std::move(share));
  }
}

std::vector<SampleAugment> LogMelAugmenter::draw(int64_t b, int64_t step, int64_t first_index, int view,
                                                 int64_t clips) const {
  std::vector<SampleAugment> d;
  d.reserve(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i)
    d.push_back(draw_sample_augment(o_, seed_, step, first_index + i, view, clips, f_.n_mels, f_.frames));
  return d;
}

torch::Tensor LogMelAugmenter::operator()(const torch::Tensor& x, int64_t step, int64_t first_index, int view) const {
  if (!o_.enabled) return x;
  return apply(x, draw(x.size(0), step, first_index, view, x.size(1)));
}

namespace {

// Host values for the device, gathered into one float64 buffer and copied once (issue 27: a GPU
// step made about ten small synchronous copies per view here). Integers and 0/1 flags are exact in
// float64; each piece comes back as a view of the device copy.
class DeviceParams {
 public:
  size_t add(const std::vector<double>& v) {
    pieces_.emplace_back(static_cast<int64_t>(host_.size()), static_cast<int64_t>(v.size()));
    host_.insert(host_.end(), v.begin(), v.end());
    return pieces_.size() - 1;
  }
  size_t add(const std::vector<bool>& on) {
    std::vector<double> v(on.size());
    for (size_t i = 0; i < v.size(); ++i) v[i] = on[i] ? 1.0 : 0.0;
    return add(v);
  }
  size_t add(const std::vector<int64_t>& n) { return add(std::vector<double>(n.begin(), n.end())); }
  void upload(const torch::Device& device) {
    auto t = torch::tensor(host_, torch::kFloat64);
    if (device.is_cuda()) t = t.pin_memory();
    device_ = t.to(device, /*non_blocking=*/true);
  }
  torch::Tensor operator[](size_t k) const { return device_.narrow(0, pieces_[k].first, pieces_[k].second); }

 private:
  std::vector<double> host_;
  std::vector<std::pair<int64_t, int64_t>> pieces_;  // offset, length
  torch::Tensor device_;
};

}  // namespace

torch::Tensor LogMelAugmenter::apply(const torch::Tensor& x_in, const std::vector<SampleAugment>& d) const {
  const int64_t b = x_in.size(0), C = x_in.size(1), n_mels = x_in.size(2), T = x_in.size(3);
  MART_CHECK(static_cast<int64_t>(d.size()) == b && n_mels == f_.n_mels && T == f_.frames,
             "augment: batch [", b, ", ", C, ", ", n_mels, ", ", T, "] does not match the draws or the features");
  int levels = 0;  // view A holds level 0, view B levels 0..N-1
  for (int64_t c = 0; c < C && levels < f_.levels; c += f_.clips_at(levels), ++levels) {
  }
  int64_t clips = 0;
  for (int n = 0; n < levels; ++n) clips += f_.clips_at(n);
  MART_CHECK(clips == C, "augment: ", C, " clips is not the first levels of a hierarchy");
  const double eps = f_.log_eps;
  auto x = x_in;
  auto collect = [&](auto get) {
    std::vector<double> v(static_cast<size_t>(b));
    std::vector<bool> on(static_cast<size_t>(b));
    for (size_t i = 0; i < v.size(); ++i) {
      const std::pair<bool, double> g = get(d[i].view);
      on[i] = g.first;
      v[i] = g.second;
    }
    return std::make_pair(on, v);
  };
  auto level_slices = [&](auto fn) {  // fn(level, [b, M^n, n_mels, T]) -> the new slice
    std::vector<torch::Tensor> out;
    int64_t c0 = 0;
    for (int n = 0; n < levels; c0 += f_.clips_at(n), ++n) out.push_back(fn(n, x.narrow(1, c0, f_.clips_at(n))));
    return torch::cat(out, 1);
  };

  // Every draw of the batch, on the host, then on the device in one copy.
  DeviceParams dev;
  const auto noise = collect([](const ViewAugment& v) { return std::make_pair(v.noise_ratio > 0, v.noise_ratio); });
  const auto gain = collect([](const ViewAugment& v) { return std::make_pair(v.gain_db != 0, v.gain_db); });
  const auto delay = collect([](const ViewAugment& v) { return std::make_pair(v.delay_ms > 0, double(v.delay_ms)); });
  std::vector<bool> filter_on(static_cast<size_t>(b)), pitch_on(static_cast<size_t>(b));
  std::vector<double> filter_gain(static_cast<size_t>(b * n_mels), 1.0), pitch_pos(static_cast<size_t>(b * n_mels));
  for (size_t i = 0; i < filter_on.size(); ++i) {
    const auto at = static_cast<std::ptrdiff_t>(i * static_cast<size_t>(n_mels));
    filter_on[i] = d[i].view.filter != Shelf::none;
    const auto gi = shelf_power_gain(centres_, d[i].view.filter, d[i].view.cutoff_hz);
    std::copy(gi.begin(), gi.end(), filter_gain.begin() + at);
    pitch_on[i] = d[i].view.pitch_cents != 0;
    const auto p = pitch_source_bands(centres_, d[i].view.pitch_cents, f_.f_min, f_.f_max_or_nyquist());
    std::copy(p.begin(), p.end(), pitch_pos.begin() + at);
  }
  std::vector<int64_t> t0(static_cast<size_t>(b * C)), t1(t0.size()), f0(t0.size()), f1(t0.size());
  bool any_mask = false;
  for (int64_t i = 0; i < b; ++i)
    for (int64_t c = 0; c < C; ++c) {
      const ClipMask& m = d[static_cast<size_t>(i)].masks.at(static_cast<size_t>(c));
      const size_t k = static_cast<size_t>(i * C + c);
      t0[k] = m.t0, t1[k] = m.t0 + m.t_width, f0[k] = m.f0, f1[k] = m.f0 + m.f_width;
      any_mask = any_mask || m.t_width > 0 || m.f_width > 0;
    }
  std::vector<size_t> noise_share, delay_frames;
  for (int n = 0; n < levels; ++n) {
    noise_share.push_back(dev.add(noise_share_[static_cast<size_t>(n)]));
    std::vector<int64_t> frames(static_cast<size_t>(b));
    for (size_t i = 0; i < frames.size(); ++i)
      frames[i] = std::llround(delay.second[i] * 1e-3 * f_.sample_rate / static_cast<double>(f_.hop(n)));
    delay_frames.push_back(dev.add(frames));
  }
  const size_t noise_ratio = dev.add(noise.second), noise_mask = dev.add(noise.first), gain_db = dev.add(gain.second),
               filter_mask = dev.add(filter_on), filter_g = dev.add(filter_gain), delay_mask = dev.add(delay.first),
               pitch_mask = dev.add(pitch_on), pitch_src = dev.add(pitch_pos), mask_t0 = dev.add(t0),
               mask_t1 = dev.add(t1), mask_f0 = dev.add(f0), mask_f1 = dev.add(f1);
  dev.upload(x.device());
  auto per_sample = [&](size_t k) { return dev[k].to(x.scalar_type()).view({-1, 1, 1, 1}); };
  auto per_sample_mask = [&](size_t k) { return dev[k].gt(0.5).view({-1, 1, 1, 1}); };

  // Noise (in the power domain), relative to each level's mean frame power, as CLMR's noise is
  // relative to the crop's standard deviation.
  if (any_of(noise.first)) {
    const auto r2 = per_sample(noise_ratio).pow(2);
    const auto noisy = level_slices([&](int n, const torch::Tensor& lv) {
      const auto frame_power = (torch::exp(lv) - eps).clamp_min(0).sum(2, true).mean({1, 3}, true);  // [b,1,1,1]
      const auto share = dev[noise_share[static_cast<size_t>(n)]].to(x.scalar_type()).view({1, 1, -1, 1});
      return add_power(lv, r2 * frame_power * share);
    });
    x = torch::where(per_sample_mask(noise_mask), noisy, x);
  }
  // Gain: an offset (exact up to the eps floor, which it shifts too).
  if (any_of(gain.first)) x = gain_offset(x, per_sample(gain_db));
  // Filter: the Butterworth power response at each band's centre frequency.
  if (any_of(filter_on)) {
    const auto g_t = dev[filter_g].to(x.scalar_type()).view({b, 1, n_mels, 1});
    x = torch::where(per_sample_mask(filter_mask), scale_power(x, g_t, eps), x);
  }
  // Delay: the echo shifted by the delay's frames at each level's hop.
  if (any_of(delay.first)) {
    const auto delayed = level_slices([&](int n, const torch::Tensor& lv) {
      return delay_power(lv, dev[delay_frames[static_cast<size_t>(n)]], o_.delay_volume, eps);
    });
    x = torch::where(per_sample_mask(delay_mask), delayed, x);
  }
  // Pitch: every band reads the band a shift of -cents away, linearly interpolated.
  if (any_of(pitch_on))
    x = torch::where(per_sample_mask(pitch_mask), resample_mels(x, dev[pitch_src].view({b, n_mels}), std::log(eps)), x);
  // Masks, per clip, filled with the clip's mean.
  if (any_mask) {
    auto col = [&](size_t k) { return dev[k].to(torch::kInt64).view({b, C, 1, 1}); };
    const auto il = torch::TensorOptions().dtype(torch::kInt64).device(x.device());
    const auto t = torch::arange(T, il).view({1, 1, 1, T}), m = torch::arange(n_mels, il).view({1, 1, n_mels, 1});
    const auto mask = (t.ge(col(mask_t0)) & t.lt(col(mask_t1))) | (m.ge(col(mask_f0)) & m.lt(col(mask_f1)));
    x = torch::where(mask, x.mean({2, 3}, true), x);
  }
  return x;
}

}  // namespace mart::train
