// ambiseg/core/device.hpp — device tags and their memory primitives.
//
// A device is a tag type; tensors, ops and modules take it as a template parameter and
// dispatch with `if constexpr`. device_memory<D> supplies allocate/deallocate/copies for
// D. The CPU specialisation is here; the CUDA one lives in core/cuda_memory.hpp and is
// only seen by translation units built with the CUDA backend.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

#include "ambiseg/core/error.hpp"

namespace ambiseg {

struct cpu {
  static constexpr const char* name = "cpu";
};
struct cuda {
  static constexpr const char* name = "cuda";
};

template <class D>
concept device = std::same_as<D, cpu> || std::same_as<D, cuda>;

// Primary template: a device without memory primitives is a compile error that says so.
template <class D>
struct device_memory {
  static_assert(dependent_false<D>,
                "ambiseg: no device_memory<D> for this device. For ambiseg::cuda, include "
                "<ambiseg/core/cuda_memory.hpp> and build with -DAMBISEG_CUDA=ON.");
};

template <>
struct device_memory<cpu> {
  // 64-byte alignment: a cache line and an AVX-512 register; keeps SIMD loads aligned.
  static constexpr std::size_t alignment = 64;
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    const std::size_t rounded = (bytes + alignment - 1) / alignment * alignment;
    void* p = std::aligned_alloc(alignment, rounded);
    if (!p) throw std::bad_alloc();
    return p;
  }
  static void deallocate(void* p, std::size_t) noexcept { std::free(p); }
  static void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  static void copy_to_host(void* host_dst, const void* src, std::size_t bytes) {
    copy(host_dst, src, bytes);
  }
  static void copy_from_host(void* dst, const void* host_src, std::size_t bytes) {
    copy(dst, host_src, bytes);
  }
  static void zero(void* p, std::size_t bytes) {
    if (bytes) std::memset(p, 0, bytes);
  }
};

}  // namespace ambiseg
