// ambiseg/diffusion/cuda/kernels.cuh — the diffusion elementwise maths on the GPU: the
// definitions of diffusion/cuda/api.hpp. Device code (src/cuda/diffusion.cu).
//
//   x0, eps, x_t, f, x̂0, z, x_s [N, ...] (E = elements per sample)   coefficients [N]
//
// The per-element functions are diffusion::noised, predicted_x0, clip_unit and
// reverse_step (AMBISEG_HD in diffusion/predictions.hpp and samplers.hpp), so the GPU runs
// the same expressions as the CPU facade; only the per-sample scalars (computed on the host
// in double by the schedule, prediction and sampler policies) come in as device arrays.
#pragma once

#include <algorithm>
#include <array>
#include <initializer_list>

#include "ambiseg/core/cuda/launch.cuh"
#include "ambiseg/core/cuda/reductions.cuh"
#include "ambiseg/core/cuda_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/diffusion/cuda/api.hpp"
#include "ambiseg/diffusion/predictions.hpp"
#include "ambiseg/diffusion/samplers.hpp"

namespace ambiseg::diffusion::cuda_kernels {

namespace detail {

using namespace ::ambiseg::gpu;

template <class T>
__global__ void noise_kernel(const T* x0, const T* eps, const T* alpha, const T* sigma,
                             std::int64_t count, std::int64_t per_sample, T* x_t) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    x_t[i] = diffusion::noised(alpha[n], sigma[n], x0[i], eps[i]);
  }
}

template <class T>
__global__ void predicted_x0_kernel(const T* x_t, const T* f, const T* c_xt, const T* c_f,
                                    bool clip, std::int64_t count, std::int64_t per_sample,
                                    T* x0_hat) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    const T v = diffusion::predicted_x0(c_xt[n], c_f[n], x_t[i], f[i]);
    x0_hat[i] = clip ? diffusion::clip_unit(v) : v;
  }
}

// z == nullptr: a deterministic step (the noise term is absent, not multiplied by zero,
// so an infinite coefficient with no noise cannot turn into NaN).
template <class T>
__global__ void reverse_step_kernel(const T* x_t, const T* x0_hat, const T* z, const T* c_xt,
                                    const T* c_x0, const T* c_noise, std::int64_t count,
                                    std::int64_t per_sample, T* x_s) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    x_s[i] = z ? diffusion::reverse_step(c_xt[n], c_x0[n], c_noise[n], x_t[i], x0_hat[i], z[i])
               : diffusion::reverse_step(c_xt[n], c_x0[n], T(0), x_t[i], x0_hat[i], T(0));
  }
}

template <class T>
__global__ void target_kernel(const T* x0, const T* eps, const T* c_x0, const T* c_eps,
                              std::int64_t count, std::int64_t per_sample, T* out) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    out[i] = diffusion::regression_target(c_x0[n], c_eps[n], x0[i], eps[i]);
  }
}

template <class T>
__global__ void predicted_eps_kernel(const T* x_t, const T* f, const T* c_xt, const T* c_f,
                                     const T* alpha, const T* inv_sigma, std::int64_t count,
                                     std::int64_t per_sample, T* eps_hat) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    const T x0h = diffusion::predicted_x0(c_xt[n], c_f[n], x_t[i], f[i]);
    eps_hat[i] = diffusion::predicted_eps(alpha[n], inv_sigma[n], x_t[i], x0h);
  }
}

// One block per sample: Σ_p (x̂0 − x0)² in double over a fixed thread→element assignment
// and a fixed block tree (the same bits on every run and every GPU), and optionally
// grad_f = grad_coeff·(x̂0 − x0). Each element is evaluated in double, as on the CPU
// does, so only the summation order differs from the CPU.
template <class T>
__global__ void x0_loss_kernel(const T* x0, const T* x_t, const T* f, const double* c_xt,
                               const double* c_f, const double* grad_coeff,
                               std::int64_t per_sample, T* grad_f, double* squared_sums) {
  const std::int64_t n = blockIdx.x;
  const std::int64_t begin = n * per_sample, end = begin + per_sample;
  const double a = c_xt[n], b = c_f[n];
  const double g = grad_f ? grad_coeff[n] : 0.0;
  double acc = 0.0;
  for (std::int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    const double diff = diffusion::predicted_x0<double>(a, b, static_cast<double>(x_t[i]),
                                                        static_cast<double>(f[i])) -
                        static_cast<double>(x0[i]);
    acc += diff * diff;
    if (grad_f) grad_f[i] = static_cast<T>(g * diff);
  }
  acc = block_sum(acc);
  if (threadIdx.x == 0) squared_sums[n] = acc;
}

// dst row b·n + j = src row b (the conditioning image repeated once per chain).
template <class T>
__global__ void repeat_rows_kernel(const T* src, std::int64_t row_size, std::int64_t repeats,
                                   std::int64_t count, T* dst) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t row = i / row_size;
    dst[i] = src[(row / repeats) * row_size + (i - row * row_size)];
  }
}

// A batch [N, ...] and its per-sample coefficient vectors [N]; returns E.
template <class V>
std::int64_t per_sample_check(const char* op, const V& batch, std::initializer_list<const char*> names,
                              std::initializer_list<shape> coeff_shapes) {
  throw_if<shape_error>(batch.rank() < 1, op, ": the batch must have rank >= 1, got ",
                        batch.shape());
  const std::int64_t n = batch.size(0);
  auto name = names.begin();
  for (const shape& s : coeff_shapes) {
    throw_if<shape_error>(!(s == shape{n}), op, ": ", *name, " has shape ", s, ", expected [", n,
                          "] (one coefficient per sample)");
    ++name;
  }
  return n ? batch.numel() / n : 0;
}

// One thread: the loss must be summed in sample order (see diffusion::x0_loss_report).
__global__ void loss_report_kernel(const double* sums, const double* weights, double per,
                                   std::int64_t n, double* report) {
  if (blockIdx.x == 0 && threadIdx.x == 0) diffusion::x0_loss_report(sums, weights, per, n, report);
}

}  // namespace detail

template <cuda_scalar T>
void diffusion_noise(in_view<T, cuda> x0, in_view<T, cuda> eps, in_view<T, cuda> alpha,
                     in_view<T, cuda> sigma, tensor_view<T, cuda> x_t) {
  const char* op = "diffusion_noise";
  expect_shape(op, "eps", eps, x0.shape());
  expect_shape(op, "x_t", x_t, x0.shape());
  const std::int64_t e = detail::per_sample_check(op, x0, {"alpha", "sigma"},
                                                  {alpha.shape(), sigma.shape()});
  if (x0.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x0.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::noise_kernel<T>)(
      x0.data(), eps.data(), alpha.data(), sigma.data(), x0.numel(), e, x_t.data());
  detail::check_launch("noise_kernel");
}

template <cuda_scalar T>
void diffusion_predicted_x0(in_view<T, cuda> x_t, in_view<T, cuda> f, in_view<T, cuda> c_xt,
                            in_view<T, cuda> c_f, bool clip, tensor_view<T, cuda> x0_hat) {
  const char* op = "diffusion_predicted_x0";
  expect_shape(op, "f", f, x_t.shape());
  expect_shape(op, "x0_hat", x0_hat, x_t.shape());
  const std::int64_t e =
      detail::per_sample_check(op, x_t, {"c_xt", "c_f"}, {c_xt.shape(), c_f.shape()});
  if (x_t.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x_t.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::predicted_x0_kernel<T>)(
      x_t.data(), f.data(), c_xt.data(), c_f.data(), clip, x_t.numel(), e, x0_hat.data());
  detail::check_launch("predicted_x0_kernel");
}

template <cuda_scalar T>
void diffusion_reverse_step(in_view<T, cuda> x_t, in_view<T, cuda> x0_hat, in_view<T, cuda> z,
                            in_view<T, cuda> c_xt, in_view<T, cuda> c_x0, in_view<T, cuda> c_noise,
                            tensor_view<T, cuda> x_s) {
  const char* op = "diffusion_reverse_step";
  expect_shape(op, "x0_hat", x0_hat, x_t.shape());
  const bool has_z = z.data() != nullptr;
  if (has_z) expect_shape(op, "z", z, x_t.shape());
  expect_shape(op, "x_s", x_s, x_t.shape());
  const std::int64_t e = detail::per_sample_check(op, x_t, {"c_xt", "c_x0", "c_noise"},
                                                  {c_xt.shape(), c_x0.shape(), c_noise.shape()});
  if (x_t.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x_t.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::reverse_step_kernel<T>)(
      x_t.data(), x0_hat.data(), has_z ? z.data() : nullptr, c_xt.data(), c_x0.data(),
      c_noise.data(), x_t.numel(), e, x_s.data());
  detail::check_launch("reverse_step_kernel");
}

template <cuda_scalar T>
void diffusion_target(in_view<T, cuda> x0, in_view<T, cuda> eps, in_view<T, cuda> c_x0,
                      in_view<T, cuda> c_eps, tensor_view<T, cuda> out) {
  const char* op = "diffusion_target";
  expect_shape(op, "eps", eps, x0.shape());
  expect_shape(op, "out", out, x0.shape());
  const std::int64_t e =
      detail::per_sample_check(op, x0, {"c_x0", "c_eps"}, {c_x0.shape(), c_eps.shape()});
  if (x0.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x0.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::target_kernel<T>)(
      x0.data(), eps.data(), c_x0.data(), c_eps.data(), x0.numel(), e, out.data());
  detail::check_launch("target_kernel");
}

template <cuda_scalar T>
void diffusion_predicted_eps(in_view<T, cuda> x_t, in_view<T, cuda> f, in_view<T, cuda> c_xt,
                             in_view<T, cuda> c_f, in_view<T, cuda> alpha,
                             in_view<T, cuda> inv_sigma, tensor_view<T, cuda> eps_hat) {
  const char* op = "diffusion_predicted_eps";
  expect_shape(op, "f", f, x_t.shape());
  expect_shape(op, "eps_hat", eps_hat, x_t.shape());
  const std::int64_t e = detail::per_sample_check(
      op, x_t, {"c_xt", "c_f", "alpha", "inv_sigma"},
      {c_xt.shape(), c_f.shape(), alpha.shape(), inv_sigma.shape()});
  if (x_t.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x_t.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::predicted_eps_kernel<T>)(
      x_t.data(), f.data(), c_xt.data(), c_f.data(), alpha.data(), inv_sigma.data(), x_t.numel(), e,
      eps_hat.data());
  detail::check_launch("predicted_eps_kernel");
}

template <cuda_scalar T>
void diffusion_x0_loss(in_view<T, cuda> x0, in_view<T, cuda> x_t, in_view<T, cuda> f,
                       tensor_view<const double, cuda> c_xt, tensor_view<const double, cuda> c_f,
                       tensor_view<const double, cuda> grad_coeff, tensor_view<T, cuda> grad_f,
                       tensor_view<double, cuda> squared_sums) {
  const char* op = "diffusion_x0_loss";
  expect_shape(op, "x_t", x_t, x0.shape());
  expect_shape(op, "f", f, x0.shape());
  const bool want_grad = grad_f.data() != nullptr;
  if (want_grad) expect_shape(op, "grad_f", grad_f, x0.shape());
  const std::int64_t e = detail::per_sample_check(
      op, x0, {"c_xt", "c_f", "squared_sums"}, {c_xt.shape(), c_f.shape(), squared_sums.shape()});
  if (want_grad) detail::per_sample_check(op, x0, {"grad_coeff"}, {grad_coeff.shape()});
  if (x0.numel() == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, x0.size(0)), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::x0_loss_kernel<T>)(
      x0.data(), x_t.data(), f.data(), c_xt.data(), c_f.data(),
      want_grad ? grad_coeff.data() : nullptr, e, want_grad ? grad_f.data() : nullptr,
      squared_sums.data());
  detail::check_launch("x0_loss_kernel");
}

void diffusion_loss_report(tensor_view<const double, cuda> squared_sums,
                           tensor_view<const double, cuda> weights, double per,
                           tensor_view<double, cuda> report) {
  const char* op = "diffusion_loss_report";
  const std::int64_t n = squared_sums.numel();
  throw_if<shape_error>(n < 1 || !(squared_sums.shape() == shape{n}), op,
                        ": squared_sums must be [N] with N >= 1, got ", squared_sums.shape());
  expect_shape(op, "weights", weights, shape{n});
  expect_shape(op, "report", report, shape{n + 1});
  throw_if<value_error>(!(per > 0.0), op, ": per = ", per, " must be > 0");
  AMBISEG_LAUNCH(1, 32, 0, current_cuda_context().stream(), detail::loss_report_kernel)(
      squared_sums.data(), weights.data(), per, n, report.data());
  detail::check_launch("loss_report_kernel");
}

template <cuda_scalar T>
void repeat_rows(in_view<T, cuda> src, std::int64_t repeats, tensor_view<T, cuda> dst) {
  const char* op = "repeat_rows";
  throw_if<value_error>(repeats < 1, op, ": repeats = ", repeats, " must be >= 1");
  throw_if<shape_error>(src.rank() < 1, op, ": src must have rank >= 1, got ", src.shape());
  std::array<std::int64_t, shape::max_rank> dims{};
  std::copy(src.shape().begin(), src.shape().end(), dims.begin());
  dims[0] *= repeats;
  const shape expected = shape::from_range(dims.begin(), dims.begin() + src.rank());
  expect_shape(op, "dst", dst, expected);
  if (dst.numel() == 0) return;
  const std::int64_t row_size = src.numel() / src.size(0);
  AMBISEG_LAUNCH(detail::grid_for(dst.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::repeat_rows_kernel<T>)(
      src.data(), row_size, repeats, dst.numel(), dst.data());
  detail::check_launch("repeat_rows_kernel");
}

}  // namespace ambiseg::diffusion::cuda_kernels
