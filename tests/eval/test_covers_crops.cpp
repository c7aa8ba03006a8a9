// The crops of a covers training item (eval.covers_train_crops): distinct when the track has
// enough, every crop in turn when it has fewer, uniform over the draws, and one crop is the same
// draw as before the option existed (starts[r % n] for the first number r of the item's Rng).
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "mart/core/error.h"
#include "mart/eval/covers_finetune.h"

using mart::Rng;
using mart::eval::draw_train_crops;

TEST(CoversTrainCrops, DistinctWhenTheTrackHasEnough) {
  const std::vector<int64_t> starts{0, 64, 128, 192, 256, 320, 384};
  std::map<int64_t, int> count;
  for (uint64_t seed = 1; seed <= 2000; ++seed) {
    Rng rng(seed);
    const auto c = draw_train_crops(starts, 3, rng);
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(std::set<int64_t>(c.begin(), c.end()).size(), 3u) << seed;
    for (int64_t s : c) {
      EXPECT_EQ(s % 64, 0);
      ++count[s];
    }
  }
  // 6000 draws over 7 starts: 857 each expected, a standard deviation of about 22 (2000 items,
  // each start in 3/7 of them); 110 is 5 of them. A start never drawn, or drawn twice as often, fails.
  ASSERT_EQ(count.size(), starts.size());
  for (const auto& [s, n] : count) EXPECT_NEAR(n, 6000.0 / 7.0, 110) << s;
}

TEST(CoversTrainCrops, EveryCropInTurnWhenTheTrackHasFewer) {
  Rng rng(5);
  EXPECT_EQ(draw_train_crops({10, 20}, 5, rng), (std::vector<int64_t>{10, 20, 10, 20, 10}));
  EXPECT_EQ(draw_train_crops({10, 20}, 2, rng), (std::vector<int64_t>{10, 20}));
  EXPECT_EQ(draw_train_crops({7}, 1, rng), (std::vector<int64_t>{7}));
}

TEST(CoversTrainCrops, OneCropIsTheOldDraw) {
  const std::vector<int64_t> starts{3, 1, 4, 1, 5, 9, 2, 6};
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    Rng a(seed), b(seed);
    EXPECT_EQ(draw_train_crops(starts, 1, a), (std::vector<int64_t>{starts[b.next() % starts.size()]})) << seed;
  }
}

TEST(CoversTrainCrops, NothingToDrawIsAnError) {
  Rng rng(1);
  EXPECT_THROW(draw_train_crops({}, 1, rng), mart::Error);
  EXPECT_THROW(draw_train_crops({1, 2}, 0, rng), mart::Error);
}
