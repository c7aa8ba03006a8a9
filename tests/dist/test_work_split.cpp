// How work is split over ranks (mart/dist/block.h, rank_groups.h, work_counter.h): the pure block
// splits for many sizes, and on 3 ranks the rank groups, the shared work counter and the gather of
// plain values (world.h) that collects what the ranks did.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <string>
#include <vector>

#include "mart/dist/block.h"
#include "mart/dist/rank_groups.h"
#include "mart/dist/work_counter.h"
#include "mart/dist/world.h"

namespace {

using mart::dist::chunk_block;
using mart::dist::contiguous_block;

// MPI is already initialized by main: a World adopts it (and leaves finalizing to main).
struct Adopted {
  int argc = 0;
  char** argv = nullptr;
  mart::dist::World world{&argc, &argv};
};

TEST(Block, EveryItemInExactlyOneBlockInRankOrderSizesDifferingByOne) {
  for (size_t n = 0; n <= 23; ++n)
    for (int size = 1; size <= 6; ++size) {
      size_t next = 0, smallest = n, largest = 0;
      for (int rank = 0; rank < size; ++rank) {
        const auto [begin, end] = contiguous_block(n, rank, size);
        EXPECT_EQ(begin, next) << n << " items, rank " << rank << " of " << size;
        next = end;
        smallest = std::min(smallest, end - begin), largest = std::max(largest, end - begin);
      }
      EXPECT_EQ(next, n);
      EXPECT_LE(largest - std::min(smallest, largest), 1u);
    }
}

TEST(Block, ChunkBlocksHoldWholeChunksTheSameOnAnyRankCount) {
  for (size_t n = 0; n <= 23; ++n)
    for (size_t chunk = 1; chunk <= 5; ++chunk)
      for (int size = 1; size <= 6; ++size) {
        size_t next = 0;
        for (int rank = 0; rank < size; ++rank) {
          const auto [begin, end] = chunk_block(n, chunk, rank, size);
          EXPECT_EQ(begin, next) << n << " items in chunks of " << chunk << ", rank " << rank << " of " << size;
          EXPECT_TRUE(begin == end || begin % chunk == 0);
          EXPECT_TRUE(end == n || end % chunk == 0);
          next = end;
        }
        EXPECT_EQ(next, n);
      }
  // 10 items in chunks of 4 on 2 ranks: [0, 8) and [8, 10).
  EXPECT_EQ(chunk_block(10, 4, 0, 2), std::make_pair(size_t{0}, size_t{8}));
  EXPECT_EQ(chunk_block(10, 4, 1, 2), std::make_pair(size_t{8}, size_t{10}));
}

TEST(RankGroups, ConsecutiveRanksWithTheLastGroupShorter) {
  Adopted adopted;
  const auto& w = adopted.world;
  ASSERT_EQ(w.size(), 3);
  for (int per : {1, 2, 3, 5}) {
    mart::dist::RankGroups groups(w, per);
    const int expected_per = std::min(per, 3);
    EXPECT_EQ(groups.ranks_per_group(), expected_per);
    EXPECT_EQ(groups.count(), (3 + expected_per - 1) / expected_per) << per;
    EXPECT_EQ(groups.index(), w.rank() / expected_per) << per;
    int group_rank = -1, group_size = 0;
    MPI_Comm_rank(groups.comm(), &group_rank);
    MPI_Comm_size(groups.comm(), &group_size);
    EXPECT_EQ(group_rank, w.rank() % expected_per);
    EXPECT_EQ(group_size, std::min(expected_per, 3 - groups.index() * expected_per));
    EXPECT_EQ(groups.leader(), group_rank == 0);
  }
}

TEST(WorkCounter, HandsOutEveryValueOnceOverAllRanks) {
  Adopted adopted;
  const auto& w = adopted.world;
  constexpr int64_t kUnits = 40;
  std::vector<int64_t> mine;
  {
    mart::dist::WorkCounter counter(w.comm());
    for (int64_t drawn = counter.next(); drawn < kUnits; drawn = counter.next()) mine.push_back(drawn);
    w.barrier();  // no rank frees the window while another still draws
  }
  std::vector<int64_t> all = mart::dist::all_gather_values(w, mine);
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kUnits));
  for (int64_t i = 0; i < kUnits; ++i) EXPECT_EQ(all[static_cast<size_t>(i)], i);
}

}  // namespace
