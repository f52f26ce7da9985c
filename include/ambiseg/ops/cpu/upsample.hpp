// ambiseg/ops/cpu/upsample.hpp — nearest-neighbour ×2 upsampling.
//   x [NC, H, W] -> y [NC, 2H, 2W], y[2h+a, 2w+b] = x[h, w];  dx[h,w] = Σ_{a,b} dy[2h+a, 2w+b]
#pragma once

#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

template <class T>
void upsample_nearest2x_forward(const T* x, T* y, std::int64_t nc, std::int64_t h,
                                std::int64_t w) {
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t p = 0; p < nc; ++p)
    for (std::int64_t r = 0; r < h; ++r) {
      const T* src = x + (p * h + r) * w;
      T* d0 = y + (p * 2 * h + 2 * r) * 2 * w;
      T* d1 = d0 + 2 * w;
#pragma omp simd
      for (std::int64_t j = 0; j < w; ++j) {
        d0[2 * j] = d0[2 * j + 1] = src[j];
        d1[2 * j] = d1[2 * j + 1] = src[j];
      }
    }
}

template <class T>
void upsample_nearest2x_backward(const T* dy, T* dx, std::int64_t nc, std::int64_t h,
                                 std::int64_t w) {
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t p = 0; p < nc; ++p)
    for (std::int64_t r = 0; r < h; ++r) {
      const T* s0 = dy + (p * 2 * h + 2 * r) * 2 * w;
      const T* s1 = s0 + 2 * w;
      T* d = dx + (p * h + r) * w;
#pragma omp simd
      for (std::int64_t j = 0; j < w; ++j)
        d[j] = (s0[2 * j] + s0[2 * j + 1]) + (s1[2 * j] + s1[2 * j + 1]);
    }
}

}  // namespace ambiseg::ops::cpu_kernels
