// mart-embed, the stage: options, rounds of files over the ranks, the gather to rank 0 and the
// writers. The model work is AudioEmbedder's (embed_audio.cpp).
#include <ATen/Parallel.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "writers.h"
#include "mart/audio/decode.h"
#include "mart/audio/logmel.h"
#include "mart/core/clock.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/text.h"
#include "mart/dist/world.h"
#include "mart/embed/embed_audio.h"
#include "mart/run/checkpoint_info.h"
#include "mart/run/cpu_allocator.h"

namespace fs = std::filesystem;

namespace mart::embed {

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
  explicit Unpacker(const std::string& bytes) : bytes_(bytes) {}
  bool done() const { return pos_ == bytes_.size(); }
  template <typename T>
  T get() {
    T value;
    take(&value, sizeof(T));
    return value;
  }
  template <typename T>
  std::vector<T> get_vec() {
    std::vector<T> values(static_cast<size_t>(get<int64_t>()));
    take(values.data(), values.size() * sizeof(T));
    return values;
  }
  std::string get_str() {
    const auto chars = get_vec<char>();
    return std::string(chars.begin(), chars.end());
  }

 private:
  void take(void* out, size_t size) {
    MART_CHECK(pos_ + size <= bytes_.size(), "truncated embedding message");
    if (size) std::memcpy(out, bytes_.data() + pos_, size);
    pos_ += size;
  }
  const std::string& bytes_;
  size_t pos_ = 0;
};

// One file's outcome: an embedding or the reason it has none.
struct Outcome {
  int64_t index = 0;
  bool ok = false;
  std::string reason;
  FileEmbedding embedding;
};

void pack(Packer& packer, const Outcome& outcome) {
  packer.put<int64_t>(outcome.index);
  packer.put<uint8_t>(outcome.ok);
  if (!outcome.ok) return packer.put_str(outcome.reason);
  packer.put<double>(outcome.embedding.duration_s);
  packer.put<uint8_t>(outcome.embedding.padded);
  packer.put<int64_t>(outcome.embedding.crops);
  packer.put_vec(outcome.embedding.scene);
  packer.put<int64_t>(static_cast<int64_t>(outcome.embedding.level.size()));
  for (size_t level = 0; level < outcome.embedding.level.size(); ++level) {
    packer.put_vec(outcome.embedding.level[level]);
    packer.put_vec(outcome.embedding.timestamp_ms[level]);
  }
}

Outcome unpack(Unpacker& unpacker, const std::vector<std::string>& files) {
  Outcome outcome;
  outcome.index = unpacker.get<int64_t>();
  outcome.ok = unpacker.get<uint8_t>();
  if (!outcome.ok) {
    outcome.reason = unpacker.get_str();
    return outcome;
  }
  outcome.embedding.path = files.at(static_cast<size_t>(outcome.index));
  outcome.embedding.duration_s = unpacker.get<double>();
  outcome.embedding.padded = unpacker.get<uint8_t>();
  outcome.embedding.crops = unpacker.get<int64_t>();
  outcome.embedding.scene = unpacker.get_vec<float>();
  const int64_t levels = unpacker.get<int64_t>();
  for (int64_t level = 0; level < levels; ++level) {
    outcome.embedding.level.push_back(unpacker.get_vec<float>());
    outcome.embedding.timestamp_ms.push_back(unpacker.get_vec<double>());
  }
  return outcome;
}

// Which files the embeddings go to (embed.formats).
struct Formats {
  bool h5 = true, csv = false, npy = false;
};

Formats parse_formats(const std::string& text) {
  Formats formats{false, false, false};
  std::stringstream in(text);
  for (std::string name; std::getline(in, name, ',');) {
    name = trim(name);
    if (name == "h5") formats.h5 = true;
    else if (name == "csv") formats.csv = true;
    else if (name == "npy") formats.npy = true;
    else if (!name.empty())
      MART_CONFIG_ERROR("embed.formats: unknown format '", name, "' (choose from h5, csv, npy, comma-separated)");
  }
  if (!formats.h5 && !formats.csv && !formats.npy)
    MART_CONFIG_ERROR("embed.formats names no format: give h5, csv and/or npy");
  return formats;
}

std::string formats_text(const Formats& formats) {
  std::string text;
  for (const auto& [on, name] : {std::pair{formats.h5, "h5"}, std::pair{formats.csv, "csv"}, std::pair{formats.npy, "npy"}})
    if (on) text += (text.empty() ? "" : ",") + std::string(name);
  return text;
}

// mart-embed's options: every default written here once, every value checked where it is parsed.
struct EmbedOptions {
  std::string input, input_list, checkpoint;
  Formats formats;
  double hop_ms = 0;  // between top-clip starts; 0: non-overlapping crops
  int batch_crops = 4;
  double max_failures = 1.0;  // the fraction of files allowed to fail
  int files_per_round = 8;
  int threads = 0;  // intra-op threads per rank; 0: cores / ranks on the node
};

EmbedOptions embed_options_from(const Config& config) {
  EmbedOptions options;
  options.input = config.get<std::string>("input");
  options.input_list = config.get<std::string>("input_list");
  options.checkpoint = config.get<std::string>("checkpoint");
  options.formats = parse_formats(config.get<std::string>("embed.formats"));
  options.hop_ms = config.get<double>("embed.hop_ms");
  if (options.hop_ms < 0) MART_CONFIG_ERROR("embed.hop_ms must be >= 0 (0: non-overlapping crops)");
  options.batch_crops = config.get<int>("embed.batch_crops");
  if (options.batch_crops < 1) MART_CONFIG_ERROR("embed.batch_crops must be at least 1");
  options.files_per_round = config.get<int>("embed.files_per_round");
  if (options.files_per_round < 1) MART_CONFIG_ERROR("embed.files_per_round must be at least 1");
  options.threads = config.get<int>("embed.threads");
  if (options.threads < 0) MART_CONFIG_ERROR("embed.threads must be >= 0 (0: cores / ranks)");
  options.max_failures = config.get<double>("embed.max_failures");
  if (!(options.max_failures >= 0 && options.max_failures <= 1))
    MART_CONFIG_ERROR("embed.max_failures is a fraction in [0, 1], got ", options.max_failures);
  return options;
}

features::FeatureConfig features_of(const run::CheckpointInfo& ckpt) {
  if (!ckpt.features)
    MART_CONFIG_ERROR("checkpoint '", ckpt.dir, "' predates stored features: it does not record the sample rate, clip ",
                      "length and log-mel settings of its training data, so audio cannot be turned into its input. ",
                      "Use a checkpoint written by a newer mart-train (retrain, or resume the run for one step)");
  return *ckpt.features;
}

// Rank 0's outputs, as embed.formats asks: embeddings.h5, the CSV files, one NPY file per array.
class Outputs {
 public:
  Outputs(const std::string& dir, const Formats& formats, const RunInfo& info, int levels) : dir_(dir), npy_(formats.npy) {
    if (formats.h5) h5_ = make_h5_writer(dir + "/embeddings.h5", info);
    if (formats.csv) csv_ = make_csv_writer(dir, levels, info.dim);
    if (formats.npy) fs::create_directories(dir + "/npy");
  }
  void append(int64_t index, const FileEmbedding& embedding) {
    if (h5_) h5_->append(embedding);
    if (csv_) csv_->append(embedding);
    if (npy_) write_file_npy(dir_ + "/npy", index, embedding);
  }
  void finish(const std::vector<Failure>& failures) {
    nlohmann::json listed = nlohmann::json::array();
    for (const auto& failure : failures) listed.push_back({{"path", failure.path}, {"reason", failure.reason}});
    write_file_atomic(dir_ + "/failures.json", listed.dump(2) + "\n");
    if (h5_) h5_->finish(failures);
    if (csv_) csv_->finish(failures);
  }

 private:
  std::string dir_;
  bool npy_;
  std::unique_ptr<EmbeddingWriter> h5_, csv_;
};

// One file embedded, or the reason it could not be; a configuration error stops the run.
Outcome embed_one(AudioEmbedder& embedder, const std::string& path, int64_t index) {
  Outcome outcome;
  outcome.index = index;
  try {
    outcome.embedding = embedder.embed_file(path);
    outcome.ok = true;
  } catch (const audio::DecodeError& error) {
    outcome.reason = std::string(audio::to_string(error.kind())) + ": " + error.reason();
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& error) {
    outcome.reason = error.what();
  }
  if (!outcome.ok) spdlog::debug("skipping {}: {}", path, outcome.reason);  // rank 0 reports it with the round
  return outcome;
}

// Files [first, last) round robin over the ranks, every rank's outcomes gathered on every rank in
// input order. A file is embedded alone (its crops in fixed batches), so its floats are the same
// on any rank count.
std::vector<Outcome> embed_round(const dist::World& world, AudioEmbedder& embedder, const std::vector<std::string>& files,
                                 int64_t first, int64_t last) {
  Packer mine;
  for (int64_t i = first + world.rank(); i < last; i += world.size())
    pack(mine, embed_one(embedder, files[static_cast<size_t>(i)], i));
  std::vector<Outcome> round;
  for (const std::string& bytes : world.all_gather_bytes(mine.bytes)) {
    Unpacker unpacker(bytes);
    while (!unpacker.done()) round.push_back(unpack(unpacker, files));
  }
  std::sort(round.begin(), round.end(), [](const Outcome& a, const Outcome& b) { return a.index < b.index; });
  return round;
}

}  // namespace

// ---- The stage --------------------------------------------------------------------------------

void declare_embed_options(Config& config) {
  const EmbedOptions defaults;
  config.add<std::string>("input", defaults.input,
                          "an audio file, or a folder searched recursively for wav, flac, ogg, opus, mp3, au, aiff",
                          "Data");
  config.add<std::string>("input_list", defaults.input_list,
                          "a text file with one audio path per line (relative to the list's folder; '#' comments); "
                          "embedded after --input", "Data");
  config.add_required<std::string>("checkpoint",
                                   "a mart-train run folder (its newest checkpoint) or a checkpoint folder", "Data");
  config.add_required<std::string>("output", "output folder: embeddings.h5 (and CSV / NPY), failures.json, logs",
                                   "Data");
  config.add<std::string>("embed.formats", formats_text(defaults.formats),
                          "comma-separated: h5 (embeddings.h5), csv (scene.csv, level_<l>.csv), npy "
                          "(npy/<NNNNNN>_<stem>.*.npy per file)", "Embedding");
  config.add<double>("embed.hop_ms", defaults.hop_ms,
                     "hop between top-clip starts in ms (rounded to the top level's hop); 0: non-overlapping crops",
                     "Embedding");
  config.add<int>("embed.batch_crops", defaults.batch_crops,
                  "crops of one file per forward pass; each is 1 + M + ... + M^(N-1) clips (15 with the paper's: the "
                  "first conv layer's output alone is 126 MB per crop)", "Embedding");
  config.add<double>("embed.max_failures", defaults.max_failures,
                     "fraction of files allowed to fail before the run is an error (exit 1); a run where every file "
                     "fails is always an error", "Embedding");
  config.add<int>("embed.files_per_round", defaults.files_per_round,
                  "files per rank between two gathers to rank 0 (bounds rank 0's memory)", "Execution");
  config.add<int>("embed.threads", defaults.threads, "intra-op threads per rank (0: cores / ranks on the node)",
                  "Execution");
}

void check_embed_options(const Config& config) {
  const EmbedOptions options = embed_options_from(config);
  list_inputs(options.input, options.input_list);
  features_of(run::open_checkpoint(options.checkpoint)).validate();
}

int run_embed(app::StageContext& ctx) {
  const auto started = std::chrono::steady_clock::now();
  const EmbedOptions options = embed_options_from(ctx.cfg);
  const dist::World& world = ctx.world;
  const run::CheckpointInfo ckpt = run::open_checkpoint(options.checkpoint);
  const features::FeatureConfig features = features_of(ckpt);
  const std::vector<std::string> files = list_inputs(options.input, options.input_list);
  const int threads = dist::threads_per_rank(world, options.threads);
  at::set_num_threads(threads);
  run::use_huge_page_cpu_allocator();  // as mart-train and mart-eval (mart/run/cpu_allocator.h)
  RunInfo info;
  info.checkpoint = ckpt.dir;
  info.model_canonical = ckpt.model.canonical();
  info.features = features;
  info.step = crop_step(features, options.hop_ms);
  AudioEmbedder embedder(ckpt.dir, ckpt.model, features, info.step, options.batch_crops);
  info.dim = embedder.dim();
  std::optional<Outputs> outputs;
  if (world.is_root()) {
    spdlog::info("embedding {} files with checkpoint {} ({} levels, dim {}); crops every {:.1f} ms of {:.1f} ms; "
                 "{} intra-op thread(s) per rank", files.size(), ckpt.dir, features.levels, info.dim,
                 1000.0 * static_cast<double>(info.step * features.hop(0)) / features.sample_rate,
                 1000.0 * static_cast<double>(features.clip_samples) / features.sample_rate, threads);
    const std::string warn = audio::empty_filter_warning(features);
    if (!warn.empty()) spdlog::warn("{}", warn);
    outputs.emplace(ctx.run_dir, options.formats, info, features.levels);
  }

  // Rounds of files_per_round files per rank; rank 0 writes in input order.
  const int64_t total = static_cast<int64_t>(files.size());
  const int64_t per_round = static_cast<int64_t>(world.size()) * options.files_per_round;
  std::vector<Failure> failures;
  double audio_s = 0;
  for (int64_t first = 0; first < total; first += per_round) {
    const int64_t last = std::min(total, first + per_round);
    for (const Outcome& outcome : embed_round(world, embedder, files, first, last)) {
      if (!outcome.ok) {
        failures.push_back({files[static_cast<size_t>(outcome.index)], outcome.reason});
        if (world.is_root()) spdlog::warn("skipping {}: {}", failures.back().path, outcome.reason);
        continue;
      }
      audio_s += outcome.embedding.duration_s;
      if (outputs) outputs->append(outcome.index, outcome.embedding);
    }
    if (world.is_root()) {
      const double secs = seconds_since(started);
      spdlog::info("{}/{} files embedded ({} failed), {:.2f} h of audio at {:.1f}x real time; ETA {:.0f} s", last, total,
                   failures.size(), audio_s / 3600, audio_s / std::max(secs, 1e-9),
                   secs / static_cast<double>(last) * static_cast<double>(total - last));
    }
  }

  const int64_t failed = static_cast<int64_t>(failures.size());
  if (outputs) {
    outputs->finish(failures);
    spdlog::info("wrote {}: {} files embedded, {} failed (see failures.json); {:.1f} s", ctx.run_dir, total - failed,
                 failed, seconds_since(started));
  }
  const double fraction = static_cast<double>(failed) / static_cast<double>(total);
  if (failed == total) {
    if (world.is_root()) spdlog::error("every one of the {} input files failed: see {}/failures.json", total, ctx.run_dir);
    return app::kExitFailure;
  }
  if (fraction > options.max_failures) {
    if (world.is_root())
      spdlog::error("{} of {} files failed ({:.1f}% > embed.max_failures {:.1f}%): see {}/failures.json", failed, total,
                    100 * fraction, 100 * options.max_failures, ctx.run_dir);
    return app::kExitFailure;
  }
  return app::kExitOk;
}

}  // namespace mart::embed
