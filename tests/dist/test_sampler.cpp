// DistributedSampler: every rank the same number of full batches, disjoint and (with padding)
// complete across ranks, deterministic, reshuffled per epoch, resumable mid-epoch, and the global
// batches independent of how many ranks split them.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "mart/core/error.h"
#include "mart/dist/sampler.h"

namespace {

using mart::dist::CropItem;
using mart::dist::DistributedSampler;
using mart::dist::Remainder;
using mart::dist::SamplerOptions;
using mart::dist::SamplerState;

// 23 tracks with 1..9 crop starts, and one too short for any clip.
std::vector<uint32_t> crop_starts() {
  std::vector<uint32_t> c;
  for (uint32_t t = 0; t < 23; ++t) c.push_back(1 + t % 9);
  c.push_back(0);
  return c;
}

SamplerOptions options(size_t batch, Remainder rem = Remainder::kDrop) {
  SamplerOptions o;
  o.seed = 7;
  o.batch_size = batch;
  o.crops_per_track = 2;
  o.remainder = rem;
  return o;
}

// Every batch of one epoch from every rank, flattened per rank.
std::vector<std::vector<CropItem>> epoch_per_rank(int ranks, SamplerOptions o, uint64_t epoch) {
  std::vector<std::vector<CropItem>> out(static_cast<size_t>(ranks));
  for (int r = 0; r < ranks; ++r) {
    DistributedSampler s(crop_starts(), r, ranks, o);
    s.set_epoch(epoch);
    while (!s.epoch_done()) {
      auto b = s.next_batch();
      EXPECT_EQ(b.size(), o.batch_size);
      out[static_cast<size_t>(r)].insert(out[static_cast<size_t>(r)].end(), b.begin(), b.end());
    }
  }
  return out;
}

// Item identity is (track, copy): with 2 crops per track a track appears twice per epoch, so
// count per track.
std::map<uint32_t, int> track_counts(const std::vector<std::vector<CropItem>>& per_rank) {
  std::map<uint32_t, int> n;
  for (const auto& v : per_rank)
    for (const auto& it : v) ++n[it.track];
  return n;
}

TEST(Sampler, SkipsTracksWithoutACropAndCountsItems) {
  DistributedSampler s(crop_starts(), 0, 2, options(4));
  EXPECT_EQ(s.items_per_epoch(), 46u);       // 23 usable tracks x 2 crops
  EXPECT_EQ(s.batches_per_epoch(), 5u);      // 46 / (2 x 4) = 5, 6 dropped
  DistributedSampler p(crop_starts(), 0, 2, options(4, Remainder::kPad));
  EXPECT_EQ(p.batches_per_epoch(), 6u);
}

TEST(Sampler, CropStartsAreValid) {
  const auto starts = crop_starts();
  DistributedSampler s(starts, 1, 2, options(4));
  std::map<uint32_t, int> per_track;
  for (const auto& it : s.epoch_order(3)) {
    ASSERT_LT(it.track, 23u);
    EXPECT_LT(it.start, starts[it.track]);
    ++per_track[it.track];
  }
  EXPECT_EQ(per_track.size(), 23u);  // the order is a permutation: each track's 2 crops once
  for (const auto& [track, n] : per_track) EXPECT_EQ(n, 2) << track;
}

TEST(Sampler, DropIsDisjointAcrossRanksAndLeavesOutOnlyTheRemainder) {
  const auto per_rank = epoch_per_rank(3, options(4), 0);
  std::multiset<std::pair<uint32_t, uint32_t>> seen;
  size_t total = 0;
  for (const auto& v : per_rank) {
    EXPECT_EQ(v.size(), per_rank[0].size());  // same number of batches on every rank
    total += v.size();
  }
  EXPECT_EQ(total, 36u);  // 46 items, global batch 12: 3 batches, 10 dropped
  // No track more often than its 2 crops; the used items are a prefix of the epoch order.
  for (const auto& [track, n] : track_counts(per_rank)) EXPECT_LE(n, 2) << track;
  DistributedSampler s(crop_starts(), 0, 3, options(4));
  const auto order = s.epoch_order(0);
  std::multiset<uint32_t> prefix, used;
  for (size_t i = 0; i < 36; ++i) prefix.insert(order[i].track);
  for (const auto& v : per_rank)
    for (const auto& it : v) used.insert(it.track);
  EXPECT_EQ(prefix, used);
}

TEST(Sampler, PadIsCompleteAndEqualPerRank) {
  const auto per_rank = epoch_per_rank(3, options(4, Remainder::kPad), 2);
  for (const auto& v : per_rank) EXPECT_EQ(v.size(), 16u);  // 4 batches of 4 on each of 3 ranks
  const auto n = track_counts(per_rank);
  EXPECT_EQ(n.size(), 23u);  // every usable track present
  int extra = 0;
  for (const auto& [track, count] : n) {
    EXPECT_GE(count, 2) << track;  // both crops of every track: complete
    extra += count - 2;
  }
  EXPECT_EQ(extra, 48 - 46);  // exactly the padding repeats
}

TEST(Sampler, DeterministicAndReshuffledPerEpoch) {
  const auto a = epoch_per_rank(2, options(4), 5), b = epoch_per_rank(2, options(4), 5);
  EXPECT_EQ(a, b);
  const auto c = epoch_per_rank(2, options(4), 6);
  EXPECT_NE(a, c);
  SamplerOptions other = options(4);
  other.seed = 8;
  EXPECT_NE(a, epoch_per_rank(2, other, 5));
}

TEST(Sampler, GlobalBatchesDoNotDependOnTheRankCount) {
  // 2 ranks of batch 4 see, batch by batch, what 1 rank of batch 8 sees.
  DistributedSampler one(crop_starts(), 0, 1, options(8));
  DistributedSampler r0(crop_starts(), 0, 2, options(4)), r1(crop_starts(), 1, 2, options(4));
  ASSERT_EQ(one.batches_per_epoch(), r0.batches_per_epoch());
  for (size_t g = 0; g < one.batches_per_epoch(); ++g) {
    auto both = r0.batch(1, g);
    const auto second = r1.batch(1, g);
    both.insert(both.end(), second.begin(), second.end());
    EXPECT_EQ(both, one.batch(1, g)) << "global batch " << g;
  }
}

TEST(Sampler, ResumesMidEpochWithTheSameBatches) {
  DistributedSampler full(crop_starts(), 1, 2, options(4));
  full.set_epoch(4);
  std::vector<std::vector<CropItem>> want;
  while (!full.epoch_done()) want.push_back(full.next_batch());

  DistributedSampler first(crop_starts(), 1, 2, options(4));
  first.set_epoch(4);
  first.next_batch();
  first.next_batch();
  const std::string saved = to_string(first.state());
  EXPECT_EQ(saved, "epoch=4 batch=2");

  DistributedSampler resumed(crop_starts(), 1, 2, options(4));
  resumed.restore(mart::dist::sampler_state_from_string(saved));
  for (size_t i = 2; i < want.size(); ++i) EXPECT_EQ(resumed.next_batch(), want[i]) << i;
  EXPECT_TRUE(resumed.epoch_done());
  EXPECT_THROW(resumed.next_batch(), mart::Error);
}

TEST(Sampler, StateStringsRoundTripAndRejectGarbage) {
  const SamplerState s{12, 345};
  EXPECT_EQ(mart::dist::sampler_state_from_string(to_string(s)), s);
  for (const char* bad : {"", "epoch=1", "epoch=x batch=2", "epoch=1 batch=2 more", "batch=2 epoch=1"})
    EXPECT_THROW(mart::dist::sampler_state_from_string(bad), mart::ConfigError) << bad;
  DistributedSampler sampler(crop_starts(), 0, 2, options(4));
  EXPECT_THROW(sampler.restore({0, 99}), mart::Error);
}

TEST(Sampler, TooLittleDataForOneGlobalBatchIsAConfigError) {
  EXPECT_THROW(DistributedSampler(crop_starts(), 0, 4, options(16)), mart::ConfigError);
}

}  // namespace
