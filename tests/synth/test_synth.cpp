// The demo corpus is what its labels say it is.
#include <fftw3.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <set>

#include "mart/synth/synth.h"

namespace {

using mart::synth::TrackSpec;
constexpr int kSr = 22050;

mart::synth::SynthOptions small_corpus() {
  mart::synth::SynthOptions o;
  o.tracks = 48;
  o.versions = 4;
  o.seconds = 6.0;
  o.seed = 11;
  return o;
}

// Energy per pitch class, by Goertzel filters at every semitone from C1 to C8 over the track.
std::array<double, 12> chroma(const std::vector<float>& x) {
  std::array<double, 12> c{};
  const size_t frame = 16384;  // 1.3 Hz resolution: bass semitones are 2 Hz apart
  for (int midi = 24; midi <= 108; ++midi) {  // every note the synth can play
    const double f = 440.0 * std::pow(2.0, (midi - 69) / 12.0);
    const double coeff = 2 * std::cos(2 * M_PI * f / kSr);
    for (size_t start = 0; start + frame <= x.size(); start += frame) {
      double s1 = 0, s2 = 0;
      for (size_t i = 0; i < frame; ++i) {
        const double s0 = x[start + i] + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
      }
      c[static_cast<size_t>(midi % 12)] += s1 * s1 + s2 * s2 - coeff * s1 * s2;
    }
  }
  return c;
}

// The circular shift that best maps chroma a onto chroma b (by correlation).
int best_shift(const std::array<double, 12>& a, const std::array<double, 12>& b) {
  int best = 0;
  double best_corr = -1;
  const double ma = std::accumulate(a.begin(), a.end(), 0.0) / 12, mb = std::accumulate(b.begin(), b.end(), 0.0) / 12;
  for (int s = 0; s < 12; ++s) {
    double corr = 0;
    for (int k = 0; k < 12; ++k) corr += (a[static_cast<size_t>(k)] - ma) * (b[static_cast<size_t>((k + s) % 12)] - mb);
    if (corr > best_corr) best_corr = corr, best = s;
  }
  return best;
}

// Frames (1024 samples) where energy above 7 kHz jumps: drum hits, since the pitched parts are
// low-passed at 4.5 kHz.
int high_band_onsets(const std::vector<float>& x) {
  const int n = 1024;
  std::vector<float> in(n);
  std::vector<fftwf_complex> out(n / 2 + 1);
  fftwf_plan plan = fftwf_plan_dft_r2c_1d(n, in.data(), out.data(), FFTW_ESTIMATE);
  std::vector<double> hi, all;
  for (size_t start = 0; start + n <= x.size(); start += n / 2) {
    for (int i = 0; i < n; ++i) in[static_cast<size_t>(i)] = x[start + static_cast<size_t>(i)] * static_cast<float>(0.5 - 0.5 * std::cos(2 * M_PI * i / n));
    fftwf_execute(plan);
    double h = 0, a = 0;
    for (int k = 0; k <= n / 2; ++k) {
      const double p = out[static_cast<size_t>(k)][0] * out[static_cast<size_t>(k)][0] + out[static_cast<size_t>(k)][1] * out[static_cast<size_t>(k)][1];
      a += p;
      if (k * kSr / n >= 7000) h += p;
    }
    hi.push_back(h);
    all.push_back(a);
  }
  fftwf_destroy_plan(plan);
  const double mean_all = std::accumulate(all.begin(), all.end(), 0.0) / static_cast<double>(all.size());
  int onsets = 0;
  for (size_t f = 1; f < hi.size(); ++f)
    if (hi[f] / mean_all > 1e-3 && hi[f] > 3 * hi[f - 1]) ++onsets;
  return onsets;
}

TEST(SynthPlan, SameSeedSamePlanAndSameSamples) {
  const auto a = mart::synth::plan_corpus(small_corpus());
  const auto b = mart::synth::plan_corpus(small_corpus());
  EXPECT_EQ(mart::synth::manifest_csv(a, "wav"), mart::synth::manifest_csv(b, "wav"));
  EXPECT_EQ(mart::synth::render_track(a[5], kSr), mart::synth::render_track(b[5], kSr));
  auto other = small_corpus();
  other.seed = 12;
  EXPECT_NE(mart::synth::manifest_csv(mart::synth::plan_corpus(other), "wav"), mart::synth::manifest_csv(a, "wav"));
}

TEST(SynthPlan, CoverVersionsShareCompositionButDifferInStyleTempoKey) {
  const auto plan = mart::synth::plan_corpus(small_corpus());
  ASSERT_EQ(plan.size(), 48u);
  std::map<int, std::vector<const TrackSpec*>> groups;
  for (const auto& t : plan) groups[t.cover_group].push_back(&t);
  EXPECT_EQ(groups.size(), 12u);
  int transposed = 0;
  for (const auto& [g, v] : groups) {
    ASSERT_EQ(v.size(), 4u);
    std::set<int> styles_seen;
    for (const auto* t : v) {
      styles_seen.insert(t->style);
      EXPECT_EQ(t->split, v[0]->split) << "versions of one composition must share a split";
      EXPECT_EQ(t->composition.melody_degree, v[0]->composition.melody_degree);
      EXPECT_GE(t->tempo_bpm, v[0]->tempo_bpm * 0.8 - 1e-9);
      EXPECT_LE(t->tempo_bpm, v[0]->tempo_bpm * 1.2 + 1e-9);
      EXPECT_GE(t->transpose, -5);
      EXPECT_LE(t->transpose, 6);
      transposed += t->transpose != 0;
    }
    EXPECT_EQ(styles_seen.size(), 4u) << "group " << g << " repeats a style";
  }
  EXPECT_GT(transposed, 20);
}

TEST(SynthPlan, TagsFollowStyleTempoModeAndDrums) {
  const auto plan = mart::synth::plan_corpus(small_corpus());
  const auto& names = mart::synth::tag_names();
  for (const auto& t : plan) {
    std::set<std::string> tags;
    for (int i : t.tags) tags.insert(names[static_cast<size_t>(i)]);
    const auto& st = mart::synth::styles()[static_cast<size_t>(t.style)];
    EXPECT_TRUE(tags.count(mart::synth::timbre_name(st.lead[t.lead_choice])));
    EXPECT_TRUE(tags.count(mart::synth::timbre_name(st.bass)));
    EXPECT_EQ(tags.count("drums"), t.has_drums() ? 1u : 0u);
    EXPECT_EQ(tags.count("no_drums"), t.has_drums() ? 0u : 1u);
    EXPECT_EQ(tags.count("minor"), t.composition.minor ? 1u : 0u);
    EXPECT_EQ(tags.count("fast"), t.tempo_bpm >= 125 ? 1u : 0u);
  }
}

TEST(SynthAudio, TransposedVersionShiftsPitchContentByTheTransposition) {
  // The same version rendered untransposed: the only difference is the key.
  const auto plan = mart::synth::plan_corpus(small_corpus());
  int checked = 0;
  for (const auto& t : plan) {
    if (((t.transpose % 12) + 12) % 12 == 0) continue;
    TrackSpec untransposed = t;
    untransposed.transpose = 0;
    const int shift = best_shift(chroma(mart::synth::render_track(untransposed, kSr)),
                                 chroma(mart::synth::render_track(t, kSr)));
    EXPECT_EQ(shift, ((t.transpose % 12) + 12) % 12) << t.track_id;
    ++checked;
  }
  EXPECT_GT(checked, 20);
}

TEST(SynthAudio, CoversInOtherStylesMostlyShowTheTransposition) {
  // Across styles the instruments' overtones blur the chroma (a fifth is the usual confusion),
  // so this asks for a clear majority rather than every pair.
  const auto plan = mart::synth::plan_corpus(small_corpus());
  int checked = 0, agree = 0;
  for (const auto& t : plan) {
    if (t.version == 0 || ((t.transpose % 12) + 12) % 12 == 0) continue;
    const TrackSpec& original = plan[static_cast<size_t>(t.index - t.version)];
    ASSERT_EQ(original.cover_group, t.cover_group);
    const int shift = best_shift(chroma(mart::synth::render_track(original, kSr)),
                                 chroma(mart::synth::render_track(t, kSr)));
    agree += shift == ((t.transpose % 12) + 12) % 12;
    ++checked;
  }
  EXPECT_GE(checked, 20);
  EXPECT_GE(agree, checked * 3 / 4) << agree << " of " << checked;
}

TEST(SynthAudio, TracksWithoutDrumsHaveNoDrumOnsetsAndDrumTracksDo) {
  const auto plan = mart::synth::plan_corpus(small_corpus());
  int with = 0, without = 0;
  for (const auto& t : plan) {
    const auto x = mart::synth::render_track(t, kSr);
    const int onsets = high_band_onsets(x);
    const double bars = t.seconds / (4 * 60.0 / t.tempo_bpm);
    if (t.has_drums()) {
      EXPECT_GE(onsets, static_cast<int>(bars)) << t.track_id;
      ++with;
    } else {
      EXPECT_EQ(onsets, 0) << t.track_id;
      ++without;
    }
  }
  EXPECT_GT(with, 5);
  EXPECT_GT(without, 5);
}

TEST(SynthAudio, PeakIsNormalizedAndSignalIsNotSilent) {
  const auto plan = mart::synth::plan_corpus(small_corpus());
  const auto x = mart::synth::render_track(plan[0], kSr);
  ASSERT_EQ(x.size(), static_cast<size_t>(6.0 * kSr));
  float peak = 0;
  double energy = 0;
  for (float s : x) peak = std::max(peak, std::abs(s)), energy += s * s;
  EXPECT_NEAR(peak, 0.891f, 1e-4);
  EXPECT_GT(std::sqrt(energy / static_cast<double>(x.size())), 0.05);
}

}  // namespace
