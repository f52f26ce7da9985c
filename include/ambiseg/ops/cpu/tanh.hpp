// ambiseg/ops/cpu/tanh.hpp — tanh and its derivative from the output, 1 − y².
#pragma once

#include <cmath>
#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

template <class T>
void tanh_forward(const T* x, T* y, std::int64_t count) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < count; ++i) y[i] = std::tanh(x[i]);
}

template <class T>
void tanh_backward(const T* y, const T* dy, T* dx, std::int64_t count) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < count; ++i) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}

}  // namespace ambiseg::ops::cpu_kernels
