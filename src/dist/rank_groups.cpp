#include "mart/dist/rank_groups.h"

#include <algorithm>

#include "mart/core/mpi_check.h"

namespace mart::dist {

RankGroups::RankGroups(const World& world, int ranks_per_group)
    : per_(std::min(ranks_per_group, world.size())),
      count_((world.size() + per_ - 1) / per_),
      index_(world.rank() / per_) {
  MPI_CHECK(MPI_Comm_split(world.comm(), index_, world.rank(), &comm_));
  MPI_CHECK(MPI_Comm_rank(comm_, &group_rank_));
}

RankGroups::~RankGroups() {
  if (comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

}  // namespace mart::dist
