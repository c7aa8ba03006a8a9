#pragma once
// Talking to tests/python/make_metrics_golden.py: the test writes its random inputs, the script
// computes scikit-learn's values with Debian's /usr/bin/python3, the test reads them back.
// The file layouts are documented in the script.
#include <sys/wait.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

namespace mart::test {

enum class GoldenKind : std::uint32_t { kTagging = 0, kTaggingFloat = 1, kClassification = 2,
                                        kRetrieval = 3 };

class GoldenInput {
 public:
  template <typename S, typename L>
  void add(GoldenKind kind, std::uint64_t n, std::uint64_t m, const std::vector<S>& scores,
           const std::vector<L>& labels) {
    ++cases_;
    put(static_cast<std::uint32_t>(kind));
    put(n);
    put(m);
    for (const S& v : scores) put(v);
    for (const L& v : labels) put(v);
  }
  void write(const std::string& path) const {
    std::ofstream f(path, std::ios::binary);
    f.write("MTIN", 4);
    f.write(reinterpret_cast<const char*>(&cases_), 4);
    f.write(bytes_.data(), static_cast<std::streamsize>(bytes_.size()));
    if (!f) throw std::runtime_error("cannot write " + path);
  }

 private:
  template <typename T>
  void put(const T& v) {
    const char* p = reinterpret_cast<const char*>(&v);
    bytes_.insert(bytes_.end(), p, p + sizeof(T));
  }
  std::uint32_t cases_ = 0;
  std::vector<char> bytes_;
};

inline std::vector<std::vector<double>> read_golden(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::vector<char> buf((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (buf.size() < 8 || std::memcmp(buf.data(), "MTGO", 4) != 0)
    throw std::runtime_error("bad golden file " + path);
  std::uint32_t n_cases;
  std::memcpy(&n_cases, buf.data() + 4, 4);
  std::size_t off = 8;
  std::vector<std::vector<double>> out;
  for (std::uint32_t c = 0; c < n_cases; ++c) {
    std::uint64_t count;
    std::memcpy(&count, buf.data() + off, 8);
    off += 8;
    std::vector<double> v(count);
    std::memcpy(v.data(), buf.data() + off, count * 8);
    off += count * 8;
    out.push_back(std::move(v));
  }
  return out;
}

// Runs the script; returns "" on success, else why the test should skip (a missing package).
// Throws when the script itself failed.
inline std::string run_golden_script(const std::string& in, const std::string& out) {
  const std::string cmd = "/usr/bin/python3 " MART_SOURCE_DIR
                          "/tests/python/make_metrics_golden.py " + in + " " + out;
  const int rc = std::system(cmd.c_str());
  if (rc != 0 && WIFEXITED(rc) && WEXITSTATUS(rc) == 3)
    return "/usr/bin/python3 lacks numpy or scikit-learn (Debian: python3-sklearn)";
  if (rc != 0 && WIFEXITED(rc) && WEXITSTATUS(rc) == 127)
    return "/usr/bin/python3 not found (Debian: python3-sklearn)";
  if (rc != 0) throw std::runtime_error("golden script failed: " + cmd);
  return "";
}

}  // namespace mart::test
