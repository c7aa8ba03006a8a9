// mart-bench-audio: per-core throughput of the audio layer (decode+resample, augmentation,
// log-mel) against torchaudio doing the same work on the same files, in one run.
//
//   mart-bench-audio [--tracks 8] [--seconds 30] [--repeat 3] [--dir /tmp/mart-bench-audio]
//                    [--python /usr/bin/python3] [--no-torch]
//
// Throughput is seconds of audio per CPU second on one thread (the best of --repeat runs). torchaudio runs with torch.set_num_threads(1).
#include <sndfile.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "mart/audio/augment.h"
#include "mart/audio/decode.h"
#include "mart/audio/features.h"
#include "mart/audio/logmel.h"
#include "mart/core/rng.h"

using namespace mart::audio;

namespace {

struct Options {
  int tracks = 8;
  double seconds = 30;
  int repeat = 3;
  int source_rate = 44100;
  std::string dir = "/tmp/mart-bench-audio";
  std::string python = "/usr/bin/python3";
  bool torch = true;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--tracks") o.tracks = std::stoi(next());
    else if (a == "--seconds") o.seconds = std::stod(next());
    else if (a == "--repeat") o.repeat = std::stoi(next());
    else if (a == "--dir") o.dir = next();
    else if (a == "--python") o.python = next();
    else if (a == "--no-torch") o.torch = false;
    else {
      std::fprintf(stderr, "usage: mart-bench-audio [--tracks N] [--seconds S] [--repeat R] "
                           "[--dir D] [--python PY] [--no-torch]\n");
      std::exit(a == "--help" ? 0 : 2);
    }
  }
  return o;
}

// Stereo "music": a few detuned partials per channel, a slow tremolo and a little noise, so
// codecs and filters see something like real content.
std::vector<float> synth_stereo(int64_t frames, int rate, uint64_t seed) {
  mart::Rng rng(seed);
  const double f0 = 110.0 * std::pow(2.0, rng.randint(0, 24) / 12.0);
  std::vector<float> x(2 * frames);
  for (int64_t i = 0; i < frames; ++i) {
    const double t = double(i) / rate, env = 0.6 + 0.4 * std::sin(2 * M_PI * 0.5 * t);
    for (int c = 0; c < 2; ++c) {
      double s = 0;
      for (int h = 1; h <= 6; ++h) s += std::sin(2 * M_PI * f0 * h * (1 + 0.001 * c) * t) / h;
      x[2 * i + c] = static_cast<float>(0.2 * env * s + 0.01 * rng.normal());
    }
  }
  return x;
}

// Writes the corpus once: wav, flac, ogg and (when libsndfile can) mp3, 44.1 kHz stereo.
std::vector<std::string> make_corpus(const Options& o) {
  mkdir(o.dir.c_str(), 0755);
  struct Fmt {
    const char* ext;
    int format;
  };
  const Fmt fmts[] = {{"flac", SF_FORMAT_FLAC | SF_FORMAT_PCM_16},
                      {"mp3", SF_FORMAT_MPEG | SF_FORMAT_MPEG_LAYER_III},
                      {"wav", SF_FORMAT_WAV | SF_FORMAT_PCM_16},
                      {"ogg", SF_FORMAT_OGG | SF_FORMAT_VORBIS}};
  std::vector<std::string> files;
  const int64_t frames = static_cast<int64_t>(o.seconds * o.source_rate);
  for (int t = 0; t < o.tracks; ++t) {
    const Fmt& f = fmts[t % 4];
    const std::string path = o.dir + "/track" + std::to_string(t) + "_" +
                             std::to_string(int(o.seconds)) + "s." + f.ext;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0) {
      SF_INFO info{};
      info.samplerate = o.source_rate;
      info.channels = 2;
      info.format = f.format;
      SNDFILE* s = sf_open(path.c_str(), SFM_WRITE, &info);
      if (!s) {  // e.g. no mp3 encoder in this libsndfile: use flac instead
        std::fprintf(stderr, "cannot write %s (%s); skipping that format\n", path.c_str(),
                     sf_strerror(nullptr));
        continue;
      }
      const std::vector<float> x = synth_stereo(frames, o.source_rate, 1000 + t);
      sf_writef_float(s, x.data(), frames);
      sf_close(s);
    }
    files.push_back(path);
  }
  return files;
}

// Process CPU time, not wall time: the machine is shared (other builds), and CPU seconds are what
// "per core" means. torchaudio_bench.py measures time.process_time() the same way.
double cpu_seconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

double best_seconds(int repeat, const std::function<void()>& work) {
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    const double t0 = cpu_seconds();
    work();
    best = std::min(best, cpu_seconds() - t0);
  }
  return best;
}

// The parameters of every (track, view) go to a file so torchaudio applies the same chain.
void write_params(const std::string& path, const std::vector<std::vector<AugmentParams>>& p) {
  std::ofstream f(path);
  f.precision(10);
  for (size_t t = 0; t < p.size(); ++t)
    for (size_t v = 0; v < p[t].size(); ++v) {
      const AugmentParams& a = p[t][v];
      f << t << ' ' << v + 1 << ' ' << a.polarity << ' ' << a.noise_std_ratio << ' ' << a.gain_db
        << ' ' << int(a.filter) << ' ' << a.cutoff_hz << ' ' << a.delay_ms << ' '
        << a.pitch_cents << '\n';
    }
}

std::map<std::string, double> run_torchaudio(const Options& o, const std::string& files,
                                             const std::string& params) {
  // One thread for every pool torch might use (OpenMP, OpenBLAS), so CPU time is one core's.
  const std::string cmd = "OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 " + o.python +
                          " " MART_SOURCE_DIR "/bench/audio/torchaudio_bench.py --files " +
                          files + " --params " + params + " --repeat " + std::to_string(o.repeat) +
                          " 2>/dev/null";
  std::map<std::string, double> r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char line[512];
  while (std::fgets(line, sizeof line, p)) {
    char key[128];
    double v;
    if (std::sscanf(line, "%127s %lf", key, &v) == 2) r[key] = v;
  }
  if (pclose(p) != 0) std::fprintf(stderr, "torchaudio script failed: %s\n", cmd.c_str());
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const std::vector<std::string> files = make_corpus(o);
  FeatureConfig fixed;
  FeatureConfig scaled = fixed;
  scaled.window = WindowPolicy::scaled;
  const int rate = fixed.sample_rate;

  // 1. decode + downmix + resample 44.1 -> 22.05 kHz
  std::vector<std::vector<float>> tracks(files.size());
  const double t_decode = best_seconds(o.repeat, [&] {
    for (size_t i = 0; i < files.size(); ++i) tracks[i] = decode_mono(files[i], rate);
  });
  double audio_s = 0;
  for (const auto& t : tracks) audio_s += double(t.size()) / rate;

  // 2. augmentation: the CLMR chain with its probabilities, `views` views per track
  const AugmentConfig aug;
  std::vector<std::vector<AugmentParams>> drawn(tracks.size(), std::vector<AugmentParams>(fixed.views));
  const double t_augment = best_seconds(o.repeat, [&] {
    for (size_t i = 0; i < tracks.size(); ++i)
      for (int v = 0; v < fixed.views; ++v)
        augment_view(tracks[i], rate, aug, 20240501, i, v + 1, &drawn[i][v]);
  });
  double pitch_views = 0;
  for (const auto& t : drawn)
    for (const auto& a : t) pitch_views += a.pitch_cents != 0;

  // 3. log-mel of whole tracks at every level
  auto logmel_all_levels = [&](const FeatureConfig& cfg) {
    std::vector<std::unique_ptr<LogMel>> lm;
    for (int n = 0; n < cfg.levels; ++n) lm.push_back(std::make_unique<LogMel>(cfg, n));
    std::vector<float> out;
    return best_seconds(o.repeat, [&] {
      for (const auto& t : tracks)
        for (auto& l : lm) {
          out.resize(static_cast<size_t>(l->frames(t.size())) * cfg.n_mels);
          l->compute(t.data(), t.size(), out.data());
        }
    });
  };
  const double t_fixed = logmel_all_levels(fixed), t_scaled = logmel_all_levels(scaled);
  LogMel finest(fixed, fixed.levels - 1);
  std::vector<float> finest_out;
  const double t_finest = best_seconds(o.repeat, [&] {
    for (const auto& t : tracks) {  // into a reused buffer, as the all-level rows above
      finest_out.resize(static_cast<size_t>(finest.frames(t.size())) * fixed.n_mels);
      finest.compute(t.data(), t.size(), finest_out.data());
    }
  });

  std::map<std::string, double> py;
  if (o.torch) {
    const std::string list = o.dir + "/files.txt", params = o.dir + "/params.txt";
    std::ofstream(list) << [&] {
      std::string s;
      for (const auto& f : files) s += f + "\n";
      return s;
    }();
    write_params(params, drawn);
    py = run_torchaudio(o, list, params);
  }

  struct Row {
    const char* name;
    const char* key;
    double seconds;
    double audio;
  };
  const double views_audio = audio_s * fixed.views;
  const Row rows[] = {
      {"decode + resample 44.1k->22.05k", "decode_s", t_decode, audio_s},
      {"augmentation (CLMR chain, per view)", "augment_s", t_augment, views_audio},
      {"log-mel fixed, 4 levels", "logmel_fixed_s", t_fixed, audio_s},
      {"log-mel scaled, 4 levels", "logmel_scaled_s", t_scaled, audio_s},
      {"log-mel finest level only", "logmel_finest_s", t_finest, audio_s},
  };
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("mart-bench-audio: %zu tracks x %.0f s (44.1 kHz stereo: wav/flac/ogg/mp3), "
              "%d views, best of %d, 1 thread, CPU time; peak RSS %.0f MiB\n",
              files.size(), o.seconds, fixed.views, o.repeat, ru.ru_maxrss / 1024.0);
  std::printf("%d of %zu views drew a pitch shift; FFTW plans %s\n\n", int(pitch_views),
              files.size() * fixed.views,
              finest.planned_from_wisdom() ? "from the committed PATIENT wisdom" : "FFTW_ESTIMATE");
  std::printf("| stage | mart (audio s/s) | torchaudio (audio s/s) | ratio |\n|---|---:|---:|---:|\n");
  for (const Row& r : rows) {
    const double ours = r.audio / r.seconds;
    const auto it = py.find(r.key);
    if (it == py.end() || it->second <= 0) {
      std::printf("| %s | %.0f | - | - |\n", r.name, ours);
    } else {
      const double theirs = r.audio / it->second;
      std::printf("| %s | %.0f | %.0f | %.2fx |\n", r.name, ours, theirs, ours / theirs);
    }
  }
  return 0;
}
