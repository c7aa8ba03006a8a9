#pragma once
// Errors and check macros. Every external call is checked; a failure throws mart::Error whose
// message names the operation, the file:line and, where we know one, the fix.
#include <sstream>
#include <stdexcept>
#include <string>

namespace mart {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A user-facing configuration or input error (bad flag, missing file): reported without a
// stack of internals, and raised before any work starts.
class ConfigError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void throw_error(const char* kind, const std::string& what, const char* file, int line,
                              const std::string& hint);

namespace detail {
inline void append(std::ostringstream&) {}
template <typename T, typename... R>
void append(std::ostringstream& os, const T& v, const R&... rest) {
  os << v;
  append(os, rest...);
}
template <typename... A>
std::string concat(const A&... a) {
  std::ostringstream os;
  append(os, a...);
  return os.str();
}
}  // namespace detail

}  // namespace mart

// MART_CHECK(cond, message parts...): our own invariants.
#define MART_CHECK(cond, ...)                                                                   \
  do {                                                                                          \
    if (!(cond))                                                                                \
      ::mart::throw_error("check failed: " #cond, ::mart::detail::concat(__VA_ARGS__), __FILE__, \
                          __LINE__, "");                                                        \
  } while (0)

// MART_FAIL(message parts...): unconditional error.
#define MART_FAIL(...) \
  ::mart::throw_error("error", ::mart::detail::concat(__VA_ARGS__), __FILE__, __LINE__, "")

// MART_CONFIG_ERROR(message parts...): a user's mistake; thrown as ConfigError.
#define MART_CONFIG_ERROR(...) \
  throw ::mart::ConfigError(::mart::detail::concat(__VA_ARGS__))
