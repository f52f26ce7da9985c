// ambiseg/ops/cpu/group_norm.hpp — group normalisation kernels.
//
//   x [N, C, S] (S: the flattened spatial extent)  gamma/beta [C]  mean/rstd [N, G]
//   a group is Cg = C/G consecutive channels, i.e. Cg·S contiguous values of one image.
//
// Statistics are two-pass in double (mean, then the mean squared deviation), so a large
// mean does not cancel the variance. Backward, with x̂ = (x − μ)·σ⁻¹ and M = Cg·S:
//   dx = σ⁻¹ · (γ_c·dy − mean_g(γ·dy) − x̂ · mean_g(γ·dy·x̂))
//   dγ_c += Σ dy·x̂,  dβ_c += Σ dy
// The backward runs in parallel over groups: each thread owns its groups' channels, so
// dγ/dβ accumulate without a reduction.
//
// Fused with SiLU (Silu = true): the forward writes silu(z), z = γ·x̂ + β, and never
// stores z; the backward recomputes z from x, μ, σ⁻¹, turns dy into dz = dy·silu'(z)
// (kept in dx between its two passes) and continues as the plain backward.
#pragma once

#include <cmath>
#include <cstdint>

#include "ambiseg/ops/cpu/math.hpp"

namespace ambiseg::ops::cpu_kernels {

template <class T, bool Silu = false>
void group_norm_forward(const T* x, const T* gamma, const T* beta, std::int64_t n,
                        std::int64_t c, std::int64_t s, std::int64_t groups, double eps, T* y,
                        T* mean_out, T* rstd_out) {
  const std::int64_t cg = c / groups, m = cg * s;
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t g = 0; g < groups; ++g) {
      const T* xg = x + (i * c + g * cg) * s;
      double sum = 0;
#pragma omp simd reduction(+ : sum)
      for (std::int64_t j = 0; j < m; ++j) sum += xg[j];
      const double mu = sum / static_cast<double>(m);
      double sq = 0;
#pragma omp simd reduction(+ : sq)
      for (std::int64_t j = 0; j < m; ++j) {
        const double d = xg[j] - mu;
        sq += d * d;
      }
      const double rstd = 1.0 / std::sqrt(sq / static_cast<double>(m) + eps);
      mean_out[i * groups + g] = static_cast<T>(mu);
      rstd_out[i * groups + g] = static_cast<T>(rstd);
      for (std::int64_t cc = 0; cc < cg; ++cc) {
        const std::int64_t ch = g * cg + cc;
        const T a = static_cast<T>(rstd * gamma[ch]);
        const T b = static_cast<T>(beta[ch] - mu * rstd * gamma[ch]);
        const T* xc = xg + cc * s;
        T* yc = y + (i * c + ch) * s;
#pragma omp simd
        for (std::int64_t j = 0; j < s; ++j) {
          const T z = xc[j] * a + b;
          if constexpr (Silu)
            yc[j] = z * sigmoid(z);
          else
            yc[j] = z;
        }
      }
    }
}

// With Silu, beta is needed (to recompute z) and dx must not be null.
template <class T, bool Silu = false>
void group_norm_backward(const T* x, const T* gamma, const T* beta, const T* mean, const T* rstd,
                         const T* dy_in, std::int64_t n, std::int64_t c, std::int64_t s,
                         std::int64_t groups, T* dx, T* dgamma, T* dbeta) {
  const std::int64_t cg = c / groups, m = cg * s;
#pragma omp parallel for schedule(static)
  for (std::int64_t g = 0; g < groups; ++g)
    for (std::int64_t i = 0; i < n; ++i) {
      const double mu = mean[i * groups + g], r = rstd[i * groups + g];
      double sum_gdy = 0, sum_gdy_xhat = 0;  // Σ γ·dy and Σ γ·dy·x̂ over the group
      for (std::int64_t cc = 0; cc < cg; ++cc) {
        const std::int64_t ch = g * cg + cc;
        const T* xc = x + (i * c + ch) * s;
        const T* dyc = dy_in + (i * c + ch) * s;
        if constexpr (Silu) {  // dyc := dz = dy·silu'(z), stored in dx
          const T a = static_cast<T>(r * gamma[ch]);
          const T b = static_cast<T>(beta[ch] - mu * r * gamma[ch]);
          T* dzc = dx + (i * c + ch) * s;
#pragma omp simd
          for (std::int64_t j = 0; j < s; ++j) {
            const T z = xc[j] * a + b;
            const T sg = sigmoid(z);
            dzc[j] = dyc[j] * (sg * (T(1) + z * (T(1) - sg)));
          }
          dyc = dzc;
        }
        double sdy = 0, sdyx = 0;
#pragma omp simd reduction(+ : sdy, sdyx)
        for (std::int64_t j = 0; j < s; ++j) {
          sdy += dyc[j];
          sdyx += static_cast<double>(dyc[j]) * xc[j];
        }
        const double sdy_xhat = (sdyx - mu * sdy) * r;  // Σ dy·x̂ = (Σ dy·x − μ Σ dy)·σ⁻¹
        if (dgamma) dgamma[ch] += static_cast<T>(sdy_xhat);
        if (dbeta) dbeta[ch] += static_cast<T>(sdy);
        sum_gdy += gamma[ch] * sdy;
        sum_gdy_xhat += gamma[ch] * sdy_xhat;
      }
      if (!dx) continue;
      const double m1 = sum_gdy / static_cast<double>(m), m2 = sum_gdy_xhat / static_cast<double>(m);
      // dx = A_c·dy + B·x + C with A_c = σ⁻¹γ_c, B = −σ⁻²·m2, C = σ⁻¹(μσ⁻¹m2 − m1)
      const T bx = static_cast<T>(-r * r * m2);
      const T cst = static_cast<T>(r * (mu * r * m2 - m1));
      for (std::int64_t cc = 0; cc < cg; ++cc) {
        const std::int64_t ch = g * cg + cc;
        const T a = static_cast<T>(r * gamma[ch]);
        const T* xc = x + (i * c + ch) * s;
        const T* dyc = (Silu ? dx : dy_in) + (i * c + ch) * s;  // dz in place, or dy
        T* dxc = dx + (i * c + ch) * s;
#pragma omp simd
        for (std::int64_t j = 0; j < s; ++j) dxc[j] = a * dyc[j] + bx * xc[j] + cst;
      }
    }
}

}  // namespace ambiseg::ops::cpu_kernels
