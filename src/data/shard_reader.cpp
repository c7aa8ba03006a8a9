#include <algorithm>
#include <sstream>

#include "mart/core/error.h"
#include "mart/core/h5_check.h"
#include "mart/core/hash.h"
#include "mart/data/h5.h"
#include "mart/data/half.h"
#include "mart/data/shard.h"
#include "shard_internal.h"

namespace mart::data {

namespace {

// "a=1;b=2" -> the keys whose values differ, as "a: stored 1, expected 3".
std::string describe_differences(const std::string& stored, const std::string& expected) {
  auto split = [](const std::string& s) {
    std::vector<std::pair<std::string, std::string>> kv;
    std::istringstream in(s);
    std::string item;
    while (std::getline(in, item, ';')) {
      const size_t eq = item.find('=');
      kv.emplace_back(item.substr(0, eq), eq == std::string::npos ? "" : item.substr(eq + 1));
    }
    return kv;
  };
  const auto a = split(stored), b = split(expected);
  std::ostringstream os;
  for (const auto& [key, value] : b) {
    std::string have = "(missing)";
    for (const auto& [k2, v2] : a)
      if (k2 == key) have = v2;
    if (have != value) os << "\n  " << key << ": shard has " << have << ", expected " << value;
  }
  return os.str();
}

// Crops are random rows of whole chunks' worth of data, rarely read twice: without a chunk cache
// HDF5 reads the selected rows of each chunk straight into our buffer (one pread per chunk)
// instead of reading whole chunks into its cache and copying them out (measured 10-15% faster).
h5::Dataset open_mel_uncached(hid_t file, const std::string& path) {
  h5::Lock lock;
  h5::PropList dapl(H5_CHECK(H5Pcreate(H5P_DATASET_ACCESS)));
  H5_CHECK(H5Pset_chunk_cache(dapl.get(), 0, 0, H5D_CHUNK_CACHE_W0_DEFAULT));
  hid_t id = H5Dopen2(file, path.c_str(), dapl.get());
  if (id < 0) MART_FAIL("HDF5: cannot open dataset '", path, "': ", h5_error_string());
  return h5::Dataset(id);
}

// out[m * T + t] = src[t * row_stride + m]: [frame, mel] rows into a [mel, t] clip. Blocks of 8
// frames keep 8 read streams and 32-byte writes, instead of one write per cache line.
void transpose_frames(const float* src, int64_t row_stride, int64_t T, int64_t n_mels, float* out) {
  constexpr int64_t kBlock = 8;
  for (int64_t t0 = 0; t0 < T; t0 += kBlock) {
    const int64_t t1 = std::min(T, t0 + kBlock);
    for (int64_t m = 0; m < n_mels; ++m)
      for (int64_t t = t0; t < t1; ++t) out[m * T + t] = src[t * row_stride + m];
  }
}

// A read that failed inside a complete shard: its bytes changed after it was written (a bad disk,
// a copy gone wrong). ShardDamaged is a ConfigError: the input is bad, and the message says how
// to find and rewrite every damaged shard.
[[noreturn]] void damaged(const std::string& path, const std::string& dataset, const std::string& why,
                          const std::string& where = "") {
  throw ShardDamaged(mart::detail::concat(
      "shard '", path, "' is damaged: reading ", dataset, where, " failed (", why,
      "). Fix: mart-preprocess --preprocess.verify (same options) lists the damaged shards; "
      "--preprocess.resume rewrites them."));
}

[[noreturn]] void version_error(const std::string& path, int64_t version) {
  MART_CONFIG_ERROR("shard '", path, "' has format version ", version, ", this build of mart reads ",
                    kShardFormatVersion,
                    ". Fix: rerun mart-preprocess with this build (--force), or use the mart "
                    "build that wrote it.");
}

[[noreturn]] void features_error(const std::string& path, const features::FeatureConfig& stored,
                                 const features::FeatureConfig& expected) {
  MART_CONFIG_ERROR("shard '", path, "' was made with different feature parameters (hash ",
                    hex64(stored.hash()), ", expected ", hex64(expected.hash()), "):",
                    describe_differences(stored.canonical(), expected.canonical()),
                    "\nFix: rerun mart-preprocess with this config (--force to rebuild the "
                    "output folder), or use the config the shards were made with.");
}

h5::File open_file(const std::string& path) {
  h5::Lock lock;
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0)
    MART_CONFIG_ERROR("cannot open shard '", path, "': ", h5_error_string(),
                      ". Fix: rerun mart-preprocess (--resume rewrites missing or broken shards).");
  return h5::File(f);
}

// The format checks shared by the reader and is_complete(); throws ConfigError.
features::FeatureConfig check_header(hid_t f, const std::string& path) {
  h5::Lock lock;
  if (!h5::has_attr(f, "mart_format") ||
      h5::read_attr_string(f, "mart_format") != detail::kFormatName)
    MART_CONFIG_ERROR("'", path, "' is not a mart shard (no mart_format attribute)");
  const int64_t version = h5::read_attr_int(f, "format_version");
  if (version != kShardFormatVersion) version_error(path, version);
  if (!h5::has_attr(f, "complete") || h5::read_attr_int(f, "complete") != 1)
    MART_CONFIG_ERROR("shard '", path, "' is incomplete (its writer did not finish). Fix: rerun "
                      "mart-preprocess --resume.");
  const features::FeatureConfig stored = detail::read_feature_attrs(f);
  // The stored hash guards against parameters edited after the fact or a changed canonical form.
  if (h5::read_attr_string(f, "feature_hash") != hex64(stored.hash()))
    MART_CONFIG_ERROR("shard '", path, "': feature_hash does not match its own parameters; the "
                      "file was altered. Fix: rerun mart-preprocess.");
  return stored;
}

}  // namespace

struct ShardReader::Impl {
  std::string path;
  features::FeatureConfig cfg;
  LabelSchema labels;
  uint64_t config_hash = 0;
  std::vector<int> levels;  // stored
  h5::File file;
  std::vector<std::vector<h5::Dataset>> mel;          // [view][stored level index]
  std::vector<std::vector<int64_t>> offsets;          // [stored level index][tracks + 1]
  std::vector<ShardTrack> tracks;
  int cqt_bins = 0;                  // features.cqt: the /cqt group's columns
  std::vector<int64_t> cqt_offsets;  // [tracks + 1]

  size_t level_index(int level) const {
    for (size_t i = 0; i < levels.size(); ++i)
      if (levels[i] == level) return i;
    MART_FAIL("shard '", path, "' does not store level ", level, " (stored: the ",
              cfg.levels_share_frames() ? "finest only, fixed window policy" : "all", ")");
  }
  void load_metadata();
  void load_levels();
  void load_cqt();
  void check_track(int64_t t) const {
    MART_CHECK(t >= 0 && t < static_cast<int64_t>(tracks.size()), "track ", t, " outside [0, ",
               tracks.size(), ") in shard '", path, "'");
  }
  // A crop start and view the reader can serve, or an error naming them and the shard.
  void check_crop(int64_t track, int64_t k, int view, int64_t starts) const {
    MART_CHECK(k >= 0 && k < starts, "crop start ", k, " outside [0, ", starts, ") for track ", track,
               " of shard '", path, "'");
    MART_CHECK(view >= 0 && view <= cfg.views, "view ", view, " outside [0, ", cfg.views, "]");
  }
  // Rows first, first + stride, ... (`rows` of them) of a stored level as raw halves; `track` names
  // the track in errors.
  void read_rows(int view, size_t li, int64_t first, int64_t rows, int64_t track, std::vector<uint16_t>& out,
                 int64_t stride = 1) const;
};

void ShardReader::Impl::load_metadata() {
  const hid_t f = file.get();
  const auto ids = h5::read_strings(f, "/tracks/id");
  const auto paths = h5::read_strings(f, "/tracks/path");
  const auto splits = h5::read_strings(f, "/tracks/split");
  const auto samples = h5::read_array<int64_t>(f, "/tracks/samples");
  const auto durations = h5::read_array<double>(f, "/tracks/duration");
  const auto tags = h5::read_array<uint8_t>(f, "/labels/tags");
  const auto classes = h5::read_array<int32_t>(f, "/labels/class");
  const auto cover = h5::read_array<int64_t>(f, "/labels/cover_group");
  labels.tag_names = h5::read_strings(f, "/labels/tag_names");
  labels.class_names = h5::read_strings(f, "/labels/class_names");
  const size_t n = ids.size(), n_tags = labels.tag_names.size();
  MART_CHECK(static_cast<int64_t>(n) == h5::read_attr_int(f, "track_count") && paths.size() == n &&
                 splits.size() == n && samples.size() == n && durations.size() == n &&
                 tags.size() == n * n_tags && classes.size() == n && cover.size() == n,
             "shard '", path, "': per-track datasets disagree on the track count");
  tracks.resize(n);
  for (size_t i = 0; i < n; ++i) {
    ShardTrack& t = tracks[i];
    t.id = ids[i];
    t.path = paths[i];
    t.split = splits[i];
    t.samples = samples[i];
    t.duration_s = durations[i];
    t.tags.assign(tags.begin() + static_cast<std::ptrdiff_t>(i * n_tags),
                  tags.begin() + static_cast<std::ptrdiff_t>((i + 1) * n_tags));
    t.class_index = classes[i];
    t.cover_group = cover[i];
  }
}

void ShardReader::Impl::load_levels() {
  h5::Lock lock;
  const hid_t f = file.get();
  h5::Datatype half = h5::half_type();
  const size_t n = tracks.size();
  for (int v = 0; v <= cfg.views; ++v) {
    mel.emplace_back();
    for (size_t i = 0; i < levels.size(); ++i) {
      const int level = levels[i];
      auto offs = h5::read_array<int64_t>(f, detail::offsets_path(v, level));
      h5::Dataset d = open_mel_uncached(f, detail::mel_path(v, level));
      const auto shape = h5::dims(d.get());
      h5::Datatype stored(H5_CHECK(H5Dget_type(d.get())));
      MART_CHECK(H5Tequal(stored.get(), half.get()) > 0, "shard '", path, "': ",
                 detail::mel_path(v, level), " is not IEEE float16");
      MART_CHECK(shape.size() == 2 && shape[1] == static_cast<hsize_t>(cfg.n_mels) &&
                     offs.size() == n + 1 && offs.front() == 0 &&
                     offs.back() == static_cast<int64_t>(shape[0]),
                 "shard '", path, "': ", detail::level_group(v, level),
                 " has offsets that do not match its mel rows");
      for (size_t t = 0; t < n; ++t) {
        // Every view of a track has the clean audio's frames, at the length its samples give.
        MART_CHECK(offs[t + 1] - offs[t] == track_frames(cfg, level, tracks[t].samples),
                   "shard '", path, "': track ", t, " view ", v, " level ", level,
                   " has the wrong number of frames");
      }
      if (v == 0) offsets.push_back(std::move(offs));
      else MART_CHECK(offs == offsets[i], "shard '", path, "': views disagree on track offsets");
      mel.back().push_back(std::move(d));
    }
  }
}

void ShardReader::Impl::load_cqt() {
  h5::Lock lock;
  const hid_t f = file.get();
  if (!h5::exists(f, "/cqt/data")) return;
  h5::Dataset d(H5_CHECK(H5Dopen2(f, "/cqt/data", H5P_DEFAULT)));
  const auto shape = h5::dims(d.get());
  cqt_offsets = h5::read_array<int64_t>(f, "/cqt/offsets");
  MART_CHECK(shape.size() == 2 && shape[1] > 0 && cqt_offsets.size() == tracks.size() + 1 && cqt_offsets.front() == 0 &&
                 cqt_offsets.back() == static_cast<int64_t>(shape[0]),
             "shard '", path, "': /cqt/offsets do not match /cqt/data's rows");
  for (size_t t = 0; t < tracks.size(); ++t)
    MART_CHECK(cqt_offsets[t + 1] >= cqt_offsets[t], "shard '", path, "': /cqt/offsets decrease at track ", t);
  cqt_bins = static_cast<int>(shape[1]);
}

void ShardReader::Impl::read_rows(int view, size_t li, int64_t first, int64_t rows, int64_t track,
                                  std::vector<uint16_t>& out, int64_t stride) const {
  h5::Lock lock;
  const hid_t d = mel[static_cast<size_t>(view)][li].get();
  const hsize_t cols = static_cast<hsize_t>(cfg.n_mels);
  out.resize(static_cast<size_t>(rows) * cols);
  if (rows == 0) return;
  h5::Dataspace file_space(H5_CHECK(H5Dget_space(d)));
  const hsize_t offset[2] = {static_cast<hsize_t>(first), 0};
  const hsize_t count[2] = {static_cast<hsize_t>(rows), cols};
  const hsize_t step[2] = {static_cast<hsize_t>(stride), 1};
  H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset, step, count, nullptr));
  h5::Dataspace mem_space(H5_CHECK(H5Screate_simple(2, count, nullptr)));
  // Read the halves as they are (no HDF5 soft conversion, which is slow); we convert in C++.
  h5::Datatype half = h5::half_type();
  if (H5Dread(d, half.get(), mem_space.get(), file_space.get(), H5P_DEFAULT, out.data()) < 0)
    damaged(path, detail::mel_path(view, levels[li]), h5_error_string(),
            " rows [" + std::to_string(first) + ", " + std::to_string(first + rows) + ") of track '" +
                tracks[static_cast<size_t>(track)].id + "'");
}

ShardReader::ShardReader(const std::string& path, const features::FeatureConfig& expected)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.path = path;
  h5::Lock lock;
  s.file = open_file(path);
  const features::FeatureConfig stored = check_header(s.file.get(), path);
  if (stored.hash() != expected.hash()) features_error(path, stored, expected);
  s.cfg = stored;
  s.levels = stored_levels(stored);
  const std::string hash = h5::read_attr_string(s.file.get(), "config_hash");
  s.config_hash = std::stoull(hash, nullptr, 16);
  try {
    s.load_metadata();
    s.load_levels();
    s.load_cqt();
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    damaged(path, "its track table", e.what());
  }
}

ShardReader::~ShardReader() {
  if (!impl_) return;
  h5::Lock lock;  // close the datasets and the file as one step under the lock
  impl_.reset();
}
ShardReader::ShardReader(ShardReader&&) noexcept = default;
ShardReader& ShardReader::operator=(ShardReader&&) noexcept = default;

features::FeatureConfig ShardReader::stored_features(const std::string& path) {
  h5::Lock lock;
  h5::File f = open_file(path);
  return check_header(f.get(), path);
}

bool ShardReader::is_complete(const std::string& path) {
  try {
    return is_complete(path, stored_features(path));  // then the full structural checks of the reader
  } catch (...) {
    return false;
  }
}

bool ShardReader::is_complete(const std::string& path, const features::FeatureConfig& expected) {
  try {
    ShardReader r(path, expected);
    return true;
  } catch (...) {
    return false;
  }
}

const std::string& ShardReader::path() const { return impl_->path; }
const features::FeatureConfig& ShardReader::features() const { return impl_->cfg; }
const LabelSchema& ShardReader::labels() const { return impl_->labels; }
uint64_t ShardReader::config_hash() const { return impl_->config_hash; }
int64_t ShardReader::num_tracks() const { return static_cast<int64_t>(impl_->tracks.size()); }

const ShardTrack& ShardReader::track(int64_t i) const {
  impl_->check_track(i);
  return impl_->tracks[static_cast<size_t>(i)];
}

int64_t ShardReader::frames(int64_t track, int level) const {
  impl_->check_track(track);
  const auto& o = impl_->offsets[impl_->level_index(level)];
  return o[static_cast<size_t>(track) + 1] - o[static_cast<size_t>(track)];
}

int64_t ShardReader::valid_starts(int64_t track) const {
  std::vector<int64_t> f;
  for (int level : impl_->levels) f.push_back(frames(track, level));
  return valid_top_starts(impl_->cfg, f);
}

std::vector<float> ShardReader::crop(int64_t track, int64_t k, int view) const {
  const features::FeatureConfig& c = impl_->cfg;
  std::vector<float> out(static_cast<size_t>(c.clips_total() * c.n_mels * c.frames));
  crop_into(track, k, view, out.data());
  return out;
}

void ShardReader::crop_into(int64_t track, int64_t k, int view, float* out) const {
  const Impl& s = *impl_;
  const features::FeatureConfig& c = s.cfg;
  s.check_crop(track, k, view, valid_starts(track));
  // One read per stored level (the rows the top clip spans), converted to float once, then every
  // clip's frames are gathered from it (with the fixed policy the coarse levels reuse the rows).
  std::vector<std::vector<float>> rows(s.levels.size());
  std::vector<int64_t> first(s.levels.size());
  std::vector<uint16_t> halves;
  for (size_t i = 0; i < s.levels.size(); ++i) {
    const int64_t per_top = c.clips_at(s.levels[i]);
    first[i] = k * per_top;
    s.read_rows(view, i, s.offsets[i][static_cast<size_t>(track)] + first[i], per_top * c.frames, track,
                halves);
    rows[i].resize(halves.size());
    halves_to_floats(halves.data(), rows[i].data(), halves.size());
  }
  const int64_t T = c.frames, n_mels = c.n_mels;
  float* clip_out = out;
  for (int level = 0; level < c.levels; ++level) {
    for (int64_t clip = 0; clip < c.clips_at(level); ++clip, clip_out += n_mels * T) {
      // A clip's frames are evenly spaced in its source: frame(t) = frame(0) + t * step.
      const CropSource src = crop_source(c, k, level, clip, 0);
      const size_t li = s.level_index(src.stored_level);
      const int64_t step = crop_source(c, k, level, clip, 1).frame - src.frame;
      const float* base = rows[li].data() + (src.frame - first[li]) * n_mels;
      transpose_frames(base, step * n_mels, T, n_mels, clip_out);
    }
  }
}

void ShardReader::top_clip_into(int64_t track, int64_t k, int view, float* out) const {
  const Impl& s = *impl_;
  const features::FeatureConfig& c = s.cfg;
  s.check_crop(track, k, view, valid_starts(track));
  // Only the T rows of level 0's clip, read as a strided hyperslab of its source level (with the
  // fixed policy, every M^(N-1)-th row of the finest level): the same bytes as crop_into's first
  // clip without reading or converting the finer levels.
  const CropSource src = crop_source(c, k, 0, 0, 0);
  const int64_t step = crop_source(c, k, 0, 0, 1).frame - src.frame;
  const size_t li = s.level_index(src.stored_level);
  std::vector<uint16_t> halves;
  s.read_rows(view, li, s.offsets[li][static_cast<size_t>(track)] + src.frame, c.frames, track, halves, step);
  std::vector<float> rows(halves.size());
  halves_to_floats(halves.data(), rows.data(), halves.size());
  transpose_frames(rows.data(), c.n_mels, c.frames, c.n_mels, out);
}

std::vector<float> ShardReader::track_level(int64_t track, int view, int level) const {
  const Impl& s = *impl_;
  s.check_track(track);
  MART_CHECK(view >= 0 && view <= s.cfg.views, "view ", view, " outside [0, ", s.cfg.views, "]");
  const size_t li = s.level_index(level);
  std::vector<uint16_t> halves;
  s.read_rows(view, li, s.offsets[li][static_cast<size_t>(track)], frames(track, level), track, halves);
  std::vector<float> out(halves.size());
  halves_to_floats(halves.data(), out.data(), halves.size());
  return out;
}

}  // namespace mart::data

namespace mart::data {

void ShardReader::verify_all() const {
  const Impl& s = *impl_;
  std::vector<uint16_t> halves;
  for (int v = 0; v <= s.cfg.views; ++v)
    for (size_t li = 0; li < s.levels.size(); ++li)
      for (size_t t = 0; t < s.tracks.size(); ++t)
        s.read_rows(v, li, s.offsets[li][t], s.offsets[li][t + 1] - s.offsets[li][t], static_cast<int64_t>(t), halves);
  for (size_t t = 0; s.cqt_bins > 0 && t < s.tracks.size(); ++t) track_cqt(static_cast<int64_t>(t));
}

int ShardReader::cqt_bins() const { return impl_->cqt_bins; }

std::vector<float> ShardReader::track_cqt(int64_t track) const {
  const Impl& s = *impl_;
  s.check_track(track);
  MART_CHECK(s.cqt_bins > 0, "shard '", s.path, "' stores no constant-Q (preprocess with --features.cqt true)");
  const auto first = static_cast<hsize_t>(s.cqt_offsets[static_cast<size_t>(track)]);
  const auto rows = static_cast<hsize_t>(s.cqt_offsets[static_cast<size_t>(track) + 1]) - first;
  const hsize_t cols = static_cast<hsize_t>(s.cqt_bins);
  std::vector<float> out(static_cast<size_t>(rows * cols));
  if (rows == 0) return out;
  h5::Lock lock;
  h5::Dataset d(H5_CHECK(H5Dopen2(s.file.get(), "/cqt/data", H5P_DEFAULT)));
  h5::Dataspace file_space(H5_CHECK(H5Dget_space(d.get())));
  const hsize_t offset[2] = {first, 0}, count[2] = {rows, cols};
  H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset, nullptr, count, nullptr));
  h5::Dataspace mem_space(H5_CHECK(H5Screate_simple(2, count, nullptr)));
  if (H5Dread(d.get(), H5T_NATIVE_FLOAT, mem_space.get(), file_space.get(), H5P_DEFAULT, out.data()) < 0)
    damaged(s.path, "/cqt/data", h5_error_string(), " rows of track '" + s.tracks[static_cast<size_t>(track)].id + "'");
  return out;
}

}  // namespace mart::data
