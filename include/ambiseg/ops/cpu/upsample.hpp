// ambiseg/ops/cpu/upsample.hpp — ×2 upsampling, nearest-neighbour and bilinear.
//   x [NC, H, W] -> y [NC, 2H, 2W]
//   nearest:  y[2h+a, 2w+b] = x[h, w];  dx[h,w] = Σ_{a,b} dy[2h+a, 2w+b]
//   bilinear: the taps and the gathered backward of ops/kernel_math.hpp (shared with CUDA)
#pragma once

#include <cstdint>

#include "ambiseg/ops/kernel_math.hpp"

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

// One thread per output row; the column taps are recomputed per pixel (a few flops, no
// scratch, since ops never allocate).
template <class T>
void upsample_bilinear2x_forward(const T* x, T* y, std::int64_t nc, std::int64_t h,
                                 std::int64_t w, bilinear_mode mode) {
  const std::int64_t h2 = 2 * h, w2 = 2 * w;
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t p = 0; p < nc; ++p)
    for (std::int64_t i = 0; i < h2; ++i) {
      const kernel_math::bilinear_tap th = kernel_math::bilinear2x_tap(i, h, mode);
      const T* plane = x + p * h * w;
      T* d = y + (p * h2 + i) * w2;
      for (std::int64_t j = 0; j < w2; ++j) {
        const kernel_math::bilinear_tap tw = kernel_math::bilinear2x_tap(j, w, mode);
        d[j] = kernel_math::bilinear2x_sample(plane, w, th, tw);
      }
    }
}

// A gather per input pixel (each thread owns its dx rows: no scatter, no races), so the
// result does not depend on the thread count and equals the CUDA kernel's order.
template <class T>
void upsample_bilinear2x_backward(const T* dy, T* dx, std::int64_t nc, std::int64_t h,
                                  std::int64_t w, bilinear_mode mode) {
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t p = 0; p < nc; ++p)
    for (std::int64_t r = 0; r < h; ++r) {
      const kernel_math::bilinear_gather gr = kernel_math::bilinear2x_gather(r, h, mode);
      const T* plane = dy + p * 4 * h * w;
      T* d = dx + (p * h + r) * w;
      for (std::int64_t c = 0; c < w; ++c) {
        const kernel_math::bilinear_gather gc = kernel_math::bilinear2x_gather(c, w, mode);
        d[c] = kernel_math::bilinear2x_gather_value(plane, w, gr, gc);
      }
    }
}

}  // namespace ambiseg::ops::cpu_kernels
