// ambiseg/ops/cuda/affine.cuh — y = a·x + b, and a two-term per-case loss report (one block:
// B is a batch size, and the mean is summed in a fixed order, so it is deterministic).
#pragma once

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"

namespace ambiseg::ops::cuda_kernels {

namespace detail {
template <class T>
__global__ void affine_kernel(const T* x, double a, double b, T* y, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = static_cast<T>(a * double(x[i]) + b);
}
__global__ void combine_case_losses_kernel(const double* first, const double* second, double weight,
                                          double* report, std::int64_t n) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    report[i] = first[i] + weight * second[i];
    total += report[i];
  }
  report[n] = n > 0 ? total / double(n) : 0.0;
}
}  // namespace detail

template <cuda_scalar T>
void affine_forward(in_view<T, cuda> x, double a, double b, tensor_view<T, cuda> y) {
  expect_shape("affine_forward", "y", y, x.shape());
  if (x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x.numel()), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::affine_kernel<T>)(x.data(), a, b, y.data(), x.numel());
  detail::check_launch("affine_kernel");
}

void combine_case_losses(in_view<double, cuda> first, in_view<double, cuda> second, double weight,
                         tensor_view<double, cuda> report) {
  expect_shape("combine_case_losses", "second", second, first.shape());
  expect_shape("combine_case_losses", "report", report, shape{first.size(0) + 1});
  AMBISEG_LAUNCH(1, 1, 0, current_cuda_context().stream(), detail::combine_case_losses_kernel)(
      first.data(), second.data(), weight, report.data(), first.size(0));
  detail::check_launch("combine_case_losses_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
