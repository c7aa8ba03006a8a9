// Fresh log-mel augmentation: each effect against a hand-computed float64 reference, the draws'
// determinism, and the independence of the batch's split over ranks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>

#include "mart/audio/logmel.h"
#include "mart/core/error.h"
#include "mart/train/augment.h"

using namespace mart;
using namespace mart::train;

namespace {

features::FeatureConfig features() {
  features::FeatureConfig f;
  f.sample_rate = 8000;
  f.levels = 3;
  f.parts = 2;
  f.frames = 8;
  f.n_fft = 64;
  f.n_mels = 16;
  f.clip_samples = 4 * 8 * 16;  // hops 64, 32, 16 samples
  f.validate();
  return f;
}

// Every effect off: each test switches on the one it checks.
AugmentOptions none() {
  AugmentOptions o;
  o.p_gain = o.p_noise = o.p_filter = o.p_delay = o.p_pitch = o.p_time_mask = o.p_freq_mask = 0;
  return o;
}

torch::Tensor logmel(int64_t b, int64_t clips, const features::FeatureConfig& f, int seed = 1) {
  torch::manual_seed(seed);
  return torch::randn({b, clips, f.n_mels, f.frames}, torch::kFloat64) * 2 - 4;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

TEST(Augment, GainIsAnOffsetOfDbOverTenTimesLnTen) {
  const auto f = features();
  auto o = none();
  o.p_gain = 1;
  const LogMelAugmenter aug(o, f, 3);
  const auto x = logmel(4, f.clips_total(), f);
  const auto d = aug.draw(4, 5, 0, 1, f.clips_total());
  const auto y = aug.apply(x, d);
  for (int64_t i = 0; i < 4; ++i) {
    const double db = d[size_t(i)].view.gain_db;
    EXPECT_GE(db, o.gain_min_db);
    EXPECT_LE(db, o.gain_max_db);
    // Power gain 10^(db/10) multiplies mel; the log moves by log(10^(db/10)).
    EXPECT_LT(max_abs(y[i] - x[i] - std::log(std::pow(10.0, db / 10))), 1e-12);
  }
}

TEST(Augment, NoiseIsAddedInThePowerDomainAtTheDrawnLevelPerBand) {
  const auto f = features();
  auto o = none();
  o.p_noise = 1;
  o.noise_min = 0.5, o.noise_max = 0.9;  // loud enough to show
  const LogMelAugmenter aug(o, f, 3);
  const auto x = logmel(2, 1, f);
  const auto d = aug.draw(2, 0, 0, 0, 1);
  const auto y = aug.apply(x, d);
  // Reference by hand: white noise of std r * S puts r^2 * (mean frame power) * share[m] in band m,
  // share[m] = (sum of filter m's weights) / (n_fft / 2).
  const audio::MelFilterbank fb(f.sample_rate, f.n_fft, f.n_mels, f.f_min, f.f_max_or_nyquist());
  for (int64_t i = 0; i < 2; ++i) {
    const auto xi = x[i][0];  // [n_mels, T]
    double frame_power = 0;
    for (int64_t m = 0; m < f.n_mels; ++m)
      for (int64_t t = 0; t < f.frames; ++t) frame_power += std::exp(xi[m][t].item<double>()) - f.log_eps;
    frame_power /= f.frames;
    const double r = d[size_t(i)].view.noise_ratio;
    ASSERT_GE(r, 0.5);
    for (int64_t m = 0; m < f.n_mels; ++m) {
      double s = 0;
      for (int k = 0; k < fb.n_freqs(); ++k) s += fb.weight(int(m), k);
      const double n = r * r * frame_power * s / (f.n_fft / 2.0);
      for (int64_t t = 0; t < f.frames; ++t)
        ASSERT_NEAR(y[i][0][m][t].item<double>(), std::log(std::exp(xi[m][t].item<double>()) + n), 1e-12);
    }
  }
  EXPECT_GT(max_abs(y - x), 0.1);
}

TEST(Augment, FilterIsTheButterworthPowerResponseAtEachBandCentre) {
  const std::vector<double> fr{0, 100, 1000, 4000};
  const auto hp = shelf_power_gain(fr, Shelf::highpass, 1000), lp = shelf_power_gain(fr, Shelf::lowpass, 1000);
  EXPECT_EQ(hp[0], 0.0);
  EXPECT_NEAR(hp[1], 1 / (1 + 1e4), 1e-15);
  EXPECT_NEAR(hp[2], 0.5, 1e-15);  // -3 dB at the cut-off
  EXPECT_NEAR(lp[2], 0.5, 1e-15);
  EXPECT_NEAR(lp[3], 1 / (1 + 256.0), 1e-15);
  EXPECT_EQ(shelf_power_gain(fr, Shelf::none, 1000), std::vector<double>(4, 1.0));

  const auto f = features();
  auto o = none();
  o.p_filter = 1;
  const LogMelAugmenter aug(o, f, 3);
  const auto x = logmel(3, f.clips_total(), f);
  const auto d = aug.draw(3, 1, 0, 1, f.clips_total());
  const auto y = aug.apply(x, d);
  for (int64_t i = 0; i < 3; ++i) {
    const auto g = shelf_power_gain(aug.centres_hz(), d[size_t(i)].view.filter, d[size_t(i)].view.cutoff_hz);
    ASSERT_NE(d[size_t(i)].view.filter, Shelf::none);
    // Every clip of the hierarchy gets the same curve.
    for (int64_t c = 0; c < f.clips_total(); ++c)
      for (int64_t m = 0; m < f.n_mels; ++m)
        for (int64_t t = 0; t < f.frames; ++t) {
          const double p = std::max(std::exp(x[i][c][m][t].item<double>()) - f.log_eps, 0.0);
          ASSERT_NEAR(y[i][c][m][t].item<double>(), std::log(p * g[size_t(m)] + f.log_eps), 1e-12);
        }
  }
}

TEST(Augment, DelayAddsAQuarterPowerEchoAcrossALevelsClips) {
  // One band, a level of 2 clips of 3 frames: 6 frames in time, an echo 2 frames later.
  const double eps = 1e-6;
  const std::vector<double> p{1, 2, 3, 4, 5, 6};
  auto x = torch::tensor(p, torch::kFloat64).add(eps).log().view({1, 2, 3}).unsqueeze(2);  // [1, 2, 1, 3]
  const auto y = delay_power(x, torch::tensor({int64_t{2}}), 0.5, eps);
  for (int t = 0; t < 6; ++t) {
    const double echo = t >= 2 ? p[size_t(t - 2)] : 0;
    EXPECT_NEAR(y[0][t / 3][0][t % 3].item<double>(), std::log((p[size_t(t)] + 0.25 * echo) / 4 + eps), 1e-12) << t;
  }
}

TEST(Augment, DelayShiftsByTheDelaysFramesAtEachLevelsHop) {
  const auto f = features();
  auto o = none();
  o.p_delay = 1;
  o.delay_min_ms = o.delay_max_ms = 16;  // 128 samples: 2 frames at hop 64, 4 at 32, 8 at 16
  const LogMelAugmenter aug(o, f, 3);
  const auto x = logmel(1, f.clips_total(), f);
  const auto y = aug.apply(x, aug.draw(1, 0, 0, 1, f.clips_total()));
  int64_t c0 = 0;
  for (int n = 0; n < f.levels; c0 += f.clips_at(n), ++n) {
    const auto lv = x.narrow(1, c0, f.clips_at(n));
    const int64_t frames = 128 / f.hop(n);
    EXPECT_LT(max_abs(y.narrow(1, c0, f.clips_at(n)) - delay_power(lv, torch::tensor({frames}), 0.5, f.log_eps)), 1e-12)
        << "level " << n;
  }
}

TEST(Augment, PitchShiftReadsTheBandAtTheShiftedFrequency) {
  const auto f = features();
  const auto centres = audio::mel_centre_frequencies(f.n_mels, f.f_min, f.f_max_or_nyquist());
  // No shift: every band reads itself.
  const auto same = pitch_source_bands(centres, 0, f.f_min, f.f_max_or_nyquist());
  for (size_t m = 0; m < same.size(); ++m) EXPECT_NEAR(same[m], double(m), 1e-9);
  // An octave up: band m reads the point of the mel axis at half its centre frequency.
  const auto up = pitch_source_bands(centres, 1200, f.f_min, f.f_max_or_nyquist());
  const double m_hi = audio::hz_to_mel_htk(f.f_max_or_nyquist());
  for (size_t m = 0; m < up.size(); ++m) {
    const double hz = audio::mel_to_hz_htk(m_hi * (up[m] + 1) / (f.n_mels + 1));
    EXPECT_NEAR(hz, centres[m] / 2, 1e-6 * centres[m]);
    EXPECT_LT(up[m], double(m));
  }
  // A whole number of bands moves a peak by exactly those bands; a half band averages two.
  auto x = torch::full({1, 1, 8, 2}, -10.0, torch::kFloat64);
  x[0][0][3].fill_(5.0);
  auto shifted = [&](double k) {
    std::vector<double> pos(8);
    for (int m = 0; m < 8; ++m) pos[size_t(m)] = m - k;
    return resample_mels(x, torch::tensor(pos, torch::kFloat64).view({1, 8}), -99.0);
  };
  const auto y = shifted(2);
  EXPECT_EQ(y.argmax(2)[0][0][0].item<int64_t>(), 5);
  EXPECT_EQ(y[0][0][5][1].item<double>(), 5.0);
  EXPECT_EQ(y[0][0][0][0].item<double>(), -99.0);  // read from below band 0: silence
  EXPECT_EQ(y[0][0][1][0].item<double>(), -99.0);
  const auto h = shifted(0.5);
  EXPECT_NEAR(h[0][0][3][0].item<double>(), -2.5, 1e-12);
  EXPECT_NEAR(h[0][0][4][0].item<double>(), -2.5, 1e-12);
}

TEST(Augment, MasksFillExactlyTheDrawnRangesWithTheClipMean) {
  const auto f = features();
  auto o = none();
  o.p_time_mask = o.p_freq_mask = 1;
  o.time_mask_max = o.freq_mask_max = 0.5;
  const LogMelAugmenter aug(o, f, 3);
  const auto x = logmel(3, f.clips_total(), f);
  const auto d = aug.draw(3, 2, 0, 1, f.clips_total());
  const auto y = aug.apply(x, d);
  int64_t masked = 0;
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t c = 0; c < f.clips_total(); ++c) {
      const ClipMask& m = d[size_t(i)].masks[size_t(c)];
      ASSERT_LE(m.t0 + m.t_width, f.frames);
      ASSERT_LE(m.f0 + m.f_width, f.n_mels);
      const double mean = x[i][c].mean().item<double>();
      for (int64_t b = 0; b < f.n_mels; ++b)
        for (int64_t t = 0; t < f.frames; ++t) {
          const bool in = (t >= m.t0 && t < m.t0 + m.t_width) || (b >= m.f0 && b < m.f0 + m.f_width);
          masked += in;
          if (in) {
            ASSERT_NEAR(y[i][c][b][t].item<double>(), mean, 1e-12);
          } else {
            ASSERT_EQ(y[i][c][b][t].item<double>(), x[i][c][b][t].item<double>());
          }
        }
    }
  EXPECT_GT(masked, 0);
}

TEST(Augment, SameSeedStepAndIndexGiveTheSameBytesAnotherStepOthers) {
  const auto f = features();
  AugmentOptions o;  // the defaults: every effect possible
  o.p_noise = 0.5;
  const LogMelAugmenter aug(o, f, 3), other_seed(o, f, 4);
  const auto x = logmel(8, f.clips_total(), f).to(torch::kFloat32);
  const auto y = aug(x, 10, 0, 1);
  EXPECT_TRUE(torch::equal(y, aug(x, 10, 0, 1)));
  EXPECT_FALSE(torch::equal(y, aug(x, 11, 0, 1)));
  EXPECT_FALSE(torch::equal(y, other_seed(x, 10, 0, 1)));
  EXPECT_FALSE(torch::equal(y, aug(x, 10, 0, 0))) << "A and B draw independently";
  EXPECT_FALSE(torch::equal(y, x));
  o.enabled = false;
  EXPECT_TRUE(torch::equal(LogMelAugmenter(o, f, 3)(x, 10, 0, 1), x));
}

TEST(Augment, RanksSplittingTheBatchGetTheOneRankBatch) {
  const auto f = features();
  AugmentOptions o;
  o.p_noise = 0.5;
  const LogMelAugmenter aug(o, f, 3);
  for (int64_t clips : {int64_t{1}, f.clips_total()}) {
    const auto x = logmel(8, clips, f).to(torch::kFloat32);
    const int view = clips == 1 ? 0 : 1;
    const auto whole = aug(x, 7, 0, view);
    for (int64_t k : {2, 4}) {
      std::vector<torch::Tensor> parts;
      for (int64_t r = 0; r < k; ++r) parts.push_back(aug(x.narrow(0, r * 8 / k, 8 / k), 7, r * 8 / k, view));
      EXPECT_TRUE(torch::equal(torch::cat(parts, 0), whole)) << k << " ranks, " << clips << " clips";
    }
  }
}

TEST(Augment, BadOptionsNameTheOption) {
  AugmentOptions o;
  o.p_pitch = 1.5;
  try {
    o.validate();
    FAIL() << "p_pitch 1.5 accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("train.augment.p_pitch"), std::string::npos) << e.what();
  }
  o = AugmentOptions{};
  o.gain_min_db = 0, o.gain_max_db = -1;
  EXPECT_THROW(o.validate(), ConfigError);
}

}  // namespace
