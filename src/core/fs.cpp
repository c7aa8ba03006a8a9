#include "mart/core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "mart/core/error.h"
#include "mart/core/hash.h"

namespace mart {

namespace fs = std::filesystem;

const char* const kOutputFix = " (free space on that disk or fix the folder's permissions, then rerun; nothing finished was overwritten)";

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) MART_OUTPUT_ERROR("cannot create '", tmp, "': ", std::strerror(errno), kOutputFix);
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      MART_OUTPUT_ERROR("cannot write '", tmp, "': ", std::strerror(e), kOutputFix);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    MART_OUTPUT_ERROR("cannot write '", tmp, "': ", std::strerror(e), kOutputFix);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    MART_OUTPUT_ERROR("cannot rename '", tmp, "' to '", path, "': ", std::strerror(e), kOutputFix);
  }
}

void fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) MART_OUTPUT_ERROR("cannot open '", path, "' to flush it: ", std::strerror(errno), kOutputFix);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) MART_OUTPUT_ERROR("cannot write '", path, "': ", std::strerror(err), kOutputFix);
}

FileDigest file_digest(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) MART_CONFIG_ERROR("cannot open '", path, "': ", std::strerror(errno));
  FileDigest d;
  uint64_t h = 14695981039346656037ull;  // FNV-1a 64 over the bytes, as fnv1a64()
  std::vector<unsigned char> buf(1 << 20);
  while (true) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      MART_CONFIG_ERROR("cannot read '", path, "': ", std::strerror(e));
    }
    if (n == 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      h ^= buf[static_cast<size_t>(i)];
      h *= 1099511628211ull;
    }
    d.bytes += n;
  }
  ::close(fd);
  d.fnv1a64 = hex64(h);
  return d;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) MART_CONFIG_ERROR("cannot open '", path, "': ", std::strerror(errno));
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void make_dirs_writable(const std::string& path) {
  std::error_code ec;
  fs::create_directories(path, ec);
  if (ec) MART_CONFIG_ERROR("cannot create directory '", path, "': ", ec.message());
  if (::access(path.c_str(), W_OK) != 0)
    MART_CONFIG_ERROR("directory '", path, "' is not writable: ", std::strerror(errno),
                      " (choose another output directory or fix its permissions)");
}

}  // namespace mart
