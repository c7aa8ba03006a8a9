#include "mart/audio/augment.h"

#include <sox.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <sstream>

#include "mart/core/error.h"

namespace mart::audio {

std::string AugmentParams::describe() const {
  std::ostringstream os;
  os << "polarity=" << polarity << " noise=" << noise_std_ratio << " gain_db=" << gain_db
     << " filter=" << (filter == FilterKind::none ? "none"
                       : filter == FilterKind::highpass ? "highpass" : "lowpass")
     << " cutoff_hz=" << cutoff_hz << " delay_ms=" << delay_ms << " pitch_cents=" << pitch_cents;
  return os.str();
}

AugmentParams draw_augment_params(const AugmentConfig& c, Rng& rng) {
  AugmentParams p;
  p.polarity = rng.bernoulli(c.p_polarity);
  const bool noise = rng.bernoulli(c.p_noise);
  const double noise_ratio = rng.uniform(c.noise_min, c.noise_max);
  if (noise) p.noise_std_ratio = noise_ratio;
  const bool gain = rng.bernoulli(c.p_gain);
  const double gain_db = rng.uniform(c.gain_min_db, c.gain_max_db);
  if (gain) p.gain_db = gain_db;
  const bool filter = rng.bernoulli(c.p_filter);
  const bool high = rng.bernoulli(0.5);
  const double hp = rng.uniform(c.highpass_min_hz, c.highpass_max_hz);
  const double lp = rng.uniform(c.lowpass_min_hz, c.lowpass_max_hz);
  if (filter) {
    p.filter = high ? FilterKind::highpass : FilterKind::lowpass;
    p.cutoff_hz = high ? hp : lp;
  }
  const bool delay = rng.bernoulli(c.p_delay);
  const int steps = (c.delay_max_ms - c.delay_min_ms) / c.delay_step_ms;
  const int delay_ms = c.delay_min_ms + c.delay_step_ms * rng.randint(0, steps);
  if (delay) p.delay_ms = delay_ms;
  const bool pitch = rng.bernoulli(c.p_pitch);
  const double cents = rng.uniform(-c.pitch_max_cents, c.pitch_max_cents);
  if (pitch) p.pitch_cents = cents;
  return p;
}

void apply_augment(const AugmentParams& p, int sample_rate, Rng& rng, std::vector<float>& x) {
  if (p.polarity) invert_polarity(x);
  if (p.noise_std_ratio > 0) add_noise(x, p.noise_std_ratio, rng);
  if (p.gain_db != 0) apply_gain_db(x, p.gain_db);
  if (p.filter == FilterKind::highpass) highpass(x, sample_rate, p.cutoff_hz);
  if (p.filter == FilterKind::lowpass) lowpass(x, sample_rate, p.cutoff_hz);
  if (p.delay_ms > 0) delay_mix(x, sample_rate, p.delay_ms);
  if (p.pitch_cents != 0) pitch_shift(x, sample_rate, p.pitch_cents);
}

std::vector<float> augment_view(const std::vector<float>& clean, int sample_rate,
                                const AugmentConfig& cfg, uint64_t base_seed, uint64_t track,
                                uint64_t view, AugmentParams* drawn) {
  Rng rng(seed_of(base_seed, track, view));
  const AugmentParams p = draw_augment_params(cfg, rng);
  if (drawn) *drawn = p;
  std::vector<float> x = clean;
  apply_augment(p, sample_rate, rng, x);
  return x;
}

void invert_polarity(std::vector<float>& x) {
  for (float& v : x) v = -v;
}

void add_noise(std::vector<float>& x, double std_ratio, Rng& rng) {
  if (x.empty()) return;
  double sum = 0, sum2 = 0;
  for (float v : x) sum += v, sum2 += double(v) * v;
  const double mean = sum / x.size();
  const double sd = std::sqrt(std::max(0.0, sum2 / x.size() - mean * mean));
  const double s = std_ratio * sd;
  for (float& v : x) v += static_cast<float>(s * rng.normal());
}

void apply_gain_db(std::vector<float>& x, double db) {
  const float g = static_cast<float>(std::pow(10.0, db / 20.0));
  for (float& v : x) v *= g;
}

namespace {

struct Biquad {
  double b0, b1, b2, a1, a2;  // normalised by a0
  void run(std::vector<float>& x) const {
    double z1 = 0, z2 = 0;  // transposed direct form II, state in double
    for (float& v : x) {
      const double in = v, out = b0 * in + z1;
      z1 = b1 * in - a1 * out + z2;
      z2 = b2 * in - a2 * out;
      v = static_cast<float>(out);
    }
  }
};

// RBJ audio-EQ cookbook, Q = 1/sqrt(2) (Butterworth).
Biquad butterworth(int sample_rate, double cutoff_hz, bool high) {
  MART_CHECK(cutoff_hz > 0 && cutoff_hz < sample_rate / 2.0, "filter cut-off ", cutoff_hz,
             " Hz must lie in (0, ", sample_rate / 2.0, ")");
  const double w0 = 2 * M_PI * cutoff_hz / sample_rate, c = std::cos(w0);
  const double alpha = std::sin(w0) / (2 * M_SQRT1_2), a0 = 1 + alpha;
  const double b1 = high ? -(1 + c) : 1 - c, b0 = std::fabs(b1) / 2;
  return {b0 / a0, b1 / a0, b0 / a0, -2 * c / a0, (1 - alpha) / a0};
}

}  // namespace

void highpass(std::vector<float>& x, int sample_rate, double cutoff_hz) {
  butterworth(sample_rate, cutoff_hz, true).run(x);
}

void lowpass(std::vector<float>& x, int sample_rate, double cutoff_hz) {
  butterworth(sample_rate, cutoff_hz, false).run(x);
}

void delay_mix(std::vector<float>& x, int sample_rate, int ms, double volume) {
  const size_t offset = static_cast<size_t>(int64_t(ms) * sample_rate / 1000);
  const float vol = static_cast<float>(volume);
  // Backwards, so x[i - offset] is still the dry sample when y[i] is written.
  for (size_t i = x.size(); i-- > 0;) {
    const float delayed = i >= offset ? x[i - offset] : 0.0f;
    x[i] = (x[i] + vol * delayed) * 0.5f;
  }
}

// ---- pitch shift through libsox ------------------------------------------------------------

namespace {

struct SoxIo {  // what the custom input and output effects read from and write to
  const std::vector<float>* in = nullptr;
  size_t pos = 0;
  std::vector<float> out;
  size_t clips = 0;
};

// libsox's samples are int32; the signal is scaled by 1/2 on the way in and back on the way out
// so that a peak up to 2 (filters overshoot a little) does not clip.
constexpr double kHeadroom = 0.5;

SoxIo* io_of(sox_effect_t* e) { return *static_cast<SoxIo**>(e->priv); }

int input_drain(sox_effect_t* e, sox_sample_t* obuf, size_t* osamp) {
  SoxIo* io = io_of(e);
  const size_t n = std::min(*osamp, io->in->size() - io->pos);
  SOX_SAMPLE_LOCALS;
  for (size_t i = 0; i < n; ++i)
    obuf[i] = SOX_FLOAT_64BIT_TO_SAMPLE((*io->in)[io->pos + i] * kHeadroom, io->clips);
  io->pos += n;
  *osamp = n;
  return n ? SOX_SUCCESS : SOX_EOF;
}

int output_flow(sox_effect_t* e, const sox_sample_t* ibuf, sox_sample_t*, size_t* isamp,
                size_t* osamp) {
  SoxIo* io = io_of(e);
  SOX_SAMPLE_LOCALS;
  for (size_t i = 0; i < *isamp; ++i)
    io->out.push_back(static_cast<float>(SOX_SAMPLE_TO_FLOAT_64BIT(ibuf[i], io->clips) / kHeadroom));
  *osamp = 0;
  return SOX_SUCCESS;
}

const sox_effect_handler_t* input_handler() {
  static const sox_effect_handler_t h = {"mart_input", nullptr, SOX_EFF_MCHAN, nullptr, nullptr,
                                         nullptr, input_drain, nullptr, nullptr, sizeof(SoxIo*)};
  return &h;
}

const sox_effect_handler_t* output_handler() {
  static const sox_effect_handler_t h = {"mart_output", nullptr, SOX_EFF_MCHAN, nullptr, nullptr,
                                         output_flow, nullptr, nullptr, nullptr, sizeof(SoxIo*)};
  return &h;
}

void sox_init_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    MART_CHECK(sox_init() == SOX_SUCCESS, "sox_init failed");
    sox_get_globals()->verbosity = 1;  // failures only: no "clipped" chatter on stderr
  });
}

// Adds one effect; for ours, stores the SoxIo pointer in its private area.
void add_effect(sox_effects_chain_t* chain, const sox_effect_handler_t* h,
                std::vector<std::string> args, SoxIo* io, sox_signalinfo_t* sig,
                const sox_signalinfo_t* out_sig) {
  MART_CHECK(h, "libsox lacks an effect this build needs");
  sox_effect_t* e = sox_create_effect(h);
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  if (io) *static_cast<SoxIo**>(e->priv) = io;
  const int opt = sox_effect_options(e, static_cast<int>(argv.size()), argv.data());
  const int add = opt == SOX_SUCCESS ? sox_add_effect(chain, e, sig, out_sig) : opt;
  free(e);  // the chain keeps its own copy, as libsox's examples do
  MART_CHECK(opt == SOX_SUCCESS && add == SOX_SUCCESS, "libsox effect '", h->name, "' rejected ",
             "its options or signal");
}

}  // namespace

void pitch_shift(std::vector<float>& x, int sample_rate, double cents) {
  if (x.empty() || cents == 0) return;
  sox_init_once();
  // libsox's effect lookup and the globals it reads are shared: one chain at a time per process.
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);

  SoxIo io;
  io.in = &x;
  io.out.reserve(x.size() + 4096);
  sox_signalinfo_t signal{};
  signal.rate = sample_rate;
  signal.channels = 1;
  signal.precision = 32;
  signal.length = x.size();
  const sox_signalinfo_t target = signal;
  sox_encodinginfo_t enc{};
  enc.encoding = SOX_ENCODING_FLOAT;
  enc.bits_per_sample = 32;
  sox_effects_chain_t* chain = sox_create_effects_chain(&enc, &enc);
  MART_CHECK(chain, "sox_create_effects_chain failed");
  std::ostringstream c;
  c.precision(10);
  c << cents;
  try {
    add_effect(chain, input_handler(), {}, &io, &signal, &target);
    // pitch = WSOLA tempo change by 2^(-cents/1200), relabelled as a rate change; rate then
    // resamples back to the track's rate (what `sox ... pitch N rate SR` and torchaudio do).
    add_effect(chain, sox_find_effect("pitch"), {c.str()}, nullptr, &signal, &target);
    add_effect(chain, sox_find_effect("rate"), {}, nullptr, &signal, &target);
    add_effect(chain, output_handler(), {}, &io, &signal, &target);
  } catch (...) {
    sox_delete_effects_chain(chain);
    throw;
  }
  const int rc = sox_flow_effects(chain, nullptr, nullptr);
  sox_delete_effects_chain(chain);
  MART_CHECK(rc == SOX_SUCCESS, "libsox pitch shift by ", cents, " cents failed");
  // WSOLA's output length is close to, not exactly, the input's: keep the track's length.
  io.out.resize(x.size(), 0.0f);
  x.swap(io.out);
}

}  // namespace mart::audio
