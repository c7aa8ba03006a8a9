#pragma once
// H5_CHECK: HDF5 calls return a negative value (or an invalid hid_t) on failure.
#include <hdf5.h>

#include "mart/core/error.h"

namespace mart {
// HDF5's error stack in a few words, for our exception text: the API call's message and, when it
// differs, the innermost cause (e.g. "data error detected by Fletcher32 checksum").
std::string h5_error_string();
// The operating system's reason for a failed HDF5 read or write (strerror's text, e.g. "No space
// left on device"), or "" when the stack holds none.
std::string h5_io_reason();
// The same, found in an exception's text (H5_CHECK puts the innermost cause there; the stack
// itself is gone once a handle was closed during unwinding).
std::string io_reason(const std::string& text);
}

#define H5_CHECK(call)                                                                        \
  ([&]() {                                                                                    \
    auto mart_h5_rc_ = (call);                                                                \
    if (mart_h5_rc_ < 0)                                                                      \
      ::mart::throw_error("HDF5 call failed: " #call, ::mart::h5_error_string(), __FILE__,    \
                          __LINE__, "is the file a complete mart shard and the disk writable?"); \
    return mart_h5_rc_;                                                                       \
  }())
