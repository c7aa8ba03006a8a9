#include <gtest/gtest.h>

#include <string>

#include "mart/core/error.h"
#include "mart/dist/world.h"

namespace {

TEST(World, RankSizeAndLocalRankOnTwoRanks) {
  int argc = 0;
  char** argv = nullptr;
  mart::dist::World w(&argc, &argv);  // MPI is already initialized by main: World adopts it
  EXPECT_EQ(w.size(), 2);
  EXPECT_GE(w.rank(), 0);
  EXPECT_LT(w.rank(), 2);
  // Both ranks run on this one machine: the node communicator holds both.
  EXPECT_EQ(w.local_size(), 2);
  EXPECT_EQ(w.local_rank(), w.rank());
  const auto all = w.all_gather(static_cast<uint64_t>(100 + w.rank()));
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0], 100u);
  EXPECT_EQ(all[1], 101u);
  EXPECT_TRUE(w.any(w.rank() == 1));
  EXPECT_FALSE(w.any(false));
}

TEST(World, AllGatherBytesInOneMessageAndInPieces) {
  int argc = 0;
  char** argv = nullptr;
  mart::dist::World w(&argc, &argv);
  // Rank r sends 25 + 7r bytes of a pattern of its own; one empty string checks the zero case.
  auto bytes_of = [](int r) {
    std::string s;
    for (int i = 0; i < 25 + 7 * r; ++i) s.push_back(static_cast<char>('a' + (i * (r + 3)) % 26));
    return s;
  };
  for (uint64_t limit : {uint64_t{1} << 31, uint64_t{64}, uint64_t{10}, uint64_t{1}}) {  // one Allgatherv, then pieces
    const auto all = w.all_gather_bytes(bytes_of(w.rank()), limit);
    ASSERT_EQ(all.size(), 2u);
    for (int r = 0; r < 2; ++r) EXPECT_EQ(all[static_cast<size_t>(r)], bytes_of(r)) << "limit " << limit << " rank " << r;
    const auto empty = w.all_gather_bytes(w.rank() == 0 ? std::string() : bytes_of(1), limit);
    EXPECT_EQ(empty[0], "");
    EXPECT_EQ(empty[1], bytes_of(1));
  }
}

TEST(World, SameConfigPassesDifferentConfigFailsOnEveryRank) {
  int argc = 0;
  char** argv = nullptr;
  mart::dist::World w(&argc, &argv);
  EXPECT_NO_THROW(mart::dist::check_same_config(w, 0x1234));
  try {
    mart::dist::check_same_config(w, w.rank() == 1 ? 0x99 : 0x1234);
    ADD_FAILURE() << "differing hashes were accepted on rank " << w.rank();
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 has 0000000000000099"), std::string::npos) << e.what();
  }
}

}  // namespace
