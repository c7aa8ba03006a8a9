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
  explicit LogMelStats(const features::FeatureConfig& features) : features_(features) {}
  std::string name() const override { return "logmel_stats"; }
  int64_t dim() const override { return 2 * features_.n_mels; }
  int levels() const override { return 1; }
  void embed(const float* hier, int64_t crops, std::vector<std::vector<float>>* out) override {
    const int64_t frames = features_.frames, mels = features_.n_mels, clip = mels * frames,
                  hier_size = clip * features_.clips_total();
    out->assign(1, std::vector<float>(static_cast<size_t>(crops * dim())));
    for (int64_t crop = 0; crop < crops; ++crop) {
      const float* top = hier + crop * hier_size;  // level 0's clip: [n_mels, T]
      for (int64_t mel = 0; mel < mels; ++mel) {
        double sum = 0, sum_sq = 0;
        for (int64_t t = 0; t < frames; ++t)
          sum += top[mel * frames + t], sum_sq += double(top[mel * frames + t]) * top[mel * frames + t];
        const double mean = sum / frames;
        (*out)[0][static_cast<size_t>(crop * dim() + mel)] = static_cast<float>(mean);
        (*out)[0][static_cast<size_t>(crop * dim() + mels + mel)] =
            static_cast<float>(std::sqrt(std::max(0.0, sum_sq / frames - mean * mean)));
      }
    }
  }

 private:
  features::FeatureConfig features_;
};

// One shard's part of the set, as a self-contained blob for the gather.
struct Part {
  int64_t shard = 0;
  std::vector<TrackInfo> tracks;
  std::vector<float> crops;
  std::vector<std::vector<float>> track_level;
};

std::string pack(const std::vector<Part>& parts) {
  json blob = json::array();
  for (const auto& part : parts) {
    json tracks = json::array();
    for (const auto& track : part.tracks)
      tracks.push_back({track.id, track.split, track.tags, track.class_index, track.cover_group,
                        track.crop_end - track.crop_begin, track.shard_track});
    blob.push_back({{"shard", part.shard}, {"tracks", tracks}, {"crops", part.crops}, {"levels", part.track_level}});
  }
  const std::vector<uint8_t> cbor = json::to_cbor(blob);
  return std::string(cbor.begin(), cbor.end());
}

std::vector<Part> unpack(const std::string& bytes) {
  std::vector<Part> parts;
  const json blob = json::from_cbor(std::vector<uint8_t>(bytes.begin(), bytes.end()));
  for (const auto& packed : blob) {
    Part part;
    part.shard = packed.at("shard");
    for (const auto& row : packed.at("tracks")) {
      TrackInfo track;
      track.id = row[0];
      track.split = row[1];
      track.tags = row[2].get<std::vector<uint8_t>>();
      track.class_index = row[3];
      track.cover_group = row[4];
      track.crop_end = row[5];
      track.shard = part.shard;
      track.shard_track = row[6];
      part.tracks.push_back(track);
    }
    part.crops = packed.at("crops").get<std::vector<float>>();
    part.track_level = packed.at("levels").get<std::vector<std::vector<float>>>();
    parts.push_back(std::move(part));
  }
  return parts;
}

constexpr size_t kCropsPerForward = 8;

Part embed_shard(const data::ShardReader& reader, int64_t shard, FeatureSource& src) {
  const auto& features = reader.features();
  const int64_t hier = features.clips_total() * features.n_mels * features.frames, dim = src.dim();
  Part part;
  part.shard = shard;
  part.track_level.assign(static_cast<size_t>(src.levels()), {});
  std::vector<float> buf;
  std::vector<std::vector<float>> out;
  for (int64_t track = 0; track < reader.num_tracks(); ++track) {
    const auto& stored = reader.track(track);
    TrackInfo info{stored.id, stored.split, stored.tags, stored.class_index, stored.cover_group, 0, 0, shard, track};
    const std::vector<int64_t> starts = eval_crop_starts(reader.valid_starts(track), features.frames);
    if (starts.empty()) continue;  // shorter than one top clip: nothing to embed
    // A track's crops in batches of at most kCropsPerForward (a full-length song at the paper's
    // size would need GBs of activations at once). The batches depend on the track only, so every
    // float is the same whatever the rank count.
    const size_t crop_count = starts.size();
    std::vector<std::vector<float>> by_level(static_cast<size_t>(src.levels()));  // [crops, dim] per level
    for (size_t first = 0; first < crop_count; first += kCropsPerForward) {
      const size_t batch = std::min(kCropsPerForward, crop_count - first);
      buf.resize(batch * static_cast<size_t>(hier));
      for (size_t c = 0; c < batch; ++c)
        reader.crop_into(track, starts[first + c], 0, buf.data() + c * static_cast<size_t>(hier));
      src.embed(buf.data(), static_cast<int64_t>(batch), &out);
      for (size_t level = 0; level < out.size(); ++level)
        by_level[level].insert(by_level[level].end(), out[level].begin(), out[level].end());
    }
    info.crop_end = static_cast<int64_t>(crop_count);
    part.crops.insert(part.crops.end(), by_level[0].begin(), by_level[0].end());
    for (size_t level = 0; level < by_level.size(); ++level)
      for (int64_t component = 0; component < dim; ++component) {
        double sum = 0;
        for (size_t c = 0; c < crop_count; ++c)
          sum += by_level[level][c * static_cast<size_t>(dim) + static_cast<size_t>(component)];
        part.track_level[level].push_back(static_cast<float>(sum / static_cast<double>(crop_count)));
      }
    part.tracks.push_back(std::move(info));
  }
  return part;
}

}  // namespace

std::vector<int64_t> eval_crop_starts(int64_t valid_starts, int frames) {
  std::vector<int64_t> starts;
  for (int64_t k = 0; k < valid_starts; k += frames) starts.push_back(k);
  return starts;
}

std::unique_ptr<FeatureSource> logmel_stats_source(const features::FeatureConfig& features) {
  return std::make_unique<LogMelStats>(features);
}

EmbeddingSet extract(const std::string& data_dir, FeatureSource& source, const dist::World& world) {
  const data::Manifest manifest = data::load_manifest(data_dir + "/manifest.json");
  std::vector<Part> mine;
  // Progress on rank 0 (its shards are every world.size()-th, so its share is the job's pace).
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  const size_t stride = static_cast<size_t>(world.size());
  const size_t my_total = (manifest.shards.size() + stride - 1 - static_cast<size_t>(world.rank())) / stride;
  const double clip_s = static_cast<double>(manifest.features.clip_samples) / manifest.features.sample_rate;
  double audio_s = 0;
  for (size_t shard = static_cast<size_t>(world.rank()); shard < manifest.shards.size(); shard += stride) {
    data::ShardReader reader(data_dir + "/" + manifest.shards[shard].file, manifest.features);
    mine.push_back(embed_shard(reader, static_cast<int64_t>(shard), source));
    // Crops are the top clips side by side, so crops x clip length is the audio covered.
    audio_s += static_cast<double>(mine.back().crops.size()) / static_cast<double>(source.dim()) * clip_s;
    const auto now = std::chrono::steady_clock::now();
    if (world.is_root() && (now - last > std::chrono::seconds(20) || mine.size() == my_total)) {
      last = now;
      const double secs = std::chrono::duration<double>(now - start).count();
      const double left = secs / static_cast<double>(mine.size()) * static_cast<double>(my_total - mine.size());
      spdlog::info("{}: embedded {}/{} of rank 0's shards ({} ranks), {:.2f} h of audio at {:.0f}x real time; ETA {:.0f} s",
                   source.name(), mine.size(), my_total, world.size(), audio_s / 3600, audio_s / std::max(secs, 1e-9), left);
    }
  }
  std::vector<Part> all;
  for (const auto& bytes : world.all_gather_bytes(pack(mine)))
    for (auto& p : unpack(bytes)) all.push_back(std::move(p));
  std::sort(all.begin(), all.end(), [](const Part& a, const Part& b) { return a.shard < b.shard; });
  EmbeddingSet set;
  set.source = source.name();
  set.dim = source.dim();
  set.levels = source.levels();
  set.tag_names = manifest.labels.tag_names;
  set.class_names = manifest.labels.class_names;
  set.track_level.assign(static_cast<size_t>(set.levels), {});
  for (const auto& part : all) {
    size_t offset = 0;  // crops of this part before track i
    for (size_t index = 0; index < part.tracks.size(); ++index) {
      TrackInfo track = part.tracks[index];
      const size_t crops = static_cast<size_t>(track.crop_end), dim = static_cast<size_t>(set.dim);
      track.crop_begin = set.num_crops();
      track.crop_end = track.crop_begin + static_cast<int64_t>(crops);
      set.crops.insert(set.crops.end(), part.crops.begin() + static_cast<std::ptrdiff_t>(offset * dim),
                     part.crops.begin() + static_cast<std::ptrdiff_t>((offset + crops) * dim));
      for (size_t level = 0; level < set.track_level.size(); ++level)
        set.track_level[level].insert(set.track_level[level].end(),
                                      part.track_level[level].begin() + static_cast<std::ptrdiff_t>(index * dim),
                                      part.track_level[level].begin() + static_cast<std::ptrdiff_t>((index + 1) * dim));
      offset += crops;
      set.tracks.push_back(std::move(track));
    }
  }
  return set;
}

}  // namespace mart::eval

namespace mart::eval {

namespace {
void write_embeddings_to(const std::string& tmp, const EmbeddingSet& set) {
  namespace h5 = data::h5;
  h5::Lock lock;
  h5::File file = h5::create_file(tmp);  // the 1.10 format: checksummed metadata
  if (!file) MART_FAIL("cannot create it: ", h5_error_string());
  constexpr auto sum = h5::Checksum::kFletcher32;  // a damaged chunk fails the read on reuse
  std::vector<std::string> ids, splits;
  std::vector<int32_t> cls;
  std::vector<int64_t> cover, offsets{0}, shard, shard_track;
  std::vector<uint8_t> tags;
  for (const auto& track : set.tracks) {
    ids.push_back(track.id);
    splits.push_back(track.split);
    cls.push_back(track.class_index);
    cover.push_back(track.cover_group);
    offsets.push_back(track.crop_end);
    shard.push_back(track.shard);
    shard_track.push_back(track.shard_track);
    tags.insert(tags.end(), track.tags.begin(), track.tags.end());
  }
  const auto rows = static_cast<hsize_t>(set.tracks.size()), dim = static_cast<hsize_t>(set.dim);
  for (const char* g : {"tracks", "labels", "crops"}) h5::create_group(file.get(), g);
  h5::write_strings(file.get(), "tracks/id", ids);
  h5::write_strings(file.get(), "tracks/split", splits);
  h5::write_array(file.get(), "tracks/shard", shard, {}, sum);
  h5::write_array(file.get(), "tracks/shard_track", shard_track, {}, sum);
  h5::write_array(file.get(), "labels/class", cls, {}, sum);
  h5::write_array(file.get(), "labels/cover_group", cover, {}, sum);
  if (!set.tag_names.empty())
    h5::write_array(file.get(), "labels/tags", tags, {rows, static_cast<hsize_t>(set.tag_names.size())}, sum);
  h5::write_strings(file.get(), "labels/tag_names", set.tag_names);
  h5::write_strings(file.get(), "labels/class_names", set.class_names);
  h5::write_array(file.get(), "crops/level_0", set.crops, {static_cast<hsize_t>(set.num_crops()), dim}, sum);
  h5::write_array(file.get(), "crops/offsets", offsets, {}, sum);
  for (size_t l = 0; l < set.track_level.size(); ++l)
    h5::write_array(file.get(), "level_" + std::to_string(l), set.track_level[l], {rows, dim}, sum);
  h5::write_attr(file.get(), "source", set.source);
  h5::write_attr(file.get(), "identity", set.identity);
  h5::write_attr(file.get(), "dim", static_cast<int64_t>(set.dim));
  h5::write_attr(file.get(), "levels", static_cast<int64_t>(set.levels));
  H5_CHECK(H5Fflush(file.get(), H5F_SCOPE_GLOBAL));
}
}  // namespace

void write_embeddings(const std::string& path, const EmbeddingSet& set) {
  const std::string tmp = path + ".tmp";
  errno = 0;
  try {
    write_embeddings_to(tmp, set);
    fsync_file(tmp);  // a rerun reuses this file: it must not be renamed into place before its data is on disk
  } catch (const std::exception& error) {
    std::remove(tmp.c_str());  // no half file; a complete one at `path` is untouched
    std::string reason = io_reason(error.what());
    if (reason.empty() && errno) reason = std::strerror(errno);
    MART_OUTPUT_ERROR("cannot write embeddings '", tmp, "': ", reason.empty() ? std::string(error.what()) : reason,
                      kOutputFix);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    MART_OUTPUT_ERROR("cannot rename '", tmp, "' to '", path, "': ", std::strerror(errno), kOutputFix);
}

namespace {
EmbeddingSet read_embeddings_from(const std::string& path) {
  namespace h5 = data::h5;
  h5::Lock lock;
  h5::File file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (file.get() < 0) MART_CONFIG_ERROR("cannot open embeddings '", path, "'");
  EmbeddingSet set;
  set.source = h5::read_attr_string(file.get(), "source");
  set.identity = H5Aexists(file.get(), "identity") > 0 ? h5::read_attr_string(file.get(), "identity") : "";
  set.dim = h5::read_attr_int(file.get(), "dim");
  set.levels = static_cast<int>(h5::read_attr_int(file.get(), "levels"));
  set.tag_names = h5::read_strings(file.get(), "labels/tag_names");
  set.class_names = h5::read_strings(file.get(), "labels/class_names");
  const auto ids = h5::read_strings(file.get(), "tracks/id"), splits = h5::read_strings(file.get(), "tracks/split");
  const auto cls = h5::read_array<int32_t>(file.get(), "labels/class");
  const auto cover = h5::read_array<int64_t>(file.get(), "labels/cover_group");
  const auto offsets = h5::read_array<int64_t>(file.get(), "crops/offsets");
  std::vector<int64_t> shard(ids.size(), -1), shard_track(ids.size(), -1);  // absent in older files
  if (H5Lexists(file.get(), "tracks/shard", H5P_DEFAULT) > 0) {
    shard = h5::read_array<int64_t>(file.get(), "tracks/shard");
    shard_track = h5::read_array<int64_t>(file.get(), "tracks/shard_track");
  }
  std::vector<uint8_t> tags;
  if (!set.tag_names.empty()) tags = h5::read_array<uint8_t>(file.get(), "labels/tags");
  const size_t tag_count = set.tag_names.size();
  for (size_t track = 0; track < ids.size(); ++track) {
    TrackInfo info{ids[track], splits[track], {}, cls[track], cover[track], offsets[track], offsets[track + 1],
                   shard[track], shard_track[track]};
    if (tag_count)
      info.tags.assign(tags.begin() + static_cast<std::ptrdiff_t>(track * tag_count),
                       tags.begin() + static_cast<std::ptrdiff_t>((track + 1) * tag_count));
    set.tracks.push_back(std::move(info));
  }
  set.crops = h5::read_array<float>(file.get(), "crops/level_0");
  for (int l = 0; l < set.levels; ++l)
    set.track_level.push_back(h5::read_array<float>(file.get(), "level_" + std::to_string(l)));
  return set;
}
}  // namespace

EmbeddingSet read_embeddings(const std::string& path) {
  try {
    return read_embeddings_from(path);
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& error) {
    // A file this run wrote whose bytes changed since (a chunk fails its Fletcher-32 checksum).
    MART_CONFIG_ERROR("embeddings '", path, "' are damaged: ", error.what(),
                      ". Fix: delete that file (or pass --eval.force true) and rerun: mart-eval recomputes them");
  }
}

std::string embeddings_identity(const std::string& path) {
  namespace h5 = data::h5;
  h5::Lock lock;
  h5::File file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
  if (file.get() < 0)
    MART_CONFIG_ERROR("cannot open embeddings '", path, "' as HDF5: a damaged file (delete it, or --eval.force true) ",
                      "or, on NFS / Lustre, HDF5's file locking (set HDF5_USE_FILE_LOCKING=FALSE)");
  return H5Aexists(file.get(), "identity") > 0 ? h5::read_attr_string(file.get(), "identity") : "";
}

}  // namespace mart::eval
