#pragma once
// Files that can't be half-written: write to "<path>.tmp.<pid>", fsync, rename.
#include <cstdint>
#include <string>

#include "mart/core/error.h"

namespace mart {

// A write to an output failed (disk full, read-only folder, lost mount): fatal in every stage, and
// never to be taken for a problem with the input. The message names the path and the system's
// reason (strerror).
class OutputError : public Error {
 public:
  using Error::Error;
};

// The fix appended to every OutputError about a failed write (" (free space ... then rerun ...)").
extern const char* const kOutputFix;

// Writes `content` to `path` atomically (temporary file, fsync, rename). A failed write throws
// OutputError with the path and strerror, and leaves no temporary file; `path` keeps what it held.
void write_file_atomic(const std::string& path, const std::string& content);

// Flushes a finished file (e.g. one HDF5 wrote) to disk before it is renamed into place, so a
// crash can't leave a complete-looking name over incomplete data. Throws naming the path.
void fsync_file(const std::string& path);

// A file's size and the FNV-1a 64 hash of its bytes (hex): what manifests and checkpoints record
// so that `--preprocess.verify` and resume can tell a damaged file from a whole one. Throws
// ConfigError when the file can't be read.
struct FileDigest {
  int64_t bytes = 0;
  std::string fnv1a64;
  bool operator==(const FileDigest& o) const { return bytes == o.bytes && fnv1a64 == o.fnv1a64; }
  bool operator!=(const FileDigest& o) const { return !(*this == o); }
};
FileDigest file_digest(const std::string& path);

// Reads a whole file; throws naming the path when it can't.
std::string read_file(const std::string& path);

// Creates a directory and its parents; throws with the path and errno text on failure, and
// when the directory exists but can't be written.
void make_dirs_writable(const std::string& path);

}  // namespace mart

// MART_OUTPUT_ERROR(message parts...): writing an output failed; thrown as OutputError.
#define MART_OUTPUT_ERROR(...) throw ::mart::OutputError(::mart::detail::concat(__VA_ARGS__))
