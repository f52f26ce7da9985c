// ambiseg/ops/affine.hpp — elementwise y = a·x + b on any shape (y may alias x), and the
// per-case loss report of a model whose loss has two terms.
//   affine_forward:        y = a·x + b        (masks in {−1, +1} → {0, 1}: a = b = ½)
//   combine_case_losses:   report[i] = first[i] + weight·second[i] (i < B), report[B] = their mean
//                          first, second [B], report [B + 1], all double (a loss report)
#pragma once

#include <cstdint>

#include "ambiseg/ops/common.hpp"

namespace ambiseg::ops {

template <op_scalar T, class D>
void affine_forward(in_view<T, D> x, double a, double b, tensor_view<T, D> y) {
  expect_shape("affine_forward", "y", y, x.shape());
  if constexpr (std::same_as<D, cpu>) {
    const T* xs = x.data();
    T* ys = y.data();
    for (std::int64_t i = 0; i < x.numel(); ++i) ys[i] = static_cast<T>(a * double(xs[i]) + b);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::affine_forward<T>(x, a, b, y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

template <class D>
void combine_case_losses(in_view<double, D> first, in_view<double, D> second, double weight,
                         tensor_view<double, D> report) {
  const char* op = "combine_case_losses";
  expect_rank(op, "first", first, 1);
  expect_shape(op, "second", second, first.shape());
  expect_shape(op, "report", report, shape{first.size(0) + 1});
  if constexpr (std::same_as<D, cpu>) {
    const std::int64_t n = first.size(0);
    double total = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      report.data()[i] = first.data()[i] + weight * second.data()[i];
      total += report.data()[i];
    }
    report.data()[n] = n > 0 ? total / double(n) : 0.0;
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::combine_case_losses(first, second, weight, report);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
