// Rendering: additive and FM voices with envelopes, noise-based drums, a mix.
#include <algorithm>
#include <array>
#include <cmath>

#include "mart/core/rng.h"
#include "mart/synth/synth.h"

namespace mart::synth {

namespace {

constexpr double kTwoPi = 6.283185307179586;

// A sine table with linear interpolation: the voices call it billions of times per corpus.
class SineTable {
 public:
  SineTable() {
    for (int i = 0; i <= kSize; ++i) t_[static_cast<size_t>(i)] = static_cast<float>(std::sin(kTwoPi * i / kSize));
  }
  float operator()(double cycles) const {  // sin(2*pi*cycles)
    const double f = (cycles - std::floor(cycles)) * kSize;
    const int i = static_cast<int>(f);
    const float frac = static_cast<float>(f - i);
    return t_[static_cast<size_t>(i)] + frac * (t_[static_cast<size_t>(i) + 1] - t_[static_cast<size_t>(i)]);
  }

 private:
  static constexpr int kSize = 4096;
  std::array<float, kSize + 1> t_;
};
const SineTable& sine() {
  static const SineTable table;
  return table;
}

double midi_hz(double midi) { return 440.0 * std::pow(2.0, (midi - 69.0) / 12.0); }

// Scale degree (0-based, may exceed 6) to semitones above the tonic.
int degree_semitones(int degree, bool minor) {
  static const int major[7] = {0, 2, 4, 5, 7, 9, 11}, natural_minor[7] = {0, 2, 3, 5, 7, 8, 10};
  const int oct = degree >= 0 ? degree / 7 : -((-degree + 6) / 7);
  const int d = degree - 7 * oct;
  return 12 * oct + (minor ? natural_minor[d] : major[d]);
}

// Attack-decay-sustain-release, in seconds; `held` is how long the key is down.
double adsr(double t, double held, double a, double d, double s, double r) {
  double level;
  if (t < a) level = t / a;
  else if (t < a + d) level = 1.0 - (1.0 - s) * (t - a) / d;
  else level = s;
  if (t > held) {
    const double at_release = held < a ? held / a : held < a + d ? 1.0 - (1.0 - s) * (held - a) / d : s;
    level = std::max(0.0, at_release * (1.0 - (t - held) / r));
  }
  return level;
}

struct Note {
  double start_s, held_s, midi, velocity;
};

// Adds one note of `timbre` to `out`. Partials above 5 kHz are left out: drums own the top band.
void render_note(Timbre timbre, const Note& n, int sr, std::vector<float>& out) {
  const double f0 = midi_hz(n.midi);
  const auto& sn = sine();
  double release = 0.15;
  switch (timbre) {
    case Timbre::pad: release = 0.6; break;
    case Timbre::bell: release = 1.2; break;
    case Timbre::pluck: case Timbre::marimba: case Timbre::epiano: release = 0.4; break;
    default: break;
  }
  const double dur = n.held_s + release;
  const auto i0 = static_cast<int64_t>(n.start_s * sr);
  const auto len = static_cast<int64_t>(dur * sr);
  const int max_partial = std::max(1, static_cast<int>(5000.0 / f0));
  for (int64_t i = 0; i < len; ++i) {
    const int64_t j = i0 + i;
    if (j < 0 || j >= static_cast<int64_t>(out.size())) continue;
    const double t = static_cast<double>(i) / sr;
    const double ph = f0 * t;  // phase in cycles of the fundamental
    double v = 0;
    switch (timbre) {
      case Timbre::flute: {
        const double vib = 0.004 * sn(5.0 * t);
        const double p = ph * (1.0 + vib);
        v = (sn(p) + 0.2 * sn(2 * p) + 0.05 * sn(3 * p)) * adsr(t, n.held_s, 0.06, 0.1, 0.8, release);
        break;
      }
      case Timbre::square_lead:
        for (int k = 1; k <= std::min(max_partial, 15); k += 2) v += sn(k * ph) / k;
        v *= 0.8 * adsr(t, n.held_s, 0.01, 0.05, 0.7, release);
        break;
      case Timbre::saw_lead:
        for (int k = 1; k <= std::min(max_partial, 12); ++k) v += sn(k * ph) / k;
        v *= 0.7 * adsr(t, n.held_s, 0.02, 0.1, 0.6, release);
        break;
      case Timbre::organ: {
        static const double w[8] = {1.0, 0.8, 0.6, 0.5, 0.0, 0.3, 0.0, 0.25};
        for (int k = 1; k <= std::min(max_partial, 8); ++k) v += w[k - 1] * sn(k * ph);
        v *= 0.4 * adsr(t, n.held_s, 0.005, 0.01, 1.0, 0.05);
        break;
      }
      case Timbre::bell: {  // FM, inharmonic ratio, index decaying with the tone
        const double idx = 3.0 * std::exp(-3.0 * t) + 0.3;
        v = sn(ph + idx / kTwoPi * sn(3.5 * ph)) * std::exp(-2.5 * t) * std::min(1.0, t / 0.002);
        break;
      }
      case Timbre::epiano: {  // FM, ratio 1, a bright tine that mellows
        const double idx = 1.8 * std::exp(-6.0 * t) + 0.2;
        v = sn(ph + idx / kTwoPi * sn(ph)) * std::exp(-1.5 * t) * adsr(t, n.held_s, 0.003, 0.05, 1.0, release);
        break;
      }
      case Timbre::pluck:  // higher partials die faster, as on a string
        for (int k = 1; k <= std::min(max_partial, 10); ++k) v += sn(k * ph) * std::exp(-(2.0 + 1.5 * k) * t) / k;
        v *= std::min(1.0, t / 0.002) * (t > n.held_s ? std::max(0.0, 1.0 - (t - n.held_s) / release) : 1.0);
        break;
      case Timbre::pad:  // three detuned saws, slow attack
        for (double det : {-0.006, 0.0, 0.007})
          for (int k = 1; k <= std::min(max_partial, 6); ++k) v += sn(k * ph * (1.0 + det)) / k;
        v *= 0.3 * adsr(t, n.held_s, 0.3, 0.2, 0.8, release);
        break;
      case Timbre::brass: {  // FM whose brightness follows the envelope
        const double env = adsr(t, n.held_s, 0.05, 0.1, 0.8, release);
        v = sn(ph + 2.5 * env / kTwoPi * sn(ph)) * env;
        break;
      }
      case Timbre::marimba:
        v = (sn(ph) + 0.3 * sn(4 * ph) * std::exp(-12.0 * t)) * std::exp(-5.0 * t) * std::min(1.0, t / 0.001);
        break;
      case Timbre::sine_bass:
        v = (sn(ph) + 0.25 * sn(2 * ph)) * adsr(t, n.held_s, 0.01, 0.2, 0.7, 0.1);
        break;
      case Timbre::synth_bass:
        for (int k = 1; k <= std::min(max_partial, 6); ++k) v += sn(k * ph) / (k * k);
        v *= adsr(t, n.held_s, 0.005, 0.15, 0.5, 0.08);
        break;
      case Timbre::count: break;
    }
    out[static_cast<size_t>(j)] += static_cast<float>(n.velocity * v);
  }
}

// Drums: kick (a falling sine), snare (noise and a tone), hat (high-passed noise).
enum class Drum { kick, snare, hat };

void render_drum(Drum d, double start_s, double velocity, int sr, Rng& rng, std::vector<float>& out) {
  const auto i0 = static_cast<int64_t>(start_s * sr);
  const int64_t len = static_cast<int64_t>((d == Drum::kick ? 0.35 : d == Drum::snare ? 0.25 : 0.08) * sr);
  double phase = 0, prev_noise = 0, prev_hp = 0;
  for (int64_t i = 0; i < len; ++i) {
    const int64_t j = i0 + i;
    const double t = static_cast<double>(i) / sr;
    const double noise = rng.uniform(-1.0, 1.0);
    double v = 0;
    if (d == Drum::kick) {
      phase += (45.0 + 75.0 * std::exp(-t / 0.03)) / sr;
      v = std::sin(kTwoPi * phase) * std::exp(-t / 0.12);
    } else {
      // A first-difference high-pass applied twice pushes the noise's energy up the spectrum.
      const double hp1 = noise - prev_noise;
      const double hp2 = hp1 - prev_hp;
      prev_noise = noise;
      prev_hp = hp1;
      if (d == Drum::snare)
        v = 0.5 * hp1 * std::exp(-t / 0.06) + 0.5 * std::sin(kTwoPi * 190.0 * t) * std::exp(-t / 0.04);
      else
        v = 0.35 * hp2 * std::exp(-t / 0.02);
    }
    if (j >= 0 && j < static_cast<int64_t>(out.size())) out[static_cast<size_t>(j)] += static_cast<float>(velocity * v);
  }
}

// 16 steps per bar: which steps each drum plays.
struct DrumSteps {
  std::vector<int> kick, snare, hat;
};
DrumSteps drum_steps(DrumPattern p) {
  switch (p) {
    case DrumPattern::rock: return {{0, 8, 10}, {4, 12}, {0, 2, 4, 6, 8, 10, 12, 14}};
    case DrumPattern::four_on_floor: return {{0, 4, 8, 12}, {4, 12}, {2, 6, 10, 14}};
    case DrumPattern::swing: return {{0}, {7, 15}, {0, 4, 7, 8, 12, 15}};
    case DrumPattern::folk: return {{0, 8}, {}, {4, 12}};
    case DrumPattern::funk: return {{0, 3, 10}, {4, 12}, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}};
    case DrumPattern::none: break;
  }
  return {};
}

// RBJ low-pass biquad, run in place.
void lowpass(std::vector<float>& x, double cutoff, int sr) {
  const double w = kTwoPi * cutoff / sr, alpha = std::sin(w) / (2 * 0.7071), c = std::cos(w);
  const double a0 = 1 + alpha;
  const double b0 = (1 - c) / 2 / a0, b1 = (1 - c) / a0, b2 = b0, a1 = -2 * c / a0, a2 = (1 - alpha) / a0;
  double x1 = 0, x2 = 0, y1 = 0, y2 = 0;
  for (auto& s : x) {
    const double y = b0 * s + b1 * x1 + b2 * x2 - a1 * y1 - a2 * y2;
    x2 = x1, x1 = s, y2 = y1, y1 = y;
    s = static_cast<float>(y);
  }
}

}  // namespace

std::vector<float> render_track(const TrackSpec& spec, int sr) {
  const Style& st = styles()[static_cast<size_t>(spec.style)];
  const Composition& c = spec.composition;
  const auto n = static_cast<size_t>(spec.seconds * sr);
  std::vector<float> lead(n, 0.f), harmony(n, 0.f), bass(n, 0.f), drums(n, 0.f);
  const double step_s = 60.0 / spec.tempo_bpm / 4.0;  // a 16th note
  const double bar_s = 16 * step_s;
  const int tonic = 60 + c.key + spec.transpose;     // middle C region
  const int bars = static_cast<int>(std::ceil(spec.seconds / bar_s));
  Rng rng(spec.seed);

  for (int bar = 0; bar < bars; ++bar) {
    const double t_bar = bar * bar_s;
    const int chord = c.chords[bar % 4];
    // Melody: the composition's 4 bars, looped.
    int step = 0;
    size_t note = 0;
    for (int b = 0; b < bar % 4; ++b) {  // find this bar's notes
      int s = 0;
      while (s < 16) s += c.melody_steps[note++];
    }
    while (step < 16 && note < c.melody_steps.size()) {
      const int len = c.melody_steps[note];
      const int deg = c.melody_degree[note];
      if (deg != kNoNote)
        render_note(st.lead[spec.lead_choice],
                    {t_bar + step * step_s, len * step_s * 0.9, double(tonic + degree_semitones(deg, c.minor)), 0.5},
                    sr, lead);
      step += len;
      ++note;
    }
    // Harmony: the bar's triad an octave below the melody.
    const int chord_tones[3] = {tonic - 12 + degree_semitones(chord, c.minor),
                                tonic - 12 + degree_semitones(chord + 2, c.minor),
                                tonic - 12 + degree_semitones(chord + 4, c.minor)};
    auto play_chord = [&](int s, int len) {
      for (int k = 0; k < 3; ++k)
        render_note(st.harmony, {t_bar + s * step_s, len * step_s * 0.95, double(chord_tones[k]), 0.22}, sr, harmony);
    };
    switch (st.comp) {
      case 0: play_chord(0, 16); break;
      case 1: for (int s = 0; s < 16; s += 4) play_chord(s, 3); break;
      case 2: for (int s = 2; s < 16; s += 4) play_chord(s, 2); break;
      default:
        for (int s = 0; s < 16; s += 2)
          render_note(st.harmony, {t_bar + s * step_s, 2 * step_s, double(chord_tones[(s / 2) % 3]), 0.3}, sr, harmony);
    }
    // Bass: the chord's root two octaves down.
    const int root = tonic - 24 + degree_semitones(chord, c.minor);
    auto play_bass = [&](int s, int len, int midi) {
      render_note(st.bass, {t_bar + s * step_s, len * step_s * 0.9, double(midi), 0.6}, sr, bass);
    };
    switch (st.bassline) {
      case 0: play_bass(0, 8, root); play_bass(8, 8, root); break;
      case 1: for (int s = 0; s < 16; s += 4) play_bass(s, 4, root); break;
      case 2:
        play_bass(0, 4, root);
        play_bass(4, 4, tonic - 24 + degree_semitones(chord + 2, c.minor));
        play_bass(8, 4, tonic - 24 + degree_semitones(chord + 4, c.minor));
        play_bass(12, 4, root + 1);
        break;
      default: play_bass(0, 3, root); play_bass(3, 3, root + 12); play_bass(6, 4, root); play_bass(10, 6, root); break;
    }
    // Drums.
    const DrumSteps ds = drum_steps(st.drums);
    for (int s : ds.kick) render_drum(Drum::kick, t_bar + s * step_s, 0.9, sr, rng, drums);
    for (int s : ds.snare) render_drum(Drum::snare, t_bar + s * step_s, 0.7, sr, rng, drums);
    for (int s : ds.hat) render_drum(Drum::hat, t_bar + s * step_s, s % 4 == 0 ? 0.6 : 0.4, sr, rng, drums);
  }

  // Mix: the pitched parts through a low-pass (their top band stays empty), then the drums.
  std::vector<float> mix(n, 0.f);
  for (size_t i = 0; i < n; ++i)
    mix[i] = static_cast<float>(spec.mix[0] * lead[i] + spec.mix[1] * harmony[i] + spec.mix[2] * bass[i]);
  lowpass(mix, 4500.0, sr);
  lowpass(mix, 4500.0, sr);
  for (size_t i = 0; i < n; ++i) mix[i] += static_cast<float>(spec.mix[3] * drums[i]);
  // Fades avoid clicks at the edges; then normalize the peak to -1 dBFS.
  const size_t fade = std::min(n / 4, static_cast<size_t>(0.5 * sr));
  for (size_t i = 0; i < fade; ++i) {
    const float g = static_cast<float>(i) / static_cast<float>(fade);
    mix[n - 1 - i] *= g;
    if (i < fade / 10) mix[i] *= static_cast<float>(i) / static_cast<float>(fade / 10);
  }
  float peak = 0;
  for (float s : mix) peak = std::max(peak, std::abs(s));
  if (peak > 0)
    for (float& s : mix) s *= 0.891f / peak;
  return mix;
}

}  // namespace mart::synth
