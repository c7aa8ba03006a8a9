// mart-train's CPU allocator: blocks of 4 MiB and more are mmapped in whole 2 MiB pages (advised
// for huge pages) and unmapped when the tensor dies; smaller ones, and LibTorch's raw
// allocations (oneDNN's scratch memory), keep working; results do not change.
// With a cache, freed blocks are kept (up to a limit) and reused by length.
#include <c10/core/Allocator.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdint>
#include <limits>
#include <fstream>
#include <sstream>
#include <string>

#include "mart/run/cpu_allocator.h"

namespace {

using mart::run::huge_page_block_length;

// Whether [p, p + n) lies inside one mapping of /proc/self/maps (the kernel may merge adjacent
// mappings with the same flags, so a block's own range need not show on its own).
bool mapped_by_kernel(const void* p, uint64_t n) {
  std::ifstream maps("/proc/self/maps");
  const auto want = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    std::istringstream range(line.substr(0, line.find(' ')));
    uintptr_t start = 0, end = 0;
    char dash = 0;
    range >> std::hex >> start >> dash >> end;
    if (start <= want && want + n <= end) return true;
  }
  return false;
}

TEST(CpuAllocator, LargeBlocksAreWholeHugePageMappingsFreedWithTheirTensor) {
  torch::manual_seed(0);
  const auto a = torch::randn({1536, 1024});  // 6 MiB, before the allocator: glibc's
  const auto b = torch::randn({1024, 700});
  const auto reference = torch::matmul(a, b);  // 2.7 MiB: small either way
  mart::run::use_huge_page_cpu_allocator();
  mart::run::use_huge_page_cpu_allocator();  // idempotent
  const void* p = nullptr;
  {
    auto big = torch::empty({(5 << 20) / 4 + 3});  // 5 MiB and 12 bytes
    p = big.data_ptr();
    EXPECT_EQ(huge_page_block_length(p), size_t{6} << 20) << "not mapped here in whole 2 MiB pages";
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
    EXPECT_TRUE(mapped_by_kernel(p, uint64_t{6} << 20));
    big.fill_(2.5f);
    EXPECT_EQ(big.sum().item<double>(), 2.5 * double(big.numel()));
  }
  EXPECT_EQ(huge_page_block_length(p), 0u) << "the block outlived its tensor";
  // Small tensors go to the default allocator: not a mapping of their own.
  const auto small = torch::ones({16});
  EXPECT_EQ(huge_page_block_length(small.data_ptr()), 0u);
  // Kernels write into the new blocks and read old (glibc) ones: the same bits.
  const auto big_a = a.repeat({2, 1});  // 12 MiB, mapped here
  EXPECT_EQ(huge_page_block_length(big_a.data_ptr()), size_t{12} << 20);
  EXPECT_EQ(huge_page_block_length(a.data_ptr()), 0u);  // allocated before: glibc's
  EXPECT_TRUE(torch::equal(torch::matmul(big_a.narrow(0, 0, 1536), b), reference));
  // A convolution (oneDNN: scratch memory through raw_allocate) and its backward.
  auto x = torch::randn({8, 16, 64, 64}).requires_grad_(true);
  auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1));
  conv(x).sum().backward();
  EXPECT_TRUE(x.grad().defined());
  EXPECT_TRUE(torch::isfinite(x.grad()).all().item<bool>());
}

TEST(CpuAllocator, RawAllocateRoundTripsBothKinds) {
  mart::run::use_huge_page_cpu_allocator();
  c10::Allocator* alloc = c10::GetAllocator(c10::DeviceType::CPU);
  for (size_t n : {size_t{100}, size_t{8} << 20}) {
    void* p = alloc->raw_allocate(n);
    ASSERT_NE(p, nullptr);
    static_cast<char*>(p)[0] = 1;
    static_cast<char*>(p)[n - 1] = 2;
    EXPECT_EQ(huge_page_block_length(p) != 0, n >= (size_t{4} << 20)) << n;
    alloc->raw_deallocate(p);
    EXPECT_EQ(huge_page_block_length(p), 0u) << n;
  }
}

}  // namespace

namespace {

// With a cache, a freed block is kept and the next block of its length is that block (no new
// mapping, nothing to zero or fault in); another length maps a new one; the cache never holds more
// than the limit, nor more than twice the most ever live at once; lowering the limit unmaps at once.
TEST(CpuAllocator, CachedBlocksAreReusedByLengthWithinTheLimit) {
  using namespace mart::run;
  use_huge_page_cpu_allocator();
  set_cpu_allocator_cache_limit(size_t{1} << 40);
  const size_t mib = size_t{1} << 20;
  void* first = nullptr;
  {
    auto a = torch::empty({static_cast<int64_t>(6 * mib / 4)});  // 6 MiB: 3 huge pages
    first = a.data_ptr();
  }
  EXPECT_EQ(huge_page_block_length(first), 0u) << "a cached block is not live";
  EXPECT_EQ(cpu_allocator_cached_bytes(), 6 * mib);
  {
    auto other = torch::empty({static_cast<int64_t>(10 * mib / 4)});  // another length: a new block
    EXPECT_NE(other.data_ptr(), first);
    auto same = torch::ones({static_cast<int64_t>(5 * mib / 4)});  // 5 MiB rounds to 6: the cached one
    EXPECT_EQ(same.data_ptr(), first);
    EXPECT_EQ(huge_page_block_length(first), 6 * mib);
    EXPECT_EQ(same.sum().item<double>(), double(same.numel()));
    EXPECT_EQ(cpu_allocator_cached_bytes(), 0u);
    other = torch::Tensor();  // freed first: the older of the two in the cache
  }
  EXPECT_EQ(cpu_allocator_cached_bytes(), 16 * mib);
  // The limit: over it, the oldest blocks go first (the 10 MiB one was freed before the 6 MiB one).
  set_cpu_allocator_cache_limit(8 * mib);
  EXPECT_EQ(cpu_allocator_cached_bytes(), 6 * mib);
  {
    auto again = torch::empty({static_cast<int64_t>(6 * mib / 4)});
    EXPECT_EQ(again.data_ptr(), first);
  }
  // Zero: nothing kept, every free unmaps.
  set_cpu_allocator_cache_limit(0);
  EXPECT_EQ(cpu_allocator_cached_bytes(), 0u);
  {
    auto gone = torch::empty({static_cast<int64_t>(6 * mib / 4)});
  }
  EXPECT_EQ(cpu_allocator_cached_bytes(), 0u);
  // A convolution's forward and backward give the same bits with and without the cache.
  auto conv_grad = [] {
    torch::manual_seed(3);
    auto x = torch::randn({8, 16, 64, 64}).requires_grad_(true);
    auto conv = torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1));
    conv(x).pow(2).sum().backward();
    return x.grad().clone();
  };
  const auto without = conv_grad();
  set_cpu_allocator_cache_limit(size_t{1} << 40);
  const auto with1 = conv_grad(), with2 = conv_grad();
  EXPECT_TRUE(torch::equal(without, with1));
  EXPECT_TRUE(torch::equal(without, with2));
  EXPECT_GT(cpu_allocator_cached_bytes(), 0u);
  release_cache();
  EXPECT_EQ(cpu_allocator_cached_bytes(), 0u);
  set_cpu_allocator_cache_limit(0);
}

}  // namespace

namespace {

// Under a memory budget the cache gives way: freed blocks are kept only while live + cached stay
// under it, and a new block evicts cached ones first. Live blocks are never refused.
TEST(CpuAllocator, TheCacheGivesWayToAMemoryBudget) {
  using namespace mart::run;
  use_huge_page_cpu_allocator();
  release_cache();
  set_cpu_allocator_cache_limit(size_t{1} << 40);
  const size_t mib = size_t{1} << 20;
  auto block = [&](size_t n_mib) { return torch::empty({static_cast<int64_t>(n_mib * mib / 4)}); };
  set_cpu_allocator_memory_budget(20 * mib);
  {
    auto live = block(12);
    {
      auto a = block(4), b = block(6);  // 22 MiB live: over the budget, and allowed
      a.fill_(1);
      b.fill_(1);
    }
    // b (6 MiB) is freed first, with 12 + 4 live: room for 4 MiB only, so b is unmapped; then a
    // (4 MiB) with 12 live: kept.
    EXPECT_EQ(cpu_allocator_cached_bytes(), 4 * mib);
    // A new 8 MiB block: 12 + 8 live leaves no room, the cached 4 MiB block is unmapped first.
    auto c = block(8);
    EXPECT_EQ(cpu_allocator_cached_bytes(), 0u);
  }
  set_cpu_allocator_memory_budget(std::numeric_limits<size_t>::max());
  EXPECT_GT(available_memory_bytes(), 0u);
  release_cache();
  set_cpu_allocator_cache_limit(0);
}

}  // namespace
