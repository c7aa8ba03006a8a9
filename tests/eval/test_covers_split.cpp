// The covers task's split by work: a work's versions never on two sides, whether the split comes
// from the data or is drawn here; the fractions of the works; bad input named.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <set>

#include "mart/core/error.h"
#include "mart/eval/covers_split.h"

using namespace mart::eval;

namespace {

// 50 works of 1-6 versions each, in shuffled track order, plus 7 tracks without a work.
void corpus(uint32_t seed, std::vector<int64_t>* groups, std::vector<std::string>* splits) {
  std::mt19937 rng(seed);
  groups->clear();
  for (int64_t w = 0; w < 50; ++w)
    for (int v = 0, n = 1 + static_cast<int>(rng() % 6); v < n; ++v) groups->push_back(w * 3 + 1);  // sparse ids
  for (int i = 0; i < 7; ++i) groups->push_back(-1);
  std::shuffle(groups->begin(), groups->end(), rng);
  splits->assign(groups->size(), "test");  // a covers list without a split column
}

std::map<int64_t, std::set<std::string>> sides(const std::vector<int64_t>& groups, const std::vector<std::string>& split) {
  std::map<int64_t, std::set<std::string>> s;
  for (size_t i = 0; i < groups.size(); ++i)
    if (groups[i] >= 0) s[groups[i]].insert(split[i]);
  return s;
}

}  // namespace

TEST(CoversSplit, ASeededSplitNeverPutsAWorkOnTwoSidesAndHitsTheFractions) {
  const auto f = parse_covers_split("0.8/0.1/0.1");
  ASSERT_TRUE(f.has_value());
  std::set<std::vector<std::string>> distinct;
  for (uint32_t c = 0; c < 5; ++c) {
    std::vector<int64_t> groups;
    std::vector<std::string> splits;
    corpus(c, &groups, &splits);
    for (uint64_t seed : {1ull, 2ull, 3ull}) {
      const CoversSplit s = covers_split(groups, splits, f, seed);
      EXPECT_EQ(s.source, CoversSplitSource::seeded);
      std::map<std::string, int64_t> works;
      for (const auto& [work, on] : sides(groups, s.split)) {
        ASSERT_EQ(on.size(), 1u) << "work " << work << " on " << on.size() << " sides (corpus " << c << ", seed " << seed << ")";
        ++works[*on.begin()];
      }
      EXPECT_EQ(works["train"], 40);  // round(0.8 x 50), round(0.1 x 50), the rest
      EXPECT_EQ(works["valid"], 5);
      EXPECT_EQ(works["test"], 5);
      EXPECT_EQ(s.works[0], 40);
      EXPECT_EQ(s.works[1], 5);
      EXPECT_EQ(s.works[2], 5);
      for (size_t i = 0; i < groups.size(); ++i) {
        if (groups[i] < 0) {
          EXPECT_EQ(s.split[i], "test") << "a distractor left the test side";
        }
      }
      EXPECT_EQ(covers_split(groups, splits, f, seed).split, s.split) << "not reproducible";
      if (c == 0) distinct.insert(s.split);
    }
  }
  EXPECT_EQ(distinct.size(), 3u) << "three seeds gave fewer than three splits";
}

TEST(CoversSplit, AlwaysLeavesATestWork) {
  const std::vector<int64_t> groups{4, 4, 9};
  const std::vector<std::string> splits(3, "test");
  const auto s = covers_split(groups, splits, parse_covers_split("0.9/0.1/0.0000001"), 7);
  EXPECT_EQ(s.works[2], 1);
  EXPECT_EQ(s.works[0] + s.works[1], 1);
}

TEST(CoversSplit, TheDataSplitIsKeptAndAWorkCutInTwoIsRefused) {
  const std::vector<int64_t> groups{0, 0, 1, 1, 2, -1};
  std::vector<std::string> splits{"train", "train", "valid", "valid", "test", "train"};
  // The data's split wins over eval.covers_split.
  const auto s = covers_split(groups, splits, parse_covers_split("0.5/0.0/0.5"), 1);
  EXPECT_EQ(s.source, CoversSplitSource::data);
  EXPECT_EQ(s.split, splits);
  EXPECT_EQ(s.works[0], 1);
  EXPECT_EQ(s.works[1], 1);
  EXPECT_EQ(s.works[2], 1);
  splits[1] = "test";  // work 0 now has a version in train and one in test
  try {
    covers_split(groups, splits, std::nullopt, 1);
    FAIL() << "a work on two sides was accepted";
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("work 0"), std::string::npos) << e.what();
  }
}

TEST(CoversSplit, AnUnknownSplitNameIsRefused) {
  const std::vector<int64_t> groups{0, 0, 1, 1};
  for (const char* bad : {"dev", "Test", ""}) {
    const std::vector<std::string> splits{"train", "train", bad, bad};
    EXPECT_THROW(covers_split(groups, splits, std::nullopt, 1), mart::ConfigError) << "'" << bad << "'";
  }
}

TEST(CoversSplit, WithoutASplitEveryWorkIsTested) {
  std::vector<int64_t> groups;
  std::vector<std::string> splits;
  corpus(9, &groups, &splits);
  const auto s = covers_split(groups, splits, std::nullopt, 1);
  EXPECT_EQ(s.source, CoversSplitSource::none);
  EXPECT_EQ(s.works[2], 50);
  for (const auto& x : s.split) {
    EXPECT_EQ(x, "test");
  }
}

TEST(CoversSplit, ParseNamesWhatIsWrong) {
  EXPECT_FALSE(parse_covers_split("").has_value());
  EXPECT_FALSE(parse_covers_split("  ").has_value());
  const auto f = parse_covers_split(" 0.7 / 0.2 / 0.1 ");
  ASSERT_TRUE(f.has_value());
  EXPECT_DOUBLE_EQ(f->train, 0.7);
  EXPECT_DOUBLE_EQ(f->test, 0.1);
  for (const char* bad : {"0.8/0.2", "0.9/0.2/0.1", "1/0/0", "0.8/x/0.1", "0.8/0.1/0.1/0", "-0.1/0.6/0.5", "0.8//0.2"})
    EXPECT_THROW(parse_covers_split(bad), mart::ConfigError) << bad;
}

// eval.score_split valid: the valid works are scored, the test works are held out of everything,
// and a seeded tenth of the training works stands in for valid; bad splits are refused.
TEST(CoversSplit, DevelopmentScoringScoresValidWorksAndHoldsOutTest) {
  std::vector<int64_t> groups;
  std::vector<std::string> splits;
  corpus(3, &groups, &splits);
  const auto cs = covers_split(groups, splits, parse_covers_split("0.7/0.1/0.2"), 9);
  ASSERT_GE(cs.works[1], 1);
  const auto dev = develop_covers_split(cs, groups, 9);
  EXPECT_EQ(dev.source, cs.source);
  int64_t stand_in = 0;
  std::set<int64_t> stand_in_works;
  for (size_t i = 0; i < groups.size(); ++i) {
    const std::string& was = cs.split[i];
    const std::string& is = dev.split[i];
    if (was == "test") {
      EXPECT_EQ(is, "held_out") << i;
    }
    if (was == "valid") {
      EXPECT_EQ(is, "test") << i;
    }
    if (was == "train") {
      EXPECT_TRUE(is == "train" || is == "valid") << i << " " << is;
      if (is == "valid") stand_in_works.insert(groups[i]);
    }
  }
  stand_in = static_cast<int64_t>(stand_in_works.size());
  EXPECT_EQ(stand_in, std::max<int64_t>(2, std::llround(cs.works[0] / 10.0)));
  for (int64_t w : stand_in_works)  // each can query: two or more versions
    EXPECT_GE(std::count(groups.begin(), groups.end(), w), 2) << "work " << w;
  EXPECT_EQ(dev.works[0], cs.works[0] - stand_in);
  EXPECT_EQ(dev.works[1], stand_in);
  EXPECT_EQ(dev.works[2], cs.works[1]);
  for (const auto& [work, s] : sides(groups, dev.split)) EXPECT_EQ(s.size(), 1u) << "work " << work;  // still by work
  // Seeded: the same seed gives the same stand-in works, another seed (almost surely) others.
  EXPECT_EQ(develop_covers_split(cs, groups, 9).split, dev.split);
  EXPECT_NE(develop_covers_split(cs, groups, 10).split, dev.split);
  // No split, no valid works, or fewer than two training works: refused, naming the fix.
  const auto none = covers_split(groups, splits, std::nullopt, 1);
  EXPECT_THROW(develop_covers_split(none, groups, 1), mart::ConfigError);
  EXPECT_THROW(develop_covers_split(covers_split(groups, splits, parse_covers_split("0.9/0/0.1"), 1), groups, 1),
               mart::ConfigError);
  try {
    develop_covers_split(covers_split(groups, splits, parse_covers_split("0/0.5/0.5"), 1), groups, 1);
    FAIL() << "a split without training works was accepted";
  } catch (const mart::ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("at least 2"), std::string::npos) << e.what();
  }
  // Training works of one version each cannot validate (their queries have no answer).
  std::vector<int64_t> g1;
  std::vector<std::string> s1;
  for (int64_t w = 0; w < 10; ++w) g1.push_back(w), s1.push_back("train");
  for (int v = 0; v < 2; ++v) g1.push_back(10), s1.push_back("valid"), g1.push_back(11), s1.push_back("test");
  EXPECT_THROW(develop_covers_split(covers_split(g1, s1, std::nullopt, 1), g1, 1), mart::ConfigError);
}
