// ambiseg/ops/cpu/linear.hpp — fully connected layer through GEMM.
//   x [N, In]  w [Out, In]  b [Out]  y [N, Out] = x·wᵀ + b
//   dx = dy·w,  dw += dyᵀ·x,  db += Σ_n dy
#pragma once

#include <algorithm>
#include <cstdint>

#include "ambiseg/ops/cpu/gemm.hpp"

namespace ambiseg::ops::cpu_kernels {

template <class T>
void linear_forward(const T* x, const T* w, const T* b, T* y, std::int64_t n, std::int64_t in,
                    std::int64_t out) {
  T beta = T(0);
  if (b) {
    for (std::int64_t i = 0; i < n; ++i) std::copy_n(b, out, y + i * out);
    beta = T(1);
  }
  gemm(trans::no, trans::yes, n, out, in, T(1), x, in, w, in, beta, y, out);
}

template <class T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db, std::int64_t n,
                     std::int64_t in, std::int64_t out) {
  if (dx) gemm(trans::no, trans::no, n, in, out, T(1), dy, out, w, in, T(0), dx, in);
  if (dw) gemm(trans::yes, trans::no, out, in, n, T(1), dy, out, x, in, T(1), dw, in);
  if (db)
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t o = 0; o < out; ++o) db[o] += dy[i * out + o];
}

}  // namespace ambiseg::ops::cpu_kernels
