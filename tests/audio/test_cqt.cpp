// The constant-Q front end (CQTNet's input; issue 12): the kernel method against a float64
// evaluation of the definition, a transposed tone moving the peak by exactly its semitones, and
// the 20-frame mean.
#include <gtest/gtest.h>

#include <cmath>
#include <complex>
#include <random>

#include "mart/audio/cqt.h"

using namespace mart::audio;

namespace {

constexpr double kPi = 3.14159265358979323846;

// |X[k, m]| straight from the definition in cqt.h, in double.
double direct(const std::vector<float>& x, const CqtParams& p, int k, int64_t m) {
  const double q = 1.0 / (std::pow(2.0, 1.0 / p.bins_per_octave) - 1.0);
  const double f = p.f_min * std::pow(2.0, static_cast<double>(k) / p.bins_per_octave);
  const int nk = static_cast<int>(std::ceil(q * p.sample_rate / f));
  std::complex<double> s = 0;
  for (int n = 0; n < nk; ++n) {
    const int64_t i = m * p.hop - nk / 2 + n;
    const double v = i >= 0 && i < static_cast<int64_t>(x.size()) ? x[static_cast<size_t>(i)] : 0.0;
    const double w = 0.5 - 0.5 * std::cos(2.0 * kPi * n / nk);
    s += v * w * std::polar(1.0, -2.0 * kPi * q * n / nk);
  }
  return std::abs(s) / nk;
}

std::vector<float> tone(double hz, int sr, int64_t n, double amp = 0.5) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = static_cast<float>(amp * std::sin(2.0 * kPi * hz * i / sr));
  return x;
}

}  // namespace

TEST(ConstantQ, KernelMethodMatchesTheDefinitionInDouble) {
  CqtParams p;  // CQTNet's: 84 bins from C1, 12 per octave, hop 512 at 22.05 kHz
  ConstantQ cqt(p);
  EXPECT_EQ(cqt.fft_size(), 16384);  // the lowest bin's window is 11,343 samples
  std::mt19937 rng(5);
  std::normal_distribution<float> noise(0.0f, 0.1f);
  // Noise plus three tones: every bin sees energy, some far above others.
  auto x = tone(110.0, p.sample_rate, 3 * p.sample_rate);
  const auto t2 = tone(1318.5, p.sample_rate, 3 * p.sample_rate, 0.2), t3 = tone(3520.0, p.sample_rate, 3 * p.sample_rate, 0.1);
  for (size_t i = 0; i < x.size(); ++i) x[i] += t2[i] + t3[i] + noise(rng);
  const auto mag = cqt.magnitude(x.data(), static_cast<int64_t>(x.size()));
  ASSERT_EQ(mag.size(), static_cast<size_t>(ConstantQ::frames(static_cast<int64_t>(x.size()), p.hop)) * 84);
  double worst = 0, peak = 0;
  for (int64_t m : {int64_t{0}, int64_t{3}, int64_t{40}, int64_t{128}}) {  // 0 and 3: the zero padding
    for (int k = 0; k < p.bins; ++k) {
      const double ref = direct(x, p, k, m);
      peak = std::max(peak, ref);
      worst = std::max(worst, std::abs(mag[static_cast<size_t>(m * 84 + k)] - ref));
    }
  }
  EXPECT_GT(peak, 0.1);
  EXPECT_LT(worst, 2e-3 * peak) << "largest error " << worst << " against a peak of " << peak;
}

TEST(ConstantQ, ATransposedToneMovesThePeakByItsSemitones) {
  CqtParams p;
  ConstantQ cqt(p);
  const int base = 33;  // A3, 220 Hz
  EXPECT_NEAR(cqt.frequency(base), 220.0, 0.01);
  for (int shift : {-7, -1, 1, 5, 12, 19}) {
    for (int from : {base, base + 2}) {
      const auto x = tone(cqt.frequency(from + shift), p.sample_rate, 2 * p.sample_rate);
      const auto mag = cqt.magnitude(x.data(), static_cast<int64_t>(x.size()));
      const auto mean = ConstantQ::block_mean(mag, p.bins, 1000);  // one block: the whole tone
      const auto top = std::max_element(mean.begin(), mean.end()) - mean.begin();
      EXPECT_EQ(top, from + shift) << "tone " << from + shift;
    }
  }
}

TEST(ConstantQ, BlockMeanAveragesEveryTwentyFrames) {
  std::vector<float> mag;
  for (int f = 0; f < 45; ++f)
    for (int k = 0; k < 3; ++k) mag.push_back(static_cast<float>(f * 10 + k));
  const auto m = ConstantQ::block_mean(mag, 3, 20);
  ASSERT_EQ(m.size(), 9u);  // 3 blocks: 20, 20 and the last 5 frames
  EXPECT_FLOAT_EQ(m[0], 95.0f);       // frames 0..19 of bin 0: 10 * 9.5
  EXPECT_FLOAT_EQ(m[4], 296.0f);      // frames 20..39 of bin 1: 10 * 29.5 + 1
  EXPECT_FLOAT_EQ(m[8], 422.0f);      // frames 40..44 of bin 2: 10 * 42 + 2
}

TEST(ConstantQ, RefusesABinAboveNyquist) {
  CqtParams p;
  p.sample_rate = 8000;  // C1 + 84 bins reaches 3951 Hz: fine; 96 bins would not be
  p.bins = 96;
  EXPECT_ANY_THROW(ConstantQ{p});
}
