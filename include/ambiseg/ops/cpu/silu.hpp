// ambiseg/ops/cpu/silu.hpp — SiLU, y = x·σ(x), and its derivative σ(x)·(1 + x·(1 − σ(x))).
#pragma once

#include <cstdint>

#include "ambiseg/ops/cpu/math.hpp"

namespace ambiseg::ops::cpu_kernels {

template <class T>
void silu_forward(const T* x, T* y, std::int64_t count) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < count; ++i) y[i] = x[i] * sigmoid(x[i]);
}

template <class T>
void silu_backward(const T* x, const T* dy, T* dx, std::int64_t count) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < count; ++i) {
    const T s = sigmoid(x[i]);
    dx[i] = dy[i] * (s * (T(1) + x[i] * (T(1) - s)));
  }
}

}  // namespace ambiseg::ops::cpu_kernels
