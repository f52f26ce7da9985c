// ambiseg/ops/cpu/sigmoid_cross_entropy.hpp — binary cross-entropy with logits, summed per
// case, with its gradient in the same pass.
//   logits, targets [N, K] (K = values per case)  per_case [N] (double)  dlogits [N, K]
#pragma once

#include <cstdint>

#include "ambiseg/ops/kernel_math.hpp"

namespace ambiseg::ops::cpu_kernels {

// One thread per case; each case sums its K terms in order in double, so the loss does not
// depend on the thread count. dlogits may be null (not needed).
template <class T>
void sigmoid_cross_entropy_forward_backward(const T* logits, const T* targets, double scale,
                                            double* per_case, T* dlogits, std::int64_t n,
                                            std::int64_t k) {
#pragma omp parallel for schedule(static)
  for (std::int64_t c = 0; c < n; ++c) {
    const T* l = logits + c * k;
    const T* y = targets + c * k;
    double sum = 0;
    for (std::int64_t j = 0; j < k; ++j)
      sum += kernel_math::sigmoid_cross_entropy(static_cast<double>(l[j]),
                                                static_cast<double>(y[j]));
    per_case[c] = sum;
    if (dlogits) {
      T* d = dlogits + c * k;
      for (std::int64_t j = 0; j < k; ++j)
        d[j] = static_cast<T>(scale * (kernel_math::stable_sigmoid(static_cast<double>(l[j])) -
                                       static_cast<double>(y[j])));
    }
  }
}

}  // namespace ambiseg::ops::cpu_kernels
