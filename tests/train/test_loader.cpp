// The training loader: view B's hierarchy at the sampler's start, view A's top clip at its own
// start within train.crop_offset_s of B's (0: the same start, the old pair).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <random>
#include <set>

#include "mart/data/manifest.h"
#include "mart/data/shard.h"
#include "mart/train/loader.h"

namespace fs = std::filesystem;
using namespace mart;

namespace {

features::FeatureConfig config() {
  features::FeatureConfig c;
  c.sample_rate = 8000;
  c.levels = 3;
  c.parts = 2;
  c.frames = 4;
  c.n_fft = 32;
  c.n_mels = 8;
  c.views = 2;
  c.clip_samples = 4 * c.frames * 16;  // finest hop 16 samples, top hop 64
  c.validate();
  return c;
}

// A run of one shard with 5 tracks of random log-mels, all in split "train".
std::string make_run(const features::FeatureConfig& c) {
  const std::string dir = (fs::temp_directory_path() / "mart_loader_run").string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::mt19937 rng(7);
  std::normal_distribution<float> logmel(-5.0f, 3.0f);
  data::LabelSchema labels;
  data::ShardWriter w(dir + "/shard-000000.h5", c, labels, 1);
  for (int i = 0; i < 5; ++i) {
    data::TrackMeta m;
    m.id = "t" + std::to_string(i);
    m.path = m.id + ".wav";
    m.split = "train";
    m.samples = c.clip_samples + 64 * (3 + 7 * i);  // 4 .. 32 top-clip starts
    std::vector<std::vector<std::vector<float>>> mels;
    for (int v = 0; v <= c.views; ++v) {
      mels.emplace_back();
      for (int level : data::stored_levels(c)) {
        std::vector<float> x(static_cast<size_t>(data::track_frames(c, level, m.samples) * c.n_mels));
        for (float& y : x) y = logmel(rng);
        mels.back().push_back(std::move(x));
      }
    }
    w.add_track(m, mels);
  }
  const int64_t frames = w.frames();
  w.finish();
  data::Manifest man;
  man.features = c;
  man.labels = labels;
  man.preprocess_hash = 1;
  data::ManifestShard shard;
  shard.file = "shard-000000.h5", shard.tracks = 5, shard.frames = frames;
  man.shards.push_back(shard);
  data::write_manifest(dir + "/manifest.json", man);
  return dir;
}

struct Checked {
  int64_t items = 0, moved = 0;
};

// The tests' sampler: 1 rank, batch 2, 3 crops per track, at epoch 0.
dist::DistributedSampler test_sampler(const train::TrainingData& data) {
  dist::SamplerOptions so;
  so.seed = 11;
  so.batch_size = 2;
  so.crops_per_track = 3;
  dist::DistributedSampler sampler(data.crop_starts(), 0, 1, so);
  sampler.set_epoch(0);
  return sampler;
}

// Reads `batches` batches and checks each item against the shard's own crops.
// With stored_views false both views are the clean audio (view 0).
Checked check_batches(const train::TrainingData& data, const data::ShardReader& shard, double offset_s, int batches,
                      bool stored_views = true) {
  const auto& f = data.features();
  const int64_t hops = train::offset_hops(offset_s, f);
  dist::DistributedSampler sampler = test_sampler(data);
  dist::DistributedSampler order = sampler;  // the same items, read here to compare
  train::Prefetcher loader(data, sampler, {5, 2, batches, hops, stored_views});
  const size_t clip = size_t(f.n_mels * f.frames), hier = clip * size_t(f.clips_total());
  Checked out;
  for (int n = 0; n < batches; ++n) {
    if (order.epoch_done()) order.set_epoch(order.state().epoch + 1);
    const uint64_t epoch = order.state().epoch;
    const auto items = order.next_batch();
    const auto b = loader.next();
    EXPECT_EQ(b.size, int64_t(items.size()));
    for (size_t i = 0; i < items.size(); ++i) {
      const auto& it = items[i];
      const auto [va, vb] = train::choose_views(5, epoch, it, stored_views ? f.views : 0);
      EXPECT_EQ(b.track[i], int64_t(it.track));
      const uint32_t starts = data.crop_starts()[it.track];
      const uint32_t sa = train::choose_start_a(5, epoch, it, starts, hops);
      EXPECT_LT(sa, starts);
      EXPECT_LE(std::abs(int64_t(sa) - int64_t(it.start)), hops);
      if (hops == 0) {
        EXPECT_EQ(sa, it.start);
      }
      const auto crop_b = shard.crop(it.track, it.start, vb);
      const auto crop_a = shard.crop(it.track, sa, va);
      EXPECT_TRUE(std::equal(crop_b.begin(), crop_b.end(), b.view_b.begin() + std::ptrdiff_t(i * hier)));
      EXPECT_TRUE(std::equal(crop_a.begin(), crop_a.begin() + std::ptrdiff_t(clip),
                             b.view_a.begin() + std::ptrdiff_t(i * clip)))
          << "item " << i << " of batch " << n;
      ++out.items;
      out.moved += sa != it.start;
    }
  }
  return out;
}

TEST(Loader, OffsetZeroReadsTheOldPairAndAnOffsetCutsAAtItsDrawnStart) {
  const auto c = config();
  const std::string dir = make_run(c);
  const train::TrainingData data(dir, {"train"});
  const data::ShardReader shard(dir + "/shard-000000.h5", c);
  const Checked same = check_batches(data, shard, 0.0, 8);
  EXPECT_EQ(same.moved, 0);
  EXPECT_GT(same.items, 0);
  // 0.1 s at the top hop of 64 samples (8 kHz): 12 hops either way.
  EXPECT_EQ(train::offset_hops(0.1, c), 12);
  const Checked apart = check_batches(data, shard, 0.1, 8);
  EXPECT_GT(apart.moved, apart.items / 2) << "A's start almost never moved";
}

// Fresh-only augmentation (train.stored_views false): every pair is view 0 of both crops, where
// the stored views would have given two different views.
TEST(Loader, WithoutStoredViewsBothViewsAreTheCleanAudio) {
  const auto c = config();
  ASSERT_GT(c.views, 0);
  const std::string dir = make_run(c);
  const train::TrainingData data(dir, {"train"});
  const data::ShardReader shard(dir + "/shard-000000.h5", c);
  EXPECT_EQ(train::choose_views(5, 0, {1, 2}, 0), std::make_pair(0, 0));
  EXPECT_NE(train::choose_views(5, 0, {1, 2}, c.views).first, train::choose_views(5, 0, {1, 2}, c.views).second);
  const Checked clean = check_batches(data, shard, 0.1, 8, false);
  EXPECT_GT(clean.items, 0);
}

TEST(Loader, ChooseStartAStaysInRangeAndIsReproducible) {
  for (uint32_t starts : {1u, 2u, 5u, 40u})
    for (uint32_t s = 0; s < starts; ++s)
      for (int64_t off : {0, 1, 3, 100}) {
        const dist::CropItem it{3, s};
        const uint32_t a = train::choose_start_a(9, 2, it, starts, off);
        ASSERT_LT(a, starts);
        ASSERT_LE(std::abs(int64_t(a) - int64_t(s)), off);
        ASSERT_EQ(a, train::choose_start_a(9, 2, it, starts, off));
      }
  // Every start in the window is reachable: over many items, all 7 offsets -3..3 show up.
  std::set<int64_t> seen;
  for (uint32_t t = 0; t < 200; ++t) seen.insert(int64_t(train::choose_start_a(9, 0, {t, 10}, 40, 3)) - 10);
  EXPECT_EQ(seen.size(), 7u);
}

}  // namespace

// The benchmark mode: batch 0 is read as usual, every later batch carries batch 0's data while
// epoch and index advance as in a normal run (so checkpoints and logs stay the run's own).
TEST(Loader, RepeatFirstBatchCopiesBatchZeroAndAdvancesTheSampler) {
  const auto c = config();
  const std::string dir = make_run(c);
  const train::TrainingData data(dir, {"train"});
  const dist::DistributedSampler sampler = test_sampler(data);
  const int batches = 2 * static_cast<int>(sampler.batches_per_epoch()) + 1;  // crosses epochs
  train::Prefetcher normal(data, sampler, {5, 2, batches});
  train::PrefetchOptions repeat_first{5, 2, batches};
  repeat_first.repeat_first = true;
  train::Prefetcher repeat(data, sampler, repeat_first);
  const auto first = repeat.next();
  const auto first_normal = normal.next();
  EXPECT_EQ(first.view_a, first_normal.view_a);
  EXPECT_EQ(first.view_b, first_normal.view_b);
  int differ = 0;
  for (int n = 1; n < batches; ++n) {
    const auto b = repeat.next(), nb = normal.next();
    EXPECT_EQ(b.epoch, nb.epoch);
    EXPECT_EQ(b.index, nb.index);
    if (b.size != first.size) continue;  // a smaller last batch of an epoch is read
    EXPECT_EQ(b.view_a, first.view_a) << "batch " << n;
    EXPECT_EQ(b.view_b, first.view_b) << "batch " << n;
    differ += nb.view_b != first.view_b;
  }
  EXPECT_GT(differ, 0) << "the normal loader repeated batch 0 too: the comparison proves nothing";
  EXPECT_GT(batches, 2);
}

// The loader fills its batches in memory from the caller's allocator (pinned memory on a GPU, so
// the step needs no staging copy): every batch's views lie in buffers the allocator handed out,
// and hold what the default (heap) loader reads.
TEST(Loader, FillsBatchesInTheCallersMemory) {
  const auto c = config();
  const std::string dir = make_run(c);
  const train::TrainingData data(dir, {"train"});
  const dist::DistributedSampler sampler = test_sampler(data);
  const int batches = static_cast<int>(sampler.batches_per_epoch()) + 1;
  // Every buffer handed out is kept, so no address is handed out twice. (The loader thread
  // allocates while the test reads.)
  struct Record {
    std::mutex mu;
    std::vector<HostFloats> kept;
    size_t count(const float* p) {
      std::lock_guard<std::mutex> lock(mu);
      return static_cast<size_t>(std::count_if(kept.begin(), kept.end(), [&](const HostFloats& h) { return h.data() == p; }));
    }
    size_t size() {
      std::lock_guard<std::mutex> lock(mu);
      return kept.size();
    }
  };
  auto handed_out = std::make_shared<Record>();
  train::PrefetchOptions mine{5, 2, batches};
  mine.allocate = [handed_out](size_t n) {
    HostFloats h = HostFloats::heap(n);
    std::lock_guard<std::mutex> lock(handed_out->mu);
    handed_out->kept.push_back(h);
    return h;
  };
  train::Prefetcher normal(data, sampler, {5, 2, batches});
  train::Prefetcher custom(data, sampler, mine);
  for (int n = 0; n < batches; ++n) {
    const auto b = custom.next(), nb = normal.next();
    EXPECT_EQ(handed_out->count(b.view_a.data()), 1u) << "batch " << n;
    EXPECT_EQ(handed_out->count(b.view_b.data()), 1u) << "batch " << n;
    EXPECT_EQ(b.view_a, nb.view_a) << "batch " << n;
    EXPECT_EQ(b.view_b, nb.view_b) << "batch " << n;
    EXPECT_EQ(b.view_b.size(), static_cast<size_t>(b.size) * data.features().clips_total() *
                                   data.features().n_mels * data.features().frames);
  }
  EXPECT_EQ(handed_out->size(), 2u * static_cast<size_t>(batches));
}

TEST(HostFloats, CopiesIntoTheAllocatorsMemoryAndRefusesAShortBuffer) {
  HostFloats a = HostFloats::heap(3);
  a.data()[0] = 1, a.data()[1] = 2, a.data()[2] = 3;
  const HostFloats b = HostFloats::copy_of(a, {});
  EXPECT_NE(b.data(), a.data());
  EXPECT_EQ(b, a);
  a.data()[2] = 4;
  EXPECT_NE(b, a);
  const HostFloats::Allocator short_by_one = [](size_t n) { return HostFloats::heap(n - 1); };
  EXPECT_THROW(HostFloats::copy_of(a, short_by_one), std::exception);
}
