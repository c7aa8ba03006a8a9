// The log-mel against torchaudio's numbers, and the slicing properties the shard format needs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "mart/audio/logmel.h"
#include "mart/core/error.h"
#include "mart/core/rng.h"

using namespace mart::audio;
using mart::features::FeatureConfig;
using mart::features::WindowPolicy;

namespace {

struct GoldenCase {
  uint32_t signal;
  MelParams p;
  int64_t frames;
  std::vector<float> logmel;
};
struct Golden {
  std::vector<std::vector<float>> signals;
  std::vector<GoldenCase> cases;
};

template <typename T>
T read_pod(std::ifstream& f) {
  T v{};
  f.read(reinterpret_cast<char*>(&v), sizeof(T));
  return v;
}

std::vector<float> read_floats(std::ifstream& f, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  f.read(reinterpret_cast<char*>(v.data()), n * sizeof(float));
  return v;
}

// Layout written by tests/python/make_mel_golden.py.
Golden read_golden(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) ADD_FAILURE() << "cannot open " << path;
  char magic[4] = {};
  f.read(magic, 4);
  EXPECT_EQ(std::string(magic, 4), "MELG");
  EXPECT_EQ(read_pod<uint32_t>(f), 1u);
  Golden g;
  const uint32_t n_signals = read_pod<uint32_t>(f), n_cases = read_pod<uint32_t>(f);
  for (uint32_t i = 0; i < n_signals; ++i) g.signals.push_back(read_floats(f, read_pod<int64_t>(f)));
  for (uint32_t i = 0; i < n_cases; ++i) {
    GoldenCase c;
    c.signal = read_pod<uint32_t>(f);
    c.p.sample_rate = read_pod<int32_t>(f);
    c.p.n_fft = read_pod<int32_t>(f);
    c.p.hop = read_pod<int32_t>(f);
    c.p.n_mels = read_pod<int32_t>(f);
    c.p.f_min = read_pod<double>(f);
    c.p.f_max = read_pod<double>(f);
    c.p.log_eps = read_pod<double>(f);
    c.frames = read_pod<int64_t>(f);
    c.logmel = read_floats(f, c.frames * c.p.n_mels);
    g.cases.push_back(std::move(c));
  }
  EXPECT_TRUE(f.good()) << path << " is shorter than its header says";
  return g;
}

// 1e-4 relative (against max(|ref|, 1): log values cross zero, where a purely relative bound
// would demand more than float32 has) on every cell within 60 dB of its frame's loudest band.
// Further down, both sides are float32 rounding noise: torchaudio's own float32 filterbank is off
// the exact triangles by up to 1.6e-5, which moves a -75 dB cell by 2e-4 in the log. There a loose
// bound still catches a wrong bin or a wrong filter.
void expect_matches(const Golden& g) {
  ASSERT_FALSE(g.cases.empty());
  int64_t loud = 0, cells = 0;
  for (const GoldenCase& c : g.cases) {
    LogMel lm(c.p);
    const std::vector<float>& x = g.signals.at(c.signal);
    ASSERT_EQ(lm.frames(x.size()), c.frames);
    const std::vector<float> y = lm.compute(x);
    ASSERT_EQ(y.size(), c.logmel.size());
    const int nm = c.p.n_mels;
    double worst_loud = 0, worst_all = 0;
    cells += c.frames * nm;
    for (int64_t t = 0; t < c.frames; ++t) {
      const float* ref = c.logmel.data() + t * nm;
      const float peak = *std::max_element(ref, ref + nm);
      for (int m = 0; m < nm; ++m) {
        const double e = std::fabs(y[t * nm + m] - ref[m]) / std::max(1.0, std::fabs(double(ref[m])));
        worst_all = std::max(worst_all, e);
        if (ref[m] >= peak - std::log(1e6)) worst_loud = std::max(worst_loud, e), ++loud;
      }
    }
    const std::string what = "sr " + std::to_string(c.p.sample_rate) + " n_fft " +
                             std::to_string(c.p.n_fft) + " hop " + std::to_string(c.p.hop);
    EXPECT_LE(worst_loud, 1e-4) << what;
    EXPECT_LE(worst_all, 1e-3) << what;
  }
  std::printf("strict 1e-4 bound applied to %lld of %lld cells\n", (long long)loud, (long long)cells);
  EXPECT_GT(loud, cells / 2);  // the strict bound covers most cells, not a corner
}

std::vector<float> test_track(int64_t n, uint64_t seed) {
  mart::Rng rng(seed);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    x[i] = static_cast<float>(0.3 * std::sin(0.01 * i + 1e-6 * i * i) + 0.05 * rng.normal());
  return x;
}

FeatureConfig config(WindowPolicy w) {
  FeatureConfig c;
  c.window = w;
  return c;
}

}  // namespace

TEST(LogMel, MatchesCommittedTorchaudioGolden) {
  expect_matches(read_golden(MART_SOURCE_DIR "/tests/audio/data/mel_golden.bin"));
}

// More signals and a second rate/band, computed now by torchaudio (skipped without it).
TEST(LogMel, MatchesTorchaudioLive) {
  const std::string out = std::string(MART_BINARY_DIR) + "/mel_golden_full.bin";
  const std::string cmd = "/usr/bin/python3 " MART_SOURCE_DIR
                          "/tests/python/make_mel_golden.py --full --out " + out + " 2>/dev/null";
  const int rc = std::system(cmd.c_str());
  if (rc != 0 && WIFEXITED(rc) && WEXITSTATUS(rc) == 3)
    GTEST_SKIP() << "/usr/bin/python3 lacks torch/torchaudio (Debian: python3-torchaudio)";
  if (rc != 0 && WIFEXITED(rc) && WEXITSTATUS(rc) == 127)
    GTEST_SKIP() << "/usr/bin/python3 not found (Debian: python3-torchaudio)";
  ASSERT_EQ(rc, 0) << cmd;
  expect_matches(read_golden(out));
}

TEST(LogMel, PeriodicHannWindow) {
  const std::vector<float> w = hann_window(256);
  EXPECT_EQ(w[0], 0.0f);
  EXPECT_FLOAT_EQ(w[128], 1.0f);
  EXPECT_FLOAT_EQ(w[64], 0.5f);
  EXPECT_FLOAT_EQ(w[1], w[255]);  // periodic: symmetric about n/2, not (n-1)/2
}

TEST(LogMel, CountsEmptyFilters) {
  // torchaudio's melscale_fbanks gives 18 all-zero filters here (DESIGN.md) and 3 at n_fft 512.
  EXPECT_EQ(MelFilterbank(22050, 256, 128, 0, 11025).empty_filters(), 18);
  EXPECT_EQ(MelFilterbank(22050, 512, 128, 0, 11025).empty_filters(), 3);
  EXPECT_EQ(MelFilterbank(22050, 2048, 128, 0, 11025).empty_filters(), 0);
}

TEST(LogMel, EmptyFilterRowsAreLogEps) {
  LogMel lm(config(WindowPolicy::fixed), 3);
  const std::vector<float> x = test_track(4096, 1);
  const std::vector<float> y = lm.compute(x);
  const MelFilterbank& fb = lm.filterbank();
  int checked = 0;
  for (int m = 0; m < fb.n_mels(); ++m) {
    bool empty = true;
    for (int k = 0; k < fb.n_freqs(); ++k) empty = empty && fb.weight(m, k) == 0;
    if (!empty) continue;
    ++checked;
    for (int64_t t = 0; t < lm.frames(x.size()); ++t)
      EXPECT_FLOAT_EQ(y[t * fb.n_mels() + m], std::log(1e-6f));
  }
  EXPECT_EQ(checked, 18);
}

TEST(LogMel, FrameCountAndShortSignal) {
  EXPECT_EQ(stft_frames(131072, 1024), 129);
  EXPECT_EQ(stft_frames(131071, 1024), 128);
  LogMel lm(MelParams{});
  EXPECT_THROW(lm.compute(std::vector<float>(128)), mart::Error);  // reflect pad needs > n_fft/2
  EXPECT_EQ(lm.compute(std::vector<float>(129)).size(), 2u * 128);
}

// A clip's spectrogram sliced out of the whole track's level equals a direct STFT of the clip,
// away from the clip's edges (where the clip's own STFT sees reflect padding instead of audio).
TEST(LogMel, SlicingWholeTrackEqualsPerClipStft) {
  for (WindowPolicy w : {WindowPolicy::fixed, WindowPolicy::scaled}) {
    const FeatureConfig cfg = config(w);
    const std::vector<float> track = test_track(2 * cfg.clip_samples + 5000, 2);
    for (int n = 0; n < cfg.levels; ++n) {
      LogMel lm(cfg, n);
      const int64_t hop = cfg.hop(n), half = cfg.n_fft_at(n) / 2, len = cfg.level_samples(n);
      const std::vector<float> whole = lm.compute(track);
      int64_t compared = 0;
      for (int64_t start : {int64_t{0}, 7 * cfg.hop(0), cfg.clip_samples + 3 * cfg.hop(0)}) {
        for (int64_t k = 0; k < cfg.clips_at(n); ++k) {  // every clip of the level
          const int64_t clip0 = start + k * len;
          const std::vector<float> clip = lm.compute(track.data() + clip0, len);
          for (int64_t t = 0; t < lm.frames(len); ++t) {
            if (t * hop < half || t * hop + half > len) continue;  // touches the clip's padding
            const int64_t tw = clip0 / hop + t;
            for (int m = 0; m < cfg.n_mels; ++m)
              ASSERT_NEAR(clip[t * cfg.n_mels + m], whole[tw * cfg.n_mels + m], 1e-5)
                  << to_string(w) << " level " << n << " clip start " << clip0 << " frame " << t;
            ++compared;
          }
        }
      }
      EXPECT_GT(compared, 0) << to_string(w) << " level " << n << ": no interior frame";
    }
  }
}

// With the fixed window, level n is the finest level taken every frame_stride(n) frames: the
// shard stores the finest level only.
TEST(LogMel, FixedPolicyLevelsAreStridedFinestLevel) {
  const FeatureConfig cfg = config(WindowPolicy::fixed);
  ASSERT_TRUE(cfg.levels_share_frames());
  const std::vector<float> track = test_track(cfg.clip_samples + 12345, 3);
  LogMel finest_lm(cfg, cfg.levels - 1);
  const std::vector<float> finest = finest_lm.compute(track);
  for (int n = 0; n < cfg.levels; ++n) {
    LogMel lm(cfg, n);
    const std::vector<float> level = lm.compute(track);
    const int64_t frames = lm.frames(track.size()), stride = cfg.frame_stride(n);
    ASSERT_EQ(frames, (finest_lm.frames(track.size()) + stride - 1) / stride) << "level " << n;
    for (int64_t t = 0; t < frames; ++t)
      for (int m = 0; m < cfg.n_mels; ++m)
        ASSERT_NEAR(level[t * cfg.n_mels + m], finest[t * stride * cfg.n_mels + m], 1e-5)
            << "level " << n << " frame " << t;
  }
}

// Different objects (one per thread in the stage) give the same bytes.
TEST(LogMel, Deterministic) {
  const std::vector<float> x = test_track(50000, 4);
  LogMel a(config(WindowPolicy::scaled), 0), b(config(WindowPolicy::scaled), 0);
  EXPECT_EQ(a.compute(x), b.compute(x));
  EXPECT_EQ(a.compute(x), a.compute(x));
}

TEST(LogMel, TrackLogMelsStoresWhatTheShardNeeds) {
  TrackLogMels fixed(config(WindowPolicy::fixed)), scaled(config(WindowPolicy::scaled));
  EXPECT_EQ(fixed.stored_levels(), (std::vector<int>{3}));
  EXPECT_EQ(scaled.stored_levels(), (std::vector<int>{0, 1, 2, 3}));
  const std::vector<float> x = test_track(30000, 6);
  const auto levels = scaled.compute(x);
  ASSERT_EQ(levels.size(), 4u);
  for (int n = 0; n < 4; ++n) {
    LogMel direct(config(WindowPolicy::scaled), n);
    EXPECT_EQ(levels[n], direct.compute(x)) << n;
  }
}

TEST(LogMel, EmptyFilterWarning) {
  const std::string w = empty_filter_warning(config(WindowPolicy::fixed));
  EXPECT_NE(w.find("18 of 128 mel filters are empty at n_fft 256"), std::string::npos) << w;
  const std::string s = empty_filter_warning(config(WindowPolicy::scaled));
  EXPECT_NE(s.find("3 of 128 mel filters are empty at n_fft 512"), std::string::npos) << s;
  FeatureConfig few = config(WindowPolicy::fixed);
  few.n_mels = 40;
  EXPECT_EQ(empty_filter_warning(few), "");
}

// Objects on different threads share FFTW plans (made under a lock) and give the serial bytes.
TEST(LogMel, ThreadsGiveTheSerialResult) {
  const FeatureConfig cfg = config(WindowPolicy::scaled);
  const std::vector<float> x = test_track(100000, 7);
  std::vector<std::vector<float>> serial(cfg.levels), threaded(cfg.levels);
  for (int n = 0; n < cfg.levels; ++n) serial[n] = LogMel(cfg, n).compute(x);
  std::vector<std::thread> threads;
  for (int n = 0; n < cfg.levels; ++n)
    threads.emplace_back([&, n] { threaded[n] = LogMel(cfg, n).compute(x); });
  for (auto& t : threads) t.join();
  EXPECT_EQ(serial, threaded);
}

// The batched, frame-minor mel product sums in apply()'s order: the same bytes per frame.
TEST(LogMel, BatchedMelProductEqualsPerFrame) {
  const MelFilterbank fb(22050, 256, 128, 0, 11025);
  constexpr int B = MelFilterbank::kBatch;
  mart::Rng rng(8);
  std::vector<float> power(static_cast<size_t>(B) * fb.n_freqs()), power_t(power.size());
  for (int b = 0; b < B; ++b)
    for (int k = 0; k < fb.n_freqs(); ++k)
      power_t[k * B + b] = power[b * fb.n_freqs() + k] = static_cast<float>(rng.uniform(0, 100));
  std::vector<float> mel_t(static_cast<size_t>(B) * fb.n_mels()), mel(fb.n_mels());
  fb.apply_batch(power_t.data(), mel_t.data());
  for (int b = 0; b < B; ++b) {
    fb.apply(power.data() + b * fb.n_freqs(), mel.data());
    for (int m = 0; m < fb.n_mels(); ++m) ASSERT_EQ(mel_t[m * B + b], mel[m]) << b << " " << m;
  }
}

// The STFT stage on its own: power of frame t equals |DFT(reflect-padded frame * hann)|^2 done by
// hand in double, at the left edge (reflect padding), inside, and at the right edge.
TEST(LogMel, PowerStftEqualsDirectDft) {
  const std::vector<float> x = test_track(3000, 9);
  MelParams p;  // n_fft 256, hop 128
  LogMel lm(p);
  const std::vector<float> pw = lm.power(x.data(), x.size());
  const int n_fft = p.n_fft, nf = n_fft / 2 + 1;
  const std::vector<float> w = hann_window(n_fft);
  const int64_t n = x.size();
  for (int64_t t : {int64_t{0}, int64_t{7}, lm.frames(n) - 1}) {
    std::vector<double> frame(n_fft);
    for (int i = 0; i < n_fft; ++i) {
      int64_t j = t * p.hop - n_fft / 2 + i;
      j = j < 0 ? -j : j >= n ? 2 * (n - 1) - j : j;
      frame[i] = double(x[j]) * w[i];
    }
    double peak = 0;
    std::vector<double> ref(nf);
    for (int k = 0; k < nf; ++k) {
      double re = 0, im = 0;
      for (int i = 0; i < n_fft; ++i) {
        re += frame[i] * std::cos(2 * M_PI * k * i / n_fft);
        im -= frame[i] * std::sin(2 * M_PI * k * i / n_fft);
      }
      ref[k] = re * re + im * im;
      peak = std::max(peak, ref[k]);
    }
    for (int k = 0; k < nf; ++k)
      ASSERT_NEAR(pw[t * nf + k], ref[k], 1e-5 * peak) << "frame " << t << " bin " << k;
  }
}
