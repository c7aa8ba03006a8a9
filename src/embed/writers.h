#pragma once
// mart-embed's output writers (rank 0), private to src/embed: embeddings.h5 and the CSV files are
// written to .tmp files as files arrive and renamed when finished; .npy files are one per array.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mart/embed/embed_audio.h"
#include "mart/features/features.h"

namespace mart::embed {

struct Failure {
  std::string path, reason;
};

// What embeddings.h5 records about the run.
struct RunInfo {
  std::string checkpoint, model_canonical;
  features::FeatureConfig features;
  int64_t dim = 0, step = 0;
};

class EmbeddingWriter {
 public:
  virtual ~EmbeddingWriter() = default;
  virtual void append(const FileEmbedding& embedding) = 0;        // the next file, in input order
  virtual void finish(const std::vector<Failure>& failures) = 0;  // complete: rename into place
};

// embeddings.h5 (docs/embed.md); embeddings go to disk as they come.
std::unique_ptr<EmbeddingWriter> make_h5_writer(const std::string& path, const RunInfo& info);
// scene.csv (path,e0..) and level_<l>.csv (path,timestamp_ms,e0..) in `dir`.
std::unique_ptr<EmbeddingWriter> make_csv_writer(const std::string& dir, int levels, int64_t dim);
// <dir>/<NNNNNN>_<stem>.scene.npy, .level_<l>.npy and .level_<l>.timestamp_ms.npy for input `index`.
void write_file_npy(const std::string& dir, int64_t index, const FileEmbedding& embedding);

}  // namespace mart::embed
