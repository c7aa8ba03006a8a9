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

}  // namespace mart::dist
