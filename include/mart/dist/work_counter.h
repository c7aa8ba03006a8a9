#pragma once
// A work counter shared by the ranks of a communicator: next() hands out 0, 1, 2, ... over all
// the ranks together, every value to exactly one caller, so ranks draw the next unit of work as
// they become free (one-sided MPI: an atomic fetch-and-add on rank 0's window). No torch.
#include <mpi.h>

#include <cstdint>

namespace mart::dist {

class WorkCounter {
 public:
  // Collective on `comm`: every rank constructs it (and destroys it) together.
  explicit WorkCounter(MPI_Comm comm);
  ~WorkCounter();
  WorkCounter(const WorkCounter&) = delete;
  WorkCounter& operator=(const WorkCounter&) = delete;

  int64_t next();

 private:
  int64_t* base_ = nullptr;
  MPI_Win win_ = MPI_WIN_NULL;
};

}  // namespace mart::dist
