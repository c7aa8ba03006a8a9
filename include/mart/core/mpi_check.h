#pragma once
// MPI_CHECK: throws mart::Error with MPI's own error string, the call, and file:line.
#include <mpi.h>

#include "mart/core/error.h"

namespace mart {
std::string mpi_error_string(int code);
}

#define MPI_CHECK(call)                                                                     \
  do {                                                                                      \
    int mart_mpi_rc_ = (call);                                                              \
    if (mart_mpi_rc_ != MPI_SUCCESS)                                                        \
      ::mart::throw_error("MPI call failed: " #call, ::mart::mpi_error_string(mart_mpi_rc_), \
                          __FILE__, __LINE__,                                               \
                          "check that every rank runs the same collectives in the same order"); \
  } while (0)
