// ambiseg/core/cuda_allocator.hpp — a caching device allocator on plain cudaMalloc.
//
// cudaMalloc and cudaFree are slow and cudaFree synchronises the whole device, so scratch
// memory that ops need for a few kernels (group-norm partial sums, reduction partials,
// cuDNN weight-gradient staging) comes from this cache instead: a freed block goes onto
// the free list of its size class and the next request of that class takes it back
// without touching the driver. In a training loop every request repeats each step, so
// the steady state performs no cudaMalloc at all.
//
// Stream safety: blocks are reused in stream order. A block freed on the host while the
// kernels that use it are still queued is only handed to later work on the SAME stream,
// which runs after them. This is why each cuda_context (one stream) owns one allocator;
// sharing an allocator between streams would need events and is not supported here.
// (tensor<T, cuda> storage, which no stream owns, comes from the process-wide,
// event-stamped cache of core/block_cache.hpp instead: see core/cuda_memory.hpp.)
//
// Size classes: up to 1 MiB, multiples of 512 bytes; above, four classes per power of two
// (a block wastes at most 25%, and a request never takes a block of another class, so a
// huge cached block is never split or wasted on a tiny request).
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ambiseg/core/block_cache.hpp"
#include "ambiseg/core/cuda_error.hpp"
#include "ambiseg/core/error.hpp"

namespace ambiseg {

struct cuda_allocator_stats {
  std::size_t bytes_in_use = 0;       // handed out and not yet returned
  std::size_t bytes_cached = 0;       // on the free lists
  std::size_t peak_bytes_in_use = 0;
  std::uint64_t device_allocations = 0;  // cudaMalloc calls
  std::uint64_t cache_hits = 0;          // requests served from a free list
  std::uint64_t device_frees = 0;        // cudaFree calls
};

class cuda_caching_allocator {
 public:
  static constexpr std::size_t small_granule = block_small_granule;
  static constexpr std::size_t small_limit = block_small_limit;

  // The class a request of `bytes` is served from (0 for 0). Pure arithmetic: testable
  // without a GPU.
  static std::size_t size_class(std::size_t bytes) { return block_size_class(bytes); }

  cuda_caching_allocator() = default;
  cuda_caching_allocator(const cuda_caching_allocator&) = delete;
  cuda_caching_allocator& operator=(const cuda_caching_allocator&) = delete;
  // Frees every block, cached or not: destroy the allocator only after the stream that
  // used it has finished (cuda_context does so in its destructor).
  ~cuda_caching_allocator() {
    for (auto& [p, bytes] : live_) (void)cudaFree(p);
    for (auto& [bytes, list] : free_)
      for (void* p : list) (void)cudaFree(p);
  }

  void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t cls = size_class(bytes);
    std::lock_guard lock(mutex_);
    void* p = nullptr;
    auto it = free_.find(cls);
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.bytes_cached -= cls;
      ++stats_.cache_hits;
    } else {
      p = device_malloc(cls);
    }
    live_.emplace(p, cls);
    stats_.bytes_in_use += cls;
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use) stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return p;
  }

  // Returns a block to its free list. A pointer this allocator did not hand out is a
  // programming error and throws value_error.
  void deallocate(void* p) {
    if (!p) return;
    std::lock_guard lock(mutex_);
    auto it = live_.find(p);
    throw_if<value_error>(it == live_.end(),
                          "cuda_caching_allocator::deallocate: pointer was not allocated here");
    const std::size_t cls = it->second;
    live_.erase(it);
    free_[cls].push_back(p);
    stats_.bytes_in_use -= cls;
    stats_.bytes_cached += cls;
  }

  // cudaFree of every cached block (implicitly synchronises the device, like any cudaFree).
  void release_cached() {
    std::lock_guard lock(mutex_);
    release_cached_locked();
  }

  cuda_allocator_stats stats() const {
    std::lock_guard lock(mutex_);
    return stats_;
  }

 private:
  void* device_malloc(std::size_t bytes) {
    void* p = nullptr;
    cudaError_t status = cudaMalloc(&p, bytes);
    if (status == cudaErrorMemoryAllocation) {
      // Out of memory: give the cache back to the driver and try once more.
      (void)cudaGetLastError();
      release_cached_locked();
      status = cudaMalloc(&p, bytes);
    }
    cuda_check(status, "cuda_caching_allocator: cudaMalloc");
    ++stats_.device_allocations;
    return p;
  }
  void release_cached_locked() {
    for (auto& [bytes, list] : free_) {
      for (void* p : list) {
        (void)cudaFree(p);
        ++stats_.device_frees;
      }
      list.clear();
    }
    stats_.bytes_cached = 0;
  }

  mutable std::mutex mutex_;
  std::map<std::size_t, std::vector<void*>> free_;  // size class -> cached blocks
  std::unordered_map<void*, std::size_t> live_;     // block -> its size class
  cuda_allocator_stats stats_;
};

// A block from a cuda_caching_allocator, returned to it on destruction (move-only).
class cuda_buffer {
 public:
  cuda_buffer() = default;
  cuda_buffer(cuda_caching_allocator& alloc, std::size_t bytes)
      : alloc_(&alloc), data_(alloc.allocate(bytes)), bytes_(bytes) {}
  cuda_buffer(const cuda_buffer&) = delete;
  cuda_buffer& operator=(const cuda_buffer&) = delete;
  cuda_buffer(cuda_buffer&& o) noexcept
      : alloc_(std::exchange(o.alloc_, nullptr)),
        data_(std::exchange(o.data_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)) {}
  cuda_buffer& operator=(cuda_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      alloc_ = std::exchange(o.alloc_, nullptr);
      data_ = std::exchange(o.data_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  ~cuda_buffer() { reset(); }

  void* data() const { return data_; }
  template <class T>
  T* as() const { return static_cast<T*>(data_); }
  std::size_t bytes() const { return bytes_; }

  void reset() noexcept {
    // The block came from alloc_, so deallocate cannot throw here.
    if (data_) alloc_->deallocate(data_);
    data_ = nullptr;
    bytes_ = 0;
  }

 private:
  cuda_caching_allocator* alloc_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

}  // namespace ambiseg
