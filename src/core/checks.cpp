#include <string>
#include <vector>

#include "mart/core/h5_check.h"
#include "mart/core/mpi_check.h"

namespace mart {

std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, static_cast<size_t>(len));
}

namespace {
herr_t collect(unsigned, const H5E_error2_t* err, void* data) {
  if (err && err->desc) static_cast<std::vector<std::string>*>(data)->push_back(err->desc);
  return 0;
}

std::vector<std::string> h5_stack() {
  std::vector<std::string> descs;  // from the API call down to the innermost function
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, collect, &descs);
  return descs;
}
}  // namespace

std::string h5_error_string() {
  const auto descs = h5_stack();
  if (descs.empty()) return "(no HDF5 error message)";
  // The API's words and, where it differs, the innermost cause ("Fletcher32 checksum", "errno").
  std::string msg = descs.front();
  if (descs.size() > 1 && descs.back() != descs.front()) msg += "; " + descs.back();
  return msg;
}

std::string io_reason(const std::string& text) {
  // HDF5's file drivers put the system's text in the stack: "..., error message = 'No space left
  // on device', ...".
  const std::string key = "error message = '";
  const size_t at = text.find(key);
  if (at == std::string::npos) return "";
  const size_t end = text.find('\'', at + key.size());
  return text.substr(at + key.size(), end == std::string::npos ? std::string::npos : end - at - key.size());
}

std::string h5_io_reason() {
  for (const auto& d : h5_stack()) {
    const std::string r = io_reason(d);
    if (!r.empty()) return r;
  }
  return "";
}

}  // namespace mart
