#include "mart/preprocess/pipeline.h"

#include <mpi.h>
#include <sys/resource.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <map>
#include <numeric>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "mart/audio/cqt.h"
#include "mart/audio/decode.h"
#include "mart/audio/logmel.h"
#include "mart/core/clock.h"
#include "mart/core/error.h"
#include "mart/core/failpoint.h"
#include "mart/core/fs.h"
#include "mart/core/hash.h"
#include "mart/core/mpi_check.h"
#include "mart/data/manifest.h"
#include "mart/data/shard.h"
#include "mart/dist/work_counter.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace mart::preprocess {

void declare_options(Config& c) {
  const PreprocessOptions d;  // every default is the struct's
  c.add_required<std::string>("input", "the collection: a folder (folder, synth, mtat, gtzan) or a list file (covers)", "Data");
  c.add_required<std::string>("output", "directory for the shards, manifest.json and logs", "Data");
  c.add<std::string>("dataset.kind", d.dataset.kind, "folder | synth | mtat | gtzan | covers", "Data");
  c.add<std::string>("dataset.labels_csv", d.dataset.labels_csv, "folder: CSV with path,split,tags,class,cover_group", "Data");
  c.add<std::string>("dataset.split_dir", d.dataset.split_dir, "mtat/gtzan: folder with train.txt, valid.txt, test.txt", "Data");
  c.add<int>("dataset.mtat_top_tags", d.dataset.mtat_top_tags, "mtat: keep the K most frequent tags", "Data");
  c.add<bool>("dataset.mtat_drop_untagged", d.dataset.mtat_drop_untagged, "mtat: drop clips with none of the top tags", "Data");
  const features::FeatureConfig& f = d.features;
  c.add<int>("features.sample_rate", f.sample_rate, "sample rate the audio is resampled to", "Features");
  c.add<int>("features.clip_samples", static_cast<int>(f.clip_samples), "L0: samples of a top clip", "Features");
  c.add<int>("features.levels", f.levels, "N: levels of the hierarchy", "Features");
  c.add<int>("features.parts", f.parts, "M: parts per whole", "Features");
  c.add<int>("features.frames", f.frames, "T: frames of every clip's log-mel", "Features");
  c.add<int>("features.n_fft", f.n_fft, "FFT size (and window length)", "Features");
  c.add<int>("features.n_mels", f.n_mels, "mel bands", "Features");
  c.add<double>("features.f_min", f.f_min, "lowest mel frequency (Hz)", "Features");
  c.add<double>("features.f_max", f.f_max, "highest mel frequency (Hz); 0 = Nyquist", "Features");
  c.add<double>("features.log_eps", f.log_eps, "log(mel + eps)", "Features");
  c.add<std::string>("features.window", features::to_string(f.window), "fixed (the paper: n_fft at every level) or scaled (max(n_fft, 2 hop))", "Features");
  c.add<int>("features.views", f.views, "V: augmented views stored per track besides the clean audio", "Features");
  c.add<bool>("features.cqt", d.cqt,
              "also store the clean audio's constant-Q magnitude, CQTNet's input (84 bins from C1, 12 per octave, "
              "hop 512 samples, means of 20 frames), in /cqt of every shard",
              "Features");
  const audio::AugmentConfig& a = d.augment;
  c.add<int>("augment.seed", static_cast<int>(d.augment_seed), "seed of the views: (seed, track, view) fixes every draw", "Augmentation");
  c.add<double>("augment.p_polarity", a.p_polarity, "probability of polarity inversion", "Augmentation");
  c.add<double>("augment.p_noise", a.p_noise, "probability of Gaussian noise", "Augmentation");
  c.add<double>("augment.p_gain", a.p_gain, "probability of a gain change", "Augmentation");
  c.add<double>("augment.p_filter", a.p_filter, "probability of a high- or low-pass filter", "Augmentation");
  c.add<double>("augment.p_delay", a.p_delay, "probability of a delay", "Augmentation");
  c.add<double>("augment.p_pitch", a.p_pitch, "probability of a pitch shift", "Augmentation");
  c.add<int>("preprocess.unit_tracks", d.unit_tracks, "tracks per unit of work (= per shard)", "Run");
  c.add<double>("preprocess.max_failures", d.max_failures, "fraction of tracks allowed to fail before the run is an error", "Run");
  c.add_flag("preprocess.resume", "continue a compatible run in --output, skipping finished shards", "Run");
  c.add_flag("preprocess.force", "delete what --output holds and start over", "Run");
  c.add_flag("preprocess.verify",
             "check the shards of a finished run in --output against manifest.json (size, hash, checksums) "
             "without rewriting anything; lists the damaged ones (exit 1); --preprocess.resume rewrites them", "Run");
}

PreprocessOptions options_from(const Config& c) {
  PreprocessOptions o;
  o.dataset.kind = c.get<std::string>("dataset.kind");
  o.dataset.input = c.get<std::string>("input");
  o.dataset.labels_csv = c.get<std::string>("dataset.labels_csv");
  o.dataset.split_dir = c.get<std::string>("dataset.split_dir");
  o.dataset.mtat_top_tags = c.get<int>("dataset.mtat_top_tags");
  o.dataset.mtat_drop_untagged = c.get<bool>("dataset.mtat_drop_untagged");
  auto& f = o.features;
  f.sample_rate = c.get<int>("features.sample_rate");
  f.clip_samples = c.get<int>("features.clip_samples");
  f.levels = c.get<int>("features.levels");
  f.parts = c.get<int>("features.parts");
  f.frames = c.get<int>("features.frames");
  f.n_fft = c.get<int>("features.n_fft");
  f.n_mels = c.get<int>("features.n_mels");
  f.f_min = c.get<double>("features.f_min");
  f.f_max = c.get<double>("features.f_max");
  f.log_eps = c.get<double>("features.log_eps");
  f.window = features::parse_window_policy(c.get<std::string>("features.window"));
  f.views = c.get<int>("features.views");
  f.validate();
  o.cqt = c.get<bool>("features.cqt");
  o.augment_seed = static_cast<uint64_t>(c.get<int>("augment.seed"));
  o.augment.p_polarity = c.get<double>("augment.p_polarity");
  o.augment.p_noise = c.get<double>("augment.p_noise");
  o.augment.p_gain = c.get<double>("augment.p_gain");
  o.augment.p_filter = c.get<double>("augment.p_filter");
  o.augment.p_delay = c.get<double>("augment.p_delay");
  o.augment.p_pitch = c.get<double>("augment.p_pitch");
  for (double p : {o.augment.p_polarity, o.augment.p_noise, o.augment.p_gain, o.augment.p_filter,
                   o.augment.p_delay, o.augment.p_pitch})
    if (p < 0 || p > 1) MART_CONFIG_ERROR("augment.p_* are probabilities in [0, 1]; got ", p);
  o.output = c.get<std::string>("output");
  o.unit_tracks = c.get<int>("preprocess.unit_tracks");
  if (o.unit_tracks < 1) MART_CONFIG_ERROR("preprocess.unit_tracks must be at least 1");
  o.max_failures = c.get<double>("preprocess.max_failures");
  if (o.max_failures < 0 || o.max_failures > 1) MART_CONFIG_ERROR("preprocess.max_failures is a fraction in [0, 1]");
  o.resume = c.get<bool>("preprocess.resume");
  o.force = c.get<bool>("preprocess.force");
  if (o.resume && o.force) MART_CONFIG_ERROR("give --preprocess.resume or --preprocess.force, not both");
  o.verify = c.get<bool>("preprocess.verify");
  if (o.verify && (o.resume || o.force))
    MART_CONFIG_ERROR("--preprocess.verify only reads: give it without --preprocess.resume or --preprocess.force");
  return o;
}

namespace {

audio::CqtParams cqt_params(const PreprocessOptions& o) {
  audio::CqtParams p;
  p.sample_rate = o.features.sample_rate;
  return p;
}

// The constant-Q's parameters as one text: the shards' cqt_params attribute and, with
// features.cqt, part of the content hash.
std::string cqt_params_text(const audio::CqtParams& p) {
  std::ostringstream os;
  os.precision(17);
  os << "bins=" << p.bins << ";bins_per_octave=" << p.bins_per_octave << ";f_min=" << p.f_min << ";hop=" << p.hop
     << ";sample_rate=" << p.sample_rate << ";kernel_threshold=" << p.kernel_threshold
     << ";block_frames=" << p.block_frames << ";value=mean of |X| over each block of frames (mart/audio/cqt.h)";
  return os.str();
}

}  // namespace

uint64_t content_hash(const PreprocessOptions& o) {
  std::ostringstream os;
  os.precision(17);
  const auto& d = o.dataset;
  const auto& a = o.augment;
  os << "input=" << fs::absolute(d.input).lexically_normal().string() << ";kind=" << d.kind
     << ";labels=" << d.labels_csv << ";splits=" << d.split_dir << ";top=" << d.mtat_top_tags
     << ";drop=" << d.mtat_drop_untagged << ";" << o.features.canonical() << ";seed=" << o.augment_seed
     << ";aug=" << a.p_polarity << "," << a.p_noise << "," << a.p_gain << "," << a.p_filter << ","
     << a.p_delay << "," << a.p_pitch << ";unit=" << o.unit_tracks;
  if (o.cqt) os << ";cqt=" << cqt_params_text(cqt_params(o));  // only when on: older runs keep their hash
  return fnv1a64(os.str());
}

namespace {

constexpr const char* kStateFile = "preprocess.state.json";

std::string unit_name(int64_t unit, const char* suffix) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "shard-%06lld%s", static_cast<long long>(unit), suffix);
  return buf;
}

// A unit's record: written after its shard, so a record means the unit is finished.
struct UnitRecord {
  int64_t unit = 0, tracks = 0, frames = 0;
  std::string shard;  // empty when every track of the unit failed
  FileDigest digest;  // of the shard as written (bytes < 0 in records of older runs)
  std::vector<data::ManifestFailure> failures;
  double audio_seconds = 0;
};

void save_record(const std::string& dir, const UnitRecord& r) {
  json j = {{"unit", r.unit}, {"tracks", r.tracks}, {"frames", r.frames}, {"shard", r.shard},
            {"audio_seconds", r.audio_seconds}, {"failures", json::array()}};
  for (const auto& f : r.failures) j["failures"].push_back({{"path", f.path}, {"reason", f.reason}});
  if (!r.shard.empty()) j["bytes"] = r.digest.bytes, j["fnv1a64"] = r.digest.fnv1a64;
  write_file_atomic(dir + "/" + unit_name(r.unit, ".json"), j.dump(1));
}

// The record of a finished unit, or false when the unit must be (re)done.
bool load_record(const std::string& dir, int64_t unit, const features::FeatureConfig& f, UnitRecord* r) {
  const std::string path = dir + "/" + unit_name(unit, ".json");
  if (!fs::exists(path)) return false;
  try {
    const json j = json::parse(read_file(path));
    r->unit = unit;
    r->tracks = j.at("tracks").get<int64_t>();
    r->frames = j.at("frames").get<int64_t>();
    r->shard = j.at("shard").get<std::string>();
    r->audio_seconds = j.value("audio_seconds", 0.0);
    r->failures.clear();
    for (const auto& x : j.at("failures")) r->failures.push_back({x.at("path"), x.at("reason")});
    r->digest = FileDigest{j.value("bytes", int64_t{-1}), j.value("fnv1a64", std::string())};
  } catch (const std::exception&) {
    return false;  // a damaged record: redo the unit
  }
  if (r->shard.empty()) return true;
  const std::string shard = dir + "/" + r->shard;
  if (r->digest.bytes >= 0) {  // the shard must hold the bytes that were written, or be rewritten
    if (!fs::exists(shard)) return false;
    const FileDigest now = file_digest(shard);
    if (now != r->digest) {
      spdlog::warn("{} changed since it was written ({} bytes, hash {}; written: {} bytes, hash {}): rewriting it",
                   shard, now.bytes, now.fnv1a64, r->digest.bytes, r->digest.fnv1a64);
      return false;
    }
  }
  return data::ShardReader::is_complete(shard, f);
}

// The cover group as the shard's integer: numeric work ids stay, others get their rank in sorted order.
std::map<std::string, int64_t> cover_group_ids(const std::vector<TrackEntry>& tracks) {
  std::set<std::string> names;
  bool numeric = true;
  for (const auto& t : tracks) {
    if (t.cover_group.empty()) continue;
    names.insert(t.cover_group);
    numeric = numeric && t.cover_group.find_first_not_of("0123456789") == std::string::npos;
  }
  std::map<std::string, int64_t> ids;
  int64_t next = 0;
  for (const auto& n : names) ids[n] = numeric ? std::stoll(n) : next++;
  return ids;
}

class UnitProcessor {
 public:
  UnitProcessor(const PreprocessOptions& o, const data::LabelSchema& labels, uint64_t hash,
                std::map<std::string, int64_t> covers)
      : o_(o), labels_(labels), hash_(hash), covers_(std::move(covers)), mels_(o.features) {
    if (o.cqt) cqt_ = std::make_unique<audio::ConstantQ>(cqt_params(o));
  }

  UnitRecord process(int64_t unit, const std::vector<TrackEntry>& tracks, int64_t first) {
    UnitRecord rec;
    rec.unit = unit;
    const int64_t last = std::min<int64_t>(first + o_.unit_tracks, static_cast<int64_t>(tracks.size()));
    std::unique_ptr<data::ShardWriter> writer;
    const std::string shard = unit_name(unit, ".h5");
    const auto& f = o_.features;
    for (int64_t i = first; i < last; ++i) {
      const TrackEntry& t = tracks[static_cast<size_t>(i)];
      try {
        audio::DecodeOptions d;
        d.target_rate = f.sample_rate;
        const std::vector<float> clean = audio::decode_mono(t.path, d);
        if (static_cast<int64_t>(clean.size()) < f.clip_samples) {
          std::ostringstream why;
          why << "too short: " << clean.size() / double(f.sample_rate) << " s, a top clip needs "
              << f.clip_samples / double(f.sample_rate) << " s";
          throw std::runtime_error(why.str());
        }
        // views[v][i]: the stored levels' whole-track log-mels of view v.
        std::vector<std::vector<std::vector<float>>> views;
        for (int v = 0; v <= f.views; ++v) {
          const std::vector<float> x =
              v == 0 ? clean : audio::augment_view(clean, f.sample_rate, o_.augment, o_.augment_seed,
                                                   static_cast<uint64_t>(i), static_cast<uint64_t>(v));
          views.push_back(mels_.compute(x));
        }
        std::vector<float> cqt;  // computed before anything of the track is written
        if (cqt_)
          cqt = audio::ConstantQ::block_mean(cqt_->magnitude(clean.data(), static_cast<int64_t>(clean.size())),
                                             cqt_->bins(), cqt_->params().block_frames);
        if (!writer) {
          writer = std::make_unique<data::ShardWriter>(o_.output + "/" + shard, f, labels_, hash_);
          if (cqt_) writer->store_cqt(cqt_->bins(), cqt_params_text(cqt_->params()));
        }
        writer->add_track(meta(t, static_cast<int64_t>(clean.size())), views);
        if (cqt_) writer->add_cqt(cqt);
        rec.audio_seconds += static_cast<double>(clean.size()) / f.sample_rate;
      } catch (const audio::DecodeError& e) {
        rec.failures.push_back({t.path, std::string(audio::to_string(e.kind())) + ": " + e.reason()});
        spdlog::warn("skipping {}: {}", t.path, rec.failures.back().reason);
      } catch (const ConfigError&) {
        throw;
      } catch (const OutputError&) {
        throw;  // writing the shard failed (disk full, read-only): fatal, and no fault of this track
      } catch (const std::exception& e) {
        rec.failures.push_back({t.path, e.what()});
        spdlog::warn("skipping {}: {}", t.path, e.what());
      }
    }
    if (writer) {
      writer->finish();
      rec.digest = file_digest(writer->path());
      rec.shard = shard;
      rec.tracks = writer->tracks();
      rec.frames = writer->frames();
    }
    return rec;
  }

 private:
  data::TrackMeta meta(const TrackEntry& t, int64_t samples) const {
    data::TrackMeta m;
    m.id = t.id;
    m.path = t.path;
    m.split = t.split;
    m.samples = samples;
    m.tags.assign(labels_.tag_names.size(), 0);
    for (const auto& tag : t.tags)
      for (size_t k = 0; k < labels_.tag_names.size(); ++k)
        if (labels_.tag_names[k] == tag) m.tags[k] = 1;
    for (size_t k = 0; k < labels_.class_names.size(); ++k)
      if (labels_.class_names[k] == t.class_name) m.class_index = static_cast<int32_t>(k);
    if (!t.cover_group.empty()) m.cover_group = covers_.at(t.cover_group);
    return m;
  }

  const PreprocessOptions& o_;
  const data::LabelSchema& labels_;
  uint64_t hash_;
  std::map<std::string, int64_t> covers_;
  audio::TrackLogMels mels_;  // the levels a shard stores
  std::unique_ptr<audio::ConstantQ> cqt_;  // features.cqt
};

// Longest first: the counter hands out units in order of decreasing input bytes, so a job's tail
// is a small unit rather than the long tracks that happened to sort last. Bytes stand in for
// decode and feature time. Rank 0 measures and broadcasts: every rank must walk the
// same order, even if a file changes meanwhile. Shard names keep the unit index.
std::vector<int64_t> unit_order(const std::vector<TrackEntry>& tracks, int64_t unit_tracks, int64_t units,
                                MPI_Comm comm, bool root) {
  std::vector<int64_t> order(static_cast<size_t>(units));
  if (root) {
    std::vector<uintmax_t> bytes(order.size(), 0);
    for (size_t i = 0; i < tracks.size(); ++i) {
      std::error_code ec;
      const uintmax_t b = fs::file_size(tracks[i].path, ec);
      if (!ec) bytes[i / static_cast<size_t>(unit_tracks)] += b;  // an unreadable file fails later
    }
    std::iota(order.begin(), order.end(), int64_t{0});
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
      return bytes[static_cast<size_t>(a)] > bytes[static_cast<size_t>(b)];
    });
  }
  if (units > 0) MPI_CHECK(MPI_Bcast(order.data(), static_cast<int>(units), MPI_INT64_T, 0, comm));
  return order;
}

// Before any work: is --output empty, a compatible run (needs --resume), or another run?
void check_output(const PreprocessOptions& o, uint64_t hash) {
  const std::string state = o.output + "/" + kStateFile;
  bool has_shards = false;
  if (fs::is_directory(o.output))
    for (const auto& e : fs::directory_iterator(o.output))
      has_shards = has_shards || e.path().filename().string().rfind("shard-", 0) == 0;
  if (!fs::exists(state) && !has_shards) return;
  if (o.force) {
    for (const auto& e : fs::directory_iterator(o.output)) {
      const std::string n = e.path().filename().string();
      if (n.rfind("shard-", 0) == 0 || n == "manifest.json" || n == kStateFile) fs::remove(e.path());
    }
    spdlog::warn("--preprocess.force: removed the shards of the earlier run in {}", o.output);
    return;
  }
  uint64_t old = 0;
  try {
    old = std::stoull(json::parse(read_file(state)).at("content_hash").get<std::string>(), nullptr, 16);
  } catch (const std::exception&) {
  }
  if (old != hash)
    MART_CONFIG_ERROR("output '", o.output, "' holds shards of another preprocess configuration (content hash ",
                      hex64(old), ", this run ", hex64(hash), "): choose another --output, or pass "
                      "--preprocess.force to delete them and start over");
  if (!o.resume)
    MART_CONFIG_ERROR("output '", o.output, "' already holds a run with this configuration: pass "
                      "--preprocess.resume to finish it (finished shards are kept), or "
                      "--preprocess.force to start over");
  // A killed run may have left temporaries (a shard or a record being written): never read, and
  // removed now so the folder holds only finished files.
  for (const auto& e : fs::directory_iterator(o.output)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("shard-", 0) == 0 && n.find(".tmp") != std::string::npos) fs::remove(e.path());
  }
}

// What is wrong with one shard of a finished run ("" when nothing): missing, other bytes than the
// manifest records, or (where it records none) a chunk that fails its checksum.
std::string shard_damage(const std::string& dir, const data::Manifest& m, const data::ManifestShard& s) {
  const std::string path = dir + "/" + s.file;
  if (!fs::exists(path)) return "missing";
  try {
    if (s.bytes >= 0) {
      const FileDigest d = file_digest(path);
      if (d.bytes != s.bytes) return "size " + std::to_string(d.bytes) + " bytes, the manifest records " + std::to_string(s.bytes);
      if (d.fnv1a64 != s.fnv1a64) return "content hash " + d.fnv1a64 + ", the manifest records " + s.fnv1a64;
    }
    data::ShardReader r(path, m.features);
    if (r.num_tracks() != s.tracks) return "holds " + std::to_string(r.num_tracks()) + " tracks, the manifest lists " + std::to_string(s.tracks);
    if (s.bytes < 0) r.verify_all();  // no recorded hash: read every chunk to check its checksum
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

// --preprocess.verify: every shard of manifest.json checked (split over the ranks), nothing written.
int verify(const PreprocessOptions& o, dist::World& world) {
  const std::string manifest = o.output + "/manifest.json";
  if (!fs::exists(manifest))
    MART_CONFIG_ERROR("'", o.output, "' has no manifest.json: the run did not finish; rerun mart-preprocess "
                      "with --preprocess.resume to finish it");
  const data::Manifest m = data::load_manifest(manifest);
  json mine = json::array();
  for (size_t i = static_cast<size_t>(world.rank()); i < m.shards.size(); i += static_cast<size_t>(world.size())) {
    const std::string why = shard_damage(o.output, m, m.shards[i]);
    if (!why.empty()) mine.push_back({{"index", i}, {"why", why}});
  }
  std::vector<std::pair<size_t, std::string>> broken;
  for (const auto& bytes : world.all_gather_bytes(mine.dump()))
    for (const auto& b : json::parse(bytes)) broken.emplace_back(b.at("index").get<size_t>(), b.at("why").get<std::string>());
  std::sort(broken.begin(), broken.end());
  if (!world.is_root()) return broken.empty() ? app::kExitOk : app::kExitFailure;
  if (broken.empty()) {
    spdlog::info("verified {} shards in {}: all intact", m.shards.size(), o.output);
    return app::kExitOk;
  }
  std::string list;
  for (const auto& [i, why] : broken) list += "\n  " + m.shards[i].file + ": " + why;
  spdlog::error("{} of {} shards in {} are damaged:{}\nFix: rerun mart-preprocess with the same options and "
                "--preprocess.resume instead of --preprocess.verify: it rewrites them (and keeps the intact ones)",
                broken.size(), m.shards.size(), o.output, list);
  return app::kExitFailure;
}

}  // namespace

int run(app::StageContext& ctx) {
  const PreprocessOptions o = options_from(ctx.cfg);
  const uint64_t hash = content_hash(o);
  auto& world = ctx.world;
  if (o.verify) return verify(o, world);
  // Rank 0 judges the output folder; every rank learns the verdict, so none starts alone.
  std::string verdict;
  if (world.is_root()) {
    try {
      check_output(o, hash);
      write_file_atomic(o.output + "/" + kStateFile,
                        json{{"content_hash", hex64(hash)}, {"config", ctx.cfg.resolved_ini()}}.dump(1));
    } catch (const ConfigError& e) {
      verdict = e.what();
    }
  }
  if (world.any(!verdict.empty())) {
    if (world.is_root()) spdlog::error("{}", verdict);
    return app::kExitConfig;
  }

  const auto dataset = make_dataset(o.dataset);
  const std::vector<TrackEntry> tracks = dataset->tracks();  // sorted: the same on every rank
  if (tracks.empty()) MART_CONFIG_ERROR("no audio files found in '", o.dataset.input, "' (dataset.kind ", o.dataset.kind, ")");
  data::LabelSchema labels{tag_vocabulary(tracks), class_vocabulary(tracks)};
  const int64_t units = (static_cast<int64_t>(tracks.size()) + o.unit_tracks - 1) / o.unit_tracks;
  UnitProcessor proc(o, labels, hash, cover_group_ids(tracks));
  if (world.is_root()) {
    spdlog::info("{} tracks from the {} dataset in '{}': {} units of {} tracks; {} tags, {} classes", tracks.size(),
                 dataset->name(), o.dataset.input, units, o.unit_tracks, labels.tag_names.size(),
                 labels.class_names.size());
    const std::string empty = audio::empty_filter_warning(o.features);
    if (!empty.empty()) spdlog::warn("{}", empty);
  }

  const std::vector<int64_t> order = unit_order(tracks, o.unit_tracks, units, world.comm(), world.is_root());
  dist::WorkCounter counter(world.comm());  // hands out positions in `order`, one unit at a time
  const auto t0 = std::chrono::steady_clock::now();
  double my_audio = 0;
  int64_t my_units = 0, my_tracks = 0, skipped = 0;
  for (int64_t drawn = counter.next(); drawn < units; drawn = counter.next()) {
    const int64_t unit = order[static_cast<size_t>(drawn)];
    UnitRecord rec;
    if (load_record(o.output, unit, o.features, &rec)) {
      ++skipped;
      continue;
    }
    rec = proc.process(unit, tracks, unit * o.unit_tracks);
    save_record(o.output, rec);
    failpoint("preprocess.unit_done");
    my_audio += rec.audio_seconds;
    my_tracks += rec.tracks + static_cast<int64_t>(rec.failures.size());
    ++my_units;
    if (world.is_root()) {
      // Units are handed out one counter value at a time, so the value drawn is the job's progress
      // (the ETA assumes the units left are as long as the mean so far; they are shorter).
      const double s = seconds_since(t0);
      const double started = static_cast<double>(drawn + 1);
      // x real time: seconds of audio per second of wall time (rank 0's; the job's is about
      // that times the ranks).
      spdlog::info("{}/{} units started, unit {} done; rank 0 did {} tracks at {:.1f}x real time; ETA {:.0f} s",
                   drawn + 1, units, unit,
                   my_tracks, my_audio / s, s / started * (static_cast<double>(units) - started));
    }
  }
  world.barrier();
  const double secs = seconds_since(t0);
  // Peak memory per rank: it must not grow with the corpus (tracks stream through).
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  const auto rss = world.all_gather(static_cast<uint64_t>(usage.ru_maxrss));
  if (world.is_root()) {
    std::string per_rank;
    for (size_t r = 0; r < rss.size(); ++r) per_rank += (r ? ", " : "") + std::to_string(rss[r] / 1024) + " MiB";
    spdlog::info("peak memory per rank: {}", per_rank);
  }
  spdlog::debug("rank {} processed {} units ({} skipped as finished) in {:.1f} s", world.rank(), my_units, skipped, secs);

  int code = app::kExitOk;
  if (world.is_root()) {
    data::Manifest m;
    m.features = o.features;
    m.preprocess_config = ctx.cfg.resolved_ini();
    m.preprocess_hash = hash;
    m.labels = labels;
    double audio = 0;
    for (int64_t u = 0; u < units; ++u) {
      UnitRecord r;
      MART_CHECK(load_record(o.output, u, o.features, &r), "unit ", u, " has no finished record after the barrier");
      if (!r.shard.empty()) m.shards.push_back({r.shard, r.tracks, r.frames, r.digest.bytes, r.digest.fnv1a64});
      m.failures.insert(m.failures.end(), r.failures.begin(), r.failures.end());
      audio += r.audio_seconds;
    }
    data::write_manifest(o.output + "/manifest.json", m);
    const double fail = static_cast<double>(m.failures.size()) / static_cast<double>(tracks.size());
    spdlog::info("wrote {}/manifest.json: {} shards, {} tracks, {:.2f} h of audio, {} failures; {:.1f} s "
                 "({:.0f}x real time on {} ranks)",
                 o.output, m.shards.size(), m.total_tracks(), audio / 3600, m.failures.size(), secs,
                 audio / secs, world.size());
    if (fail > o.max_failures) {
      spdlog::error("{} of {} tracks failed ({:.1f}% > preprocess.max_failures {:.1f}%): see the failures in "
                    "manifest.json",
                    m.failures.size(), tracks.size(), 100 * fail, 100 * o.max_failures);
      code = app::kExitFailure;
    }
  }
  MPI_CHECK(MPI_Bcast(&code, 1, MPI_INT, 0, world.comm()));
  return code;
}

}  // namespace mart::preprocess
