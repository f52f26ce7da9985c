// ambiseg/ops/cpu/add.hpp — elementwise sum and the per-channel bias injection.
//   h [N, C, S]  e [N, C]:  h[n,c,:] += e[n,c];  de[n,c] = Σ_s dh[n,c,s]
#pragma once

#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

template <class T>
void add_forward(const T* a, const T* b, T* y, std::int64_t count) {
#pragma omp parallel for simd schedule(static)
  for (std::int64_t i = 0; i < count; ++i) y[i] = a[i] + b[i];
}

template <class T>
void add_channel_bias_forward(T* h, const T* e, std::int64_t nc, std::int64_t s) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < nc; ++i) {
    T* hc = h + i * s;
    const T v = e[i];
#pragma omp simd
    for (std::int64_t j = 0; j < s; ++j) hc[j] += v;
  }
}

template <class T>
void add_channel_bias_backward(const T* dh, T* de, std::int64_t nc, std::int64_t s) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < nc; ++i) {
    const T* d = dh + i * s;
    double sum = 0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t j = 0; j < s; ++j) sum += d[j];
    de[i] = static_cast<T>(sum);
  }
}

}  // namespace ambiseg::ops::cpu_kernels
