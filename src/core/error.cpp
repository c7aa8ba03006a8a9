#include "mart/core/error.h"

namespace mart {

void throw_error(const char* kind, const std::string& what, const char* file, int line,
                 const std::string& hint) {
  std::ostringstream os;
  os << kind;
  if (!what.empty()) os << ": " << what;
  os << " [" << file << ":" << line << "]";
  if (!hint.empty()) os << " hint: " << hint;
  throw Error(os.str());
}

}  // namespace mart
