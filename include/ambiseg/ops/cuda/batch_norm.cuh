// ambiseg/ops/cuda/batch_norm.cuh — batch normalisation on the GPU (PyTorch's BatchNorm2d;
// the semantics and the algebra are those of ops/batch_norm.hpp and ops/cpu/batch_norm.hpp).
//
//   x [N, C, S] (S = H·W, or 1 for [N, C])  gamma/beta/mean/rstd/running stats [C]
//   channel c is N rows of S contiguous values, m = N·S values in all.
//
// Every kernel runs one block per channel, so the block owns that channel's statistics,
// running stats and dγ/dβ: no atomics, no second kernel, and the sums follow a fixed order
// (each thread's strided partial, then block_sum's fixed tree), so results are the same
// from run to run. Sums accumulate in double for float too, like the CPU kernels, so the two
// devices agree to a few float ulps.
//   training forward: Σx, then Σ(x − μ)² (two passes), running stats, y = (x − μ)·σ⁻¹γ + β
//   inference:        y = (x − running_mean)·γ/sqrt(running_var + eps) + β (may run in place)
//   backward:         Σdy, Σdy·(x − μ), dγ/dβ +=, then
//                     dx = a·dy + k·(x − μ) + b, a = σ⁻¹γ, k = −a·σ⁻¹·Σ(dy·x̂)/m, b = −a·Σdy/m
#pragma once

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

// Calls f(offset) for the values of channel ch that this thread owns. Wide planes run row
// by row (no division); small ones (S = 1 for [N, C]) as one flat range of m values, so
// that every thread has work.
template <class F>
__device__ __forceinline__ void for_channel_values(std::int64_t n, std::int64_t c, std::int64_t s,
                                                   std::int64_t ch, F&& f) {
  if (s >= static_cast<std::int64_t>(blockDim.x)) {
    for (std::int64_t i = 0; i < n; ++i) {
      const std::int64_t row = (i * c + ch) * s;
      for (std::int64_t j = threadIdx.x; j < s; j += blockDim.x) f(row + j);
    }
  } else {
    const std::int64_t m = n * s;
    for (std::int64_t k = threadIdx.x; k < m; k += blockDim.x) {
      const std::int64_t i = k / s;
      f((i * c + ch) * s + (k - i * s));
    }
  }
}

template <class T>
__global__ void batch_norm_training_kernel(const T* x, const T* gamma, const T* beta,
                                           std::int64_t n, std::int64_t c, std::int64_t s,
                                           double eps, double momentum, T* y, T* mean_out,
                                           T* rstd_out, T* running_mean, T* running_var) {
  const std::int64_t ch = blockIdx.x, m = n * s;
  double sum = 0;
  for_channel_values(n, c, s, ch, [&](std::int64_t o) { sum += static_cast<double>(x[o]); });
  const double mu = block_sum(sum) / static_cast<double>(m);
  double sq = 0;
  for_channel_values(n, c, s, ch, [&](std::int64_t o) {
    const double d = static_cast<double>(x[o]) - mu;
    sq += d * d;
  });
  const double var = block_sum(sq) / static_cast<double>(m);
  const double r = 1.0 / sqrt(var + eps);
  if (threadIdx.x == 0) {
    mean_out[ch] = static_cast<T>(mu);
    rstd_out[ch] = static_cast<T>(r);
    if (running_mean) {
      const double unbiased = var * static_cast<double>(m) / static_cast<double>(m - 1);
      running_mean[ch] = static_cast<T>((1 - momentum) * running_mean[ch] + momentum * mu);
      running_var[ch] = static_cast<T>((1 - momentum) * running_var[ch] + momentum * unbiased);
    }
  }
  const T mu_t = static_cast<T>(mu), a = static_cast<T>(r * gamma[ch]), b = beta[ch];
  for_channel_values(n, c, s, ch, [&](std::int64_t o) { y[o] = (x[o] - mu_t) * a + b; });
}

template <class T>
__global__ void batch_norm_inference_kernel(const T* x, const T* gamma, const T* beta,
                                            const T* running_mean, const T* running_var,
                                            std::int64_t n, std::int64_t c, std::int64_t s,
                                            double eps, T* y) {
  const std::int64_t ch = blockIdx.x;
  const double r = 1.0 / sqrt(static_cast<double>(running_var[ch]) + eps);
  const T mu = running_mean[ch], a = static_cast<T>(r * gamma[ch]), b = beta[ch];
  for_channel_values(n, c, s, ch, [&](std::int64_t o) { y[o] = (x[o] - mu) * a + b; });
}

// dx, dgamma, dbeta may each be null. dx may alias dy (each element is read, then written,
// by the same thread, after the block's sums are complete).
template <class T>
__global__ void batch_norm_backward_kernel(const T* x, const T* gamma, const T* mean,
                                           const T* rstd, const T* dy, std::int64_t n,
                                           std::int64_t c, std::int64_t s, T* dx, T* dgamma,
                                           T* dbeta) {
  const std::int64_t ch = blockIdx.x, m = n * s;
  const T mu_t = mean[ch];
  const double mu = mu_t, r = rstd[ch];
  double sdy = 0, sdyx = 0;
  for_channel_values(n, c, s, ch, [&](std::int64_t o) {
    const double g = static_cast<double>(dy[o]);
    sdy += g;
    sdyx += g * (static_cast<double>(x[o]) - mu);
  });
  sdy = block_sum(sdy);
  const double sdy_xhat = block_sum(sdyx) * r;  // Σ dy·x̂
  if (threadIdx.x == 0) {
    if (dgamma) dgamma[ch] += static_cast<T>(sdy_xhat);
    if (dbeta) dbeta[ch] += static_cast<T>(sdy);
  }
  if (!dx) return;
  const double a = r * gamma[ch], inv_m = 1.0 / static_cast<double>(m);
  const T at = static_cast<T>(a), kt = static_cast<T>(-a * r * sdy_xhat * inv_m),
          bt = static_cast<T>(-a * sdy * inv_m);
  for_channel_values(n, c, s, ch,
                     [&](std::int64_t o) { dx[o] = at * dy[o] + kt * (x[o] - mu_t) + bt; });
}

}  // namespace detail

template <cuda_scalar T>
void batch_norm_forward_training(in_view<T, cuda> x, in_view<T, cuda> gamma,
                                 in_view<T, cuda> beta, double eps, double momentum,
                                 tensor_view<T, cuda> y, out_view<T, cuda> saved_mean,
                                 out_view<T, cuda> saved_rstd, out_view<T, cuda> running_mean,
                                 out_view<T, cuda> running_var) {
  const char* op = "batch_norm_forward_training";
  ops::detail::batch_norm_training_check(op, x, gamma, beta, eps, momentum, y, saved_mean,
                                    saved_rstd, running_mean, running_var);
  const std::int64_t n = x.size(0), c = x.size(1);
  if (c == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, c), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::batch_norm_training_kernel<T>)(
      x.data(), gamma.data(), beta.data(), n, c, detail::spatial_extent(x.shape()), eps,
      momentum, y.data(), saved_mean.data(), saved_rstd.data(), running_mean.data(),
      running_var.data());
  detail::check_launch("batch_norm_training_kernel");
}

template <cuda_scalar T>
void batch_norm_forward_inference(in_view<T, cuda> x, in_view<T, cuda> gamma,
                                  in_view<T, cuda> beta, in_view<T, cuda> running_mean,
                                  in_view<T, cuda> running_var, double eps,
                                  tensor_view<T, cuda> y) {
  const char* op = "batch_norm_forward_inference";
  ops::detail::batch_norm_inference_check(op, x, gamma, beta, running_mean, running_var, eps, y);
  const std::int64_t n = x.size(0), c = x.size(1);
  if (c == 0 || x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, c), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::batch_norm_inference_kernel<T>)(
      x.data(), gamma.data(), beta.data(), running_mean.data(), running_var.data(), n, c,
      detail::spatial_extent(x.shape()), eps, y.data());
  detail::check_launch("batch_norm_inference_kernel");
}

template <cuda_scalar T>
void batch_norm_backward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> saved_mean,
                         in_view<T, cuda> saved_rstd, in_view<T, cuda> dy,
                         tensor_view<T, cuda> dx, out_view<T, cuda> dgamma,
                         out_view<T, cuda> dbeta) {
  const char* op = "batch_norm_backward";
  ops::detail::batch_norm_backward_check(op, x, gamma, saved_mean, saved_rstd, dy, dx, dgamma, dbeta);
  const std::int64_t n = x.size(0), c = x.size(1);
  const bool has_dx = detail::present(dx), has_dg = detail::present(dgamma),
             has_db = detail::present(dbeta);
  if (c == 0 || x.numel() == 0 || (!has_dx && !has_dg && !has_db)) return;
  AMBISEG_LAUNCH(detail::row_grid(op, c), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::batch_norm_backward_kernel<T>)(
      x.data(), gamma.data(), saved_mean.data(), saved_rstd.data(), dy.data(), n, c,
      detail::spatial_extent(x.shape()), has_dx ? dx.data() : nullptr,
      has_dg ? dgamma.data() : nullptr, has_db ? dbeta.data() : nullptr);
  detail::check_launch("batch_norm_backward_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
