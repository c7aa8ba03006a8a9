#include "mart/eval/embed.h"


#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/h5_check.h"
#include "mart/data/h5.h"
#include "mart/data/manifest.h"
#include "mart/data/shard.h"

using json = nlohmann::json;

namespace mart::eval {

namespace {

class LogMelStats : public FeatureSource {
 public:
  explicit LogMelStats(const features::FeatureConfig& f) : f_(f) {}
  std::string name() const override { return "logmel_stats"; }
  int64_t dim() const override { return 2 * f_.n_mels; }
  int levels() const override { return 1; }
  void embed(const float* hier, int64_t n, std::vector<std::vector<float>>* out) override {
    const int64_t T = f_.frames, F = f_.n_mels, clip = F * T, hier_size = clip * f_.clips_total();
    out->assign(1, std::vector<float>(static_cast<size_t>(n * dim())));
    for (int64_t i = 0; i < n; ++i) {
      const float* top = hier + i * hier_size;  // level 0's clip: [n_mels, T]
      for (int64_t m = 0; m < F; ++m) {
        double s = 0, s2 = 0;
        for (int64_t t = 0; t < T; ++t) s += top[m * T + t], s2 += double(top[m * T + t]) * top[m * T + t];
        const double mean = s / T;
        (*out)[0][static_cast<size_t>(i * dim() + m)] = static_cast<float>(mean);
        (*out)[0][static_cast<size_t>(i * dim() + F + m)] = static_cast<float>(std::sqrt(std::max(0.0, s2 / T - mean * mean)));
      }
    }
  }

 private:
  features::FeatureConfig f_;
};

// One shard's part of the set, as a self-contained blob for the gather.
struct Part {
  int64_t shard = 0;
  std::vector<TrackInfo> tracks;
  std::vector<float> crops;
  std::vector<std::vector<float>> track_level;
};

std::string pack(const std::vector<Part>& parts) {
  json j = json::array();
  for (const auto& p : parts) {
    json t = json::array();
    for (const auto& x : p.tracks)
      t.push_back({x.id, x.split, x.tags, x.class_index, x.cover_group, x.crop_end - x.crop_begin, x.shard_track});
    j.push_back({{"shard", p.shard}, {"tracks", t}, {"crops", p.crops}, {"levels", p.track_level}});
  }
  const std::vector<uint8_t> cbor = json::to_cbor(j);
  return std::string(cbor.begin(), cbor.end());
}

std::vector<Part> unpack(const std::string& bytes) {
  std::vector<Part> parts;
  const json j = json::from_cbor(std::vector<uint8_t>(bytes.begin(), bytes.end()));
  for (const auto& p : j) {
    Part part;
    part.shard = p.at("shard");
    for (const auto& t : p.at("tracks")) {
      TrackInfo x;
      x.id = t[0];
      x.split = t[1];
      x.tags = t[2].get<std::vector<uint8_t>>();
      x.class_index = t[3];
      x.cover_group = t[4];
      x.crop_end = t[5];
      x.shard = part.shard;
      x.shard_track = t[6];
      part.tracks.push_back(x);
    }
    part.crops = p.at("crops").get<std::vector<float>>();
    part.track_level = p.at("levels").get<std::vector<std::vector<float>>>();
    parts.push_back(std::move(part));
  }
  return parts;
}

constexpr size_t kCropsPerForward = 8;

Part embed_shard(const data::ShardReader& r, int64_t shard, FeatureSource& src) {
  const auto& f = r.features();
  const int64_t hier = f.clips_total() * f.n_mels * f.frames, dim = src.dim();
  Part p;
  p.shard = shard;
  p.track_level.assign(static_cast<size_t>(src.levels()), {});
  std::vector<float> buf;
  std::vector<std::vector<float>> out;
  for (int64_t t = 0; t < r.num_tracks(); ++t) {
    const auto& tr = r.track(t);
    TrackInfo info{tr.id, tr.split, tr.tags, tr.class_index, tr.cover_group, 0, 0, shard, t};
    const std::vector<int64_t> starts = eval_crop_starts(r.valid_starts(t), f.frames);
    if (starts.empty()) continue;  // shorter than one top clip: nothing to embed
    // A track's crops in batches of at most kCropsPerForward (a full-length song at the paper's
    // size would need GBs of activations at once). The batches depend on the track only, so every
    // float is the same whatever the rank count.
    const size_t nc = starts.size();
    std::vector<std::vector<float>> level(static_cast<size_t>(src.levels()));  // [crops, dim] per level
    for (size_t c0 = 0; c0 < nc; c0 += kCropsPerForward) {
      const size_t n = std::min(kCropsPerForward, nc - c0);
      buf.resize(n * static_cast<size_t>(hier));
      for (size_t c = 0; c < n; ++c) r.crop_into(t, starts[c0 + c], 0, buf.data() + c * static_cast<size_t>(hier));
      src.embed(buf.data(), static_cast<int64_t>(n), &out);
      for (size_t l = 0; l < out.size(); ++l) level[l].insert(level[l].end(), out[l].begin(), out[l].end());
    }
    info.crop_end = static_cast<int64_t>(nc);
    p.crops.insert(p.crops.end(), level[0].begin(), level[0].end());
    for (size_t l = 0; l < level.size(); ++l)
      for (int64_t d = 0; d < dim; ++d) {
        double s = 0;
        for (size_t c = 0; c < nc; ++c) s += level[l][c * static_cast<size_t>(dim) + static_cast<size_t>(d)];
        p.track_level[l].push_back(static_cast<float>(s / static_cast<double>(nc)));
      }
    p.tracks.push_back(std::move(info));
  }
  return p;
}

}  // namespace

std::vector<int64_t> eval_crop_starts(int64_t valid_starts, int frames) {
  std::vector<int64_t> starts;
  for (int64_t k = 0; k < valid_starts; k += frames) starts.push_back(k);
  return starts;
}

std::unique_ptr<FeatureSource> logmel_stats_source(const features::FeatureConfig& f) {
  return std::make_unique<LogMelStats>(f);
}

EmbeddingSet extract(const std::string& data_dir, FeatureSource& source, const dist::World& world) {
  const data::Manifest m = data::load_manifest(data_dir + "/manifest.json");
  std::vector<Part> mine;
  // Progress on rank 0 (its shards are every world.size()-th, so its share is the job's pace).
  const auto t0 = std::chrono::steady_clock::now();
  auto last = t0;
  const size_t stride = static_cast<size_t>(world.size());
  const size_t my_total = (m.shards.size() + stride - 1 - static_cast<size_t>(world.rank())) / stride;
  const double clip_s = static_cast<double>(m.features.clip_samples) / m.features.sample_rate;
  double audio_s = 0;
  for (size_t s = static_cast<size_t>(world.rank()); s < m.shards.size(); s += stride) {
    data::ShardReader r(data_dir + "/" + m.shards[s].file, m.features);
    mine.push_back(embed_shard(r, static_cast<int64_t>(s), source));
    // Crops are the top clips side by side, so crops x clip length is the audio covered.
    audio_s += static_cast<double>(mine.back().crops.size()) / static_cast<double>(source.dim()) * clip_s;
    const auto now = std::chrono::steady_clock::now();
    if (world.is_root() && (now - last > std::chrono::seconds(20) || mine.size() == my_total)) {
      last = now;
      const double secs = std::chrono::duration<double>(now - t0).count();
      const double left = secs / static_cast<double>(mine.size()) * static_cast<double>(my_total - mine.size());
      spdlog::info("{}: embedded {}/{} of rank 0's shards ({} ranks), {:.2f} h of audio at {:.0f}x real time; ETA {:.0f} s",
                   source.name(), mine.size(), my_total, world.size(), audio_s / 3600, audio_s / std::max(secs, 1e-9), left);
    }
  }
  std::vector<Part> all;
  for (const auto& bytes : world.all_gather_bytes(pack(mine)))
    for (auto& p : unpack(bytes)) all.push_back(std::move(p));
  std::sort(all.begin(), all.end(), [](const Part& a, const Part& b) { return a.shard < b.shard; });
  EmbeddingSet e;
  e.source = source.name();
  e.dim = source.dim();
  e.levels = source.levels();
  e.tag_names = m.labels.tag_names;
  e.class_names = m.labels.class_names;
  e.track_level.assign(static_cast<size_t>(e.levels), {});
  for (const auto& p : all) {
    size_t offset = 0;  // crops of this part before track i
    for (size_t i = 0; i < p.tracks.size(); ++i) {
      TrackInfo t = p.tracks[i];
      const size_t n = static_cast<size_t>(t.crop_end), d = static_cast<size_t>(e.dim);
      t.crop_begin = e.num_crops();
      t.crop_end = t.crop_begin + static_cast<int64_t>(n);
      e.crops.insert(e.crops.end(), p.crops.begin() + static_cast<std::ptrdiff_t>(offset * d),
                     p.crops.begin() + static_cast<std::ptrdiff_t>((offset + n) * d));
      for (size_t l = 0; l < e.track_level.size(); ++l)
        e.track_level[l].insert(e.track_level[l].end(), p.track_level[l].begin() + static_cast<std::ptrdiff_t>(i * d),
                                p.track_level[l].begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
      offset += n;
      e.tracks.push_back(std::move(t));
    }
  }
  return e;
}

}  // namespace mart::eval

namespace mart::eval {

namespace {
void write_embeddings_to(const std::string& tmp, const EmbeddingSet& e) {
  namespace h5 = data::h5;
  h5::Lock lock;
  h5::File f = h5::create_file(tmp);  // the 1.10 format: checksummed metadata
  if (!f) MART_FAIL("cannot create it: ", h5_error_string());
  constexpr auto sum = h5::Checksum::kFletcher32;  // a damaged chunk fails the read on reuse
  std::vector<std::string> ids, splits;
  std::vector<int32_t> cls;
  std::vector<int64_t> cover, offsets{0}, shard, shard_track;
  std::vector<uint8_t> tags;
  for (const auto& t : e.tracks) {
    ids.push_back(t.id);
    splits.push_back(t.split);
    cls.push_back(t.class_index);
    cover.push_back(t.cover_group);
    offsets.push_back(t.crop_end);
    shard.push_back(t.shard);
    shard_track.push_back(t.shard_track);
    tags.insert(tags.end(), t.tags.begin(), t.tags.end());
  }
  const auto n = static_cast<hsize_t>(e.tracks.size()), d = static_cast<hsize_t>(e.dim);
  for (const char* g : {"tracks", "labels", "crops"}) h5::create_group(f.get(), g);
  h5::write_strings(f.get(), "tracks/id", ids);
  h5::write_strings(f.get(), "tracks/split", splits);
  h5::write_array(f.get(), "tracks/shard", shard, {}, sum);
  h5::write_array(f.get(), "tracks/shard_track", shard_track, {}, sum);
  h5::write_array(f.get(), "labels/class", cls, {}, sum);
  h5::write_array(f.get(), "labels/cover_group", cover, {}, sum);
  if (!e.tag_names.empty()) h5::write_array(f.get(), "labels/tags", tags, {n, static_cast<hsize_t>(e.tag_names.size())}, sum);
  h5::write_strings(f.get(), "labels/tag_names", e.tag_names);
  h5::write_strings(f.get(), "labels/class_names", e.class_names);
  h5::write_array(f.get(), "crops/level_0", e.crops, {static_cast<hsize_t>(e.num_crops()), d}, sum);
  h5::write_array(f.get(), "crops/offsets", offsets, {}, sum);
  for (size_t l = 0; l < e.track_level.size(); ++l)
    h5::write_array(f.get(), "level_" + std::to_string(l), e.track_level[l], {n, d}, sum);
  h5::write_attr(f.get(), "source", e.source);
  h5::write_attr(f.get(), "identity", e.identity);
  h5::write_attr(f.get(), "dim", static_cast<int64_t>(e.dim));
  h5::write_attr(f.get(), "levels", static_cast<int64_t>(e.levels));
  H5_CHECK(H5Fflush(f.get(), H5F_SCOPE_GLOBAL));
}
}  // namespace

void write_embeddings(const std::string& path, const EmbeddingSet& e) {
  const std::string tmp = path + ".tmp";
  errno = 0;
  try {
    write_embeddings_to(tmp, e);
    fsync_file(tmp);  // a rerun reuses this file: it must not be renamed into place before its data is on disk
  } catch (const std::exception& x) {
    std::remove(tmp.c_str());  // no half file; a complete one at `path` is untouched
    std::string reason = io_reason(x.what());
    if (reason.empty() && errno) reason = std::strerror(errno);
    MART_OUTPUT_ERROR("cannot write embeddings '", tmp, "': ", reason.empty() ? std::string(x.what()) : reason, kOutputFix);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    MART_OUTPUT_ERROR("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno), kOutputFix);
}

namespace {
EmbeddingSet read_embeddings_from(const std::string& path) {
  namespace h5 = data::h5;
  h5::Lock lock;
  h5::File f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (f.get() < 0) MART_CONFIG_ERROR("cannot open embeddings '", path, "'");
  EmbeddingSet e;
  e.source = h5::read_attr_string(f.get(), "source");
  e.identity = H5Aexists(f.get(), "identity") > 0 ? h5::read_attr_string(f.get(), "identity") : "";
  e.dim = h5::read_attr_int(f.get(), "dim");
  e.levels = static_cast<int>(h5::read_attr_int(f.get(), "levels"));
  e.tag_names = h5::read_strings(f.get(), "labels/tag_names");
  e.class_names = h5::read_strings(f.get(), "labels/class_names");
  const auto ids = h5::read_strings(f.get(), "tracks/id"), splits = h5::read_strings(f.get(), "tracks/split");
  const auto cls = h5::read_array<int32_t>(f.get(), "labels/class");
  const auto cover = h5::read_array<int64_t>(f.get(), "labels/cover_group");
  const auto offsets = h5::read_array<int64_t>(f.get(), "crops/offsets");
  std::vector<int64_t> shard(ids.size(), -1), shard_track(ids.size(), -1);  // absent in older files
  if (H5Lexists(f.get(), "tracks/shard", H5P_DEFAULT) > 0) {
    shard = h5::read_array<int64_t>(f.get(), "tracks/shard");
    shard_track = h5::read_array<int64_t>(f.get(), "tracks/shard_track");
  }
  std::vector<uint8_t> tags;
  if (!e.tag_names.empty()) tags = h5::read_array<uint8_t>(f.get(), "labels/tags");
  const size_t nt = e.tag_names.size();
  for (size_t i = 0; i < ids.size(); ++i) {
    TrackInfo t{ids[i], splits[i], {}, cls[i], cover[i], offsets[i], offsets[i + 1], shard[i], shard_track[i]};
    if (nt) t.tags.assign(tags.begin() + static_cast<std::ptrdiff_t>(i * nt), tags.begin() + static_cast<std::ptrdiff_t>((i + 1) * nt));
    e.tracks.push_back(std::move(t));
  }
  e.crops = h5::read_array<float>(f.get(), "crops/level_0");
  for (int l = 0; l < e.levels; ++l) e.track_level.push_back(h5::read_array<float>(f.get(), "level_" + std::to_string(l)));
  return e;
}
}  // namespace

EmbeddingSet read_embeddings(const std::string& path) {
  try {
    return read_embeddings_from(path);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    // A file this run wrote whose bytes changed since (a chunk fails its Fletcher-32 checksum).
    MART_CONFIG_ERROR("embeddings '", path, "' are damaged: ", e.what(),
                      ". Fix: delete that file (or pass --eval.force true) and rerun: mart-eval recomputes them");
  }
}

std::string embeddings_identity(const std::string& path) {
  namespace h5 = data::h5;
  h5::Lock lock;
  h5::File f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (f.get() < 0)
    MART_CONFIG_ERROR("cannot open embeddings '", path, "' as HDF5: a damaged file (delete it, or --eval.force true) ",
                      "or, on NFS / Lustre, HDF5's file locking (set HDF5_USE_FILE_LOCKING=FALSE)");
  return H5Aexists(f.get(), "identity") > 0 ? h5::read_attr_string(f.get(), "identity") : "";
}

}  // namespace mart::eval
