#include "mart/eval/embed_audio.h"

#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>

#include "mart/audio/decode.h"
#include "mart/audio/logmel.h"
#include "mart/core/error.h"
#include "mart/core/fs.h"
#include "mart/core/h5_check.h"
#include "mart/data/h5.h"
#include "mart/data/shard.h"
#include "mart/model/mart_model.h"
#include "mart/run/checkpoint_info.h"

namespace fs = std::filesystem;

namespace mart::eval {

// ---- Geometry ---------------------------------------------------------------------------------

std::vector<int64_t> cover_starts(const audio::FeatureConfig& f, int64_t samples, int64_t step) {
  MART_CHECK(step >= 1, "crop step must be at least one top-level hop, got ", step);
  std::vector<int64_t> frames;
  for (int level : data::stored_levels(f)) frames.push_back(data::track_frames(f, level, samples));
  const int64_t valid = data::valid_top_starts(f, frames);
  MART_CHECK(valid > 0, "a track of ", samples, " samples is shorter than one top clip (", f.clip_samples,
             "): pad it first");
  std::vector<int64_t> starts;
  for (int64_t k = 0; k < valid; k += step) starts.push_back(k);
  // The last valid start reaches the end of the track (to within one top-level hop): without it
  // the tail after the last regular crop would have no embedding.
  if (starts.back() != valid - 1) starts.push_back(valid - 1);
  return starts;
}

double clip_center_ms(const audio::FeatureConfig& f, int64_t k, int level, int64_t clip) {
  const double sample = static_cast<double>(k * f.hop(0)) + (static_cast<double>(clip) + 0.5) * static_cast<double>(f.level_samples(level));
  return sample / f.sample_rate * 1000.0;
}

int64_t crop_step(const audio::FeatureConfig& f, double hop_ms) {
  if (hop_ms <= 0) return f.frames;  // a top clip spans T top-level hops
  const double hops = hop_ms / 1000.0 * f.sample_rate / static_cast<double>(f.hop(0));
  return std::max<int64_t>(1, std::llround(hops));
}

void cut_crop(const audio::FeatureConfig& f, const std::vector<std::vector<float>>& mels, int64_t k, float* out) {
  const std::vector<int> stored = data::stored_levels(f);
  MART_CHECK(mels.size() == stored.size(), "expected the log-mels of ", stored.size(), " stored levels, got ", mels.size());
  const int64_t T = f.frames, F = f.n_mels;
  float* clip_out = out;
  for (int level = 0; level < f.levels; ++level) {
    for (int64_t clip = 0; clip < f.clips_at(level); ++clip, clip_out += F * T) {
      for (int64_t t = 0; t < T; ++t) {
        const data::CropSource src = data::crop_source(f, k, level, clip, t);
        const size_t i = static_cast<size_t>(std::find(stored.begin(), stored.end(), src.stored_level) - stored.begin());
        MART_CHECK(i < stored.size() && (src.frame + 1) * F <= static_cast<int64_t>(mels[i].size()),
                   "crop start ", k, " reads frame ", src.frame, " of level ", src.stored_level, " outside the track");
        // The track is [frames, n_mels] (a shard's layout); a clip is [n_mels, T] (the model's input).
        const float* row = mels[i].data() + src.frame * F;
        for (int64_t m = 0; m < F; ++m) clip_out[m * T + t] = row[m];
      }
    }
  }
}

// ---- One file ---------------------------------------------------------------------------------

struct AudioEmbedder::Impl {
  Impl(const std::string& ckpt, const model::ModelOptions& m, const audio::FeatureConfig& feat, int64_t st, int64_t b)
      : f(feat), step(st), batch(b), model(nullptr), mels(feat) {
    torch::manual_seed(1);  // every parameter is overwritten by the checkpoint; this only fixes the order of things
    model = model::MartModel(m);
    model::load_weights(*model, ckpt + "/model.pt", torch::kCPU);  // mart-embed runs on CPU
    model->eval();  // BatchNorm on running statistics: a crop's embedding does not depend on its batch
  }
  audio::FeatureConfig f;
  int64_t step, batch;
  model::MartModel model;
  audio::TrackLogMels mels;  // exactly mart-preprocess's log-mels
};

AudioEmbedder::AudioEmbedder(const std::string& checkpoint_dir, const model::ModelOptions& m,
                             const audio::FeatureConfig& f, int64_t step, int64_t batch_crops)
    : impl_(std::make_unique<Impl>(checkpoint_dir, m, f, step, batch_crops)) {
  MART_CHECK(step >= 1 && batch_crops >= 1, "crop step and batch must be positive");
}
AudioEmbedder::~AudioEmbedder() = default;

int64_t AudioEmbedder::dim() const { return impl_->model->options.dim; }

FileEmbedding AudioEmbedder::embed_file(const std::string& path) {
  audio::DecodeOptions d;
  d.target_rate = impl_->f.sample_rate;
  d.reject_silent = false;
  return embed_samples(audio::decode_mono(path, d), path);
}

FileEmbedding AudioEmbedder::embed_samples(std::vector<float> x, const std::string& path) {
  const audio::FeatureConfig& f = impl_->f;
  const int64_t D = dim(), hier = f.clips_total() * f.n_mels * f.frames;
  if (x.empty()) throw audio::DecodeError(audio::DecodeFailure::empty, path, "no samples");
  FileEmbedding r;
  r.path = path;
  r.duration_s = static_cast<double>(x.size()) / f.sample_rate;
  if (static_cast<int64_t>(x.size()) < f.clip_samples) {
    r.padded = true;
    x.resize(static_cast<size_t>(f.clip_samples), 0.0f);
  }
  const std::vector<std::vector<float>> mels = impl_->mels.compute(x);
  const std::vector<int64_t> starts =
      r.padded ? std::vector<int64_t>{0} : cover_starts(f, static_cast<int64_t>(x.size()), impl_->step);
  const int64_t n = static_cast<int64_t>(starts.size());
  r.crops = n;
  r.level.assign(static_cast<size_t>(f.levels), {});
  r.timestamp_ms.assign(static_cast<size_t>(f.levels), {});
  for (int l = 0; l < f.levels; ++l) {
    r.level[static_cast<size_t>(l)].resize(static_cast<size_t>(n * f.clips_at(l) * D));
    for (int64_t k : starts)
      for (int64_t c = 0; c < f.clips_at(l); ++c) r.timestamp_ms[static_cast<size_t>(l)].push_back(clip_center_ms(f, k, l, c));
  }
  // Batches of a file's crops in order: the same batches whatever rank embeds the file.
  std::vector<float> buf;
  torch::NoGradGuard no_grad;
  for (int64_t b0 = 0; b0 < n; b0 += impl_->batch) {
    const int64_t nb = std::min(impl_->batch, n - b0);
    buf.resize(static_cast<size_t>(nb * hier));
    for (int64_t i = 0; i < nb; ++i) cut_crop(f, mels, starts[static_cast<size_t>(b0 + i)], buf.data() + i * hier);
    const auto x_t = torch::from_blob(buf.data(), {nb, f.clips_total(), f.n_mels, f.frames});
    const model::Embeddings e = impl_->model->embed(x_t);
    for (int l = 0; l < f.levels; ++l) {
      const auto hat = e.hat[static_cast<size_t>(l)].contiguous();  // [nb, M^l, D], clips in time order
      std::copy(hat.data_ptr<float>(), hat.data_ptr<float>() + hat.numel(),
                r.level[static_cast<size_t>(l)].begin() + b0 * f.clips_at(l) * D);
    }
  }
  // The scene: the mean over crops of s^0, as mart-eval's track embedding.
  r.scene.resize(static_cast<size_t>(D));
  for (int64_t d = 0; d < D; ++d) {
    double s = 0;
    for (int64_t c = 0; c < n; ++c) s += r.level[0][static_cast<size_t>(c * D + d)];
    r.scene[static_cast<size_t>(d)] = static_cast<float>(s / static_cast<double>(n));
  }
  // The end-aligned crop overlaps the one before it: order every level's rows by time (stable,
  // so equal times keep crop order). Level 0 is in order already.
  for (size_t l = 1; l < r.level.size(); ++l) {
    auto& ts = r.timestamp_ms[l];
    if (std::is_sorted(ts.begin(), ts.end())) continue;
    std::vector<size_t> order(ts.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ts[a] < ts[b]; });
    std::vector<float> e(r.level[l].size());
    std::vector<double> t(ts.size());
    for (size_t i = 0; i < order.size(); ++i) {
      t[i] = ts[order[i]];
      std::copy_n(r.level[l].begin() + static_cast<std::ptrdiff_t>(order[i] * static_cast<size_t>(D)), D,
                  e.begin() + static_cast<std::ptrdiff_t>(i * static_cast<size_t>(D)));
    }
    r.level[l] = std::move(e);
    ts = std::move(t);
  }
  return r;
}

// ---- Inputs -----------------------------------------------------------------------------------

namespace {

bool has_audio_extension(const fs::path& p) {
  static const std::set<std::string> exts{".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3",
                                          ".au",  ".snd",  ".aif",  ".aiff", ".aifc"};
  std::string e = p.extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return exts.count(e) > 0;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

}  // namespace

std::vector<std::string> list_inputs(const std::string& input, const std::string& input_list) {
  if (input.empty() && input_list.empty())
    MART_CONFIG_ERROR("nothing to embed: give --input (an audio file or a folder of audio) or --input_list "
                      "(a text file with one audio path per line)");
  std::vector<std::string> files;
  if (!input.empty()) {
    std::error_code ec;
    if (!fs::exists(input, ec))
      MART_CONFIG_ERROR("input '", input, "' does not exist: give an audio file or a folder of audio files");
    if (fs::is_directory(input, ec)) {
      std::vector<std::string> found;
      for (const auto& e : fs::recursive_directory_iterator(input, fs::directory_options::follow_directory_symlink))
        if (e.is_regular_file() && has_audio_extension(e.path())) found.push_back(e.path().string());
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
    std::ifstream in(input_list);
    if (!in) MART_CONFIG_ERROR("input list '", input_list, "' cannot be read: give a text file with one audio path per line");
    const fs::path base = fs::path(input_list).parent_path();
    size_t listed = 0;
    for (std::string line; std::getline(in, line);) {
      line = trim(line);
      if (line.empty() || line[0] == '#') continue;
      const fs::path p(line);
      files.push_back(p.is_absolute() || base.empty() ? p.string() : (base / p).string());
      ++listed;
    }
    if (listed == 0) MART_CONFIG_ERROR("input list '", input_list, "' names no files (one path per line; '#' starts a comment)");
  }
  return files;
}

// ---- .npy -------------------------------------------------------------------------------------

namespace {

template <typename T>
void write_npy_impl(const std::string& path, const std::vector<T>& v, const std::vector<int64_t>& shape,
                    const char* descr) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8, "float32 or float64");
  int64_t n = 1;
  std::string dims;  // "(3, 4)", "(3,)" or "()"
  for (size_t i = 0; i < shape.size(); ++i) n *= shape[i], dims += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) dims += ",";
  MART_CHECK(n == static_cast<int64_t>(v.size()), "npy '", path, "': shape holds ", n, " values, buffer ", v.size());
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
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
  write_file_atomic(path, out);
}

}  // namespace

void write_npy(const std::string& path, const std::vector<float>& v, const std::vector<int64_t>& shape) {
  write_npy_impl(path, v, shape, "<f4");
}
void write_npy(const std::string& path, const std::vector<double>& v, const std::vector<int64_t>& shape) {
  write_npy_impl(path, v, shape, "<f8");
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
    ds_ = h5::Dataset(H5_CHECK(H5Dcreate2(loc, path.c_str(), type, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT)));
  }
  void append(const void* data, hsize_t rows) {
    if (rows == 0) return;
    h5::Lock lock;
    const int rank = cols_ ? 2 : 1;
    const hsize_t start[2] = {rows_, 0}, count[2] = {rows, cols_}, extent[2] = {rows_ + rows, cols_};
    H5_CHECK(H5Dset_extent(ds_.get(), extent));
    h5::Dataspace file_space(H5_CHECK(H5Dget_space(ds_.get())));
    H5_CHECK(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start, nullptr, count, nullptr));
    h5::Dataspace mem(H5_CHECK(H5Screate_simple(rank, count, nullptr)));
    H5_CHECK(H5Dwrite(ds_.get(), type_, mem.get(), file_space.get(), H5P_DEFAULT, data));
    rows_ += rows;
  }

 private:
  h5::Dataset ds_;
  hid_t type_ = H5I_INVALID_HID;
  hsize_t cols_ = 0, rows_ = 0;
};

struct Failure {
  std::string path, reason;
};

struct RunInfo {
  std::string checkpoint, model_canonical;
  audio::FeatureConfig features;
  int64_t dim = 0, step = 0;
};

// embeddings.h5, written to a .tmp file and renamed when complete. Embeddings go to disk as they
// come; only the per-file scalars (path, duration, flags, offsets) stay in memory.
class H5Out {
 public:
  H5Out(std::string path, const RunInfo& info) : path_(std::move(path)), info_(info) {
    h5::Lock lock;
    file_ = h5::File(H5_CHECK(H5Fcreate(tmp().c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)));
    const auto& f = info.features;
    const hsize_t D = static_cast<hsize_t>(info.dim);
    h5::create_group(file_.get(), "files");
    scene_ = Rows(file_.get(), "scene", H5T_NATIVE_FLOAT, D);
    for (int l = 0; l < f.levels; ++l) {
      const std::string g = "level_" + std::to_string(l);
      h5::Group group = h5::create_group(file_.get(), g);
      h5::write_attr(group.get(), "clip_ms", static_cast<double>(f.level_samples(l)) / f.sample_rate * 1000.0);
      h5::write_attr(group.get(), "clips_per_crop", f.clips_at(l));
      level_.emplace_back(file_.get(), g + "/embedding", H5T_NATIVE_FLOAT, D);
      time_.emplace_back(file_.get(), g + "/timestamp_ms", H5T_NATIVE_DOUBLE, 0);
      offsets_.push_back({0});
    }
  }
  ~H5Out() {
    if (file_) {  // not finished: an error on the way; leave no half file behind
      file_.reset();
      std::remove(tmp().c_str());
    }
  }
  void append(const FileEmbedding& e) {
    try {
      append_rows(e);
    } catch (const Error& x) {  // a failed write is fatal, and named: never a failure of the input file
      const std::string reason = io_reason(x.what());
      MART_OUTPUT_ERROR("cannot write '", tmp(), "': ", reason.empty() ? std::string(x.what()) : reason, kOutputFix);
    }
  }
  void append_rows(const FileEmbedding& e) {
    paths_.push_back(e.path);
    duration_.push_back(e.duration_s);
    padded_.push_back(e.padded ? 1 : 0);
    crops_.push_back(e.crops);
    scene_.append(e.scene.data(), 1);
    for (size_t l = 0; l < level_.size(); ++l) {
      const hsize_t rows = e.timestamp_ms[l].size();
      level_[l].append(e.level[l].data(), rows);
      time_[l].append(e.timestamp_ms[l].data(), rows);
      offsets_[l].push_back(offsets_[l].back() + static_cast<int64_t>(rows));
    }
  }
  void finish(const std::vector<Failure>& failures) {
    h5::Lock lock;
    const hid_t f = file_.get();
    h5::write_strings(f, "files/path", paths_);
    h5::write_array(f, "files/duration_s", duration_);
    h5::write_array(f, "files/padded", padded_);
    h5::write_array(f, "files/crops", crops_);
    for (size_t l = 0; l < offsets_.size(); ++l) h5::write_array(f, "level_" + std::to_string(l) + "/offsets", offsets_[l]);
    std::vector<std::string> fp, fr;
    for (const auto& x : failures) fp.push_back(x.path), fr.push_back(x.reason);
    h5::create_group(f, "failures");
    h5::write_strings(f, "failures/path", fp);
    h5::write_strings(f, "failures/reason", fr);
    const auto& c = info_.features;
    h5::write_attr(f, "format", std::string("mart-embed"));
    h5::write_attr(f, "format_version", int64_t{1});
    h5::write_attr(f, "checkpoint", info_.checkpoint);
    h5::write_attr(f, "model_canonical", info_.model_canonical);
    h5::write_attr(f, "feature_canonical", c.canonical());
    h5::write_attr(f, "dim", info_.dim);
    h5::write_attr(f, "levels", int64_t{c.levels});
    h5::write_attr(f, "parts", int64_t{c.parts});
    h5::write_attr(f, "sample_rate", int64_t{c.sample_rate});
    h5::write_attr(f, "clip_samples", c.clip_samples);
    h5::write_attr(f, "crop_step_samples", info_.step * c.hop(0));
    H5_CHECK(H5Fflush(f, H5F_SCOPE_GLOBAL));  // a failed write surfaces here, not in a silent close
    file_.reset();
    fsync_file(tmp());  // on disk before the rename makes it look finished
    if (std::rename(tmp().c_str(), path_.c_str()) != 0)
      MART_OUTPUT_ERROR("cannot rename '", tmp(), "' to '", path_, "': ", std::strerror(errno), kOutputFix);
  }

 private:
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
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// scene.csv (path,e0..) and level_<l>.csv (path,timestamp_ms,e0..), written to .tmp and renamed.
class CsvOut {
 public:
  CsvOut(const std::string& dir, int levels, int64_t dim) : dim_(dim) {
    std::string header;
    for (int64_t d = 0; d < dim; ++d) header += ",e" + std::to_string(d);
    open(dir + "/scene.csv", "path" + header);
    for (int l = 0; l < levels; ++l) open(dir + "/level_" + std::to_string(l) + ".csv", "path,timestamp_ms" + header);
  }
  void append(const FileEmbedding& e) {
    std::string line;
    const std::string path = csv_field(e.path);
    row(line, path, nullptr, e.scene.data());
    write(0, line);
    for (size_t l = 0; l < e.level.size(); ++l) {
      line.clear();
      for (size_t r = 0; r < e.timestamp_ms[l].size(); ++r)
        row(line, path, &e.timestamp_ms[l][r], e.level[l].data() + r * static_cast<size_t>(dim_));
      write(l + 1, line);
    }
  }
  void finish() {
    for (size_t i = 0; i < files_.size(); ++i) {
      std::fflush(files_[i]);
      const bool ok = !std::ferror(files_[i]);
      std::fclose(files_[i]);
      if (!ok || std::rename((paths_[i] + ".tmp").c_str(), paths_[i].c_str()) != 0)
        MART_OUTPUT_ERROR("cannot write '", paths_[i], "': ", std::strerror(errno), kOutputFix);
    }
    files_.clear();
  }
  ~CsvOut() {
    for (size_t i = 0; i < files_.size(); ++i) {
      std::fclose(files_[i]);
      std::remove((paths_[i] + ".tmp").c_str());
    }
  }

 private:
  void open(const std::string& path, const std::string& header) {
    FILE* f = std::fopen((path + ".tmp").c_str(), "w");
    if (!f) MART_FAIL("cannot create '", path, ".tmp'");
    files_.push_back(f);
    paths_.push_back(path);
    write(files_.size() - 1, header + "\n");
  }
  void row(std::string& line, const std::string& path, const double* t, const float* e) const {
    line += path;
    if (t) line += ',', put_number(line, *t);
    for (int64_t d = 0; d < dim_; ++d) line += ',', put_number(line, e[d]);
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

// HEAR-style arrays per file under npy/: <NNNNNN>_<stem>.scene.npy [dim],
// .level_<l>.npy [rows, dim] and .level_<l>.timestamp_ms.npy [rows]; NNNNNN is the input index.
void write_file_npy(const std::string& dir, int64_t index, const FileEmbedding& e) {
  char num[16];
  std::snprintf(num, sizeof(num), "%06lld", static_cast<long long>(index));
  std::string stem = fs::path(e.path).stem().string();
  for (char& c : stem)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
  const std::string base = dir + "/" + num + "_" + stem;
  const int64_t D = static_cast<int64_t>(e.scene.size());
  write_npy(base + ".scene.npy", e.scene, {D});
  for (size_t l = 0; l < e.level.size(); ++l) {
    const int64_t rows = static_cast<int64_t>(e.timestamp_ms[l].size());
    write_npy(base + ".level_" + std::to_string(l) + ".npy", e.level[l], {rows, D});
    write_npy(base + ".level_" + std::to_string(l) + ".timestamp_ms.npy", e.timestamp_ms[l], {rows});
  }
}

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
  std::unique_ptr<H5Out> h5_out;
  std::unique_ptr<CsvOut> csv_out;
  if (w.is_root()) {
    if (formats.h5) h5_out = std::make_unique<H5Out>(out + "/embeddings.h5", info);
    if (formats.csv) csv_out = std::make_unique<CsvOut>(out, f.levels, info.dim);
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
    if (csv_out) csv_out->finish();
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
