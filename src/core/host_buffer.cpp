#include "mart/core/host_buffer.h"

#include <algorithm>
#include <cstring>

#include "mart/core/error.h"

namespace mart {

HostFloats HostFloats::heap(size_t n) {
  std::shared_ptr<float[]> memory(new float[std::max<size_t>(n, 1)]);
  float* data = memory.get();
  return HostFloats(data, n, std::move(memory));
}

HostFloats allocate_floats(const HostFloats::Allocator& allocate, size_t n) {
  if (!allocate) return HostFloats::heap(n);
  HostFloats out = allocate(n);
  MART_CHECK(out.size() == n && (n == 0 || out.data() != nullptr), "host allocator gave ", out.size(),
             " floats where ", n, " were asked for");
  return out;
}

HostFloats HostFloats::copy_of(const HostFloats& src, const Allocator& allocate) {
  HostFloats out = allocate_floats(allocate, src.size());
  if (src.size() > 0) std::memcpy(out.data(), src.data(), src.size() * sizeof(float));
  return out;
}

bool HostFloats::operator==(const HostFloats& other) const {
  return size_ == other.size_ && (size_ == 0 || std::equal(begin(), end(), other.begin()));
}

}  // namespace mart
