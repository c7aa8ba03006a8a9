#pragma once
// Dataset adapters: each turns a collection's own layout into one list of tracks with labels.
// Labels travel into the shards: multi-hot tags, one class, a cover group, a split.
#include <memory>
#include <string>
#include <vector>

namespace mart::preprocess {

struct TrackEntry {
  std::string id;                 // unique within the dataset
  std::string path;               // absolute or relative to the working directory
  std::string split = "train";    // train / valid / test
  std::vector<std::string> tags;  // tag names (multi-hot)
  std::string class_name;         // empty: none
  std::string cover_group;        // empty: none
};

struct DatasetOptions {
  std::string kind = "folder";   // folder | synth | mtat | gtzan | covers
  std::string input;             // the collection's root (a file for covers lists)
  std::string labels_csv;        // folder: optional CSV (path,split,tags,class,cover_group)
  std::string split_dir;         // mtat/gtzan: folder with train.txt, valid.txt, test.txt
  int mtat_top_tags = 50;
  bool mtat_drop_untagged = false;  // true: the tagging literature's 15,244/1,529/4,332
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual std::string name() const = 0;
  // Every track, in a stable order (sorted by path), so ranks and reruns agree.
  virtual std::vector<TrackEntry> tracks() const = 0;
};

// Throws ConfigError naming the input and what was expected there.
std::unique_ptr<Dataset> make_dataset(const DatasetOptions& opt);
const std::vector<std::string>& dataset_kinds();

// Small CSV/TSV reading shared by the adapters: quoted fields, "" escapes, CRLF.
std::vector<std::vector<std::string>> read_delimited(const std::string& path, char delim);

// The union of tag names and class names over tracks, sorted: the label schema of a corpus.
std::vector<std::string> tag_vocabulary(const std::vector<TrackEntry>& tracks);
std::vector<std::string> class_vocabulary(const std::vector<TrackEntry>& tracks);

}  // namespace mart::preprocess
