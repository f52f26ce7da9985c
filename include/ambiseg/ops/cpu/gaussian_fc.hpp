// ambiseg/ops/cpu/gaussian_fc.hpp — full-covariance Gaussian latents on the CPU: the
// Cholesky factor from the head's outputs, the reparameterised sample and the analytic KL.
// Latents are small (rows of D ≤ 64): no threads. Every value is formed in double by
// ops/kernel_math_fc.hpp (the CUDA kernels' own code) and rounded to T once.
#pragma once

#include <cstdint>

#include "ambiseg/ops/kernel_math_fc.hpp"

namespace ambiseg::ops::cpu_kernels {

// rows = B·K matrices of d×d.
template <class T>
void fc_scale_tril_forward(const T* log_sigma, const T* raw, T* l, std::int64_t rows,
                           std::int64_t d) {
  for (std::int64_t n = 0; n < rows; ++n)
    for (std::int64_t r = 0; r < d; ++r)
      for (std::int64_t c = 0; c < d; ++c) {
        const std::int64_t e = (n * d + r) * d + c;
        l[e] = static_cast<T>(kernel_math::fc_scale_tril_value(log_sigma[n * d + r], raw[e], r, c));
      }
}

// dlog_sigma += dL_rr·exp(log σ_r), draw += dL below the diagonal; either may be null.
template <class T>
void fc_scale_tril_backward(const T* log_sigma, const T* dl, T* dlog_sigma, T* draw,
                            std::int64_t rows, std::int64_t d) {
  for (std::int64_t n = 0; n < rows; ++n)
    for (std::int64_t r = 0; r < d; ++r) {
      const std::int64_t e0 = (n * d + r) * d;
      if (dlog_sigma)
        dlog_sigma[n * d + r] +=
            static_cast<T>(kernel_math::fc_scale_tril_dlog_sigma(log_sigma[n * d + r], dl[e0 + r]));
      if (draw)
        for (std::int64_t c = 0; c < r; ++c) draw[e0 + c] += dl[e0 + c];
    }
}

template <class T>
void fc_gaussian_rsample_forward(const T* mu, const T* l, const T* eps, T* z, std::int64_t rows,
                                 std::int64_t d) {
  for (std::int64_t n = 0; n < rows; ++n)
    for (std::int64_t i = 0; i < d; ++i)
      z[n * d + i] = static_cast<T>(
          kernel_math::fc_rsample_element(mu + n * d, l + n * d * d, eps + n * d, d, i));
}

// dmu += dz, dL_ij += dz_i·eps_j for j ≤ i; either may be null.
template <class T>
void fc_gaussian_rsample_backward(const T* eps, const T* dz, T* dmu, T* dl, std::int64_t rows,
                                  std::int64_t d) {
  for (std::int64_t n = 0; n < rows; ++n)
    for (std::int64_t i = 0; i < d; ++i) {
      const T g = dz[n * d + i];
      if (dmu) dmu[n * d + i] += g;
      if (dl)
        for (std::int64_t j = 0; j <= i; ++j)
          dl[(n * d + i) * d + j] += static_cast<T>(static_cast<double>(g) *
                                                    static_cast<double>(eps[n * d + j]));
    }
}

// kl[b] for b rows of one d-dimensional Gaussian each; scale·∂kl/∂· added to the non-null
// gradients (lower triangles of dlq, dlp only).
template <class T>
void fc_gaussian_kl_forward_backward(const T* mu_q, const T* lq, const T* mu_p, const T* lp,
                                     double scale, double* kl, T* dmu_q, T* dlq, T* dmu_p,
                                     T* dlp, std::int64_t b, std::int64_t d) {
  namespace km = kernel_math;
  double m[km::fc_tri_capacity], a_mat[km::fc_tri_capacity];
  double v[km::fc_max_dim], a_vec[km::fc_max_dim];
  const bool grads = dmu_q || dlq || dmu_p || dlp;
  for (std::int64_t r = 0; r < b; ++r) {
    const T *mq = mu_q + r * d, *mp = mu_p + r * d, *q = lq + r * d * d, *p = lp + r * d * d;
    for (std::int64_t col = 0; col <= d; ++col)
      km::fc_kl_solve_column(p, q, mq, mp, d, col, m, v);
    kl[r] = km::fc_kl_value(p, q, d, m, v);
    if (!grads) continue;
    for (std::int64_t col = 0; col <= d; ++col)
      km::fc_kl_back_column(p, d, col, m, v, a_mat, a_vec);
    for (std::int64_t i = 0; i < d; ++i) {
      if (dmu_q) dmu_q[r * d + i] += static_cast<T>(scale * a_vec[i]);
      if (dmu_p) dmu_p[r * d + i] -= static_cast<T>(scale * a_vec[i]);
      for (std::int64_t j = 0; j <= i; ++j) {
        const std::int64_t e = (r * d + i) * d + j;
        if (dlq) dlq[e] += static_cast<T>(scale * km::fc_kl_dlq(q, d, i, j, a_mat));
        if (dlp) dlp[e] += static_cast<T>(scale * km::fc_kl_dlp(p, d, i, j, m, v, a_mat, a_vec));
      }
    }
  }
}

}  // namespace ambiseg::ops::cpu_kernels
