#pragma once
// Files that can't be half-written: write to "<path>.tmp.<pid>", fsync, rename.
#include <string>

namespace mart {

// Writes `content` to `path` atomically (temporary file, fsync, rename). Throws on failure.
void write_file_atomic(const std::string& path, const std::string& content);

// Flushes a finished file (e.g. one HDF5 wrote) to disk before it is renamed into place, so a
// crash can't leave a complete-looking name over incomplete data. Throws naming the path.
void fsync_file(const std::string& path);

// Reads a whole file; throws naming the path when it can't.
std::string read_file(const std::string& path);

// Creates a directory and its parents; throws with the path and errno text on failure, and
// when the directory exists but can't be written.
void make_dirs_writable(const std::string& path);

}  // namespace mart
