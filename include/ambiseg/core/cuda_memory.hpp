// ambiseg/core/cuda_memory.hpp — device_memory<cuda>: plain cudaMalloc, explicit copies.
//
// Only translation units built with the CUDA backend (-DAMBISEG_CUDA=ON, target
// ambiseg::cuda) include this header. It uses the CUDA runtime's host API only, so it
// compiles with the host compiler as well as with nvcc. Never managed memory: every
// host/device transfer is an explicit copy.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"

namespace ambiseg {

class cuda_error : public error { public: using error::error; };

inline void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) [[unlikely]]
    throw cuda_error(std::string("CUDA: ") + what + ": " + cudaGetErrorName(status) + " (" +
                     cudaGetErrorString(status) + ")");
}

// True when a usable GPU is present; tests tagged [cuda] skip otherwise.
inline bool cuda_available() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device"/"no driver" error
    return false;
  }
  return count > 0;
}

inline std::string cuda_device_name(int device = 0) {
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
  return prop.name;
}

template <>
struct device_memory<cuda> {
  static void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    void* p = nullptr;
    cuda_check(cudaMalloc(&p, bytes), "cudaMalloc");
    return p;
  }
  static void deallocate(void* p, std::size_t) noexcept {
    if (p) (void)cudaFree(p);
  }
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
