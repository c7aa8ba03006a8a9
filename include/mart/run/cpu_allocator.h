#pragma once
// Large CPU tensors on transparent huge pages.
//
// A training step at the paper's shape allocates and frees gigabytes of activations. glibc
// serves every block above 32 MiB with a fresh mmap, and the kernel faults it in 4 KiB at a time:
// ~1.8 million page faults per encoder step at batch 4, and on the development VM that was 30%
// of the step. This allocator maps blocks of `threshold` bytes and more itself, asks for huge
// pages (madvise MADV_HUGEPAGE: 512x fewer faults where the kernel's THP mode is "madvise" or
// "always"; nothing changes where it is "never") and unmaps them on free, like glibc: the peak
// memory stays what it was. Smaller blocks go to LibTorch's default CPU allocator.
//
// Unmapping is what a step pays for: every block of the next step is mapped, zeroed by the kernel
// and faulted in again. With a cache (set_cpu_allocator_cache_limit; mart-train's train.cpu_cache,
// on by default) freed blocks are kept and handed out again for the same length (the most recently
// freed first), so after the first step a training step maps nothing. The cache holds at most the
// limit and at most twice the most bytes ever live at once; over that, the oldest blocks are
// unmapped. Measured at the paper's shape on a 2-core VM: the step in 0.5-0.66x the time, peak
// RSS 1.5-1.6x (docs/model.md).
// Measurements: docs/model.md ("Where the step's time goes"). c10::Allocator's interface differs
// between LibTorch 1.x and 2.x; src/run/CMakeLists.txt probes which one this build has, and with
// an unknown one the call only warns (the default allocator stays).
#include <cstddef>

namespace mart::run {

// Installs the allocator for every CPU tensor allocated after the call (c10::SetAllocator with
// a priority above the default's). Idempotent; the threshold of the first call holds.
void use_huge_page_cpu_allocator(size_t threshold = size_t{4} << 20);

// The length mapped for a live block of this allocator starting at p (whole 2 MiB pages), or 0
// for any other pointer: a small block, a freed one, memory of another allocator.
size_t huge_page_block_length(const void* p);

// Freed blocks are kept for reuse by length, up to this many bytes in all (default: none kept,
// every freed block is unmapped); lowering the limit unmaps what is over it at once.
void set_cpu_allocator_cache_limit(size_t bytes);
// Live and cached blocks together stay under this many bytes: the cache gives way first (it is
// trimmed, and a new block evicts cached ones). Live blocks are never refused: without a cache a
// run needs what it needed before. Default: no budget. mart-train sets its rank's share of the
// node's available memory, so the cache cannot push a run that fitted into the OOM killer.
void set_cpu_allocator_memory_budget(size_t bytes);
// Bytes held in freed blocks for reuse now.
size_t cpu_allocator_cached_bytes();
// Unmaps every cached block (an allocation that the kernel refuses calls it, then tries again).
void release_cache();

// MemAvailable of /proc/meminfo in bytes (0 where it cannot be read).
size_t available_memory_bytes();

// Whether the kernel grants huge pages on madvise ("always" or "madvise" in
// /sys/kernel/mm/transparent_hugepage/enabled): for the log line.
bool huge_pages_available();

}  // namespace mart::run
