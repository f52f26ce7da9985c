// ambiseg/ops/cuda/group_norm.cuh — group normalisation on the GPU.
//
//   x [N, C, S] (S: flattened spatial extent)  gamma/beta [C]  mean/rstd [N, G]
//   a group = Cg = C/G consecutive channels = M = Cg·S contiguous values of one image.
//
// Forward: one block per (n, g); two passes for the statistics (mean, then the mean
// squared deviation, so a large mean does not cancel the variance), in T (fp32 for float,
// as the reference's GroupNorm32), then y = x·a_c + b_c.
// Backward, with x̂ = (x − μ)σ⁻¹ (the CPU kernel's algebra, ops/cpu/group_norm.hpp):
//   per (n, c):  Σdy, Σdy·x̂                       (kernel 1, one block per (n, g))
//   dx = σ⁻¹γ_c·dy − σ⁻²·m2·x + σ⁻¹(μσ⁻¹m2 − m1),  m1 = mean_g(γ·dy), m2 = mean_g(γ·dy·x̂)
//                                                  (kernel 1, second pass over the group)
//   dγ_c += Σ_n Σdy·x̂,  dβ_c += Σ_n Σdy           (kernel 2, one thread per channel,
//                                                   n in order: deterministic, no atomics)
// The per-(n, c) sums live in scratch from the context's caching allocator.
//
// Fused with SiLU (Silu = true), as the CPU kernel: the forward writes silu(z),
// z = γ·x̂ + β, and never stores z; the backward recomputes z, writes dz = dy·silu'(z) into
// dx while it sums a channel, and its last pass reads dz back from dx (in place). That pass
// reads values other threads wrote; the barriers inside block_sum order those writes first.
#pragma once

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

template <class T, bool Silu>
__global__ void group_norm_forward_kernel(const T* x, const T* gamma, const T* beta,
                                          std::int64_t c, std::int64_t s, std::int64_t groups,
                                          T eps, T* y, T* mean_out, T* rstd_out) {
  const std::int64_t ng = blockIdx.x, g = ng % groups;
  const std::int64_t cg = c / groups, m = cg * s;
  const T* xg = x + ng * m;  // (n·C + g·Cg)·S = (n·G + g)·M
  T* yg = y + ng * m;
  T sum = T(0);
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) sum += xg[j];
  const T mu = block_sum(sum) / static_cast<T>(m);
  T sq = T(0);
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    const T d = xg[j] - mu;
    sq += d * d;
  }
  const T r = T(1) / sqrt(block_sum(sq) / static_cast<T>(m) + eps);
  if (threadIdx.x == 0) {
    mean_out[ng] = mu;
    rstd_out[ng] = r;
  }
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    const std::int64_t ch = g * cg + j / s;
    const T z = (xg[j] - mu) * r * gamma[ch] + beta[ch];
    if constexpr (Silu)
      yg[j] = z * sigmoid(z);
    else
      yg[j] = z;
  }
}

// sums [N·C, 2]: (Σdy, Σdy·x̂) per (n, c). dx may be null unless Silu (then it holds dz,
// and dy means dz from there on); beta is read only with Silu.
template <class T, bool Silu>
__global__ void group_norm_backward_kernel(const T* x, const T* gamma, const T* beta,
                                           const T* mean, const T* rstd, const T* dy,
                                           std::int64_t c, std::int64_t s, std::int64_t groups,
                                           T* dx, T* sums) {
  const std::int64_t ng = blockIdx.x, n = ng / groups, g = ng % groups;
  const std::int64_t cg = c / groups, m = cg * s;
  const T mu = mean[ng], r = rstd[ng];
  const T* xg = x + ng * m;
  const T* dyg = Silu ? dx + ng * m : dy + ng * m;  // dz lives in dx once computed
  T sum_gdy = T(0), sum_gdy_xhat = T(0);  // identical in every thread (block_sum broadcasts)
  for (std::int64_t cc = 0; cc < cg; ++cc) {
    const std::int64_t ch = g * cg + cc;
    const T* xc = xg + cc * s;
    T sdy = T(0), sdyx = T(0);
    if constexpr (Silu) {
      const T a = r * gamma[ch], b = beta[ch] - mu * a;
      const T* dy_c = dy + ng * m + cc * s;
      T* dz_c = dx + ng * m + cc * s;
      for (std::int64_t j = threadIdx.x; j < s; j += blockDim.x) {
        const T z = xc[j] * a + b;
        const T sg = sigmoid(z);
        const T dz = dy_c[j] * (sg * (T(1) + z * (T(1) - sg)));
        dz_c[j] = dz;
        sdy += dz;
        sdyx += dz * xc[j];
      }
    } else {
      const T* dyc = dyg + cc * s;
      for (std::int64_t j = threadIdx.x; j < s; j += blockDim.x) {
        sdy += dyc[j];
        sdyx += dyc[j] * xc[j];
      }
    }
    sdy = block_sum(sdy);
    sdyx = block_sum(sdyx);
    const T sdy_xhat = (sdyx - mu * sdy) * r;
    if (threadIdx.x == 0) {
      sums[2 * (n * c + ch)] = sdy;
      sums[2 * (n * c + ch) + 1] = sdy_xhat;
    }
    sum_gdy += gamma[ch] * sdy;
    sum_gdy_xhat += gamma[ch] * sdy_xhat;
  }
  if (!dx) return;
  const T m1 = sum_gdy / static_cast<T>(m), m2 = sum_gdy_xhat / static_cast<T>(m);
  const T bx = -r * r * m2;
  const T cst = r * (mu * r * m2 - m1);
  T* dxg = dx + ng * m;
  for (std::int64_t j = threadIdx.x; j < m; j += blockDim.x) {
    const std::int64_t ch = g * cg + j / s;
    dxg[j] = r * gamma[ch] * dyg[j] + bx * xg[j] + cst;
  }
}

template <class T>
__global__ void group_norm_param_grad_kernel(const T* sums, std::int64_t n, std::int64_t c,
                                             T* dgamma, T* dbeta) {
  for (std::int64_t ch = global_thread(); ch < c; ch += grid_stride()) {
    T g = T(0), b = T(0);
    for (std::int64_t i = 0; i < n; ++i) {
      b += sums[2 * (i * c + ch)];
      g += sums[2 * (i * c + ch) + 1];
    }
    if (dgamma) dgamma[ch] += g;
    if (dbeta) dbeta[ch] += b;
  }
}

}  // namespace detail

namespace detail {

template <class T, bool Silu>
void launch_group_norm_forward(const char* op, in_view<T, cuda> x, in_view<T, cuda> gamma,
                               in_view<T, cuda> beta, int groups, double eps,
                               tensor_view<T, cuda> y, out_view<T, cuda> mean,
                               out_view<T, cuda> rstd) {
  group_norm_check(op, x.shape(), groups);
  throw_if<value_error>(!(eps > 0), op, ": eps must be positive, got ", eps);
  const std::int64_t n = x.size(0), c = x.size(1);
  expect_shape(op, "gamma", gamma, shape{c});
  expect_shape(op, "beta", beta, shape{c});
  expect_shape(op, "y", y, x.shape());
  expect_shape(op, "mean", mean, shape{n, groups});
  expect_shape(op, "rstd", rstd, shape{n, groups});
  if (n == 0 || c == 0) return;
  AMBISEG_LAUNCH(row_grid(op, n * groups), block_threads, 0, current_cuda_context().stream(),
                 group_norm_forward_kernel<T, Silu>)(
      x.data(), gamma.data(), beta.data(), c, spatial_extent(x.shape()), groups,
      static_cast<T>(eps), y.data(), mean.data(), rstd.data());
  check_launch("group_norm_forward_kernel");
}

// beta is read only with Silu (pass an empty view otherwise).
template <class T, bool Silu>
void launch_group_norm_backward(const char* op, in_view<T, cuda> x, in_view<T, cuda> gamma,
                                in_view<T, cuda> beta, in_view<T, cuda> mean, in_view<T, cuda> rstd,
                                in_view<T, cuda> dy, int groups, tensor_view<T, cuda> dx,
                                out_view<T, cuda> dgamma, out_view<T, cuda> dbeta) {
  group_norm_check(op, x.shape(), groups);
  const std::int64_t n = x.size(0), c = x.size(1);
  expect_shape(op, "gamma", gamma, shape{c});
  if constexpr (Silu) expect_shape(op, "beta", beta, shape{c});
  expect_shape(op, "mean", mean, shape{n, groups});
  expect_shape(op, "rstd", rstd, shape{n, groups});
  expect_shape(op, "dy", dy, x.shape());
  const bool has_dx = present(dx), has_dg = present(dgamma), has_db = present(dbeta);
  if constexpr (Silu) {
    expect_shape(op, "dx", dx, x.shape());
    throw_if<value_error>(dx.data() == dy.data() || dx.data() == x.data(), op,
                          ": dx must not alias dy or x");
  } else if (has_dx) {
    expect_shape(op, "dx", dx, x.shape());
  }
  if (has_dg) expect_shape(op, "dgamma", dgamma, shape{c});
  if (has_db) expect_shape(op, "dbeta", dbeta, shape{c});
  if (n == 0 || c == 0 || (!has_dx && !has_dg && !has_db)) return;
  cuda_context& ctx = current_cuda_context();
  cuda_buffer sums = ctx.scratch(sizeof(T) * 2 * static_cast<std::size_t>(n * c));
  AMBISEG_LAUNCH(row_grid(op, n * groups), block_threads, 0, ctx.stream(),
                 group_norm_backward_kernel<T, Silu>)(
      x.data(), gamma.data(), beta.data(), mean.data(), rstd.data(), dy.data(), c,
      spatial_extent(x.shape()), groups, has_dx ? dx.data() : nullptr, sums.as<T>());
  check_launch("group_norm_backward_kernel");
  if (has_dg || has_db) {
    AMBISEG_LAUNCH(grid_for(c), block_threads, 0, ctx.stream(), group_norm_param_grad_kernel<T>)(
        sums.as<T>(), n, c, has_dg ? dgamma.data() : nullptr, has_db ? dbeta.data() : nullptr);
    check_launch("group_norm_param_grad_kernel");
  }
}

}  // namespace detail

template <cuda_scalar T>
void group_norm_forward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> beta,
                        int groups, double eps, tensor_view<T, cuda> y, out_view<T, cuda> mean,
                        out_view<T, cuda> rstd) {
  detail::launch_group_norm_forward<T, false>("group_norm_forward", x, gamma, beta, groups, eps,
                                              y, mean, rstd);
}

template <cuda_scalar T>
void group_norm_backward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> mean,
                         in_view<T, cuda> rstd, in_view<T, cuda> dy, int groups,
                         tensor_view<T, cuda> dx, out_view<T, cuda> dgamma,
                         out_view<T, cuda> dbeta) {
  detail::launch_group_norm_backward<T, false>("group_norm_backward", x, gamma, {}, mean, rstd,
                                               dy, groups, dx, dgamma, dbeta);
}

template <cuda_scalar T>
void group_norm_silu_forward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> beta,
                             int groups, double eps, tensor_view<T, cuda> y, out_view<T, cuda> mean,
                             out_view<T, cuda> rstd) {
  detail::launch_group_norm_forward<T, true>("group_norm_silu_forward", x, gamma, beta, groups,
                                             eps, y, mean, rstd);
}

template <cuda_scalar T>
void group_norm_silu_backward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> beta,
                              in_view<T, cuda> mean, in_view<T, cuda> rstd, in_view<T, cuda> dy,
                              int groups, tensor_view<T, cuda> dx, out_view<T, cuda> dgamma,
                              out_view<T, cuda> dbeta) {
  detail::launch_group_norm_backward<T, true>("group_norm_silu_backward", x, gamma, beta, mean,
                                              rstd, dy, groups, dx, dgamma, dbeta);
}

}  // namespace ambiseg::ops::cuda_kernels
