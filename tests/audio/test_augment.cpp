// The augmentation chain: same seed, same bytes; the draws follow CLMR's probabilities and
// ranges; each effect does what its name says.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "mart/audio/augment.h"

using namespace mart::audio;

namespace {

constexpr int kRate = 22050;

std::vector<float> sine(int n, double freq, double amp = 0.5) {
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i) x[i] = static_cast<float>(amp * std::sin(2 * M_PI * freq * i / kRate));
  return x;
}

std::vector<float> music_like(int n) {  // a few partials and some noise
  mart::Rng rng(99);
  std::vector<float> x(n);
  for (int i = 0; i < n; ++i)
    x[i] = static_cast<float>(0.3 * std::sin(2 * M_PI * 220 * i / kRate) +
                              0.2 * std::sin(2 * M_PI * 1760 * i / kRate) + 0.02 * rng.normal());
  return x;
}

double rms(const std::vector<float>& x, size_t a, size_t b) {
  double s = 0;
  for (size_t i = a; i < b; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s / (b - a));
}

double crossing_frequency(const std::vector<float>& x) {
  const size_t a = x.size() / 4, b = 3 * x.size() / 4;
  size_t first = 0, last = 0, count = 0;
  for (size_t i = a + 1; i < b; ++i)
    if (x[i - 1] < 0 && x[i] >= 0) {
      if (!count) first = i;
      last = i;
      ++count;
    }
  return count < 2 ? 0 : (count - 1) * double(kRate) / double(last - first);
}

// Steady-state gain of a filter on a sine, measured away from the start transient.
double filter_gain(void (*filter)(std::vector<float>&, int, double), double cutoff, double f) {
  std::vector<float> x = sine(kRate, f);
  const double before = rms(x, kRate / 2, kRate);
  filter(x, kRate, cutoff);
  return rms(x, kRate / 2, kRate) / before;
}

}  // namespace

TEST(Augment, SameSeedSameBytes) {
  const std::vector<float> x = music_like(3 * kRate);
  AugmentConfig cfg;
  cfg.p_pitch = 1.0;  // include the libsox path
  cfg.p_noise = 1.0;
  const std::vector<float> a = augment_view(x, kRate, cfg, 7, 42, 1);
  const std::vector<float> b = augment_view(x, kRate, cfg, 7, 42, 1);
  ASSERT_EQ(a.size(), x.size());
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0);
  EXPECT_NE(augment_view(x, kRate, cfg, 7, 42, 2), a) << "another view is another draw";
  EXPECT_NE(augment_view(x, kRate, cfg, 7, 43, 1), a) << "another track is another draw";
}

TEST(Augment, DrawsFollowClmrProbabilitiesAndRanges) {
  const AugmentConfig cfg;
  const int n = 20000;
  int polarity = 0, noise = 0, gain = 0, filter = 0, high = 0, delay = 0, pitch = 0;
  std::set<int> delays;
  for (int i = 0; i < n; ++i) {
    mart::Rng rng(mart::seed_of(1, i, 1));
    const AugmentParams p = draw_augment_params(cfg, rng);
    polarity += p.polarity;
    if (p.noise_std_ratio > 0) {
      ++noise;
      EXPECT_TRUE(p.noise_std_ratio >= 1e-4 && p.noise_std_ratio <= 1e-2);
    }
    if (p.gain_db != 0) {
      ++gain;
      EXPECT_TRUE(p.gain_db >= -20 && p.gain_db <= -1) << p.gain_db;
    }
    if (p.filter != FilterKind::none) ++filter;
    if (p.filter == FilterKind::highpass) {
      ++high;
      EXPECT_TRUE(p.cutoff_hz >= 200 && p.cutoff_hz <= 1200) << p.cutoff_hz;
    }
    if (p.filter == FilterKind::lowpass) {
      EXPECT_TRUE(p.cutoff_hz >= 2200 && p.cutoff_hz <= 4000) << p.cutoff_hz;
    }
    if (p.delay_ms) ++delay, delays.insert(p.delay_ms);
    if (p.pitch_cents != 0) {
      ++pitch;
      EXPECT_LE(std::fabs(p.pitch_cents), 700);
    }
  }
  // 20000 draws: 4 standard deviations of a binomial are below 0.015 for every p here.
  EXPECT_NEAR(polarity / double(n), 0.8, 0.015);
  EXPECT_NEAR(noise / double(n), 0.01, 0.003);
  EXPECT_NEAR(gain / double(n), 0.3, 0.015);
  EXPECT_NEAR(filter / double(n), 0.8, 0.015);
  EXPECT_NEAR(high / double(filter), 0.5, 0.02);
  EXPECT_NEAR(delay / double(n), 0.3, 0.015);
  EXPECT_NEAR(pitch / double(n), 0.6, 0.015);
  EXPECT_EQ(delays, (std::set<int>{200, 250, 300, 350, 400, 450}));
}

TEST(Augment, PolarityFlipsSign) {
  std::vector<float> x = music_like(1000);
  const std::vector<float> y = x;
  invert_polarity(x);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(x[i], -y[i]);
}

TEST(Augment, GainScalesByDecibels) {
  std::vector<float> x = sine(1000, 440);
  const std::vector<float> y = x;
  apply_gain_db(x, -6.0);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], y[i] * 0.501187, 1e-6);
}

TEST(Augment, NoiseStdIsRatioOfSignalStd) {
  std::vector<float> x = sine(200000, 440);  // std 0.5 / sqrt(2)
  const std::vector<float> y = x;
  mart::Rng rng(5);
  add_noise(x, 0.01, rng);
  std::vector<float> d(x.size());
  for (size_t i = 0; i < x.size(); ++i) d[i] = x[i] - y[i];
  EXPECT_NEAR(rms(d, 0, d.size()), 0.01 * 0.5 / std::sqrt(2.0), 0.0002);
}

TEST(Augment, HighPassAndLowPassAreButterworth) {
  EXPECT_NEAR(filter_gain(highpass, 1000, 1000), M_SQRT1_2, 0.01);  // -3 dB at the cut-off
  EXPECT_LT(filter_gain(highpass, 1000, 100), 0.02);                 // 12 dB/octave below
  EXPECT_NEAR(filter_gain(highpass, 1000, 8000), 1.0, 0.01);
  EXPECT_NEAR(filter_gain(lowpass, 3000, 3000), M_SQRT1_2, 0.01);
  EXPECT_LT(filter_gain(lowpass, 3000, 10000), 0.15);
  EXPECT_NEAR(filter_gain(lowpass, 3000, 200), 1.0, 0.01);
}

TEST(Augment, DelayMixesAHalfVolumeEcho) {
  std::vector<float> x(kRate, 0.0f);
  x[100] = 1.0f;
  delay_mix(x, kRate, 200);
  const size_t offset = kRate / 5;
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = i == 100 ? 0.5f : i == 100 + offset ? 0.25f : 0.0f;
    ASSERT_EQ(x[i], want) << i;
  }
}

TEST(Augment, PitchShiftMovesASineByTheCents) {
  for (double cents : {700.0, -500.0, 123.0}) {
    std::vector<float> x = sine(2 * kRate, 440);
    pitch_shift(x, kRate, cents);
    ASSERT_EQ(x.size(), 2u * kRate) << "length kept";
    const double want = 440 * std::pow(2.0, cents / 1200);
    EXPECT_NEAR(crossing_frequency(x), want, want * 0.005) << cents << " cents";
    EXPECT_NEAR(rms(x, kRate / 2, 3 * kRate / 2), 0.5 / std::sqrt(2.0), 0.05) << "level kept";
  }
}

TEST(Augment, NothingDrawnLeavesTheSignalAlone) {
  AugmentConfig none;
  none.p_polarity = none.p_noise = none.p_gain = none.p_filter = none.p_delay = none.p_pitch = 0;
  const std::vector<float> x = music_like(5000);
  AugmentParams p;
  EXPECT_EQ(augment_view(x, kRate, none, 1, 2, 3, &p), x);
  EXPECT_FALSE(p.polarity);
  EXPECT_EQ(p.pitch_cents, 0);
}
