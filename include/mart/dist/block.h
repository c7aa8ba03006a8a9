#pragma once
// Contiguous blocks of work over ranks. No MPI, no torch.
#include <algorithm>
#include <cstddef>
#include <utility>

namespace mart::dist {

// Rank `rank`'s share [begin, end) of n items split over `size` ranks in contiguous blocks, the
// first n % size ranks one item more: every item in exactly one block, in rank order.
inline std::pair<size_t, size_t> contiguous_block(size_t n, int rank, int size) {
  const size_t per = n / static_cast<size_t>(size), extra = n % static_cast<size_t>(size), r = static_cast<size_t>(rank);
  const size_t begin = r * per + std::min(r, extra);
  return {begin, begin + per + (r < extra ? 1 : 0)};
}

// The same in whole chunks: n items cut into chunks of `chunk` items (the last one shorter when
// chunk does not divide n), the chunks split over the ranks as contiguous_block splits items.
// Rank `rank`'s share [begin, end) in items: begin is a multiple of `chunk`, so its chunks are
// [begin, begin + chunk), ... up to `end`, and they are the same chunks on any rank count.
inline std::pair<size_t, size_t> chunk_block(size_t n, size_t chunk, int rank, int size) {
  const auto [first, last] = contiguous_block((n + chunk - 1) / chunk, rank, size);
  return {std::min(n, first * chunk), std::min(n, last * chunk)};
}

}  // namespace mart::dist
