#include "mart/preprocess/datasets.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "mart/core/error.h"
#include "mart/core/text.h"

namespace fs = std::filesystem;

namespace mart::preprocess {

namespace {

const std::set<std::string> kAudioExtensions = {".wav", ".flac", ".ogg", ".mp3", ".au", ".aiff", ".aif", ".opus"};

bool is_audio(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
  return kAudioExtensions.count(ext) > 0;
}

void require_dir(const std::string& dir, const std::string& what) {
  if (dir.empty()) MART_CONFIG_ERROR("--input is required: the ", what);
  if (!fs::is_directory(dir)) MART_CONFIG_ERROR("input '", dir, "' is not a directory (expected ", what, ")");
}

void require_file(const std::string& f, const std::string& what) {
  if (!fs::is_regular_file(f)) MART_CONFIG_ERROR("'", f, "' does not exist or is not a file (expected ", what, ")");
}

// Column index by header name; -1 when absent (optional) or an error when required.
int column(const std::vector<std::string>& header, const std::string& name, const std::string& file, bool required) {
  for (size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int>(i);
  if (required) MART_CONFIG_ERROR("'", file, "' has no column '", name, "' in its header line");
  return -1;
}

std::string field(const std::vector<std::string>& row, int col) {
  return col >= 0 && static_cast<size_t>(col) < row.size() ? row[static_cast<size_t>(col)] : "";
}

std::string id_from_path(const std::string& rel) {
  std::string id = fs::path(rel).replace_extension().string();
  std::replace(id.begin(), id.end(), '/', '_');
  return id;
}

void sort_by_path(std::vector<TrackEntry>& t) {
  std::sort(t.begin(), t.end(), [](const TrackEntry& a, const TrackEntry& b) { return a.path < b.path; });
}

// A split list file: one entry per line; a line may be a path or an id, with TSV extras after.
std::set<std::string> read_split_list(const std::string& file) {
  std::set<std::string> s;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line[0] == '#') continue;
    for (const auto& f : split_list(line, '\t')) s.insert(f);
  }
  return s;
}

struct SplitLists {
  std::map<std::string, std::set<std::string>> lists;  // split -> entries
  bool empty() const { return lists.empty(); }
  // The split whose list holds the relative path, its file name, or the id; "" when none.
  std::string find(const std::string& rel, const std::string& id) const {
    const std::string base = fs::path(rel).filename().string();
    const std::string stem = fs::path(rel).stem().string();
    for (const auto& [split, set] : lists)
      if (set.count(rel) || set.count(base) || set.count(stem) || set.count(id)) return split;
    return "";
  }
};

SplitLists load_split_lists(const std::string& dir) {
  SplitLists s;
  if (dir.empty()) return s;
  if (!fs::is_directory(dir)) MART_CONFIG_ERROR("dataset.split_dir '", dir, "' is not a directory");
  for (const char* split : {"train", "valid", "test"}) {
    const std::string f = dir + "/" + split + ".txt";
    if (fs::exists(f)) s.lists[split] = read_split_list(f);
  }
  if (s.empty()) MART_CONFIG_ERROR("dataset.split_dir '", dir, "' holds none of train.txt, valid.txt, test.txt");
  return s;
}

// `path` relative to `root` as the user sees it, with '/' separators: lexically, so that a file
// that is a symlink (a tree made by `cp -rs`) keeps the name its label or split list gives it
// (fs::relative would resolve the link and name the file by its target's path).
std::string relative_as_given(const fs::path& path, const std::string& root) {
  fs::path base = fs::path(root).lexically_normal();
  if (!base.has_filename()) base = base.parent_path();  // "dir/" -> "dir"
  return path.lexically_normal().lexically_relative(base).generic_string();
}

// Any folder of audio, recursively; labels from an optional CSV keyed by relative path.
class FolderDataset : public Dataset {
 public:
  explicit FolderDataset(DatasetOptions o) : o_(std::move(o)) {
    require_dir(o_.input, "a folder of audio files");
    if (!o_.labels_csv.empty()) require_file(o_.labels_csv, "a labels CSV with a 'path' column");
  }
  std::string name() const override { return "folder"; }
  std::vector<TrackEntry> tracks() const override {
    std::map<std::string, std::vector<std::string>> labels;
    int c_split = -1, c_tags = -1, c_class = -1, c_cover = -1;
    if (!o_.labels_csv.empty()) {
      auto rows = read_delimited(o_.labels_csv, ',');
      if (rows.empty()) MART_CONFIG_ERROR("labels CSV '", o_.labels_csv, "' is empty");
      const auto& h = rows[0];
      const int c_path = column(h, "path", o_.labels_csv, true);
      c_split = column(h, "split", o_.labels_csv, false);
      c_tags = column(h, "tags", o_.labels_csv, false);
      c_class = column(h, "class", o_.labels_csv, false);
      c_cover = column(h, "cover_group", o_.labels_csv, false);
      for (size_t i = 1; i < rows.size(); ++i) labels[field(rows[i], c_path)] = rows[i];
    }
    std::vector<TrackEntry> out;
    // The CSV's paths are relative to the input folder as the user sees it (relative_as_given).
    size_t matched = 0;
    std::string first_unlabelled;
    for (const auto& e : fs::recursive_directory_iterator(o_.input, fs::directory_options::follow_directory_symlink)) {
      if (!e.is_regular_file() || !is_audio(e.path())) continue;
      const std::string rel = relative_as_given(e.path(), o_.input);
      TrackEntry t;
      t.id = id_from_path(rel);
      t.path = e.path().string();
      auto it = labels.find(rel);
      if (it == labels.end() && first_unlabelled.empty()) first_unlabelled = rel;
      if (it != labels.end()) {
        ++matched;
        if (!field(it->second, c_split).empty()) t.split = field(it->second, c_split);
        t.tags = split_list(field(it->second, c_tags), ';');
        t.class_name = field(it->second, c_class);
        t.cover_group = field(it->second, c_cover);
      }
      out.push_back(std::move(t));
    }
    // A CSV that names none of the files is the wrong CSV or the wrong folder: every track would
    // silently go unlabelled (and into the train split).
    if (!labels.empty() && !out.empty() && matched == 0)
      MART_CONFIG_ERROR("labels CSV '", o_.labels_csv, "' names none of the ", out.size(), " audio files in '", o_.input,
                        "': its 'path' column must be relative to that folder (it has '", labels.begin()->first,
                        "'; the folder has '", first_unlabelled, "')");
    sort_by_path(out);
    return out;
  }

 private:
  DatasetOptions o_;
};

// mart-synth's output: manifest.csv lists every file with its labels.
class SynthDataset : public Dataset {
 public:
  explicit SynthDataset(DatasetOptions o) : o_(std::move(o)) {
    require_dir(o_.input, "the output folder of mart-synth");
    require_file(o_.input + "/manifest.csv", "mart-synth's manifest.csv: run mart-synth --output " + o_.input);
  }
  std::string name() const override { return "synth"; }
  std::vector<TrackEntry> tracks() const override {
    const std::string file = o_.input + "/manifest.csv";
    auto rows = read_delimited(file, ',');
    if (rows.size() < 2) MART_CONFIG_ERROR("'", file, "' lists no tracks");
    const auto& h = rows[0];
    const int c_path = column(h, "path", file, true), c_id = column(h, "track_id", file, true),
              c_split = column(h, "split", file, true), c_tags = column(h, "tags", file, true),
              c_class = column(h, "class", file, true), c_cover = column(h, "cover_group", file, true);
    std::vector<TrackEntry> out;
    for (size_t i = 1; i < rows.size(); ++i) {
      const auto& r = rows[i];
      out.push_back({field(r, c_id), o_.input + "/" + field(r, c_path), field(r, c_split),
                     split_list(field(r, c_tags), ';'), field(r, c_class), field(r, c_cover)});
    }
    sort_by_path(out);
    return out;
  }

 private:
  DatasetOptions o_;
};

// MagnaTagATune: annotations_final.csv (tab-separated: clip_id, 188 tags, mp3_path) and the mp3
// tree. Top-K tags by frequency. Split: the user's lists, else the literature's folder split
// (folders 0-9,a,b train; c valid; d-f test).
class MtatDataset : public Dataset {
 public:
  explicit MtatDataset(DatasetOptions o) : o_(std::move(o)) {
    require_dir(o_.input, "the MagnaTagATune root with annotations_final.csv and the mp3 folders 0-9, a-f");
    require_file(o_.input + "/annotations_final.csv", "MagnaTagATune's annotations_final.csv");
    splits_ = load_split_lists(o_.split_dir);
  }
  std::string name() const override { return "mtat"; }
  std::vector<TrackEntry> tracks() const override {
    const std::string file = o_.input + "/annotations_final.csv";
    auto rows = read_delimited(file, '\t');
    if (rows.size() < 2) MART_CONFIG_ERROR("'", file, "' lists no clips");
    const auto& h = rows[0];
    const int c_id = column(h, "clip_id", file, true), c_path = column(h, "mp3_path", file, true);
    // Tag columns: everything but clip_id and mp3_path. Count positives to find the top K.
    std::vector<std::pair<int, int>> counts;  // (count, column)
    for (size_t c = 0; c < h.size(); ++c) {
      if (static_cast<int>(c) == c_id || static_cast<int>(c) == c_path) continue;
      int n = 0;
      for (size_t r = 1; r < rows.size(); ++r) n += field(rows[r], static_cast<int>(c)) == "1";
      counts.emplace_back(n, static_cast<int>(c));
    }
    std::stable_sort(counts.begin(), counts.end(), [](auto& a, auto& b) { return a.first > b.first; });
    counts.resize(std::min(counts.size(), static_cast<size_t>(o_.mtat_top_tags)));
    std::vector<TrackEntry> out;
    for (size_t r = 1; r < rows.size(); ++r) {
      TrackEntry t;
      const std::string rel = field(rows[r], c_path);
      if (rel.empty()) continue;
      t.id = field(rows[r], c_id);
      t.path = o_.input + "/" + rel;
      for (auto& [n, c] : counts)
        if (field(rows[r], c) == "1") t.tags.push_back(h[static_cast<size_t>(c)]);
      if (o_.mtat_drop_untagged && t.tags.empty()) continue;
      if (!splits_.empty()) {
        t.split = splits_.find(rel, t.id);
        if (t.split.empty()) continue;  // not in any list: not part of this split
      } else {
        const char d = rel.empty() ? '0' : static_cast<char>(::tolower(rel[0]));
        t.split = d == 'c' ? "valid" : (d >= 'd' && d <= 'f') ? "test" : "train";
      }
      out.push_back(std::move(t));
    }
    sort_by_path(out);
    return out;
  }

 private:
  DatasetOptions o_;
  SplitLists splits_;
};

// GTZAN: one folder per genre; the genre is the class. Split lists (e.g. the fault-filtered
// split) when given, else every track is "train" and the evaluation makes its own folds
// (mart-eval's eval.folds: stratified by genre, seeded).
class GtzanDataset : public Dataset {
 public:
  explicit GtzanDataset(DatasetOptions o) : o_(std::move(o)) {
    require_dir(o_.input, "the GTZAN root with one folder per genre (blues/, classical/, ...)");
    splits_ = load_split_lists(o_.split_dir);
  }
  std::string name() const override { return "gtzan"; }
  std::vector<TrackEntry> tracks() const override {
    std::vector<TrackEntry> out;
    size_t found = 0;
    std::string unlisted;
    for (const auto& genre : fs::directory_iterator(o_.input)) {
      if (!genre.is_directory()) continue;
      for (const auto& e : fs::directory_iterator(genre.path())) {
        if (!e.is_regular_file() || !is_audio(e.path())) continue;
        TrackEntry t;
        const std::string rel = relative_as_given(e.path(), o_.input);
        t.id = e.path().stem().string();
        t.path = e.path().string();
        t.class_name = genre.path().filename().string();
        ++found;
        if (!splits_.empty()) {
          t.split = splits_.find(rel, t.id);
          if (t.split.empty()) {
            if (unlisted.empty()) unlisted = rel;
            continue;
          }
        }
        out.push_back(std::move(t));
      }
    }
    if (found == 0) MART_CONFIG_ERROR("no audio found in genre folders under '", o_.input, "'");
    if (out.empty())
      MART_CONFIG_ERROR("none of the ", found, " audio files under '", o_.input, "' is named in the split lists of '",
                        o_.split_dir, "' (e.g. '", unlisted, "'): a list line is a path under that folder, a file name "
                        "or a stem");
    sort_by_path(out);
    return out;
  }

 private:
  DatasetOptions o_;
  SplitLists splits_;
};

// Cover lists (Covers80, SHS100K style): lines "work_id<TAB or ,>path[<sep>split]".
class CoversDataset : public Dataset {
 public:
  explicit CoversDataset(DatasetOptions o) : o_(std::move(o)) {
    require_file(o_.input, "a cover list: one 'work_id<TAB>path' line per version");
  }
  std::string name() const override { return "covers"; }
  std::vector<TrackEntry> tracks() const override {
    std::ifstream probe(o_.input);
    std::string first;
    std::getline(probe, first);
    const char sep = first.find('\t') != std::string::npos ? '\t' : ',';
    const auto rows = read_delimited(o_.input, sep);
    const std::string base = fs::path(o_.input).parent_path().string();
    std::vector<TrackEntry> out;
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      if (r.size() < 2 || (i == 0 && (r[0] == "work_id" || r[0] == "work"))) continue;
      TrackEntry t;
      t.cover_group = r[0];
      t.path = fs::path(r[1]).is_absolute() ? r[1] : base + "/" + r[1];
      t.id = id_from_path(r[1]);
      t.split = r.size() > 2 && !r[2].empty() ? r[2] : "test";
      out.push_back(std::move(t));
    }
    if (out.empty()) MART_CONFIG_ERROR("cover list '", o_.input, "' has no 'work_id<TAB>path' lines");
    sort_by_path(out);
    return out;
  }

 private:
  DatasetOptions o_;
};

}  // namespace

const std::vector<std::string>& dataset_kinds() {
  static const std::vector<std::string> k = {"folder", "synth", "mtat", "gtzan", "covers"};
  return k;
}

std::unique_ptr<Dataset> make_dataset(const DatasetOptions& opt) {
  if (opt.kind == "folder") return std::make_unique<FolderDataset>(opt);
  if (opt.kind == "synth") return std::make_unique<SynthDataset>(opt);
  if (opt.kind == "mtat") return std::make_unique<MtatDataset>(opt);
  if (opt.kind == "gtzan") return std::make_unique<GtzanDataset>(opt);
  if (opt.kind == "covers") return std::make_unique<CoversDataset>(opt);
  MART_CONFIG_ERROR("unknown dataset.kind '", opt.kind, "': choose folder, synth, mtat, gtzan or covers");
}

std::vector<std::vector<std::string>> read_delimited(const std::string& path, char delim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) MART_CONFIG_ERROR("cannot read '", path, "'");
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string cell;
  bool quoted = false, any = false;
  char c;
  auto end_row = [&] {
    if (any || !cell.empty() || !row.empty()) {
      row.push_back(cell);
      rows.push_back(row);
    }
    row.clear();
    cell.clear();
    any = false;
  };
  while (in.get(c)) {
    if (quoted) {
      if (c == '"') {
        if (in.peek() == '"') cell += static_cast<char>(in.get());
        else quoted = false;
      } else {
        cell += c;
      }
    } else if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == delim) {
      row.push_back(cell);
      cell.clear();
      any = true;
    } else if (c == '\n') {
      end_row();
    } else if (c != '\r') {
      cell += c;
    }
  }
  end_row();
  return rows;
}

std::vector<std::string> tag_vocabulary(const std::vector<TrackEntry>& tracks) {
  std::set<std::string> s;
  for (const auto& t : tracks) s.insert(t.tags.begin(), t.tags.end());
  return {s.begin(), s.end()};
}

std::vector<std::string> class_vocabulary(const std::vector<TrackEntry>& tracks) {
  std::set<std::string> s;
  for (const auto& t : tracks)
    if (!t.class_name.empty()) s.insert(t.class_name);
  return {s.begin(), s.end()};
}

}  // namespace mart::preprocess
