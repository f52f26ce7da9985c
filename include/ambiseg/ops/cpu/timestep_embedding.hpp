// ambiseg/ops/cpu/timestep_embedding.hpp — sinusoidal embedding of the diffusion time.
//   t [N]  emb [N, dim] = [cos(t·f_0..f_{h−1}) | sin(t·f_0..f_{h−1}) | 0 if dim is odd]
//   h = dim/2, f_k = exp(−ln(max_period)·k/h)
#pragma once

#include <cmath>
#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

template <class T>
void timestep_embedding(const T* t, std::int64_t n, std::int64_t dim, double max_period, T* emb) {
  const std::int64_t half = dim / 2;
  for (std::int64_t i = 0; i < n; ++i) {
    T* row = emb + i * dim;
    for (std::int64_t k = 0; k < half; ++k) {
      const double f = std::exp(-std::log(max_period) * static_cast<double>(k) / static_cast<double>(half));
      const double arg = static_cast<double>(t[i]) * f;
      row[k] = static_cast<T>(std::cos(arg));
      row[half + k] = static_cast<T>(std::sin(arg));
    }
    if (dim % 2) row[dim - 1] = T(0);
  }
}

}  // namespace ambiseg::ops::cpu_kernels
