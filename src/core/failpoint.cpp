#include "mart/core/failpoint.h"

#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <string>

namespace mart {

void failpoint(const std::string& name) {
  static const std::string spec = [] {
    const char* v = std::getenv("MART_FAILPOINT");
    return std::string(v ? v : "");
  }();
  if (spec.empty()) return;
  const auto at = spec.rfind('@');
  if (spec.compare(0, at, name) != 0 || at != name.size()) return;
  static std::atomic<long> passes{0};
  const long nth = std::strtol(spec.c_str() + at + 1, nullptr, 10);
  if (++passes == nth) raise(SIGSTOP);
}

}  // namespace mart
