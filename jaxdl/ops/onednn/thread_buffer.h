// A growing, 64-byte-aligned scratch buffer, one per thread and purpose: the kernels' temporaries
// (oneDNN's reordered kernel and scratchpad, im2col blocks, weight-gradient partials) are
// allocated once per thread and reused by every later call, never zero-filled.
#pragma once

#include <cstddef>
#include <cstdlib>

namespace jaxdl {

class ThreadBuffer {
 public:
  ThreadBuffer() = default;
  ThreadBuffer(const ThreadBuffer&) = delete;
  ThreadBuffer& operator=(const ThreadBuffer&) = delete;
  ~ThreadBuffer() { std::free(data_); }

  // At least `bytes` bytes, 64-byte aligned; the contents are undefined after a growth. nullptr
  // if the allocation failed.
  void* get(size_t bytes) {
    if (bytes > size_) {
      std::free(data_);
      size_ = (bytes + 63) / 64 * 64;
      data_ = std::aligned_alloc(64, size_);
      if (data_ == nullptr) size_ = 0;
    }
    return data_;
  }

  template <typename T>
  T* get(size_t count) {
    return static_cast<T*>(get(count * sizeof(T)));
  }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace jaxdl
