// mart-bench-audio: per-core throughput of the audio layer (decode+resample, augmentation,
// log-mel) against torchaudio doing the same work on the same files, in one run.
//
//   mart-bench-audio [--tracks 8] [--seconds 30] [--repeat 3] [--dir /tmp/mart-bench-audio]
//                    [--python /usr/bin/python3] [--no-torch]
//
// Throughput is seconds of audio per CPU second on one thread: the best of --repeat rounds, ours
// and torchaudio's alternating so that both see the same load. torchaudio runs with torch.set_num_threads(1).
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
#include "mart/audio/logmel.h"
#include "mart/core/rng.h"
#include "mart/features/features.h"

using namespace mart::audio;
using mart::features::FeatureConfig;
using mart::features::WindowPolicy;

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
                          files + " --params " + params + " --repeat 1" +
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

  // One round of our stages; the rounds alternate with torchaudio's, so both sides see the same
  // load on this shared machine, and each side keeps its best round.
  std::vector<std::vector<float>> tracks(files.size());
  const AugmentConfig aug;
  std::vector<std::vector<AugmentParams>> drawn(files.size(), std::vector<AugmentParams>(fixed.views));
  std::vector<std::unique_ptr<LogMel>> fixed_lm, scaled_lm;
  for (int n = 0; n < fixed.levels; ++n) {
    fixed_lm.push_back(std::make_unique<LogMel>(fixed, n));
    scaled_lm.push_back(std::make_unique<LogMel>(scaled, n));
  }
  LogMel& finest = *fixed_lm.back();
  std::vector<float> out;  // reused, as the stage can write into its shard buffer
  auto logmel = [&](std::vector<std::unique_ptr<LogMel>>& lm, size_t first, size_t last) {
    for (const auto& t : tracks)
      for (size_t n = first; n < last; ++n) {
        out.resize(static_cast<size_t>(lm[n]->frames(t.size())) * fixed.n_mels);
        lm[n]->compute(t.data(), t.size(), out.data());
      }
  };
  auto our_round = [&] {
    std::map<std::string, double> r;
    r["decode_s"] = best_seconds(1, [&] {  // decode + downmix + resample 44.1 -> 22.05 kHz
      for (size_t i = 0; i < files.size(); ++i) tracks[i] = decode_mono(files[i], rate);
    });
    r["augment_s"] = best_seconds(1, [&] {  // the CLMR chain, `views` views per track
      for (size_t i = 0; i < tracks.size(); ++i)
        for (int v = 0; v < fixed.views; ++v)
          augment_view(tracks[i], rate, aug, 20240501, i, v + 1, &drawn[i][v]);
    });
    r["logmel_fixed_s"] = best_seconds(1, [&] { logmel(fixed_lm, 0, fixed_lm.size()); });
    r["logmel_scaled_s"] = best_seconds(1, [&] { logmel(scaled_lm, 0, scaled_lm.size()); });
    r["logmel_finest_s"] =
        best_seconds(1, [&] { logmel(fixed_lm, fixed_lm.size() - 1, fixed_lm.size()); });
    return r;
  };
  auto keep_best = [](std::map<std::string, double>& best, const std::map<std::string, double>& r) {
    for (const auto& [k, v] : r)
      if (!best.count(k) || v < best[k]) best[k] = v;
  };

  std::map<std::string, double> ours, py;
  const std::string list = o.dir + "/files.txt", params = o.dir + "/params.txt";
  for (int round = 0; round < o.repeat; ++round) {
    keep_best(ours, our_round());
    if (!o.torch) continue;
    if (round == 0) {  // the drawn parameters, so torchaudio applies the same chain
      std::ofstream f(list);
      for (const auto& file : files) f << file << "\n";
      f.close();
      write_params(params, drawn);
    }
    keep_best(py, run_torchaudio(o, list, params));
  }
  double audio_s = 0;
  for (const auto& t : tracks) audio_s += double(t.size()) / rate;
  double pitch_views = 0;
  for (const auto& t : drawn)
    for (const auto& a : t) pitch_views += a.pitch_cents != 0;

  struct Row {
    const char* name;
    const char* key;
    double audio;
  };
  const double views_audio = audio_s * fixed.views;
  const Row rows[] = {
      {"decode + resample 44.1k->22.05k", "decode_s", audio_s},
      {"augmentation (CLMR chain, per view)", "augment_s", views_audio},
      {"log-mel fixed, 4 levels", "logmel_fixed_s", audio_s},
      {"log-mel scaled, 4 levels", "logmel_scaled_s", audio_s},
      {"log-mel finest level only", "logmel_finest_s", audio_s},
  };
  struct rusage ru {};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("mart-bench-audio: %zu tracks x %.0f s (44.1 kHz stereo: wav/flac/ogg/mp3), "
              "%d views, best of %d alternating rounds, 1 thread, CPU time; peak RSS %.0f MiB\n",
              files.size(), o.seconds, fixed.views, o.repeat, ru.ru_maxrss / 1024.0);
  std::printf("%d of %zu views drew a pitch shift; FFTW plans %s\n\n", int(pitch_views),
              files.size() * fixed.views,
              finest.planned_from_wisdom() ? "from the committed PATIENT wisdom" : "FFTW_ESTIMATE");
  std::printf("| stage | mart (audio s/s) | torchaudio (audio s/s) | ratio |\n|---|---:|---:|---:|\n");
  for (const Row& r : rows) {
    const double mine = r.audio / ours.at(r.key);
    const auto it = py.find(r.key);
    if (it == py.end() || it->second <= 0) {
      std::printf("| %s | %.0f | - | - |\n", r.name, mine);
    } else {
      const double theirs = r.audio / it->second;
      std::printf("| %s | %.0f | %.0f | %.2fx |\n", r.name, mine, theirs, mine / theirs);
    }
  }
  return 0;
}
