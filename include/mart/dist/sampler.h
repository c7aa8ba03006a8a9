#pragma once
// The distributed sampler: which (track, crop start) items each rank trains on, batch by batch.
// Pure C++ (no MPI, no torch): every rank computes the same global order from the seed.
//
// Per epoch e:
//  * items: `crops_per_track` per track; item (t, c) gets a crop start drawn uniformly from the
//    track's valid starts [0, crop_starts[t]) (in top-level hops) by an RNG seeded from
//    (seed, e, t, c), so every epoch sees fresh crops. Tracks with no valid start are skipped.
//  * the N items are shuffled by a Fisher-Yates permutation seeded from (seed, e);
//  * global batch g is items [g*G, (g+1)*G) of that order, G = world_size * batch_size, and rank r
//    takes its slice [g*G + r*b, g*G + (r+1)*b). The global batches depend on G only, not on how
//    they are split: 2 ranks of batch b see exactly what 1 rank of batch 2b sees.
//  * the remainder N mod G: Remainder::kDrop (the default) leaves it out of this epoch (a
//    different remainder each epoch, as the order changes); every item is used at most once,
//    so no batch holds the same item twice, which a contrastive loss would count as a false
//    negative. Remainder::kPad fills the last global batch with items from the start of the
//    order, so every item is used at least once (complete), a few twice.
// Every rank gets batches_per_epoch() batches of exactly batch_size items. The position
// (epoch, next batch) is the whole state: save it, restore it, and the sampler continues with the
// same batches.
#include <cstdint>
#include <string>
#include <vector>

namespace mart::dist {

struct CropItem {
  uint32_t track = 0;  // index into the track list the sampler was built with
  uint32_t start = 0;  // crop start, in top-level hops
  bool operator==(const CropItem& o) const { return track == o.track && start == o.start; }
};

enum class Remainder { kDrop, kPad };

struct SamplerOptions {
  uint64_t seed = 0;
  size_t batch_size = 1;  // per rank
  uint32_t crops_per_track = 1;
  Remainder remainder = Remainder::kDrop;
};

struct SamplerState {
  uint64_t epoch = 0;
  uint64_t batch = 0;  // the next batch to hand out within the epoch
  bool operator==(const SamplerState& o) const { return epoch == o.epoch && batch == o.batch; }
};
std::string to_string(const SamplerState& s);  // "epoch=3 batch=17"
SamplerState sampler_state_from_string(const std::string& text);  // throws on malformed text

// One thread at a time: the current epoch's order is cached inside.
class DistributedSampler {
 public:
  // crop_starts[t]: how many crop starts track t has (0 = too short for one clip).
  DistributedSampler(std::vector<uint32_t> crop_starts, int rank, int world_size,
                     SamplerOptions options);

  size_t items_per_epoch() const { return num_items_; }  // N, before drop or pad
  size_t batches_per_epoch() const;                      // the same on every rank

  // Starts epoch `epoch` at its first batch.
  void set_epoch(uint64_t epoch);
  bool epoch_done() const { return state_.batch >= batches_per_epoch(); }
  // This rank's next batch of the current epoch; advances the state. Throws when epoch_done().
  std::vector<CropItem> next_batch();
  // This rank's batch `index` of epoch `epoch`; no state involved.
  std::vector<CropItem> batch(uint64_t epoch, size_t index) const;
  // All N items of epoch `epoch` in their shuffled order.
  std::vector<CropItem> epoch_order(uint64_t epoch) const;

  const SamplerState& state() const { return state_; }
  void restore(const SamplerState& s);

 private:
  const std::vector<CropItem>& order_of(uint64_t epoch) const;

  std::vector<uint32_t> crop_starts_;
  std::vector<uint32_t> usable_tracks_;
  int rank_, world_size_;
  SamplerOptions options_;
  size_t num_items_ = 0;
  SamplerState state_;
  mutable uint64_t cached_epoch_ = ~uint64_t{0};
  mutable std::vector<CropItem> cached_order_;
};

}  // namespace mart::dist
