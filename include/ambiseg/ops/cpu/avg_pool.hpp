// ambiseg/ops/cpu/avg_pool.hpp — 2×2 average pooling with stride 2.
//   x [NC, H, W] -> y [NC, H/2, W/2] (H, W even), y[i, j] = ¼·Σ_{a,b} x[2i+a, 2j+b];
//   dx[2i+a, 2j+b] = ¼·dy[i, j]
#pragma once

#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

template <class T>
void avg_pool2x2_forward(const T* x, T* y, std::int64_t nc, std::int64_t h, std::int64_t w) {
  const std::int64_t ho = h / 2, wo = w / 2;
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t p = 0; p < nc; ++p)
    for (std::int64_t i = 0; i < ho; ++i) {
      const T* s0 = x + (p * h + 2 * i) * w;
      const T* s1 = s0 + w;
      T* d = y + (p * ho + i) * wo;
#pragma omp simd
      for (std::int64_t j = 0; j < wo; ++j)
        d[j] = T(0.25) * ((s0[2 * j] + s0[2 * j + 1]) + (s1[2 * j] + s1[2 * j + 1]));
    }
}

template <class T>
void avg_pool2x2_backward(const T* dy, T* dx, std::int64_t nc, std::int64_t h, std::int64_t w) {
  const std::int64_t ho = h / 2, wo = w / 2;
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t p = 0; p < nc; ++p)
    for (std::int64_t i = 0; i < ho; ++i) {
      const T* s = dy + (p * ho + i) * wo;
      T* d0 = dx + (p * h + 2 * i) * w;
      T* d1 = d0 + w;
#pragma omp simd
      for (std::int64_t j = 0; j < wo; ++j) {
        const T g = T(0.25) * s[j];
        d0[2 * j] = d0[2 * j + 1] = g;
        d1[2 * j] = d1[2 * j + 1] = g;
      }
    }
}

}  // namespace ambiseg::ops::cpu_kernels
