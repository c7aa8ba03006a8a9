#pragma once
// H5_CHECK: HDF5 calls return a negative value (or an invalid hid_t) on failure.
#include <hdf5.h>

#include "mart/core/error.h"

namespace mart {
// The innermost message of HDF5's error stack, for our exception text.
std::string h5_error_string();
}

#define H5_CHECK(call)                                                                        \
  ([&]() {                                                                                    \
    auto mart_h5_rc_ = (call);                                                                \
    if (mart_h5_rc_ < 0)                                                                      \
      ::mart::throw_error("HDF5 call failed: " #call, ::mart::h5_error_string(), __FILE__,    \
                          __LINE__, "is the file a complete mart shard and the disk writable?"); \
    return mart_h5_rc_;                                                                       \
  }())
