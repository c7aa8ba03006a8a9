// Planning the corpus: compositions, versions, labels. No audio here.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>

#include "mart/core/error.h"
#include "mart/core/rng.h"
#include "mart/synth/synth.h"

namespace mart::synth {

const char* timbre_name(Timbre t) {
  static const char* names[] = {"flute", "square_lead", "saw_lead", "organ", "bell", "epiano",
                                "pluck", "pad", "brass", "marimba", "sine_bass", "synth_bass"};
  return names[static_cast<int>(t)];
}

const std::vector<Style>& styles() {
  using T = Timbre;
  using D = DrumPattern;
  static const std::vector<Style> s = {
      {"ballad", {T::flute, T::epiano}, T::pad, T::sine_bass, D::none, 0, 0},
      {"rock", {T::saw_lead, T::brass}, T::organ, T::synth_bass, D::rock, 1, 1},
      {"electronic", {T::bell, T::square_lead}, T::pad, T::synth_bass, D::four_on_floor, 2, 3},
      {"jazz", {T::epiano, T::brass}, T::epiano, T::sine_bass, D::swing, 2, 2},
      {"chiptune", {T::square_lead, T::pluck}, T::square_lead, T::synth_bass, D::none, 3, 1},
      {"ambient", {T::flute, T::bell}, T::pad, T::sine_bass, D::none, 0, 0},
      {"folk", {T::pluck, T::flute}, T::pluck, T::sine_bass, D::folk, 3, 0},
      {"funk", {T::marimba, T::saw_lead}, T::organ, T::synth_bass, D::funk, 2, 3},
  };
  return s;
}

const std::vector<std::string>& tag_names() {
  static const std::vector<std::string> tags = [] {
    std::vector<std::string> t;
    for (int i = 0; i < static_cast<int>(Timbre::count); ++i) t.push_back(timbre_name(static_cast<Timbre>(i)));
    for (const char* x : {"slow", "medium", "fast", "major", "minor", "drums", "no_drums"}) t.push_back(x);
    return t;
  }();
  return tags;
}

namespace {

int tag_index(const std::string& name) {
  const auto& t = tag_names();
  return static_cast<int>(std::find(t.begin(), t.end(), name) - t.begin());
}

// Chord progressions in scale degrees, one chord per bar: the common ones of popular music.
const int kProgressions[][4] = {{0, 4, 5, 3}, {0, 5, 3, 4}, {0, 3, 4, 0}, {5, 3, 0, 4},
                                {0, 3, 0, 4}, {1, 4, 0, 0}, {0, 5, 1, 4}, {3, 4, 2, 5}};

// Melody rhythms per bar: note lengths in 16th steps summing to 16 (0 marks a rest).
const std::vector<std::vector<int>> kRhythms = {
    {4, 4, 4, 4}, {2, 2, 4, 2, 2, 4}, {6, 2, 4, 4}, {4, 2, 2, 8}, {3, 3, 2, 4, 4}, {8, 4, 4},
    {2, 2, 2, 2, 4, 4}, {4, 4, 8}};

Composition compose(Rng& rng) {
  Composition c;
  c.key = rng.randint(0, 11);
  c.minor = rng.bernoulli(0.5);
  c.tempo_bpm = rng.uniform(80.0, 140.0);
  const auto& prog = kProgressions[rng.randint(0, 7)];
  std::copy(prog, prog + 4, c.chords);
  int degree = rng.randint(2, 6);  // start around the middle of the octave above the tonic
  for (int bar = 0; bar < 4; ++bar) {
    const auto& rhythm = kRhythms[static_cast<size_t>(rng.randint(0, static_cast<int>(kRhythms.size()) - 1))];
    bool first = true;
    for (int len : rhythm) {
      if (!first && rng.bernoulli(0.12)) {  // an occasional rest
        c.melody_degree.push_back(kNoNote);
      } else {
        if (first) {
          // Strong beat: land on a chord tone (root, third or fifth of this bar's chord).
          const int tone = c.chords[bar] + 2 * rng.randint(0, 2);
          degree = tone + 7 * ((degree - tone + 3) / 7);
        } else {
          degree += rng.randint(-2, 2);
        }
        degree = std::clamp(degree, 0, 11);
        c.melody_degree.push_back(degree);
      }
      c.melody_steps.push_back(len);
      first = false;
    }
  }
  return c;
}

}  // namespace

bool TrackSpec::has_drums() const { return styles()[static_cast<size_t>(style)].drums != DrumPattern::none; }

std::string TrackSpec::tag_string() const {
  std::string s;
  for (int t : tags) {
    if (!s.empty()) s += ';';
    s += tag_names()[static_cast<size_t>(t)];
  }
  return s;
}

std::vector<TrackSpec> plan_corpus(const SynthOptions& opt) {
  MART_CHECK(opt.tracks > 0 && opt.versions > 0, "tracks and versions must be positive");
  MART_CHECK(opt.seconds > 1.0, "tracks must be longer than a second");
  std::vector<TrackSpec> plan;
  const int groups = (opt.tracks + opt.versions - 1) / opt.versions;
  const int n_styles = static_cast<int>(styles().size());
  for (int g = 0; g < groups; ++g) {
    Rng grng(seed_of(opt.seed, 0x636f6d70ull /*"comp"*/, static_cast<uint64_t>(g)));
    const Composition comp = compose(grng);
    const double u = grng.uniform();
    const std::string split = u < opt.test_fraction ? "test"
                              : u < opt.test_fraction + opt.valid_fraction ? "valid" : "train";
    // Versions take different styles, so a cover never shares its instruments with the original.
    const int first_style = grng.randint(0, n_styles - 1);
    const int style_step = 2 * grng.randint(0, n_styles / 2 - 1) + 1;  // odd: coprime with 8 styles
    for (int v = 0; v < opt.versions && static_cast<int>(plan.size()) < opt.tracks; ++v) {
      TrackSpec t;
      t.index = static_cast<int>(plan.size());
      char id[32];
      std::snprintf(id, sizeof id, "synth-%06d", t.index);
      t.track_id = id;
      t.split = split;
      t.cover_group = g;
      t.version = v;
      t.composition = comp;
      Rng vrng(seed_of(opt.seed, static_cast<uint64_t>(g), static_cast<uint64_t>(v) + 1));
      t.style = (first_style + v * style_step) % n_styles;
      t.lead_choice = vrng.randint(0, 1);
      t.transpose = v == 0 ? 0 : vrng.randint(-5, 6);
      t.tempo_bpm = v == 0 ? comp.tempo_bpm : comp.tempo_bpm * vrng.uniform(0.8, 1.2);
      t.seconds = opt.seconds;
      for (double& m : t.mix) m = v == 0 ? 1.0 : vrng.uniform(0.6, 1.4);
      t.seed = seed_of(opt.seed, 0x6e6f697365ull /*"noise"*/, static_cast<uint64_t>(t.index));
      const Style& st = styles()[static_cast<size_t>(t.style)];
      std::vector<int> tags = {static_cast<int>(st.lead[t.lead_choice]), static_cast<int>(st.harmony),
                               static_cast<int>(st.bass)};
      tags.push_back(tag_index(t.tempo_bpm < 95 ? "slow" : t.tempo_bpm < 125 ? "medium" : "fast"));
      tags.push_back(tag_index(comp.minor ? "minor" : "major"));
      tags.push_back(tag_index(st.drums == DrumPattern::none ? "no_drums" : "drums"));
      std::sort(tags.begin(), tags.end());
      tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
      t.tags = tags;
      plan.push_back(std::move(t));
    }
  }
  return plan;
}

std::string manifest_csv(const std::vector<TrackSpec>& plan, const std::string& ext) {
  std::ostringstream os;
  os << "path,track_id,split,tags,class,cover_group,key,mode,tempo_bpm,transpose,seconds\n";
  for (const auto& t : plan) {
    os << "audio/" << t.track_id << "." << ext << "," << t.track_id << "," << t.split << ","
       << t.tag_string() << "," << styles()[static_cast<size_t>(t.style)].name << "," << t.cover_group
       << "," << t.key() << "," << (t.composition.minor ? "minor" : "major") << ","
       << std::round(t.tempo_bpm * 100) / 100 << "," << t.transpose << "," << t.seconds << "\n";
  }
  return os.str();
}

std::string corpus_summary(const std::vector<TrackSpec>& plan) {
  std::map<std::string, int> splits, classes, tags;
  int groups = 0;
  double seconds = 0;
  for (const auto& t : plan) {
    ++splits[t.split];
    ++classes[styles()[static_cast<size_t>(t.style)].name];
    for (int g : t.tags) ++tags[tag_names()[static_cast<size_t>(g)]];
    groups = std::max(groups, t.cover_group + 1);
    seconds += t.seconds;
  }
  std::ostringstream os;
  os << plan.size() << " tracks, " << groups << " cover groups, " << std::round(seconds / 60.0)
     << " minutes of audio\n  splits:";
  for (auto& [k, v] : splits) os << " " << k << "=" << v;
  os << "\n  classes:";
  for (auto& [k, v] : classes) os << " " << k << "=" << v;
  os << "\n  tags:";
  for (auto& [k, v] : tags) os << " " << k << "=" << v;
  os << "\n";
  return os.str();
}

}  // namespace mart::synth
