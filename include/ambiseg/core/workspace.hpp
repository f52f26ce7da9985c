// ambiseg/core/workspace.hpp — scratch memory that grows once and is then reused.
//
// Ops that need temporary buffers (im2col columns, attention probabilities, reductions)
// take a workspace&. The first call at a given size allocates; every later call at that
// size or smaller reuses the block, so the steady state of a training step allocates
// nothing. Not thread-safe: one workspace per model (per stream on CUDA).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ambiseg/core/device.hpp"

namespace ambiseg {

template <class D = cpu>
class workspace {
 public:
  workspace() = default;
  workspace(const workspace&) = delete;
  workspace& operator=(const workspace&) = delete;
  ~workspace() { release(); }

  // A block of at least `count` elements of T, aligned to 64 bytes. Valid until the next
  // call to get() (callers that need several buffers use get_many()).
  template <class T>
  T* get(std::size_t count) {
    reserve_bytes(count * sizeof(T));
    return static_cast<T*>(data_);
  }
  // Several buffers carved from one block: sizes in elements of T; writes pointers to out.
  template <class T, std::size_t K>
  void get_many(const std::size_t (&counts)[K], T* (&out)[K]) {
    std::size_t offsets[K];
    std::size_t total = 0;
    for (std::size_t i = 0; i < K; ++i) {
      offsets[i] = total;
      total += (counts[i] * sizeof(T) + 63) / 64 * 64;
    }
    reserve_bytes(total);
    for (std::size_t i = 0; i < K; ++i)
      out[i] = reinterpret_cast<T*>(static_cast<char*>(data_) + offsets[i]);
  }

  std::size_t bytes() const { return bytes_; }
  std::size_t allocations() const { return allocations_; }  // for no-allocation tests

  void reserve_bytes(std::size_t n) {
    if (n <= bytes_) return;
    release();
    data_ = device_memory<D>::allocate(n);
    bytes_ = n;
    ++allocations_;
  }

 private:
  void release() {
    if (data_) device_memory<D>::deallocate(data_, bytes_);
    data_ = nullptr;
    bytes_ = 0;
  }
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
  std::size_t allocations_ = 0;
};

}  // namespace ambiseg
