#include "mart/dist/work_counter.h"

#include "mart/core/mpi_check.h"

namespace mart::dist {

WorkCounter::WorkCounter(MPI_Comm comm) {
  MPI_CHECK(MPI_Win_allocate(sizeof(int64_t), sizeof(int64_t), MPI_INFO_NULL, comm, &base_, &win_));
  *base_ = 0;
  MPI_CHECK(MPI_Barrier(comm));  // no rank draws before every rank's window holds 0
}

WorkCounter::~WorkCounter() {
  if (win_ != MPI_WIN_NULL) MPI_Win_free(&win_);
}

int64_t WorkCounter::next() {
  const int64_t one = 1;
  int64_t drawn = 0;
  MPI_CHECK(MPI_Win_lock(MPI_LOCK_SHARED, 0, 0, win_));
  MPI_CHECK(MPI_Fetch_and_op(&one, &drawn, MPI_INT64_T, 0, 0, MPI_SUM, win_));
  MPI_CHECK(MPI_Win_unlock(0, win_));
  return drawn;
}

}  // namespace mart::dist
