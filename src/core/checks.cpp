#include <string>

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
herr_t walk_innermost(unsigned n, const H5E_error2_t* err, void* data) {
  if (n == 0 && err && err->desc) *static_cast<std::string*>(data) = err->desc;
  return 0;
}
}  // namespace

std::string h5_error_string() {
  std::string msg = "(no HDF5 error message)";
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_innermost, &msg);
  return msg;
}

}  // namespace mart
