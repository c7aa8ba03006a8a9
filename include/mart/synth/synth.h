#pragma once
// mart-synth: the built-in demo corpus. Compositions (a melody over a chord progression, with a
// bass line) are rendered as several cover versions that differ in style (instruments, rhythm
// patterns, drums), tempo (+-20%), key (transposed) and mix, so tagging, classification and
// cover identification all have ground truth. Everything follows from one seed.
#include <cstdint>
#include <string>
#include <vector>

namespace mart::synth {

enum class Timbre {
  flute, square_lead, saw_lead, organ, bell, epiano, pluck, pad, brass, marimba, sine_bass,
  synth_bass, count
};
const char* timbre_name(Timbre t);

enum class DrumPattern { none, rock, four_on_floor, swing, folk, funk };

// A style is the class label: it fixes the instruments of each role and the rhythm patterns.
struct Style {
  const char* name;
  Timbre lead[2];   // one of the two, chosen per version
  Timbre harmony;
  Timbre bass;
  DrumPattern drums;
  int comp;         // harmony rhythm: 0 sustained, 1 quarters, 2 offbeats, 3 arpeggio
  int bassline;     // 0 half notes, 1 quarters, 2 walking, 3 syncopated
};
const std::vector<Style>& styles();
// The tag vocabulary: instruments, tempo buckets, mode, drums.
const std::vector<std::string>& tag_names();

// What a composition is, whatever version renders it.
struct Composition {
  int key = 0;          // pitch class of the tonic of the original (version 0)
  bool minor = false;
  double tempo_bpm = 110;
  int chords[4] = {0, 3, 4, 0};  // scale degrees (0-based) of the one-bar chords
  // Melody over 4 bars of 16 steps: scale degree (relative to the tonic, may exceed 7) or
  // kNoNote, and how many steps each note holds.
  std::vector<int> melody_degree, melody_steps;
};
constexpr int kNoNote = -1000;

struct TrackSpec {
  int index = 0;             // position in the corpus
  std::string track_id;      // "synth-000042"
  std::string split;         // train / valid / test, by cover group (no leakage across versions)
  int cover_group = 0;
  int version = 0;
  int style = 0;             // class label
  int lead_choice = 0;
  int transpose = 0;         // semitones relative to version 0
  double tempo_bpm = 0;
  double seconds = 0;
  double mix[4] = {1, 1, 1, 1};  // lead, harmony, bass, drums gains
  uint64_t seed = 0;         // for this track's noise
  Composition composition;
  std::vector<int> tags;     // indices into tag_names()

  int key() const { return ((composition.key + transpose) % 12 + 12) % 12; }
  bool has_drums() const;
  std::string tag_string() const;  // "flute;pad;slow;major;no_drums"
};

struct SynthOptions {
  int tracks = 300;
  int versions = 3;         // cover versions per composition
  double seconds = 12.0;
  int sample_rate = 22050;
  uint64_t seed = 1;
  double valid_fraction = 0.1, test_fraction = 0.2;
};

// Plans the whole corpus (no audio): the same options give the same plan on every rank.
std::vector<TrackSpec> plan_corpus(const SynthOptions& opt);

// Renders one track as mono float samples in [-1, 1].
std::vector<float> render_track(const TrackSpec& spec, int sample_rate);

// The CSV manifest: path,track_id,split,tags,class,cover_group,key,mode,tempo_bpm,transpose,seconds
std::string manifest_csv(const std::vector<TrackSpec>& plan, const std::string& ext);
// A human summary: counts per split, class, tag, and the corpus duration.
std::string corpus_summary(const std::vector<TrackSpec>& plan);

}  // namespace mart::synth
