// ambiseg/core/cuda_error.hpp — cuda_error, cuda_check and the device query of the CUDA
// runtime (host API only: compiles with the host compiler and with nvcc).
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "ambiseg/core/error.hpp"

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

}  // namespace ambiseg
