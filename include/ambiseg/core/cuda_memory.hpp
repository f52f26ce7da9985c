// ambiseg/core/cuda_memory.hpp — device_memory<cuda>: device blocks from a process-wide
// caching allocator on plain cudaMalloc, explicit copies; the pinned staging cache of the
// asynchronous uploads; cuda_buffer, a block held for a few kernels.
//
// Only translation units built with the CUDA backend (-DAMBISEG_CUDA=ON, target
// ambiseg::cuda) include this header. It uses the CUDA runtime's host API only, so it
// compiles with the host compiler as well as with nvcc. Never managed memory: every
// host/device transfer is an explicit copy.
//
// tensor<T, cuda> storage comes from cuda_tensor_cache(): one basic_block_cache
// (core/block_cache.hpp) for the whole process, keyed by device, whose freed blocks carry
// an event on the legacy default stream so that they are reused by any stream only after
// the work queued before the free (see block_cache.hpp). It is process-wide because a
// tensor is not tied to a context and may outlive every one of them; it is created on
// first use and deliberately never destroyed, so that tensors with static storage and
// tensors freed during exit never find it gone (the driver reclaims everything at exit).
// cuda_tensor_cache().release_cached() hands the cached blocks back to the driver;
// stats() tells what it holds. The contexts' scratch (cuda_context::scratch) comes from
// the same cache, tagged with the context's stream, so it is reused on that stream at once.
//
// cuda_pinned_staging() is the same cache on page-locked host memory (cudaHostAlloc):
// cuda_context::upload copies a host buffer into one of its blocks and enqueues an
// asynchronous copy from there, and the block is reused only after that copy ran (its
// event), so the caller may reuse its own buffer at once and the host never waits.
#pragma once

#include <cuda_runtime_api.h>

#include <string>
#include <utility>

#include "ambiseg/core/block_cache.hpp"
#include "ambiseg/core/cuda_error.hpp"
#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"

namespace ambiseg {

enum class cuda_block_memory { device, pinned_host };

// The CUDA runtime as basic_block_cache's driver, for device memory or pinned host memory.
template <cuda_block_memory Memory>
struct cuda_runtime_block_driver {
  using event = cudaEvent_t;

  // Makes `device` current for a scope and restores the previous one.
  class device_guard {
   public:
    explicit device_guard(int device) noexcept {
      if (cudaGetDevice(&previous_) != cudaSuccess) {
        (void)cudaGetLastError();
        previous_ = -1;
      }
      if (previous_ != device && cudaSetDevice(device) != cudaSuccess) (void)cudaGetLastError();
    }
    ~device_guard() {
      int now = -1;
      if (previous_ >= 0 && cudaGetDevice(&now) == cudaSuccess && now != previous_)
        (void)cudaSetDevice(previous_);
    }
    device_guard(const device_guard&) = delete;
    device_guard& operator=(const device_guard&) = delete;

   private:
    int previous_ = -1;
  };

  int current_device() {
    int device = 0;
    cuda_check(cudaGetDevice(&device), "cudaGetDevice");
    return device;
  }
  void* malloc(std::size_t bytes) {
    void* p = nullptr;
    const cudaError_t status = Memory == cuda_block_memory::device
                                   ? cudaMalloc(&p, bytes)
                                   : cudaHostAlloc(&p, bytes, cudaHostAllocDefault);
    if (status == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      return nullptr;
    }
    cuda_check(status, Memory == cuda_block_memory::device ? "cudaMalloc" : "cudaHostAlloc");
    return p;
  }
  void free(void* p, int device) noexcept {
    device_guard guard(device);
    if constexpr (Memory == cuda_block_memory::device)
      (void)cudaFree(p);
    else
      (void)cudaFreeHost(p);
  }
  event create_event(int device) {
    device_guard guard(device);
    cudaEvent_t e = nullptr;
    cuda_check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate");
    return e;
  }
  // On cudaStreamLegacy explicitly (not stream 0), so that a build with
  // --default-stream per-thread still records on the stream that orders the blocking ones.
  bool record_event(event e, int device) noexcept {
    device_guard guard(device);
    if (cudaEventRecord(e, cudaStreamLegacy) == cudaSuccess) return true;
    (void)cudaGetLastError();
    return false;
  }
  bool event_done(event e) noexcept {
    const cudaError_t status = cudaEventQuery(e);
    if (status == cudaSuccess) return true;
    (void)cudaGetLastError();  // cudaErrorNotReady
    return false;
  }
  void wait_event(event e) noexcept {
    if (cudaEventSynchronize(e) != cudaSuccess) (void)cudaGetLastError();
  }
  void destroy_event(event e, int device) noexcept {
    device_guard guard(device);
    (void)cudaEventDestroy(e);
  }
};

using cuda_block_cache = basic_block_cache<cuda_runtime_block_driver<cuda_block_memory::device>>;
using cuda_pinned_cache = basic_block_cache<cuda_runtime_block_driver<cuda_block_memory::pinned_host>>;

// The process-wide cache of tensor<T, cuda> storage and scratch (never destroyed, see above).
inline cuda_block_cache& cuda_tensor_cache() {
  static cuda_block_cache* const cache = new cuda_block_cache();
  return *cache;
}
// The process-wide cache of pinned staging blocks (never destroyed). Its blocks are written
// by the host, so they are never requested with a stream tag (block_cache.hpp's rule 1).
// Up to 64 MiB of one class may wait for the device: a sampling run uploads two small
// coefficient blocks and one z per step and must not wait for the device to recycle them.
inline constexpr std::size_t pinned_staging_pending_bytes = std::size_t(64) << 20;
inline cuda_pinned_cache& cuda_pinned_staging() {
  static cuda_pinned_cache* const cache =
      new cuda_pinned_cache({}, cuda_pinned_cache::default_max_pending, pinned_staging_pending_bytes);
  return *cache;
}

// A block held for a few kernels on one stream and returned to its cache, tagged with that
// stream, when it goes (move-only): the contexts' scratch.
class cuda_buffer {
 public:
  cuda_buffer() = default;
  cuda_buffer(cuda_block_cache& cache, std::size_t bytes, const void* stream)
      : cache_(&cache), stream_(stream), data_(cache.allocate(bytes, stream)), bytes_(bytes) {}
  cuda_buffer(const cuda_buffer&) = delete;
  cuda_buffer& operator=(const cuda_buffer&) = delete;
  cuda_buffer(cuda_buffer&& o) noexcept
      : cache_(std::exchange(o.cache_, nullptr)),
        stream_(std::exchange(o.stream_, nullptr)),
        data_(std::exchange(o.data_, nullptr)),
        bytes_(std::exchange(o.bytes_, 0)) {}
  cuda_buffer& operator=(cuda_buffer&& o) noexcept {
    if (this != &o) {
      reset();
      cache_ = std::exchange(o.cache_, nullptr);
      stream_ = std::exchange(o.stream_, nullptr);
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
    if (data_) cache_->deallocate(data_, stream_);
    data_ = nullptr;
    bytes_ = 0;
  }

 private:
  cuda_block_cache* cache_ = nullptr;
  const void* stream_ = nullptr;
  void* data_ = nullptr;
  std::size_t bytes_ = 0;
};

template <>
struct device_memory<cuda> {
  // From the process-wide cache on the current device (no cudaMalloc in a steady state,
  // no device-wide wait at a free).
  static void* allocate(std::size_t bytes) { return cuda_tensor_cache().allocate(bytes); }
  static void deallocate(void* p, std::size_t) noexcept { cuda_tensor_cache().deallocate(p); }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) cuda_check(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice), "copy d2d");
  }
  static void copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
    if (bytes) cuda_check(cudaMemcpy(host_dst, src, bytes, cudaMemcpyDeviceToHost), "copy d2h");
  }
  static void copy_from_host(void* dst, const void* host_src, std::size_t bytes) {
    if (bytes) cuda_check(cudaMemcpy(dst, host_src, bytes, cudaMemcpyHostToDevice), "copy h2d");
  }
  static void zero(void* p, std::size_t bytes) {
    if (bytes) cuda_check(cudaMemset(p, 0, bytes), "cudaMemset");
  }
};

// Explicit transfers between a host tensor and a device tensor of the same shape.
template <class T>
void copy_to_device(tensor_view<const T, cpu> src, tensor_view<T, cuda> dst) {
  expect_shape("copy_to_device", "destination", dst, src.shape());
  device_memory<cuda>::copy_from_host(dst.data(), src.data(), sizeof(T) * src.numel());
}
template <class T>
void copy_to_host(tensor_view<const T, cuda> src, tensor_view<T, cpu> dst) {
  expect_shape("copy_to_host", "destination", dst, src.shape());
  device_memory<cuda>::copy_to_host(dst.data(), src.data(), sizeof(T) * src.numel());
}

}  // namespace ambiseg
