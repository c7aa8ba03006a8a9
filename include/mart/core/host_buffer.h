#pragma once
// A float buffer on the host whose memory comes from the caller's allocator. The training loader
// fills its batches in these: in heap memory by default; mart-train on a GPU passes an allocator of
// page-locked (pinned) memory, so a batch goes to the device in one asynchronous copy, with no
// staging copy into pinned memory first. No torch here: the allocator keeps whatever owns the
// memory (a pinned tensor) in `owner`, and whoever made it can take it back from there.
#include <cstddef>
#include <functional>
#include <memory>

namespace mart {

class HostFloats {
 public:
  using Allocator = std::function<HostFloats(size_t n)>;

  HostFloats() = default;
  // `data` (n floats) stays valid while `owner` lives; copies of this share it.
  HostFloats(float* data, size_t n, std::shared_ptr<void> owner) : data_(data), size_(n), owner_(std::move(owner)) {}

  // n floats on the heap, uninitialised (the default allocator).
  static HostFloats heap(size_t n);
  // A new buffer from `allocate` (the heap if empty) holding a copy of `src`.
  static HostFloats copy_of(const HostFloats& src, const Allocator& allocate);

  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }
  float* begin() { return data_; }
  float* end() { return data_ + size_; }
  const float* begin() const { return data_; }
  const float* end() const { return data_ + size_; }
  const std::shared_ptr<void>& owner() const { return owner_; }

  // Equal contents (not the same memory).
  bool operator==(const HostFloats& other) const;
  bool operator!=(const HostFloats& other) const { return !(*this == other); }

 private:
  float* data_ = nullptr;
  size_t size_ = 0;
  std::shared_ptr<void> owner_;
};

// `allocate(n)`, or the heap when `allocate` is empty; checks the allocator gave n floats.
HostFloats allocate_floats(const HostFloats::Allocator& allocate, size_t n);

}  // namespace mart
