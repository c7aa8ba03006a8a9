#include "mart/run/cpu_allocator.h"

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <new>
#include <limits>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

namespace mart::run {

namespace {

constexpr size_t kHugePage = size_t{2} << 20;

// The lengths of the live blocks mapped here, by address. One deleter for both kinds of block,
// with the data pointer as its context: LibTorch's raw_allocate/raw_deallocate (oneDNN's scratch
// memory goes through them) need exactly that.
std::mutex mapped_mu;  // blocks of `threshold` bytes and more only: small frees never take it
std::unordered_map<void*, size_t>& mapped() {
  static auto* m = new std::unordered_map<void*, size_t>;  // never destroyed: frees at exit need it
  return *m;
}
// Freed blocks kept for reuse, oldest first (under mapped_mu). A training step allocates the same
// sizes every step: a block taken from here is neither mapped, zeroed nor faulted in again. Over
// the limit, the oldest go first: a length no step asks for again ages out.
struct Cached {
  void* p;
  size_t length;
};
std::list<Cached>& cache() {
  static auto* c = new std::list<Cached>;
  return *c;
}
size_t cached_total = 0;  // bytes in cache()
size_t cache_limit = 0;   // at most this many bytes are kept (set_cpu_allocator_cache_limit)
size_t memory_budget = std::numeric_limits<size_t>::max();  // live + cached stay under it
size_t live_total = 0;    // bytes in live blocks (mapped())
size_t peak_live = 0;     // the most live_total has been

void note_live(size_t length) {
  live_total += length;
  peak_live = std::max(peak_live, live_total);
}
[[maybe_unused]] c10::DeleterFnPtr small_free = nullptr;

// The most recently freed block of `length` bytes, or nullptr (under mapped_mu).
void* take_cached(size_t length) {
  for (auto it = cache().rbegin(); it != cache().rend(); ++it) {
    if (it->length != length) continue;
    void* p = it->p;
    cache().erase(std::next(it).base());
    cached_total -= length;
    return p;
  }
  return nullptr;
}

// What the memory budget leaves beside the live blocks and `extra` bytes more (under mapped_mu).
size_t room_in_budget(size_t extra) {
  const size_t used = live_total + extra;
  return memory_budget > used ? memory_budget - used : 0;
}

// What the cache may hold now: the limit set, the room the budget leaves beside the live blocks,
// and never more than twice the most bytes ever live at once
// (a training step frees about that much between steps and takes it back in the next one; shapes
// that keep changing cannot grow the cache past it).
size_t effective_limit() { return std::min({cache_limit, 2 * peak_live, room_in_budget(0)}); }

// Blocks out of the cache, oldest first, until `keep` bytes remain (under mapped_mu): the caller
// unmaps them outside the lock.
std::vector<Cached> evict_to(size_t keep) {
  std::vector<Cached> out;
  while (cached_total > keep && !cache().empty()) {
    out.push_back(cache().front());
    cached_total -= cache().front().length;
    cache().pop_front();
  }
  return out;
}

// Sets one of the cache's bounds (*bound = bytes) and unmaps what no longer fits; no bound:
// unmaps every cached block.
void set_bound(size_t* bound, size_t bytes) {
  std::vector<Cached> evicted;
  {
    std::lock_guard<std::mutex> lock(mapped_mu);
    if (bound) *bound = bytes;
    evicted = evict_to(bound ? effective_limit() : 0);
  }
  for (const Cached& c : evicted) munmap(c.p, c.length);
}

// The raw deleter: a mapped block goes to the cache, or is unmapped when the cache is full;
// anything else (raw_allocate of a small block, or a block of the default allocator from before
// the switch) goes to the default allocator's.
[[maybe_unused]] void free_block(void* p) {
  if (!p) return;
  size_t length = 0;
  std::vector<Cached> evicted;
  {
    std::lock_guard<std::mutex> lock(mapped_mu);
    auto it = mapped().find(p);
    if (it != mapped().end()) {
      length = it->second;
      mapped().erase(it);
      live_total -= length;
      if (length <= effective_limit()) {
        cache().push_back({p, length});
        cached_total += length;
        evicted = evict_to(effective_limit());
        length = 0;
        p = nullptr;
      }
    }
  }
  for (const Cached& c : evicted) munmap(c.p, c.length);
  if (length) {
    munmap(p, length);
  } else if (p) {
    small_free(p);
  }
}

#if defined(MART_C10_ALLOCATE_CONST) || defined(MART_C10_ALLOCATE_COPY_DATA)
#define MART_HUGE_PAGE_ALLOCATOR 1
#ifdef MART_C10_ALLOCATE_CONST  // LibTorch 1.x (src/run/CMakeLists.txt probes which)
#define MART_ALLOCATE_CONST const
#else
#define MART_ALLOCATE_CONST
#endif

class HugePageAllocator final : public c10::Allocator {
 public:
  HugePageAllocator(c10::Allocator* small, size_t threshold) : small_(small), threshold_(threshold) {}

  c10::DataPtr allocate(size_t n) MART_ALLOCATE_CONST override {
    const c10::Device cpu(c10::DeviceType::CPU);
    // Small blocks keep the default allocator's own DataPtr (its deleter, context == data), so
    // their frees skip the lock; raw_deallocate of one reaches free_block, which passes it on.
    if (n < threshold_) return small_->allocate(n);
    // Whole huge pages: THP backs only 2 MiB-aligned ranges, and mmap's address is merely
    // page-aligned, so the first and last partial huge page of a block may stay 4 KiB.
    const size_t length = (n + kHugePage - 1) / kHugePage * kHugePage;
    std::vector<Cached> evicted;
    {
      std::lock_guard<std::mutex> lock(mapped_mu);
      if (void* p = take_cached(length)) {
        mapped()[p] = length;
        note_live(length);
        return {p, p, &free_block, cpu};
      }
      // A new block: the cache gives way first where live + cached would pass the budget.
      evicted = evict_to(room_in_budget(length));
    }
    for (const Cached& c : evicted) munmap(c.p, c.length);
    void* p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      release_cache();  // the cached blocks may be what stands in the way
      p = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (p == MAP_FAILED) throw std::bad_alloc();
    }
    madvise(p, length, MADV_HUGEPAGE);  // advice: refused (THP "never"), nothing else changes
    {
      std::lock_guard<std::mutex> lock(mapped_mu);
      mapped()[p] = length;
      note_live(length);
    }
    return {p, p, &free_block, cpu};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_block; }
#ifdef MART_C10_ALLOCATE_COPY_DATA
  void copy_data(void* dest, const void* src, std::size_t count) const override {
    default_copy_data(dest, src, count);
  }
#endif

 private:
  c10::Allocator* small_;
  size_t threshold_;
};
#endif

}  // namespace

void release_cache() { set_bound(nullptr, 0); }

size_t cpu_allocator_cached_bytes() {
  std::lock_guard<std::mutex> lock(mapped_mu);
  return cached_total;
}

void set_cpu_allocator_memory_budget(size_t bytes) { set_bound(&memory_budget, bytes); }

void set_cpu_allocator_cache_limit(size_t bytes) { set_bound(&cache_limit, bytes); }

void use_huge_page_cpu_allocator(size_t threshold) {
#ifndef MART_HUGE_PAGE_ALLOCATOR
  (void)threshold;
  static std::once_flag told;
  std::call_once(told, [] {
    spdlog::warn("this LibTorch's c10::Allocator interface is not one mart knows: large CPU tensors stay on "
                 "LibTorch's default allocator (no huge pages)");
  });
#else
  static std::once_flag once;
  std::call_once(once, [threshold] {
    c10::Allocator* small = c10::GetDefaultCPUAllocator();
    small_free = small->raw_deleter();
    // Never destroyed: LibTorch keeps the pointer, and late frees at exit still call through it.
    auto* allocator = new HugePageAllocator(small, threshold);
    c10::SetAllocator(c10::DeviceType::CPU, allocator, /*priority=*/1);
  });
#endif
}

size_t huge_page_block_length(const void* p) {
  std::lock_guard<std::mutex> lock(mapped_mu);
  const auto it = mapped().find(const_cast<void*>(p));
  return it == mapped().end() ? 0 : it->second;
}

size_t available_memory_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  size_t kib = 0;
  std::string unit;
  while (f >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return 0;
}

bool huge_pages_available() {
  std::ifstream f("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string line;
  std::getline(f, line);
  return line.find("[always]") != std::string::npos || line.find("[madvise]") != std::string::npos;
}

}  // namespace mart::run
