// ambiseg/ops/kernel_math_fc.hpp — the per-row maths of the full-covariance and mixture
// latent ops (ops/gaussian_fc.hpp), written once (AMBISEG_HD) for the CPU kernels and the
// CUDA kernels, so both evaluate the same formulas in the same order, in double.
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
constexpr int mixture_max_components = 32;
constexpr int fc_tri_capacity = fc_max_dim * (fc_max_dim + 1) / 2;
// The reference adds this to the Cholesky diagonal so that Σ stays positive definite.
constexpr double fc_diagonal_offset = 1e-4;
constexpr double half_log_two_pi = 0.91893853320467274178;

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

// ---- mixtures: log p(z) = logsumexp_k [log_softmax(logits)_k + log N_k(z)] ----------------
// Per component the whitened residual u and w = Σ⁻¹(z − mu) = L⁻ᵀu give every gradient:
//   ∂log N/∂z = −w, ∂log N/∂mu = w, ∂log N/∂L = tril(w·uᵀ) − diag(1/L_ii)
//   (diagonal: u_i = (z_i − mu_i)/σ_i, w_i = u_i/σ_i, ∂log N/∂log σ_i = u_i² − 1),
// weighted by the responsibility γ_k = exp(ℓ_k − log p); ∂log p/∂logits_k = γ_k − π_k with
// π = softmax(logits).

// u = L⁻¹(z − mu) by forward substitution; returns log N(z; mu, L·Lᵀ).
template <class T>
AMBISEG_HD double fc_component_log_density(const T* z, const T* mu, const T* l, std::int64_t d,
                                           double* u) {
  double sq = 0.0, logs = 0.0;
  for (std::int64_t i = 0; i < d; ++i) {
    double s = static_cast<double>(z[i]) - static_cast<double>(mu[i]);
    for (std::int64_t k = 0; k < i; ++k) s -= static_cast<double>(l[i * d + k]) * u[k];
    const double lii = static_cast<double>(l[i * d + i]);
    u[i] = s / lii;
    sq += u[i] * u[i];
    logs += std::log(lii);
  }
  return -0.5 * sq - logs - static_cast<double>(d) * half_log_two_pi;
}
// w = L⁻ᵀu by back substitution.
template <class T>
AMBISEG_HD void fc_component_back(const T* l, std::int64_t d, const double* u, double* w) {
  for (std::int64_t i = d - 1; i >= 0; --i) {
    double s = u[i];
    for (std::int64_t k = i + 1; k < d; ++k) s -= static_cast<double>(l[k * d + i]) * w[k];
    w[i] = s / static_cast<double>(l[i * d + i]);
  }
}

// ∂log N/∂L_ij, j ≤ i.
template <class T>
AMBISEG_HD double fc_component_dl(const T* l, std::int64_t d, std::int64_t i, std::int64_t j,
                                  const double* u, const double* w) {
  const double g = w[i] * u[j];
  return i == j ? g - 1.0 / static_cast<double>(l[i * d + i]) : g;
}
// ∂log p/∂z_i = −Σ_k γ_k w_k,i (w of component k at w[k·d]), summed in k order.
AMBISEG_HD double mixture_dz(const double* gamma, const double* w, std::int64_t k,
                             std::int64_t d, std::int64_t i) {
  double s = 0.0;
  for (std::int64_t c = 0; c < k; ++c) s -= gamma[c] * w[c * d + i];
  return s;
}

// Diagonal components (σ = exp(log σ), the reference's AA mixtures): u and log N.
template <class T>
AMBISEG_HD double diag_component_log_density(const T* z, const T* mu, const T* log_sigma,
                                             std::int64_t d, double* u) {
  double sq = 0.0, logs = 0.0;
  for (std::int64_t i = 0; i < d; ++i) {
    const double ls = static_cast<double>(log_sigma[i]);
    u[i] = (static_cast<double>(z[i]) - static_cast<double>(mu[i])) * std::exp(-ls);
    sq += u[i] * u[i];
    logs += ls;
  }
  return -0.5 * sq - logs - static_cast<double>(d) * half_log_two_pi;
}
template <class T>
AMBISEG_HD void diag_component_back(const T* log_sigma, std::int64_t d, const double* u,
                                    double* w) {
  for (std::int64_t i = 0; i < d; ++i) w[i] = u[i] * std::exp(-static_cast<double>(log_sigma[i]));
}

// logsumexp of x[0..k) with the maximum taken out first (−inf when every x is −inf).
template <class T>
AMBISEG_HD double log_sum_exp(const T* x, std::int64_t k) {
  double mx = -INFINITY;
  for (std::int64_t i = 0; i < k; ++i)
    if (static_cast<double>(x[i]) > mx) mx = static_cast<double>(x[i]);
  if (mx == -INFINITY) return mx;
  double s = 0.0;
  for (std::int64_t i = 0; i < k; ++i) s += std::exp(static_cast<double>(x[i]) - mx);
  return mx + std::log(s);
}

// joint[k] = logits_k + log N_k(z) on entry. Returns log p(z) and fills the responsibilities
// γ and the mixture weights π (each summing to 1).
template <class T>
AMBISEG_HD double mixture_combine(const double* joint, const T* logits, std::int64_t k,
                                  double* gamma, double* pi) {
  const double lse_logits = log_sum_exp(logits, k);
  const double lse_joint = log_sum_exp(joint, k);
  for (std::int64_t i = 0; i < k; ++i) {
    gamma[i] = std::exp(joint[i] - lse_joint);
    pi[i] = std::exp(static_cast<double>(logits[i]) - lse_logits);
  }
  return lse_joint - lse_logits;
}

// ---- straight-through Gumbel-softmax choice of a component --------------------------------
// r = softmax((logits + gumbel)/τ) written to relaxed; returns argmax r (the first of equal
// maxima). argmax r = argmax of (logits + gumbel)/τ, whose exp(0) = 1 no other entry reaches.
template <class T>
AMBISEG_HD std::int32_t st_relax(const T* logits, const T* gumbel, double tau, std::int64_t k,
                                 T* relaxed) {
  double mx = -INFINITY;
  std::int32_t arg = 0;
  for (std::int64_t i = 0; i < k; ++i) {
    const double x = (static_cast<double>(logits[i]) + static_cast<double>(gumbel[i])) / tau;
    if (x > mx) {
      mx = x;
      arg = static_cast<std::int32_t>(i);
    }
  }
  double s = 0.0;
  for (std::int64_t i = 0; i < k; ++i)
    s += std::exp((static_cast<double>(logits[i]) + static_cast<double>(gumbel[i])) / tau - mx);
  for (std::int64_t i = 0; i < k; ++i)
    relaxed[i] = static_cast<T>(
        std::exp((static_cast<double>(logits[i]) + static_cast<double>(gumbel[i])) / tau - mx) / s);
  return arg;
}

// z = Σ_k (h_k − sg(r_k) + r_k)·s_k: ∂z/∂s_k = h_k, ∂z/∂r_k = s_k, and through the softmax
// ∂/∂logits_j = (r_j/τ)(g_j − Σ_k r_k g_k) with g_k = dz·s_k (st_dlogit below).
template <class T>
AMBISEG_HD double st_dot(const T* dz, const T* sample, std::int64_t d) {
  double s = 0.0;
  for (std::int64_t i = 0; i < d; ++i)
    s += static_cast<double>(dz[i]) * static_cast<double>(sample[i]);
  return s;
}
template <class T>
AMBISEG_HD double st_relaxed_mean(const T* relaxed, const T* samples, const T* dz, std::int64_t k,
                                  std::int64_t d) {
  double s = 0.0;
  for (std::int64_t i = 0; i < k; ++i)
    s += static_cast<double>(relaxed[i]) * st_dot(dz, samples + i * d, d);
  return s;
}

AMBISEG_HD double st_dlogit(double r, double g, double mean, double tau) {
  return r / tau * (g - mean);
}

}  // namespace ambiseg::ops::kernel_math
