#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/h5_check.h"
#include "mart/core/hash.h"
#include "mart/data/h5.h"
#include "mart/data/half.h"
#include "mart/data/shard.h"
#include "shard_internal.h"

namespace mart::data {

namespace {

// Rows per chunk of a mel dataset: large enough that a top clip (T * M^(N-1) finest rows, 1024
// by default) touches a few chunks, small enough that the last, partly filled chunk wastes little.
constexpr hsize_t kChunkRows = 512;

h5::Dataset create_mel_dataset(hid_t file, const std::string& path, int n_mels, bool checksum) {
  h5::Lock lock;
  const hsize_t start[2] = {0, static_cast<hsize_t>(n_mels)};
  const hsize_t max[2] = {H5S_UNLIMITED, static_cast<hsize_t>(n_mels)};
  const hsize_t chunk[2] = {kChunkRows, static_cast<hsize_t>(n_mels)};
  h5::Dataspace space(H5_CHECK(H5Screate_simple(2, start, max)));
  h5::PropList dcpl(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)));
  // Fletcher-32 per chunk: a damaged chunk fails the read, naming the shard (never trains on garbage).
  if (checksum) h5::set_checksum(dcpl.get(), {chunk[0], chunk[1]});
  else H5_CHECK(H5Pset_chunk(dcpl.get(), 2, chunk));
  H5_CHECK(H5Pset_obj_track_times(dcpl.get(), 0));  // same data, same bytes
  h5::create_group(file, path.substr(0, path.rfind('/')));  // the level's group and its parents
  h5::Datatype half = h5::half_type();
  return h5::Dataset(H5_CHECK(
      H5Dcreate2(file, path.c_str(), half.get(), space.get(), H5P_DEFAULT, dcpl.get(), H5P_DEFAULT)));
}

// Appends `rows` rows of halves to a 2-d extendible dataset that holds `have` rows.
void append_rows(hid_t dataset, hsize_t have, hsize_t rows, int n_mels, const uint16_t* halves) {
  if (rows == 0) return;
  h5::Lock lock;
  const hsize_t cols = static_cast<hsize_t>(n_mels);
  const hsize_t new_dims[2] = {have + rows, cols};
  H5_CHECK(H5Dset_extent(dataset, new_dims));
  h5::Dataspace file_space(H5_CHECK(H5Dget_space(dataset)));
  const hsize_t offset[2] = {have, 0};
  const hsize_t count[2] = {rows, cols};
  H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, offset, nullptr, count, nullptr));
  h5::Dataspace mem_space(H5_CHECK(H5Screate_simple(2, count, nullptr)));
  h5::Datatype half = h5::half_type();  // same as the file's type: HDF5 copies bytes, no conversion
  H5_CHECK(H5Dwrite(dataset, half.get(), mem_space.get(), file_space.get(), H5P_DEFAULT, halves));
}

// A failed write to the shard is an output error (disk full, read-only folder, lost mount):
// fatal for the stage, never a problem of the track being written.
[[noreturn]] void write_failed(const std::string& path, const std::exception& e) {
  std::string reason = io_reason(e.what());
  if (reason.empty() && (errno == ENOSPC || errno == EFBIG || errno == EROFS || errno == EDQUOT || errno == EIO))
    reason = std::strerror(errno);
  if (reason.empty()) reason = e.what();
  MART_OUTPUT_ERROR("cannot write shard '", path, "': ", reason, kOutputFix);
}

bool valid_split(const std::string& s) {
  return s.empty() || s == "train" || s == "valid" || s == "test";
}

}  // namespace

struct ShardWriter::Impl {
  std::string path, tmp;
  features::FeatureConfig cfg;
  LabelSchema labels;
  uint64_t config_hash = 0;
  bool checksum = true;
  std::vector<int> levels;  // stored levels
  h5::File file;
  std::vector<std::vector<h5::Dataset>> mel;     // [view][stored level index]
  std::vector<std::vector<int64_t>> offsets;     // [stored level index][tracks + 1], all views
  std::vector<std::string> ids, paths, splits;
  std::vector<int64_t> samples, cover;
  std::vector<double> durations;
  std::vector<int32_t> classes;
  std::vector<uint8_t> tags;  // [tracks, n_tags]
  std::vector<uint16_t> halves;
  int cqt_bins = 0;                     // 0: no constant-Q stored
  std::string cqt_about;                // its parameters, as the root attribute cqt_params
  std::vector<float> cqt;               // [rows, cqt_bins], all tracks (small: kept until finish)
  std::vector<int64_t> cqt_offsets{0};  // [tracks + 1] once every track has its block
  bool finished = false;
  bool broken = false;  // an append failed part-way: the datasets may disagree, never finish

  int views() const { return cfg.views + 1; }
  void check_track(const TrackMeta& meta, const TrackMels& mels) const;
  void write_metadata();
};

ShardWriter::ShardWriter(std::string path, const features::FeatureConfig& cfg, LabelSchema labels,
                         uint64_t config_hash, bool checksum)
    : impl_(std::make_unique<Impl>()) {
  cfg.validate();
  Impl& s = *impl_;
  s.path = std::move(path);
  s.tmp = s.path + ".tmp";
  s.cfg = cfg;
  s.labels = std::move(labels);
  s.config_hash = config_hash;
  s.checksum = checksum;
  s.levels = stored_levels(cfg);
  s.offsets.assign(s.levels.size(), std::vector<int64_t>{0});

  h5::Lock lock;
  errno = 0;
  s.file = h5::create_file(s.tmp);
  if (!s.file) {
    const std::string reason = h5_io_reason();
    MART_OUTPUT_ERROR("cannot create shard '", s.tmp, "': ",
                      reason.empty() ? (errno ? std::strerror(errno) : h5_error_string()) : reason, kOutputFix);
  }
  const hid_t f = s.file.get();
  try {
    h5::write_attr(f, "mart_format", std::string(detail::kFormatName));
    h5::write_attr(f, "format_version", kShardFormatVersion);
    detail::write_feature_attrs(f, cfg);
    h5::write_attr(f, "config_hash", hex64(config_hash));
    for (int v = 0; v < s.views(); ++v) {
      s.mel.emplace_back();
      for (int level : s.levels)
        s.mel.back().push_back(create_mel_dataset(f, detail::mel_path(v, level), cfg.n_mels, checksum));
    }
  } catch (const Error& e) {
    s.mel.clear();
    s.file.reset();
    std::remove(s.tmp.c_str());
    write_failed(s.tmp, e);
  }
}

ShardWriter::~ShardWriter() {
  if (!impl_ || impl_->finished) return;
  impl_->mel.clear();
  impl_->file.reset();
  std::remove(impl_->tmp.c_str());  // a half-written shard must never look like a result
}

void ShardWriter::Impl::check_track(const TrackMeta& meta, const TrackMels& mels) const {
  MART_CHECK(!finished, "add_track after finish() on shard '", path, "'");
  MART_CHECK(!meta.id.empty(), "track with an empty id in shard '", path, "'");
  MART_CHECK(valid_split(meta.split), "track '", meta.id, "': split '", meta.split,
             "' is not train, valid, test or empty");
  MART_CHECK(meta.tags.empty() || meta.tags.size() == labels.tag_names.size(), "track '", meta.id,
             "' has ", meta.tags.size(), " tag values for ", labels.tag_names.size(), " tags");
  for (uint8_t t : meta.tags) MART_CHECK(t <= 1, "track '", meta.id, "': tags must be 0 or 1");
  MART_CHECK(meta.class_index >= -1 &&
                 meta.class_index < static_cast<int64_t>(labels.class_names.size()),
             "track '", meta.id, "': class ", meta.class_index, " outside [-1, ",
             labels.class_names.size(), ")");
  MART_CHECK(meta.cover_group >= -1, "track '", meta.id, "': cover group must be >= -1");
  MART_CHECK(static_cast<int>(mels.size()) == views(), "track '", meta.id, "': ", mels.size(),
             " views given, the config stores ", views(), " (clean + ", cfg.views, ")");
  for (int v = 0; v < views(); ++v) {
    MART_CHECK(mels[v].size() == levels.size(), "track '", meta.id, "' view ", v, ": ",
               mels[v].size(), " levels given, the shard stores ", levels.size());
    for (size_t i = 0; i < levels.size(); ++i) {
      // Augmentations keep the length, so every view has the clean audio's frame count.
      const int64_t want = track_frames(cfg, levels[i], meta.samples);
      MART_CHECK(mels[v][i].frames == want, "track '", meta.id, "' view ", v, " level ",
                 levels[i], ": ", mels[v][i].frames, " frames, expected 1 + ", meta.samples,
                 " / ", cfg.hop(levels[i]), " = ", want);
      MART_CHECK(mels[v][i].data != nullptr || want == 0, "track '", meta.id, "': null mel");
    }
  }
}

void ShardWriter::add_track(const TrackMeta& meta, const TrackMels& mels) {
  Impl& s = *impl_;
  MART_CHECK(!s.broken, "shard '", s.path, "': an earlier add_track failed while writing");
  s.check_track(meta, mels);
  s.broken = true;  // until every level of every view is appended
  try {
    for (size_t i = 0; i < s.levels.size(); ++i) {
      const int64_t have = s.offsets[i].back();
      const int64_t rows = mels[0][i].frames;
      for (int v = 0; v < s.views(); ++v) {
        const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(s.cfg.n_mels);
        s.halves.resize(n);
        floats_to_halves(mels[v][i].data, s.halves.data(), n);
        errno = 0;
        append_rows(s.mel[v][i].get(), static_cast<hsize_t>(have), static_cast<hsize_t>(rows),
                    s.cfg.n_mels, s.halves.data());
      }
      s.offsets[i].push_back(have + rows);
    }
  } catch (const Error& e) {
    write_failed(s.tmp, e);
  }
  s.broken = false;
  s.ids.push_back(meta.id);
  s.paths.push_back(meta.path);
  s.splits.push_back(meta.split);
  s.samples.push_back(meta.samples);
  s.durations.push_back(meta.duration_s(s.cfg.sample_rate));
  s.classes.push_back(meta.class_index);
  s.cover.push_back(meta.cover_group);
  if (meta.tags.empty())
    s.tags.insert(s.tags.end(), s.labels.tag_names.size(), 0);
  else
    s.tags.insert(s.tags.end(), meta.tags.begin(), meta.tags.end());
}

void ShardWriter::add_track(const TrackMeta& meta,
                            const std::vector<std::vector<std::vector<float>>>& mels) {
  TrackMels views;
  for (const auto& levels : mels) {
    views.emplace_back();
    for (const auto& m : levels) {
      MART_CHECK(m.size() % static_cast<size_t>(impl_->cfg.n_mels) == 0, "track '", meta.id,
                 "': a mel buffer of ", m.size(), " floats is not a whole number of ",
                 impl_->cfg.n_mels, "-band frames");
      views.back().push_back(
          {m.data(), static_cast<int64_t>(m.size() / static_cast<size_t>(impl_->cfg.n_mels))});
    }
  }
  add_track(meta, views);
}

void ShardWriter::store_cqt(int bins, const std::string& about) {
  Impl& s = *impl_;
  MART_CHECK(bins > 0, "store_cqt: ", bins, " bins");
  MART_CHECK(s.ids.empty() && s.cqt_bins == 0, "store_cqt must come once, before the first add_track");
  s.cqt_bins = bins;
  s.cqt_about = about;
}

void ShardWriter::add_cqt(const std::vector<float>& cqt) {
  Impl& s = *impl_;
  MART_CHECK(s.cqt_bins > 0, "add_cqt without store_cqt on shard '", s.path, "'");
  MART_CHECK(s.cqt_offsets.size() == s.ids.size(), "add_cqt must follow its track's add_track (shard '", s.path,
             "': ", s.ids.size(), " tracks, ", s.cqt_offsets.size() - 1, " constant-Q blocks)");
  MART_CHECK(cqt.size() % static_cast<size_t>(s.cqt_bins) == 0, "a constant-Q block of ", cqt.size(),
             " floats is not a whole number of ", s.cqt_bins, "-bin rows");
  s.cqt.insert(s.cqt.end(), cqt.begin(), cqt.end());
  s.cqt_offsets.push_back(static_cast<int64_t>(s.cqt.size() / static_cast<size_t>(s.cqt_bins)));
}

void ShardWriter::Impl::write_metadata() {
  h5::Lock lock;
  const hid_t f = file.get();
  // The numbers a crop depends on are checked too.
  const auto sum = checksum ? h5::Checksum::kFletcher32 : h5::Checksum::kNone;
  for (int v = 0; v < views(); ++v)
    for (size_t i = 0; i < levels.size(); ++i)
      h5::write_array(f, detail::offsets_path(v, levels[i]), offsets[i], {}, sum);
  h5::create_group(f, "/tracks");
  h5::write_strings(f, "/tracks/id", ids);
  h5::write_strings(f, "/tracks/path", paths);
  h5::write_strings(f, "/tracks/split", splits);
  h5::write_array(f, "/tracks/samples", samples, {}, sum);
  h5::write_array(f, "/tracks/duration", durations, {}, sum);
  h5::create_group(f, "/labels");
  const hsize_t n_tags = labels.tag_names.size();
  h5::write_array(f, "/labels/tags", tags, {static_cast<hsize_t>(ids.size()), n_tags}, sum);
  h5::write_strings(f, "/labels/tag_names", labels.tag_names);
  h5::write_array(f, "/labels/class", classes, {}, sum);
  h5::write_strings(f, "/labels/class_names", labels.class_names);
  h5::write_array(f, "/labels/cover_group", cover, {}, sum);
  if (cqt_bins > 0) {
    MART_CHECK(cqt_offsets.size() == ids.size() + 1, "shard '", path, "': ", ids.size(), " tracks but ",
               cqt_offsets.size() - 1, " constant-Q blocks");
    h5::create_group(f, "/cqt");
    h5::write_array(f, "/cqt/data", cqt, {static_cast<hsize_t>(cqt_offsets.back()), static_cast<hsize_t>(cqt_bins)},
                    sum);
    h5::write_array(f, "/cqt/offsets", cqt_offsets, {}, sum);
    h5::write_attr(f, "cqt_params", cqt_about);
  }
  h5::write_attr(f, "track_count", static_cast<int64_t>(ids.size()));
  // Written last: a reader that finds it knows every dataset above is whole.
  h5::write_attr(f, "complete", int64_t{1});
}

void ShardWriter::finish() {
  Impl& s = *impl_;
  MART_CHECK(!s.finished, "finish() called twice on shard '", s.path, "'");
  MART_CHECK(!s.broken, "shard '", s.path, "': an add_track failed while writing; not finishing");
  try {
    errno = 0;
    s.write_metadata();
    h5::Lock lock;
    s.mel.clear();
    H5_CHECK(H5Fflush(s.file.get(), H5F_SCOPE_GLOBAL));
    s.file.reset();
  } catch (const Error& e) {
    s.broken = true;
    write_failed(s.tmp, e);
  }
  fsync_file(s.tmp);  // the data must be on disk before the rename makes it look finished
  std::error_code ec;
  std::filesystem::rename(s.tmp, s.path, ec);
  if (ec) MART_OUTPUT_ERROR("cannot rename '", s.tmp, "' to '", s.path, "': ", ec.message(), kOutputFix);
  s.finished = true;
}

int64_t ShardWriter::tracks() const { return static_cast<int64_t>(impl_->ids.size()); }
int64_t ShardWriter::frames() const { return impl_->offsets.back().back(); }
const std::string& ShardWriter::path() const { return impl_->path; }
std::string ShardWriter::temp_path() const { return impl_->tmp; }

}  // namespace mart::data
