// ambiseg/ops/cpu/gaussian_fc.hpp — full-covariance and mixture latents on the CPU: the
// Cholesky factor from the head's outputs, the reparameterised sample, the analytic KL, the
// mixture log-density and the straight-through choice of a component.
// Latents are small (rows of D ≤ 64, K ≤ 32): no threads. Every value is formed in double by
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

// log_prob[b] = log p(z_b) of the mixture of row b; scale·∂log_prob/∂· added to the non-null
// gradients. Diag: `second` is log σ [B, K, D], else L [B, K, D, D] (lower triangles).
template <bool Diag, class T>
void mixture_log_prob_forward_backward(const T* z, const T* logits, const T* mu, const T* second,
                                       double scale, double* log_prob, T* dz, T* dlogits, T* dmu,
                                       T* dsecond, std::int64_t b, std::int64_t k,
                                       std::int64_t d) {
  namespace km = kernel_math;
  constexpr int cap = km::mixture_max_components * km::fc_max_dim;
  double u[cap], w[cap], joint[km::mixture_max_components], gamma[km::mixture_max_components],
      pi[km::mixture_max_components];
  const std::int64_t ss = Diag ? d : d * d;  // one component's log σ or L
  for (std::int64_t r = 0; r < b; ++r) {
    const T* zr = z + r * d;
    for (std::int64_t c = 0; c < k; ++c) {
      const T *m = mu + (r * k + c) * d, *p = second + (r * k + c) * ss;
      const double logn = Diag ? km::diag_component_log_density(zr, m, p, d, u + c * d)
                               : km::fc_component_log_density(zr, m, p, d, u + c * d);
      joint[c] = static_cast<double>(logits[r * k + c]) + logn;
    }
    log_prob[r] = km::mixture_combine(joint, logits + r * k, k, gamma, pi);
    if (!dz && !dlogits && !dmu && !dsecond) continue;
    for (std::int64_t c = 0; c < k; ++c) {
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
    if (dz)
      for (std::int64_t i = 0; i < d; ++i)
        dz[r * d + i] += static_cast<T>(scale * km::mixture_dz(gamma, w, k, d, i));
  }
}

// relaxed[b] = softmax((logits + gumbel)/τ), choice[b] = its argmax, z[b] = samples[b, choice].
template <class T>
void straight_through_mixture_sample_forward(const T* logits, const T* gumbel, double tau,
                                             const T* samples, T* z, T* relaxed,
                                             std::int32_t* choice, std::int64_t b, std::int64_t k,
                                             std::int64_t d) {
  for (std::int64_t r = 0; r < b; ++r) {
    const std::int32_t c =
        kernel_math::st_relax(logits + r * k, gumbel + r * k, tau, k, relaxed + r * k);
    choice[r] = c;
    for (std::int64_t i = 0; i < d; ++i) z[r * d + i] = samples[(r * k + c) * d + i];
  }
}

// dsamples[b, choice] += dz (h_k = 1 there, 0 elsewhere), dlogits += the relaxed part's
// gradient; either may be null.
template <class T>
void straight_through_mixture_sample_backward(const T* samples, const T* relaxed,
                                              const std::int32_t* choice, double tau, const T* dz,
                                              T* dlogits, T* dsamples, std::int64_t b,
                                              std::int64_t k, std::int64_t d) {
  for (std::int64_t r = 0; r < b; ++r) {
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

}  // namespace ambiseg::ops::cpu_kernels
