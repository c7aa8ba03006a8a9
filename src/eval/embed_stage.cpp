// mart-embed, the stage: options, rounds of files over the ranks, the gather to rank 0 and the
// writers. The model work is AudioEmbedder's (embed_audio.cpp).
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "embed_writers.h"
#include "mart/audio/decode.h"
#include "mart/audio/logmel.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/text.h"
#include "mart/dist/world.h"
#include "mart/eval/embed_audio.h"
#include "mart/run/checkpoint_info.h"
#include "mart/run/cpu_allocator.h"

namespace fs = std::filesystem;

namespace mart::eval {

namespace {

// ---- The gather: one round's results as bytes ----------------------------------------------------

class Packer {
 public:
  template <typename T>
  void put(const T& v) {
    bytes.append(reinterpret_cast<const char*>(&v), sizeof(T));
  }
  template <typename T>
  void put_vec(const std::vector<T>& v) {
    put<int64_t>(static_cast<int64_t>(v.size()));
    bytes.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  }
  void put_str(const std::string& s) { put_vec(std::vector<char>(s.begin(), s.end())); }
  std::string bytes;
};

class Unpacker {
 public:
  explicit Unpacker(const std::string& b) : b_(b) {}
  bool done() const { return pos_ == b_.size(); }
  template <typename T>
  T get() {
    T v;
    take(&v, sizeof(T));
    return v;
  }
  template <typename T>
  std::vector<T> get_vec() {
    std::vector<T> v(static_cast<size_t>(get<int64_t>()));
    take(v.data(), v.size() * sizeof(T));
    return v;
  }
  std::string get_str() {
    const auto v = get_vec<char>();
    return std::string(v.begin(), v.end());
  }

 private:
  void take(void* out, size_t n) {
    MART_CHECK(pos_ + n <= b_.size(), "truncated embedding message");
    if (n) std::memcpy(out, b_.data() + pos_, n);
    pos_ += n;
  }
  const std::string& b_;
  size_t pos_ = 0;
};

// One file's outcome: an embedding or the reason it has none.
struct Outcome {
  int64_t index = 0;
  bool ok = false;
  std::string reason;
  FileEmbedding e;
};

void pack(Packer& p, const Outcome& o) {
  p.put<int64_t>(o.index);
  p.put<uint8_t>(o.ok);
  if (!o.ok) return p.put_str(o.reason);
  p.put<double>(o.e.duration_s);
  p.put<uint8_t>(o.e.padded);
  p.put<int64_t>(o.e.crops);
  p.put_vec(o.e.scene);
  p.put<int64_t>(static_cast<int64_t>(o.e.level.size()));
  for (size_t l = 0; l < o.e.level.size(); ++l) p.put_vec(o.e.level[l]), p.put_vec(o.e.timestamp_ms[l]);
}

Outcome unpack(Unpacker& u, const std::vector<std::string>& files) {
  Outcome o;
  o.index = u.get<int64_t>();
  o.ok = u.get<uint8_t>();
  if (!o.ok) {
    o.reason = u.get_str();
    return o;
  }
  o.e.path = files.at(static_cast<size_t>(o.index));
  o.e.duration_s = u.get<double>();
  o.e.padded = u.get<uint8_t>();
  o.e.crops = u.get<int64_t>();
  o.e.scene = u.get_vec<float>();
  const int64_t levels = u.get<int64_t>();
  for (int64_t l = 0; l < levels; ++l) {
    o.e.level.push_back(u.get_vec<float>());
    o.e.timestamp_ms.push_back(u.get_vec<double>());
  }
  return o;
}

struct Formats {
  bool h5 = false, csv = false, npy = false;
};

Formats parse_formats(const std::string& s) {
  Formats f;
  std::stringstream in(s);
  for (std::string x; std::getline(in, x, ',');) {
    x = trim(x);
    if (x == "h5") f.h5 = true;
    else if (x == "csv") f.csv = true;
    else if (x == "npy") f.npy = true;
    else if (!x.empty()) MART_CONFIG_ERROR("embed.formats: unknown format '", x, "' (choose from h5, csv, npy, comma-separated)");
  }
  if (!f.h5 && !f.csv && !f.npy) MART_CONFIG_ERROR("embed.formats names no format: give h5, csv and/or npy");
  return f;
}

audio::FeatureConfig features_of(const run::CheckpointInfo& c) {
  if (!c.features)
    MART_CONFIG_ERROR("checkpoint '", c.dir, "' predates stored features: it does not record the sample rate, clip ",
                      "length and log-mel settings of its training data, so audio cannot be turned into its input. ",
                      "Use a checkpoint written by a newer mart-train (retrain, or resume the run for one step)");
  return *c.features;
}

}  // namespace

// ---- The stage --------------------------------------------------------------------------------

void declare_embed_options(Config& c) {
  c.add<std::string>("input", "", "an audio file, or a folder searched recursively for wav, flac, ogg, opus, mp3, au, aiff", "Data");
  c.add<std::string>("input_list", "", "a text file with one audio path per line (relative to the list's folder; "
                                       "'#' comments); embedded after --input", "Data");
  c.add_required<std::string>("checkpoint", "a mart-train run folder (its newest checkpoint) or a checkpoint folder", "Data");
  c.add_required<std::string>("output", "output folder: embeddings.h5 (and CSV / NPY), failures.json, logs", "Data");
  c.add<std::string>("embed.formats", "h5", "comma-separated: h5 (embeddings.h5), csv (scene.csv, level_<l>.csv), "
                                            "npy (npy/<NNNNNN>_<stem>.*.npy per file)", "Embedding");
  c.add<double>("embed.hop_ms", 0.0, "hop between top-clip starts in ms (rounded to the top level's hop); "
                                     "0: non-overlapping crops", "Embedding");
  c.add<int>("embed.batch_crops", 4, "crops of one file per forward pass; each is 1 + M + ... + M^(N-1) clips (15 with the "
                                        "paper's: the first conv layer's output alone is 126 MB per crop)", "Embedding");
  c.add<double>("embed.max_failures", 1.0, "fraction of files allowed to fail before the run is an error (exit 1); "
                                           "a run where every file fails is always an error", "Embedding");
  c.add<int>("embed.files_per_round", 8, "files per rank between two gathers to rank 0 (bounds rank 0's memory)", "Execution");
  c.add<int>("embed.threads", 0, "intra-op threads per rank (0: cores / ranks on the node)", "Execution");
}

void check_embed_options(const Config& c) {
  parse_formats(c.get<std::string>("embed.formats"));
  if (c.get<double>("embed.hop_ms") < 0) MART_CONFIG_ERROR("embed.hop_ms must be >= 0 (0: non-overlapping crops)");
  if (c.get<int>("embed.batch_crops") < 1) MART_CONFIG_ERROR("embed.batch_crops must be at least 1");
  if (c.get<int>("embed.files_per_round") < 1) MART_CONFIG_ERROR("embed.files_per_round must be at least 1");
  if (c.get<int>("embed.threads") < 0) MART_CONFIG_ERROR("embed.threads must be >= 0 (0: cores / ranks)");
  const double mf = c.get<double>("embed.max_failures");
  if (!(mf >= 0 && mf <= 1)) MART_CONFIG_ERROR("embed.max_failures is a fraction in [0, 1], got ", mf);
  list_inputs(c.get<std::string>("input"), c.get<std::string>("input_list"));
  features_of(run::open_checkpoint(c.get<std::string>("checkpoint"))).validate();
}

int run_embed(app::StageContext& ctx) {
  const Config& c = ctx.cfg;
  const dist::World& w = ctx.world;
  const auto t0 = std::chrono::steady_clock::now();
  const run::CheckpointInfo ckpt = run::open_checkpoint(c.get<std::string>("checkpoint"));
  const audio::FeatureConfig f = features_of(ckpt);
  const std::vector<std::string> files = list_inputs(c.get<std::string>("input"), c.get<std::string>("input_list"));
  const Formats formats = parse_formats(c.get<std::string>("embed.formats"));
  const int threads = dist::threads_per_rank(w, c.get<int>("embed.threads"));
  at::set_num_threads(threads);
  run::use_huge_page_cpu_allocator();  // as mart-train and mart-eval (mart/run/cpu_allocator.h)
  RunInfo info;
  info.checkpoint = ckpt.dir;
  info.model_canonical = ckpt.model.canonical();
  info.features = f;
  info.step = crop_step(f, c.get<double>("embed.hop_ms"));
  AudioEmbedder embedder(ckpt.dir, ckpt.model, f, info.step, c.get<int>("embed.batch_crops"));
  info.dim = embedder.dim();
  if (w.is_root()) {
    spdlog::info("embedding {} files with checkpoint {} ({} levels, dim {}); crops every {:.1f} ms of {:.1f} ms; "
                 "{} intra-op thread(s) per rank",
                 files.size(), ckpt.dir, f.levels, info.dim, 1000.0 * static_cast<double>(info.step * f.hop(0)) / f.sample_rate,
                 1000.0 * static_cast<double>(f.clip_samples) / f.sample_rate, threads);
    const std::string warn = audio::empty_filter_warning(f);
    if (!warn.empty()) spdlog::warn("{}", warn);
  }

  const std::string out = ctx.run_dir;
  std::unique_ptr<EmbeddingWriter> h5_out, csv_out;
  if (w.is_root()) {
    if (formats.h5) h5_out = make_h5_writer(out + "/embeddings.h5", info);
    if (formats.csv) csv_out = make_csv_writer(out, f.levels, info.dim);
    if (formats.npy) fs::create_directories(out + "/npy");
  }

  // Rounds of files_per_round files per rank, round robin: a file is embedded alone (its crops in
  // fixed batches), so its floats are the same on any rank count; rank 0 writes in input order.
  const int64_t n = static_cast<int64_t>(files.size());
  const int64_t per_round = static_cast<int64_t>(w.size()) * c.get<int>("embed.files_per_round");
  std::vector<Failure> failures;
  int64_t done = 0;
  double audio_s = 0;
  for (int64_t r0 = 0; r0 < n; r0 += per_round) {
    const int64_t r1 = std::min(n, r0 + per_round);
    Packer mine;
    for (int64_t i = r0 + w.rank(); i < r1; i += w.size()) {
      Outcome o;
      o.index = i;
      const std::string& path = files[static_cast<size_t>(i)];
      try {
        o.e = embedder.embed_file(path);
        o.ok = true;
      } catch (const audio::DecodeError& e) {
        o.reason = std::string(audio::to_string(e.kind())) + ": " + e.reason();
      } catch (const ConfigError&) {
        throw;
      } catch (const std::exception& e) {
        o.reason = e.what();
      }
      if (!o.ok) spdlog::debug("skipping {}: {}", path, o.reason);  // rank 0 reports it with the round
      pack(mine, o);
    }
    std::vector<Outcome> round;
    for (const std::string& bytes : w.all_gather_bytes(mine.bytes)) {
      Unpacker u(bytes);
      while (!u.done()) round.push_back(unpack(u, files));
    }
    std::sort(round.begin(), round.end(), [](const Outcome& a, const Outcome& b) { return a.index < b.index; });
    for (const Outcome& o : round) {
      if (!o.ok) {
        failures.push_back({files[static_cast<size_t>(o.index)], o.reason});
        if (w.is_root()) spdlog::warn("skipping {}: {}", failures.back().path, o.reason);
        continue;
      }
      audio_s += o.e.duration_s;
      if (!w.is_root()) continue;
      if (h5_out) h5_out->append(o.e);
      if (csv_out) csv_out->append(o.e);
      if (formats.npy) write_file_npy(out + "/npy", o.index, o.e);
    }
    done = r1;
    if (w.is_root()) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      spdlog::info("{}/{} files embedded ({} failed), {:.2f} h of audio at {:.1f}x real time; ETA {:.0f} s", done, n,
                   failures.size(), audio_s / 3600, audio_s / std::max(secs, 1e-9),
                   secs / static_cast<double>(done) * static_cast<double>(n - done));
    }
  }

  if (w.is_root()) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& x : failures) j.push_back({{"path", x.path}, {"reason", x.reason}});
    write_file_atomic(out + "/failures.json", j.dump(2) + "\n");
    if (h5_out) h5_out->finish(failures);
    if (csv_out) csv_out->finish(failures);
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spdlog::info("wrote {}: {} files embedded, {} failed (see failures.json); {:.1f} s", out, n - static_cast<int64_t>(failures.size()),
                 failures.size(), secs);
  }
  const int64_t failed = static_cast<int64_t>(failures.size());
  const double fraction = static_cast<double>(failed) / static_cast<double>(n);
  if (failed == n) {
    if (w.is_root()) spdlog::error("every one of the {} input files failed: see {}/failures.json", n, out);
    return app::kExitFailure;
  }
  if (fraction > c.get<double>("embed.max_failures")) {
    if (w.is_root())
      spdlog::error("{} of {} files failed ({:.1f}% > embed.max_failures {:.1f}%): see {}/failures.json", failed, n,
                    100 * fraction, 100 * c.get<double>("embed.max_failures"), out);
    return app::kExitFailure;
  }
  return app::kExitOk;
}

}  // namespace mart::eval
