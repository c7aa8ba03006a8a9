#include "mart/core/fs.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "mart/core/error.h"

namespace mart {

namespace fs = std::filesystem;

void write_file_atomic(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) MART_FAIL("cannot create '", tmp, "': ", std::strerror(errno));
  const char* p = content.data();
  size_t left = content.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      MART_FAIL("cannot write '", tmp, "': ", std::strerror(e));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    MART_FAIL("cannot flush '", tmp, "': ", std::strerror(e));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    MART_FAIL("cannot rename '", tmp, "' to '", path, "': ", std::strerror(e));
  }
}

void fsync_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) MART_FAIL("cannot open '", path, "' to flush it: ", std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) MART_FAIL("cannot flush '", path, "': ", std::strerror(err));
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
