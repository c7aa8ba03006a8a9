// mart-embed's inputs and outputs: the list of files, and the writers of embeddings.h5, the CSV
// files and the per-file .npy arrays. No torch here.
#include <algorithm>
#include <charconv>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "writers.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/h5_check.h"
#include "mart/core/text.h"
#include "mart/data/h5.h"

namespace fs = std::filesystem;

namespace mart::embed {

// ---- Inputs -----------------------------------------------------------------------------------

namespace {

bool has_audio_extension(const fs::path& path) {
  static const std::set<std::string> exts{".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3",
                                          ".au",  ".snd",  ".aif",  ".aiff", ".aifc"};
  std::string extension = path.extension().string();
  std::transform(extension.begin(), extension.end(), extension.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return exts.count(extension) > 0;
}

}  // namespace

std::vector<std::string> list_inputs(const std::string& input, const std::string& input_list) {
  if (input.empty() && input_list.empty())
    MART_CONFIG_ERROR("nothing to embed: give --input (an audio file or a folder of audio) or --input_list "
                      "(a text file with one audio path per line)");
  std::vector<std::string> files;
  if (!input.empty()) {
    std::error_code error;
    if (!fs::exists(input, error))
      MART_CONFIG_ERROR("input '", input, "' does not exist: give an audio file or a folder of audio files");
    if (fs::is_directory(input, error)) {
      std::vector<std::string> found;
      for (const auto& entry : fs::recursive_directory_iterator(input, fs::directory_options::follow_directory_symlink))
        if (entry.is_regular_file() && has_audio_extension(entry.path())) found.push_back(entry.path().string());
      if (found.empty())
        MART_CONFIG_ERROR("input folder '", input, "' holds no audio files (searched recursively for wav, flac, ogg, ",
                          "opus, mp3, au, aiff): point --input at the folder that holds them");
      std::sort(found.begin(), found.end());
      files.insert(files.end(), found.begin(), found.end());
    } else {
      files.push_back(input);  // named explicitly: whatever its extension, decoding decides
    }
  }
  if (!input_list.empty()) {
    std::ifstream list(input_list);
    if (!list)
      MART_CONFIG_ERROR("input list '", input_list, "' cannot be read: give a text file with one audio path per line");
    const fs::path base = fs::path(input_list).parent_path();
    size_t listed = 0;
    for (std::string line; std::getline(list, line);) {
      line = trim(line);
      if (line.empty() || line[0] == '#') continue;
      const fs::path path(line);
      files.push_back(path.is_absolute() || base.empty() ? path.string() : (base / path).string());
      ++listed;
    }
    if (listed == 0) MART_CONFIG_ERROR("input list '", input_list, "' names no files (one path per line; '#' starts a comment)");
  }
  return files;
}

// ---- .npy -------------------------------------------------------------------------------------

namespace {

template <typename T>
void write_npy_impl(const std::string& path, const std::vector<T>& values, const std::vector<int64_t>& shape,
                    const char* descr) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float32 or float64");
  int64_t count = 1;
  std::string dims;  // "(3, 4)", "(3,)" or "()"
  for (size_t i = 0; i < shape.size(); ++i) count *= shape[i], dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  MART_CHECK(count == static_cast<int64_t>(values.size()), "npy '", path, "': shape holds ", count, " values, buffer ",
             values.size());
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  // Magic (6) + version (2) + length (2) + header, padded with spaces to a multiple of 64, '\n' last.
  const size_t total = (10 + header.size() + 1 + 63) / 64 * 64;
  header.append(total - 10 - header.size() - 1, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  const uint16_t len = static_cast<uint16_t>(header.size());
  out += static_cast<char>(len & 0xff);
  out += static_cast<char>(len >> 8);
  out += header;
  // x86 and ARM Linux are little-endian, which '<' declares; a big-endian host would need a swap.
  const uint16_t probe = 1;
  MART_CHECK(*reinterpret_cast<const uint8_t*>(&probe) == 1, "the .npy writer assumes a little-endian host");
  out.append(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T));
  write_file_atomic(path, out);
}

}  // namespace

void write_npy(const std::string& path, const std::vector<float>& values, const std::vector<int64_t>& shape) {
  write_npy_impl(path, values, shape, "<f4");
}
void write_npy(const std::string& path, const std::vector<double>& values, const std::vector<int64_t>& shape) {
  write_npy_impl(path, values, shape, "<f8");
}

// ---- Outputs (rank 0) -------------------------------------------------------------------------

namespace {

namespace h5 = data::h5;

// A dataset of rows that grows as files arrive: chunked, unlimited along the first axis.
class Rows {
 public:
  Rows() = default;
  Rows(hid_t loc, const std::string& path, hid_t type, hsize_t cols) : type_(type), cols_(cols) {
    h5::Lock lock;
    const int rank = cols ? 2 : 1;
    const hsize_t dims[2] = {0, cols}, maxdims[2] = {H5S_UNLIMITED, cols};
    // 32768 / cols rows per chunk (128 KiB of float32, 256 KiB of float64 timestamps): large enough for
    // fast appends, small enough that reading one file's rows touches little else.
    const hsize_t chunk[2] = {std::max<hsize_t>(64, (hsize_t{1} << 15) / std::max<hsize_t>(cols, 1)), cols};
    h5::Dataspace space(H5_CHECK(H5Screate_simple(rank, dims, maxdims)));
    h5::PropList plist(H5_CHECK(H5Pcreate(H5P_DATASET_CREATE)));
    H5_CHECK(H5Pset_chunk(plist.get(), rank, chunk));
    dataset_ =
        h5::Dataset(H5_CHECK(H5Dcreate2(loc, path.c_str(), type, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT)));
  }
  void append(const void* data, hsize_t rows) {
    if (rows == 0) return;
    h5::Lock lock;
    const int rank = cols_ ? 2 : 1;
    const hsize_t start[2] = {rows_, 0}, count[2] = {rows, cols_}, extent[2] = {rows_ + rows, cols_};
    H5_CHECK(H5Dset_extent(dataset_.get(), extent));
    h5::Dataspace file_space(H5_CHECK(H5Dget_space(dataset_.get())));
    H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr));
    h5::Dataspace mem(H5_CHECK(H5Screate_simple(rank, count, nullptr)));
    H5_CHECK(H5Dwrite(dataset_.get(), type_, mem.get(), file_space.get(), H5P_DEFAULT, data));
    rows_ += rows;
  }

 private:
  h5::Dataset dataset_;
  hid_t type_ = H5I_INVALID_HID;
  hsize_t cols_ = 0, rows_ = 0;
};

// embeddings.h5, written to a .tmp file and renamed when complete. Embeddings go to disk as they
// come; only the per-file scalars (path, duration, flags, offsets) stay in memory.
class H5Out : public EmbeddingWriter {
 public:
  H5Out(std::string path, const RunInfo& info) : path_(std::move(path)), info_(info) {
    try {
      create();
    } catch (...) {  // a full disk can fail H5Fcreate after it made the file: leave no .tmp behind
      level_.clear(), time_.clear(), scene_ = Rows();
      file_.reset();
      std::remove(tmp().c_str());
      throw;
    }
  }
  ~H5Out() override {
    if (file_) {  // not finished: an error on the way; leave no half file behind
      file_.reset();
      std::remove(tmp().c_str());
    }
  }
  void append(const FileEmbedding& embedding) override {
    try {
      append_rows(embedding);
    } catch (const Error& error) {  // a failed write is fatal, and named: never a failure of the input file
      const std::string reason = io_reason(error.what());
      MART_OUTPUT_ERROR("cannot write '", tmp(), "': ", reason.empty() ? std::string(error.what()) : reason,
                        kOutputFix);
    }
  }
  void append_rows(const FileEmbedding& embedding) {
    paths_.push_back(embedding.path);
    duration_.push_back(embedding.duration_s);
    padded_.push_back(embedding.padded ? 1 : 0);
    crops_.push_back(embedding.crops);
    scene_.append(embedding.scene.data(), 1);
    for (size_t level = 0; level < level_.size(); ++level) {
      const hsize_t rows = embedding.timestamp_ms[level].size();
      level_[level].append(embedding.level[level].data(), rows);
      time_[level].append(embedding.timestamp_ms[level].data(), rows);
      offsets_[level].push_back(offsets_[level].back() + static_cast<int64_t>(rows));
    }
  }
  void finish(const std::vector<Failure>& failures) override {
    h5::Lock lock;
    const hid_t file = file_.get();
    h5::write_strings(file, "files/path", paths_);
    h5::write_array(file, "files/duration_s", duration_);
    h5::write_array(file, "files/padded", padded_);
    h5::write_array(file, "files/crops", crops_);
    for (size_t l = 0; l < offsets_.size(); ++l)
      h5::write_array(file, "level_" + std::to_string(l) + "/offsets", offsets_[l]);
    std::vector<std::string> failed_paths, failed_reasons;
    for (const auto& failure : failures) failed_paths.push_back(failure.path), failed_reasons.push_back(failure.reason);
    h5::create_group(file, "failures");
    h5::write_strings(file, "failures/path", failed_paths);
    h5::write_strings(file, "failures/reason", failed_reasons);
    const auto& features = info_.features;
    h5::write_attr(file, "format", std::string("mart-embed"));
    h5::write_attr(file, "format_version", int64_t{1});
    h5::write_attr(file, "checkpoint", info_.checkpoint);
    h5::write_attr(file, "model_canonical", info_.model_canonical);
    h5::write_attr(file, "feature_canonical", features.canonical());
    h5::write_attr(file, "dim", info_.dim);
    h5::write_attr(file, "levels", int64_t{features.levels});
    h5::write_attr(file, "parts", int64_t{features.parts});
    h5::write_attr(file, "sample_rate", int64_t{features.sample_rate});
    h5::write_attr(file, "clip_samples", features.clip_samples);
    h5::write_attr(file, "crop_step_samples", info_.step * features.hop(0));
    H5_CHECK(H5Fflush(file, H5F_SCOPE_GLOBAL));  // a failed write surfaces here, not in a silent close
    file_.reset();
    fsync_file(tmp());  // on disk before the rename makes it look finished
    if (std::rename(tmp().c_str(), path_.c_str()) != 0)
      MART_OUTPUT_ERROR("cannot rename '", tmp(), "' to '", path_, "': ", std::strerror(errno), kOutputFix);
  }

 private:
  void create() {
    h5::Lock lock;
    file_ = h5::File(H5_CHECK(H5Fcreate(tmp().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)));
    const auto& features = info_.features;
    const hsize_t width = static_cast<hsize_t>(info_.dim);
    h5::create_group(file_.get(), "files");
    scene_ = Rows(file_.get(), "scene", H5T_NATIVE_FLOAT, width);
    for (int level = 0; level < features.levels; ++level) {
      const std::string name = "level_" + std::to_string(level);
      h5::Group group = h5::create_group(file_.get(), name);
      h5::write_attr(group.get(), "clip_ms",
                     static_cast<double>(features.level_samples(level)) / features.sample_rate * 1000.0);
      h5::write_attr(group.get(), "clips_per_crop", features.clips_at(level));
      level_.emplace_back(file_.get(), name + "/embedding", H5T_NATIVE_FLOAT, width);
      time_.emplace_back(file_.get(), name + "/timestamp_ms", H5T_NATIVE_DOUBLE, 0);
      offsets_.push_back({0});
    }
  }
  std::string tmp() const { return path_ + ".tmp"; }
  std::string path_;
  RunInfo info_;
  h5::File file_;
  Rows scene_;
  std::vector<Rows> level_, time_;
  std::vector<std::vector<int64_t>> offsets_;
  std::vector<std::string> paths_;
  std::vector<double> duration_;
  std::vector<uint8_t> padded_;
  std::vector<int64_t> crops_;
};

// Shortest text that reads back as the same float / double (std::to_chars), so CSV loses nothing.
template <typename T>
void put_number(std::string& s, T v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof(buf), v);
  s.append(buf, r.ptr);
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

// scene.csv (path,e0..) and level_<l>.csv (path,timestamp_ms,e0..), written to .tmp and renamed.
class CsvOut : public EmbeddingWriter {
 public:
  CsvOut(const std::string& dir, int levels, int64_t dim) : dim_(dim) {
    std::string header;
    for (int64_t d = 0; d < dim; ++d) header += ",e" + std::to_string(d);
    open(dir + "/scene.csv", "path" + header);
    for (int l = 0; l < levels; ++l) open(dir + "/level_" + std::to_string(l) + ".csv", "path,timestamp_ms" + header);
  }
  void append(const FileEmbedding& embedding) override {
    std::string line;
    const std::string path = csv_field(embedding.path);
    row(line, path, nullptr, embedding.scene.data());
    write(0, line);
    for (size_t level = 0; level < embedding.level.size(); ++level) {
      line.clear();
      for (size_t index = 0; index < embedding.timestamp_ms[level].size(); ++index)
        row(line, path, &embedding.timestamp_ms[level][index],
            embedding.level[level].data() + index * static_cast<size_t>(dim_));
      write(level + 1, line);
    }
  }
  void finish(const std::vector<Failure>&) override {
    for (size_t file_index = 0; file_index < files_.size(); ++file_index) {
      std::fflush(files_[file_index]);
      const bool ok = !std::ferror(files_[file_index]);
      std::fclose(files_[file_index]);
      if (!ok || std::rename((paths_[file_index] + ".tmp").c_str(), paths_[file_index].c_str()) != 0)
        MART_OUTPUT_ERROR("cannot write '", paths_[file_index], "': ", std::strerror(errno), kOutputFix);
    }
    files_.clear();
  }
  ~CsvOut() override {
    for (size_t i = 0; i < files_.size(); ++i) {
      std::fclose(files_[i]);
      std::remove((paths_[i] + ".tmp").c_str());
    }
  }

 private:
  void open(const std::string& path, const std::string& header) {
    FILE* file = std::fopen((path + ".tmp").c_str(), "w");
    if (!file) MART_FAIL("cannot create '", path, ".tmp'");
    files_.push_back(file);
    paths_.push_back(path);
    write(files_.size() - 1, header + "\n");
  }
  void row(std::string& line, const std::string& path, const double* timestamp, const float* values) const {
    line += path;
    if (timestamp) line += ',', put_number(line, *timestamp);
    for (int64_t d = 0; d < dim_; ++d) line += ',', put_number(line, values[d]);
    line += '\n';
  }
  void write(size_t i, const std::string& s) {
    if (std::fwrite(s.data(), 1, s.size(), files_[i]) != s.size())
      MART_OUTPUT_ERROR("cannot write '", paths_[i], ".tmp': ", std::strerror(errno), kOutputFix);
  }
  int64_t dim_;
  std::vector<FILE*> files_;
  std::vector<std::string> paths_;
};

}  // namespace

std::unique_ptr<EmbeddingWriter> make_h5_writer(const std::string& path, const RunInfo& info) {
  return std::make_unique<H5Out>(path, info);
}

std::unique_ptr<EmbeddingWriter> make_csv_writer(const std::string& dir, int levels, int64_t dim) {
  return std::make_unique<CsvOut>(dir, levels, dim);
}

// HEAR-style arrays per file under npy/: <NNNNNN>_<stem>.scene.npy [dim],
// .level_<l>.npy [rows, dim] and .level_<l>.timestamp_ms.npy [rows]; NNNNNN is the input index.
void write_file_npy(const std::string& dir, int64_t index, const FileEmbedding& embedding) {
  char num[16];
  std::snprintf(num, sizeof(num), "%06lld", static_cast<long long>(index));
  std::string stem = fs::path(embedding.path).stem().string();
  for (char& c : stem)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  const std::string base = dir + "/" + num + "_" + stem;
  const int64_t width = static_cast<int64_t>(embedding.scene.size());
  write_npy(base + ".scene.npy", embedding.scene, {width});
  for (size_t level = 0; level < embedding.level.size(); ++level) {
    const int64_t rows = static_cast<int64_t>(embedding.timestamp_ms[level].size());
    write_npy(base + ".level_" + std::to_string(level) + ".npy", embedding.level[level], {rows, width});
    write_npy(base + ".level_" + std::to_string(level) + ".timestamp_ms.npy", embedding.timestamp_ms[level], {rows});
  }
}

}  // namespace mart::embed
