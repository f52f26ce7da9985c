// ambiseg/ops/cuda/latent_fc.cuh — full-covariance and mixture latents on the GPU
// (ops/gaussian_fc.hpp): the Cholesky factor, the reparameterised sample, the analytic KL,
// the mixture log-density and the straight-through choice of a component.
//
//   log_sigma, mu, eps, samples [B, K, D]   tril_raw, L [B, K, D, D]   logits [B, K]
//   kl, log_prob [B] (double)
// Every value is formed in double by ops/kernel_math_fc.hpp, the CPU kernels' own code.
// The factor and the sample run one thread per output element (each gradient element has
// exactly one writer), the straight-through choice one thread per row. The KL and the
// mixture density run one block per row: one thread per column of the triangular solves
// (KL) or per component (mixture), the packed intermediates in shared memory, every sum in
// one thread in the CPU's order. No atomics: deterministic.
#pragma once

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"
#include "ambiseg/ops/kernel_math_fc.hpp"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

// Threads of a row's block: one per column of a D ≤ 64 solve (or per component, K ≤ 32).
constexpr int fc_row_threads = kernel_math::fc_max_dim;

template <class T>
__global__ void fc_scale_tril_kernel(const T* log_sigma, const T* raw, T* l, std::int64_t d,
                                     std::int64_t n) {
  for (std::int64_t e = global_thread(); e < n; e += grid_stride()) {
    const std::int64_t c = e % d, rd = e / d, r = rd % d, row = rd / d;
    l[e] = static_cast<T>(kernel_math::fc_scale_tril_value(log_sigma[row * d + r], raw[e], r, c));
  }
}

// One thread per element of dL: below the diagonal it feeds draw, on it dlog_sigma.
template <class T>
__global__ void fc_scale_tril_backward_kernel(const T* log_sigma, const T* dl, T* dlog_sigma,
                                              T* draw, std::int64_t d, std::int64_t n) {
  for (std::int64_t e = global_thread(); e < n; e += grid_stride()) {
    const std::int64_t c = e % d, rd = e / d, r = rd % d, row = rd / d;
    if (r > c && draw) draw[e] += dl[e];
    if (r == c && dlog_sigma)
      dlog_sigma[row * d + r] +=
          static_cast<T>(kernel_math::fc_scale_tril_dlog_sigma(log_sigma[row * d + r], dl[e]));
  }
}

template <class T>
__global__ void fc_rsample_kernel(const T* mu, const T* l, const T* eps, T* z, std::int64_t d,
                                  std::int64_t n) {
  for (std::int64_t e = global_thread(); e < n; e += grid_stride()) {
    const std::int64_t i = e % d, row = e / d;
    z[e] = static_cast<T>(
        kernel_math::fc_rsample_element(mu + row * d, l + row * d * d, eps + row * d, d, i));
  }
}

// One thread per element (i, j) of dL; the j = 0 thread also adds dz_i to dmu_i.
template <class T>
__global__ void fc_rsample_backward_kernel(const T* eps, const T* dz, T* dmu, T* dl,
                                           std::int64_t d, std::int64_t n) {
  for (std::int64_t e = global_thread(); e < n; e += grid_stride()) {
    const std::int64_t j = e % d, rd = e / d, i = rd % d, row = rd / d;
    const T g = dz[row * d + i];
    if (j == 0 && dmu) dmu[row * d + i] += g;
    if (j <= i && dl)
      dl[e] += static_cast<T>(static_cast<double>(g) * static_cast<double>(eps[row * d + j]));
  }
}

// One block per row b.
template <class T>
__global__ void fc_gaussian_kl_kernel(const T* mu_q, const T* lq, const T* mu_p, const T* lp,
                                      double scale, double* kl, T* dmu_q, T* dlq, T* dmu_p,
                                      T* dlp, std::int64_t d) {
  namespace km = kernel_math;
  __shared__ double m[km::fc_tri_capacity];
  __shared__ double a_mat[km::fc_tri_capacity];
  __shared__ double v[km::fc_max_dim];
  __shared__ double a_vec[km::fc_max_dim];
  const std::int64_t r = blockIdx.x;
  const T *mq = mu_q + r * d, *mp = mu_p + r * d, *q = lq + r * d * d, *p = lp + r * d * d;
  for (std::int64_t col = threadIdx.x; col <= d; col += blockDim.x)
    km::fc_kl_solve_column(p, q, mq, mp, d, col, m, v);
  __syncthreads();
  if (threadIdx.x == 0) kl[r] = km::fc_kl_value(p, q, d, m, v);
  if (!dmu_q && !dlq && !dmu_p && !dlp) return;  // the same for every thread of the block
  for (std::int64_t col = threadIdx.x; col <= d; col += blockDim.x)
    km::fc_kl_back_column(p, d, col, m, v, a_mat, a_vec);
  __syncthreads();
  for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    if (dmu_q) dmu_q[r * d + i] += static_cast<T>(scale * a_vec[i]);
    if (dmu_p) dmu_p[r * d + i] -= static_cast<T>(scale * a_vec[i]);
    for (std::int64_t j = 0; j <= i; ++j) {
      const std::int64_t e = (r * d + i) * d + j;
      if (dlq) dlq[e] += static_cast<T>(scale * km::fc_kl_dlq(q, d, i, j, a_mat));
      if (dlp) dlp[e] += static_cast<T>(scale * km::fc_kl_dlp(p, d, i, j, m, v, a_mat, a_vec));
    }
  }
}

// One block per row b: one thread per component for the densities and their gradients,
// the combination in one thread, one thread per latent dimension for dz (sums over k in
// order).
template <bool Diag, class T>
__global__ void mixture_log_prob_kernel(const T* z, const T* logits, const T* mu, const T* second,
                                        double scale, double* log_prob, T* dz, T* dlogits, T* dmu,
                                        T* dsecond, std::int64_t k, std::int64_t d) {
  namespace km = kernel_math;
  __shared__ double u[km::mixture_max_components * km::fc_max_dim];
  __shared__ double w[km::mixture_max_components * km::fc_max_dim];
  __shared__ double joint[km::mixture_max_components];
  __shared__ double gamma[km::mixture_max_components];
  __shared__ double pi[km::mixture_max_components];
  const std::int64_t r = blockIdx.x, ss = Diag ? d : d * d;
  const T* zr = z + r * d;
  for (std::int64_t c = threadIdx.x; c < k; c += blockDim.x) {
    const T *m = mu + (r * k + c) * d, *p = second + (r * k + c) * ss;
    const double logn = Diag ? km::diag_component_log_density(zr, m, p, d, u + c * d)
                             : km::fc_component_log_density(zr, m, p, d, u + c * d);
    joint[c] = static_cast<double>(logits[r * k + c]) + logn;
  }
  __syncthreads();
  if (threadIdx.x == 0) log_prob[r] = km::mixture_combine(joint, logits + r * k, k, gamma, pi);
  if (!dz && !dlogits && !dmu && !dsecond) return;  // the same for every thread of the block
  __syncthreads();
  for (std::int64_t c = threadIdx.x; c < k; c += blockDim.x) {
    const T* p = second + (r * k + c) * ss;
    const double* uc = u + c * d;
    double* wc = w + c * d;
    if (Diag) km::diag_component_back(p, d, uc, wc);
    else km::fc_component_back(p, d, uc, wc);
    const double g = scale * gamma[c];
    if (dlogits) dlogits[r * k + c] += static_cast<T>(scale * (gamma[c] - pi[c]));
    if (dmu)
      for (std::int64_t i = 0; i < d; ++i) dmu[(r * k + c) * d + i] += static_cast<T>(g * wc[i]);
    if (dsecond) {
      T* ds = dsecond + (r * k + c) * ss;
      if (Diag) {
        for (std::int64_t i = 0; i < d; ++i) ds[i] += static_cast<T>(g * (uc[i] * uc[i] - 1.0));
      } else {
        for (std::int64_t i = 0; i < d; ++i)
          for (std::int64_t j = 0; j <= i; ++j)
            ds[i * d + j] += static_cast<T>(g * km::fc_component_dl(p, d, i, j, uc, wc));
      }
    }
  }
  __syncthreads();
  if (dz)
    for (std::int64_t i = threadIdx.x; i < d; i += blockDim.x)
      dz[r * d + i] += static_cast<T>(scale * km::mixture_dz(gamma, w, k, d, i));
}

// One thread per row b.
template <class T>
__global__ void st_sample_kernel(const T* logits, const T* gumbel, double tau, const T* samples,
                                 T* z, T* relaxed, std::int32_t* choice, std::int64_t b,
                                 std::int64_t k, std::int64_t d) {
  for (std::int64_t r = global_thread(); r < b; r += grid_stride()) {
    const std::int32_t c =
        kernel_math::st_relax(logits + r * k, gumbel + r * k, tau, k, relaxed + r * k);
    choice[r] = c;
    for (std::int64_t i = 0; i < d; ++i) z[r * d + i] = samples[(r * k + c) * d + i];
  }
}

template <class T>
__global__ void st_sample_backward_kernel(const T* samples, const T* relaxed,
                                          const std::int32_t* choice, double tau, const T* dz,
                                          T* dlogits, T* dsamples, std::int64_t b, std::int64_t k,
                                          std::int64_t d) {
  for (std::int64_t r = global_thread(); r < b; r += grid_stride()) {
    const T *s = samples + r * k * d, *rr = relaxed + r * k, *g = dz + r * d;
    if (dsamples) {
      T* ds = dsamples + (r * k + choice[r]) * d;
      for (std::int64_t i = 0; i < d; ++i) ds[i] += g[i];
    }
    if (!dlogits) continue;
    const double mean = kernel_math::st_relaxed_mean(rr, s, g, k, d);
    for (std::int64_t c = 0; c < k; ++c)
      dlogits[r * k + c] += static_cast<T>(
          kernel_math::st_dlogit(rr[c], kernel_math::st_dot(g, s + c * d, d), mean, tau));
  }
}

}  // namespace detail

template <cuda_scalar T>
void fc_scale_tril_forward(in_view<T, cuda> log_sigma, in_view<T, cuda> tril_raw,
                           tensor_view<T, cuda> L) {
  ops::detail::fc_scale_tril_check("fc_scale_tril_forward", log_sigma, "tril_raw", tril_raw, "L",
                                   L, false);
  if (L.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(L.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::fc_scale_tril_kernel<T>)(
      log_sigma.data(), tril_raw.data(), L.data(), log_sigma.size(2), L.numel());
  detail::check_launch("fc_scale_tril_kernel");
}

template <cuda_scalar T>
void fc_scale_tril_backward(in_view<T, cuda> log_sigma, in_view<T, cuda> dL,
                            tensor_view<T, cuda> dlog_sigma, out_view<T, cuda> dtril_raw) {
  const char* op = "fc_scale_tril_backward";
  ops::detail::fc_scale_tril_check(op, log_sigma, "dL", dL, "dtril_raw", dtril_raw, true);
  detail::expect_shape_if_present(op, "dlog_sigma", dlog_sigma, log_sigma.shape());
  if (dL.numel() == 0 || (!detail::present(dlog_sigma) && !detail::present(dtril_raw))) return;
  AMBISEG_LAUNCH(detail::grid_for(dL.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::fc_scale_tril_backward_kernel<T>)(
      log_sigma.data(), dL.data(), dlog_sigma.data(), dtril_raw.data(), log_sigma.size(2),
      dL.numel());
  detail::check_launch("fc_scale_tril_backward_kernel");
}

template <cuda_scalar T>
void fc_gaussian_rsample_forward(in_view<T, cuda> mu, in_view<T, cuda> L, in_view<T, cuda> eps,
                                 tensor_view<T, cuda> z) {
  ops::detail::fc_rsample_forward_check("fc_gaussian_rsample_forward", mu, L, eps, z);
  if (z.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(z.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::fc_rsample_kernel<T>)(
      mu.data(), L.data(), eps.data(), z.data(), mu.size(2), z.numel());
  detail::check_launch("fc_rsample_kernel");
}

template <cuda_scalar T>
void fc_gaussian_rsample_backward(in_view<T, cuda> eps, in_view<T, cuda> dz,
                                  tensor_view<T, cuda> dmu, out_view<T, cuda> dL) {
  ops::detail::fc_rsample_backward_check("fc_gaussian_rsample_backward", eps, dz, dmu, dL);
  const std::int64_t n = eps.numel() * eps.size(2);  // one thread per element of L
  if (n == 0 || (!detail::present(dmu) && !detail::present(dL))) return;
  AMBISEG_LAUNCH(detail::grid_for(n), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::fc_rsample_backward_kernel<T>)(eps.data(), dz.data(), dmu.data(),
                                                        dL.data(), eps.size(2), n);
  detail::check_launch("fc_rsample_backward_kernel");
}

template <cuda_scalar T>
void fc_gaussian_kl_forward_backward(in_view<T, cuda> mu_q, in_view<T, cuda> L_q,
                                     in_view<T, cuda> mu_p, in_view<T, cuda> L_p, double scale,
                                     out_view<double, cuda> kl, tensor_view<T, cuda> dmu_q,
                                     out_view<T, cuda> dL_q, out_view<T, cuda> dmu_p,
                                     out_view<T, cuda> dL_p) {
  const char* op = "fc_gaussian_kl_forward_backward";
  ops::detail::fc_gaussian_kl_check(op, mu_q, L_q, mu_p, L_p, kl, dmu_q, dL_q, dmu_p, dL_p);
  const std::int64_t b = mu_q.size(0);
  if (b == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, b), detail::fc_row_threads, 0,
                 current_cuda_context().stream(), detail::fc_gaussian_kl_kernel<T>)(
      mu_q.data(), L_q.data(), mu_p.data(), L_p.data(), scale, kl.data(), dmu_q.data(),
      dL_q.data(), dmu_p.data(), dL_p.data(), mu_q.size(2));
  detail::check_launch("fc_gaussian_kl_kernel");
}

template <cuda_scalar T>
void mixture_log_prob_forward_backward(in_view<T, cuda> z, in_view<T, cuda> logits,
                                       in_view<T, cuda> mu, in_view<T, cuda> L, double scale,
                                       out_view<double, cuda> log_prob, tensor_view<T, cuda> dz,
                                       out_view<T, cuda> dlogits, out_view<T, cuda> dmu,
                                       out_view<T, cuda> dL) {
  const char* op = "mixture_log_prob_forward_backward";
  ops::detail::mixture_log_prob_check(op, z, logits, mu, "L", L, false, log_prob, dz, dlogits,
                                      dmu, dL, "dL");
  const std::int64_t b = z.size(0);
  if (b == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, b), detail::fc_row_threads, 0,
                 current_cuda_context().stream(), detail::mixture_log_prob_kernel<false, T>)(
      z.data(), logits.data(), mu.data(), L.data(), scale, log_prob.data(), dz.data(),
      dlogits.data(), dmu.data(), dL.data(), logits.size(1), z.size(1));
  detail::check_launch("mixture_log_prob_kernel");
}

template <cuda_scalar T>
void diag_mixture_log_prob_forward_backward(in_view<T, cuda> z, in_view<T, cuda> logits,
                                            in_view<T, cuda> mu, in_view<T, cuda> log_sigma,
                                            double scale, out_view<double, cuda> log_prob,
                                            tensor_view<T, cuda> dz, out_view<T, cuda> dlogits,
                                            out_view<T, cuda> dmu,
                                            out_view<T, cuda> dlog_sigma) {
  const char* op = "diag_mixture_log_prob_forward_backward";
  ops::detail::mixture_log_prob_check(op, z, logits, mu, "log_sigma", log_sigma, true, log_prob,
                                      dz, dlogits, dmu, dlog_sigma, "dlog_sigma");
  const std::int64_t b = z.size(0);
  if (b == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, b), detail::fc_row_threads, 0,
                 current_cuda_context().stream(), detail::mixture_log_prob_kernel<true, T>)(
      z.data(), logits.data(), mu.data(), log_sigma.data(), scale, log_prob.data(), dz.data(),
      dlogits.data(), dmu.data(), dlog_sigma.data(), logits.size(1), z.size(1));
  detail::check_launch("mixture_log_prob_kernel");
}

template <cuda_scalar T>
void straight_through_mixture_sample_forward(in_view<T, cuda> logits, in_view<T, cuda> gumbel,
                                             double tau, in_view<T, cuda> samples,
                                             tensor_view<T, cuda> z, out_view<T, cuda> relaxed,
                                             out_view<std::int32_t, cuda> choice) {
  ops::detail::st_mixture_sample_check("straight_through_mixture_sample_forward", logits, gumbel,
                                       tau, samples, z, relaxed, choice);
  const std::int64_t b = samples.size(0);
  if (b == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(b), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::st_sample_kernel<T>)(logits.data(), gumbel.data(), tau, samples.data(),
                                              z.data(), relaxed.data(), choice.data(), b,
                                              samples.size(1), samples.size(2));
  detail::check_launch("st_sample_kernel");
}

template <cuda_scalar T>
void straight_through_mixture_sample_backward(in_view<T, cuda> samples, in_view<T, cuda> relaxed,
                                              in_view<std::int32_t, cuda> choice, double tau,
                                              in_view<T, cuda> dz, tensor_view<T, cuda> dlogits,
                                              out_view<T, cuda> dsamples) {
  ops::detail::st_mixture_sample_backward_check("straight_through_mixture_sample_backward",
                                                samples, relaxed, choice, tau, dz, dlogits,
                                                dsamples);
  const std::int64_t b = samples.size(0);
  if (b == 0 || (!detail::present(dlogits) && !detail::present(dsamples))) return;
  AMBISEG_LAUNCH(detail::grid_for(b), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::st_sample_backward_kernel<T>)(
      samples.data(), relaxed.data(), choice.data(), tau, dz.data(), dlogits.data(),
      dsamples.data(), b, samples.size(1), samples.size(2));
  detail::check_launch("st_sample_backward_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
