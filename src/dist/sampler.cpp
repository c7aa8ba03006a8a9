#include "mart/dist/sampler.h"

#include <sstream>
#include <utility>

#include "mart/core/error.h"
#include "mart/core/rng.h"

namespace mart::dist {

namespace {
// Distinct streams for the crop draws and the shuffle, so neither shifts the other.
constexpr uint64_t kCropStream = 0x63726f70;     // "crop"
constexpr uint64_t kShuffleStream = 0x73687566;  // "shuf"
}  // namespace

std::string to_string(const SamplerState& s) {
  std::ostringstream os;
  os << "epoch=" << s.epoch << " batch=" << s.batch;
  return os.str();
}

SamplerState sampler_state_from_string(const std::string& text) {
  SamplerState s;
  std::istringstream is(text);
  std::string epoch, batch;
  is >> epoch >> batch;
  const bool ok = epoch.rfind("epoch=", 0) == 0 && batch.rfind("batch=", 0) == 0 &&
                  epoch.size() > 6 && batch.size() > 6 && is.eof();
  if (!ok) MART_CONFIG_ERROR("malformed sampler state '", text, "' (expected 'epoch=E batch=B')");
  try {
    size_t used_e = 0, used_b = 0;
    s.epoch = std::stoull(epoch.substr(6), &used_e);
    s.batch = std::stoull(batch.substr(6), &used_b);
    if (used_e != epoch.size() - 6 || used_b != batch.size() - 6) throw std::invalid_argument("");
  } catch (const std::exception&) {
    MART_CONFIG_ERROR("malformed sampler state '", text, "' (expected 'epoch=E batch=B')");
  }
  return s;
}

DistributedSampler::DistributedSampler(std::vector<uint32_t> crop_starts, int rank, int world_size,
                                       SamplerOptions options)
    : crop_starts_(std::move(crop_starts)), rank_(rank), world_size_(world_size), options_(options) {
  MART_CHECK(world_size_ > 0 && rank_ >= 0 && rank_ < world_size_, "sampler: rank ", rank_,
             " of ", world_size_);
  MART_CHECK(options_.batch_size > 0 && options_.crops_per_track > 0,
             "sampler: batch_size and crops_per_track must be positive");
  for (uint32_t t = 0; t < crop_starts_.size(); ++t)
    if (crop_starts_[t] > 0) usable_tracks_.push_back(t);
  num_items_ = usable_tracks_.size() * options_.crops_per_track;
  const size_t global = options_.batch_size * static_cast<size_t>(world_size_);
  if (num_items_ < global)
    MART_CONFIG_ERROR("the data has ", num_items_, " crops per epoch (", usable_tracks_.size(),
                      " usable tracks x ", options_.crops_per_track, "), fewer than one global batch of ",
                      global, " (", world_size_, " ranks x batch ", options_.batch_size,
                      "); lower the batch size or add data");
}

size_t DistributedSampler::batches_per_epoch() const {
  const size_t global = options_.batch_size * static_cast<size_t>(world_size_);
  return options_.remainder == Remainder::kDrop ? num_items_ / global
                                                : (num_items_ + global - 1) / global;
}

std::vector<CropItem> DistributedSampler::epoch_order(uint64_t epoch) const {
  std::vector<CropItem> items;
  items.reserve(num_items_);
  for (uint32_t t : usable_tracks_)
    for (uint32_t c = 0; c < options_.crops_per_track; ++c) {
      Rng rng(seed_of(options_.seed ^ kCropStream, epoch, (uint64_t{t} << 32) | c));
      items.push_back({t, static_cast<uint32_t>(rng.next() % crop_starts_[t])});
    }
  Rng rng(seed_of(options_.seed ^ kShuffleStream, epoch));
  rng.shuffle(items);
  return items;
}

const std::vector<CropItem>& DistributedSampler::order_of(uint64_t epoch) const {
  if (cached_epoch_ != epoch) {
    cached_order_ = epoch_order(epoch);
    cached_epoch_ = epoch;
  }
  return cached_order_;
}

std::vector<CropItem> DistributedSampler::batch(uint64_t epoch, size_t index) const {
  MART_CHECK(index < batches_per_epoch(), "sampler: batch ", index, " of an epoch of ",
             batches_per_epoch());
  const std::vector<CropItem>& order = order_of(epoch);
  const size_t b = options_.batch_size;
  const size_t first = index * b * static_cast<size_t>(world_size_) + static_cast<size_t>(rank_) * b;
  std::vector<CropItem> out;
  out.reserve(b);
  for (size_t i = first; i < first + b; ++i) out.push_back(order[i % order.size()]);  // kPad wraps
  return out;
}

void DistributedSampler::set_epoch(uint64_t epoch) { state_ = {epoch, 0}; }

std::vector<CropItem> DistributedSampler::next_batch() {
  MART_CHECK(!epoch_done(), "sampler: epoch ", state_.epoch, " has no batch left; set_epoch() next");
  std::vector<CropItem> out = batch(state_.epoch, state_.batch);
  ++state_.batch;
  return out;
}

void DistributedSampler::restore(const SamplerState& s) {
  MART_CHECK(s.batch <= batches_per_epoch(), "sampler: cannot resume at batch ", s.batch,
             " of an epoch of ", batches_per_epoch(),
             " (was the run saved with another batch size, rank count or data?)");
  state_ = s;
}

}  // namespace mart::dist
