#pragma once
// The world's ranks in consecutive groups, each with its own MPI communicator: jobs that several
// ranks share (a fine-tuning job's batches) run side by side, one per group. No torch.
#include <mpi.h>

#include "mart/dist/world.h"

namespace mart::dist {

// Groups of `ranks_per_group` (>= 1) consecutive ranks (at most the world's size; the last group
// takes what is left): rank r is in group r / ranks_per_group. Collective on the world
// (MPI_Comm_split).
class RankGroups {
 public:
  RankGroups(const World& world, int ranks_per_group);
  ~RankGroups();
  RankGroups(const RankGroups&) = delete;
  RankGroups& operator=(const RankGroups&) = delete;

  int count() const { return count_; }          // groups in the world
  int index() const { return index_; }          // this rank's group, 0 .. count() - 1
  int ranks_per_group() const { return per_; }  // the last group may have fewer
  bool leader() const { return group_rank_ == 0; }
  MPI_Comm comm() const { return comm_; }

 private:
  int per_, count_, index_, group_rank_ = 0;
  MPI_Comm comm_ = MPI_COMM_NULL;
};

}  // namespace mart::dist
