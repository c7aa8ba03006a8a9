#pragma once
// Training data: the shards of a preprocess run, read on a background thread into a bounded
// queue, so the step never waits for disk. No torch here: batches are plain float buffers, in
// memory from the caller's allocator (pinned memory on a GPU).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "mart/core/host_buffer.h"
#include "mart/data/manifest.h"
#include "mart/data/shard.h"
#include "mart/dist/sampler.h"
#include "mart/features/features.h"

namespace mart::train {

// Every track of the chosen splits across all shards of a run, each with its crop starts.
class TrainingData {
 public:
  // Loads `dir`/manifest.json, checks every shard (format, features) before training starts.
  TrainingData(const std::string& dir, const std::vector<std::string>& splits);
  const features::FeatureConfig& features() const { return manifest_.features; }
  const data::Manifest& manifest() const { return manifest_; }
  size_t num_tracks() const { return tracks_.size(); }
  const std::vector<uint32_t>& crop_starts() const { return starts_; }
  // The class index of track `track` (an index into this list; -1: none).
  int32_t class_index(uint32_t track) const;
  // The hierarchy [clips_total, n_mels, T] of `view` for item `it` into `out`.
  void read(const dist::CropItem& it, int view, float* out) const;
  // Level 0's clip only, [n_mels, T], of `view` at top-clip start `start` of the item's track.
  void read_top(uint32_t track, uint32_t start, int view, float* out) const;

 private:
  data::Manifest manifest_;
  std::vector<data::ShardReader> shards_;
  std::vector<std::pair<uint32_t, int64_t>> tracks_;  // (shard, track in shard)
  std::vector<uint32_t> starts_;
};

// The two views of an item: different views of one crop (DESIGN.md: the clean audio is view 0),
// drawn from (seed, epoch, track, start), so a resumed run draws the same ones.
std::pair<int, int> choose_views(uint64_t seed, uint64_t epoch, const dist::CropItem& it, int views);

// View A's top-clip start: uniform over the valid starts [0, starts) within `max_offset` top-level
// hops of B's start it.start, drawn from (seed, epoch, track, start) like choose_views, so a
// resumed run cuts the same crops. max_offset 0: A starts where B does (the paper's literal pair).
uint32_t choose_start_a(uint64_t seed, uint64_t epoch, const dist::CropItem& it, uint32_t starts, int64_t max_offset);

// A largest start offset in seconds as whole top-level hops (rounded down).
int64_t offset_hops(double seconds, const features::FeatureConfig& f);

struct CropBatch {
  uint64_t epoch = 0, index = 0;  // which batch of the sampler this is
  int64_t size = 0;               // local batch
  HostFloats view_a;              // [size, n_mels, T]: view A's top clips (its own start)
  HostFloats view_b;              // [size, clips_total, n_mels, T]: view B's hierarchies
  std::vector<int64_t> track;     // [size]: each item's track (an index into TrainingData's tracks)
  std::vector<int64_t> label;     // [size]: each item's track's class index (-1: none)
  double read_s = 0;              // loader thread time spent on this batch
};

struct PrefetchOptions {
  uint64_t seed = 0;
  int depth = 2;            // batches read ahead
  int64_t batches = 0;      // the loader stops after this many
  int64_t crop_offset = 0;  // view A starts at most this many top-level hops from view B (choose_start_a)
  // false: the stored augmented views are not read; A and B are both the clean audio (view 0), so
  // the fresh log-mel augmentation of the step is their only difference.
  bool stored_views = true;
  // Only the first batch is read; the later ones are copies of its data (the sampler still
  // advances, so epoch and index are those of a normal run): the loader's cost, taken out, for
  // benchmarks.
  bool repeat_first = false;
  // Where the two views' floats go (empty: the heap). mart-train passes pinned memory on a GPU.
  HostFloats::Allocator allocate{};
};

// Reads batches in the sampler's order on a background thread, options.depth ahead, starting at
// the sampler's current state.
class Prefetcher {
 public:
  Prefetcher(const TrainingData& data, dist::DistributedSampler sampler, const PrefetchOptions& options);
  ~Prefetcher();
  Prefetcher(const Prefetcher&) = delete;
  Prefetcher& operator=(const Prefetcher&) = delete;
  // The next batch; blocks while the loader is behind (the time waited is returned in *wait_s).
  CropBatch next(double* wait_s = nullptr);

 private:
  void loop();
  const TrainingData& data_;
  dist::DistributedSampler sampler_;
  const PrefetchOptions options_;
  int64_t remaining_;
  std::deque<CropBatch> queue_;
  std::string error_;  // an exception on the loader thread, rethrown by next()
  bool stop_ = false, done_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  std::thread thread_;
};

}  // namespace mart::train
