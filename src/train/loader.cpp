#include "mart/train/loader.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <set>

#include "mart/core/clock.h"
#include "mart/core/error.h"
#include "mart/core/rng.h"

namespace mart::train {

TrainingData::TrainingData(const std::string& dir, const std::vector<std::string>& splits)
    : manifest_(data::load_manifest(dir + "/manifest.json")) {
  const std::set<std::string> want(splits.begin(), splits.end());
  for (const auto& s : manifest_.shards) {
    // The reader checks format version and features against the manifest's: a shard of another
    // run or version stops here, before the first step.
    shards_.emplace_back(dir + "/" + s.file, manifest_.features);
    const auto& r = shards_.back();
    for (int64_t t = 0; t < r.num_tracks(); ++t) {
      if (!want.count(r.track(t).split)) continue;
      const int64_t k = r.valid_starts(t);
      if (k <= 0) continue;
      tracks_.emplace_back(static_cast<uint32_t>(shards_.size() - 1), t);
      starts_.push_back(static_cast<uint32_t>(k));
    }
  }
  if (tracks_.empty())
    MART_CONFIG_ERROR("no track of split(s) ", [&] {
      std::string s;
      for (const auto& x : splits) s += (s.empty() ? "" : ",") + x;
      return s;
    }(), " in '", dir, "' is long enough for one top clip: check train.splits and the preprocess run");
}

int32_t TrainingData::class_index(uint32_t track) const {
  const auto& [shard, t] = tracks_.at(track);
  return shards_[shard].track(t).class_index;
}

void TrainingData::read(const dist::CropItem& it, int view, float* out) const {
  const auto& [shard, track] = tracks_.at(it.track);
  shards_[shard].crop_into(track, it.start, view, out);
}

void TrainingData::read_top(uint32_t track, uint32_t start, int view, float* out) const {
  const auto& [shard, t] = tracks_.at(track);
  shards_[shard].top_clip_into(t, start, view, out);
}

uint32_t choose_start_a(uint64_t seed, uint64_t epoch, const dist::CropItem& it, uint32_t starts, int64_t max_offset) {
  if (max_offset <= 0 || starts <= 1) return it.start;
  const int64_t lo = std::max<int64_t>(0, int64_t{it.start} - max_offset);
  const int64_t hi = std::min<int64_t>(int64_t{starts} - 1, int64_t{it.start} + max_offset);
  Rng rng(seed_of(seed ^ 0x63726f7061ull /*"cropa"*/, epoch, (uint64_t{it.track} << 32) | it.start));
  return static_cast<uint32_t>(lo + static_cast<int64_t>(rng.next() % static_cast<uint64_t>(hi - lo + 1)));
}

int64_t offset_hops(double seconds, const features::FeatureConfig& f) {
  return static_cast<int64_t>(std::floor(seconds * f.sample_rate / static_cast<double>(f.hop(0))));
}

std::pair<int, int> choose_views(uint64_t seed, uint64_t epoch, const dist::CropItem& it, int views) {
  if (views <= 0) return {0, 0};  // no augmented views: A = B, the paper's literal form
  Rng rng(seed_of(seed ^ 0x7669657773ull /*"views"*/, epoch, (uint64_t{it.track} << 32) | it.start));
  const int a = rng.randint(0, views);
  int b = rng.randint(0, views - 1);
  if (b >= a) ++b;  // two different views out of V + 1
  return {a, b};
}

Prefetcher::Prefetcher(const TrainingData& data, dist::DistributedSampler sampler, const PrefetchOptions& options)
    : data_(data), sampler_(std::move(sampler)), options_(options), remaining_(options.batches) {
  thread_ = std::thread([this] { loop(); });
}

Prefetcher::~Prefetcher() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Prefetcher::loop() {
  const auto& f = data_.features();
  const size_t clip = static_cast<size_t>(f.n_mels) * static_cast<size_t>(f.frames);
  const size_t hier = clip * static_cast<size_t>(f.clips_total());
  CropBatch first;  // repeat_first_: the data every later batch copies
  try {
    while (remaining_ > 0) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return stop_ || queue_.size() < static_cast<size_t>(options_.depth); });
        if (stop_) return;
      }
      const auto t0 = std::chrono::steady_clock::now();
      if (sampler_.epoch_done()) sampler_.set_epoch(sampler_.state().epoch + 1);
      CropBatch b;
      b.epoch = sampler_.state().epoch;
      b.index = sampler_.state().batch;
      const auto items = sampler_.next_batch();
      b.size = static_cast<int64_t>(items.size());
      for (const auto& it : items) {
        b.track.push_back(it.track);
        b.label.push_back(data_.class_index(it.track));
      }
      const bool copy = options_.repeat_first && first.size == b.size;  // a last, smaller batch is read
      if (copy) {  // a copy, not shared memory: the step may augment its batch in place
        b.view_a = HostFloats::copy_of(first.view_a, options_.allocate);
        b.view_b = HostFloats::copy_of(first.view_b, options_.allocate);
      } else {
        b.view_a = allocate_floats(options_.allocate, items.size() * clip);
        b.view_b = allocate_floats(options_.allocate, items.size() * hier);
      }
      for (size_t i = 0; i < items.size() && !copy; ++i) {
        const auto [va, vb] = choose_views(options_.seed, b.epoch, items[i], options_.stored_views ? f.views : 0);
        const uint32_t start_a = choose_start_a(options_.seed, b.epoch, items[i], data_.crop_starts().at(items[i].track),
                                                options_.crop_offset);
        data_.read(items[i], vb, b.view_b.data() + i * hier);
        if (va == vb && start_a == items[i].start) {  // level 0 comes first in the hierarchy
          std::memcpy(b.view_a.data() + i * clip, b.view_b.data() + i * hier, clip * sizeof(float));
        } else {
          data_.read_top(items[i].track, start_a, va, b.view_a.data() + i * clip);
        }
      }
      b.read_s = seconds_since(t0);
      if (options_.repeat_first && b.size > first.size) first = b;  // a full batch (a resume may start on a short one)
      --remaining_;
      {
        std::lock_guard<std::mutex> lk(mu_);
        queue_.push_back(std::move(b));
      }
      cv_.notify_all();
    }
  } catch (const std::exception& e) {
    std::lock_guard<std::mutex> lk(mu_);
    error_ = e.what();
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    done_ = true;
  }
  cv_.notify_all();
}

CropBatch Prefetcher::next(double* wait_s) {
  const auto t0 = std::chrono::steady_clock::now();
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return !queue_.empty() || done_; });
  if (queue_.empty()) {
    if (!error_.empty()) MART_FAIL("the data loader failed: ", error_);
    MART_FAIL("the data loader has no more batches (asked for more steps than it was started for)");
  }
  CropBatch b = std::move(queue_.front());
  queue_.pop_front();
  lk.unlock();
  cv_.notify_all();
  if (wait_s) *wait_s = seconds_since(t0);
  return b;
}

}  // namespace mart::train
