// ambiseg/ops/kernel_math_fc.hpp — the per-row maths of the full-covariance latent ops
// (ops/gaussian_fc.hpp), written once (AMBISEG_HD) for the CPU kernels and the CUDA kernels,
// so both evaluate the same formulas in the same order, in double.
//
// One row is one latent distribution: L [D, D] row-major (only the lower triangle is read:
// the upper one is structurally zero), mu, z, eps [D]. Triangular intermediates are stored
// packed, row by row: element (i, j), j ≤ i, at tri(i, j) = i(i + 1)/2 + j.
#pragma once

#include <cmath>
#include <cstdint>

#include "ambiseg/core/config.hpp"

namespace ambiseg::ops::kernel_math {

// Row-sized scratch lives in fixed arrays (CPU stack, CUDA shared memory), hence the caps.
constexpr int fc_max_dim = 64;
constexpr int fc_tri_capacity = fc_max_dim * (fc_max_dim + 1) / 2;
// The reference adds this to the Cholesky diagonal so that Σ stays positive definite.
constexpr double fc_diagonal_offset = 1e-4;

AMBISEG_HD std::int64_t tri(std::int64_t i, std::int64_t j) { return i * (i + 1) / 2 + j; }

// ---- Cholesky factor from the head's outputs -----------------------------------------------

// L[r][c] = raw[r][c] below the diagonal, exp(log σ_r) + 1e-4 on it, 0 above.
AMBISEG_HD double fc_scale_tril_value(double log_sigma_r, double raw_rc, std::int64_t r,
                                      std::int64_t c) {
  if (r > c) return raw_rc;
  if (r == c) return std::exp(log_sigma_r) + fc_diagonal_offset;
  return 0.0;
}
// ∂L_rr/∂log σ_r · dL_rr.
AMBISEG_HD double fc_scale_tril_dlog_sigma(double log_sigma_r, double dl_rr) {
  return dl_rr * std::exp(log_sigma_r);
}

// ---- z = mu + L·eps ------------------------------------------------------------------------

template <class T>
AMBISEG_HD double fc_rsample_element(const T* mu, const T* l, const T* eps, std::int64_t d,
                                     std::int64_t i) {
  double s = static_cast<double>(mu[i]);
  for (std::int64_t j = 0; j <= i; ++j)
    s += static_cast<double>(l[i * d + j]) * static_cast<double>(eps[j]);
  return s;
}

// ---- analytic KL(N(mu_q, Lq·Lqᵀ) ‖ N(mu_p, Lp·Lpᵀ)) -----------------------------------------
// KL = Σ log Lp_ii − Σ log Lq_ii + ½(‖M‖²_F + ‖v‖² − D), M = Lp⁻¹Lq (lower triangular),
// v = Lp⁻¹(mu_q − mu_p). With A = Lp⁻ᵀM and a = Lp⁻ᵀv the gradients are
//   ∂/∂mu_q = a, ∂/∂mu_p = −a, ∂/∂Lq = tril(A) − diag(1/Lq_ii),
//   ∂/∂Lp = tril(−A·Mᵀ − a·vᵀ) + diag(1/Lp_ii),
// and tril(A·Mᵀ) needs only tril(A): (A·Mᵀ)_ij = Σ_{k≤j} A_ik M_jk, with k ≤ j ≤ i.
// Columns are independent (one CUDA thread each); column D is the vector (v, then a).

// Forward substitution Lp·x = rhs for column col: col < D fills M[tri(i, col)], i ≥ col
// (Lq's column is zero above the diagonal); col = D fills v.
template <class T>
AMBISEG_HD void fc_kl_solve_column(const T* lp, const T* lq, const T* mu_q, const T* mu_p,
                                   std::int64_t d, std::int64_t col, double* m, double* v) {
  if (col < d) {
    for (std::int64_t i = col; i < d; ++i) {
      double s = static_cast<double>(lq[i * d + col]);
      for (std::int64_t k = col; k < i; ++k)
        s -= static_cast<double>(lp[i * d + k]) * m[tri(k, col)];
      m[tri(i, col)] = s / static_cast<double>(lp[i * d + i]);
    }
  } else {
    for (std::int64_t i = 0; i < d; ++i) {
      double s = static_cast<double>(mu_q[i]) - static_cast<double>(mu_p[i]);
      for (std::int64_t k = 0; k < i; ++k) s -= static_cast<double>(lp[i * d + k]) * v[k];
      v[i] = s / static_cast<double>(lp[i * d + i]);
    }
  }
}

template <class T>
AMBISEG_HD double fc_kl_value(const T* lp, const T* lq, std::int64_t d, const double* m,
                              const double* v) {
  double logs = 0.0, sq = 0.0;
  for (std::int64_t i = 0; i < d; ++i)
    logs += std::log(static_cast<double>(lp[i * d + i])) -
            std::log(static_cast<double>(lq[i * d + i]));
  for (std::int64_t k = 0; k < tri(d, 0); ++k) sq += m[k] * m[k];
  for (std::int64_t i = 0; i < d; ++i) sq += v[i] * v[i];
  return logs + 0.5 * (sq - static_cast<double>(d));
}

// Back substitution Lpᵀ·x = rhs for column col: col < D gives A's lower part of the column
// (rows D − 1 down to col need only rows below them), col = D gives a from v.
template <class T>
AMBISEG_HD void fc_kl_back_column(const T* lp, std::int64_t d, std::int64_t col,
                                  const double* m, const double* v, double* a_mat,
                                  double* a_vec) {
  if (col < d) {
    for (std::int64_t i = d - 1; i >= col; --i) {
      double s = m[tri(i, col)];
      for (std::int64_t k = i + 1; k < d; ++k)
        s -= static_cast<double>(lp[k * d + i]) * a_mat[tri(k, col)];
      a_mat[tri(i, col)] = s / static_cast<double>(lp[i * d + i]);
    }
  } else {
    for (std::int64_t i = d - 1; i >= 0; --i) {
      double s = v[i];
      for (std::int64_t k = i + 1; k < d; ++k)
        s -= static_cast<double>(lp[k * d + i]) * a_vec[k];
      a_vec[i] = s / static_cast<double>(lp[i * d + i]);
    }
  }
}

// ∂KL/∂Lq_ij and ∂KL/∂Lp_ij for j ≤ i.
template <class T>
AMBISEG_HD double fc_kl_dlq(const T* lq, std::int64_t d, std::int64_t i, std::int64_t j,
                            const double* a_mat) {
  const double g = a_mat[tri(i, j)];
  return i == j ? g - 1.0 / static_cast<double>(lq[i * d + i]) : g;
}
template <class T>
AMBISEG_HD double fc_kl_dlp(const T* lp, std::int64_t d, std::int64_t i, std::int64_t j,
                            const double* m, const double* v, const double* a_mat,
                            const double* a_vec) {
  double s = -a_vec[i] * v[j];
  for (std::int64_t k = 0; k <= j; ++k) s -= a_mat[tri(i, k)] * m[tri(j, k)];
  return i == j ? s + 1.0 / static_cast<double>(lp[i * d + i]) : s;
}

}  // namespace ambiseg::ops::kernel_math
