// ambiseg/ops/cpu/relu.hpp — ReLU, y = max(x, 0), and its derivative from the output.
#pragma once

#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

// x < 0 ? 0 : x lets a NaN through (as torch.relu), where max(x, 0) would hide it.
template <class T>
void relu_forward(const T* x, T* y, std::int64_t count) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < count; ++i) y[i] = x[i] < T(0) ? T(0) : x[i];
}

template <class T>
void relu_backward(const T* y, const T* dy, T* dx, std::int64_t count) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < count; ++i) dx[i] = y[i] > T(0) ? dy[i] : T(0);
}

}  // namespace ambiseg::ops::cpu_kernels
