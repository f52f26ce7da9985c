// ambiseg/ops/cpu/spatial_mean.hpp — the mean of each (n, c) plane and its backward.
//   x [NC, S] -> y [NC] = Σ_s x / S (summed in double);  dx[p, s] = dy[p] / S
#pragma once

#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

template <class T>
void spatial_mean_forward(const T* x, T* y, std::int64_t nc, std::int64_t s) {
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < nc; ++p) {
    const T* row = x + p * s;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t j = 0; j < s; ++j) sum += row[j];
    y[p] = static_cast<T>(sum / static_cast<double>(s));
  }
}

template <class T>
void spatial_mean_backward(const T* dy, T* dx, std::int64_t nc, std::int64_t s) {
#pragma omp parallel for schedule(static)
  for (std::int64_t p = 0; p < nc; ++p) {
    const T g = static_cast<T>(static_cast<double>(dy[p]) / static_cast<double>(s));
    T* row = dx + p * s;
#pragma omp simd
    for (std::int64_t j = 0; j < s; ++j) row[j] = g;
  }
}

}  // namespace ambiseg::ops::cpu_kernels
