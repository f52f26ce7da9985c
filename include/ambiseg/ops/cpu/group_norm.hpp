// ambiseg/ops/cpu/group_norm.hpp — group normalisation kernels.
//
//   x [N, C, S] (S: the flattened spatial extent)  gamma/beta [C]  mean/rstd [N, G]
//   a group is Cg = C/G consecutive channels, i.e. M = Cg·S contiguous values of one image.
//
// Statistics are two-pass (mean, then the mean squared deviation), so a large mean does
// not cancel the variance. Backward, with x̂ = (x − μ)·σ⁻¹:
//   dx = σ⁻¹ · (γ_c·dy − mean_g(γ·dy) − x̂ · mean_g(γ·dy·x̂))
//   dγ_c += Σ dy·x̂,  dβ_c += Σ dy
// The backward runs in parallel over groups: each thread owns its groups' channels, so
// dγ/dβ accumulate without a reduction.
//
// Fused with SiLU (Silu = true): the forward writes silu(z), z = γ·x̂ + β, and never
// stores z; the backward recomputes z from x, μ, σ⁻¹ and turns dy into dz = dy·silu'(z)
// (kept in dx between its two passes) while it accumulates the two sums.
//
// Speed: one group of one image is at most a few hundred KB in this network (64 channels
// of 128², 32 groups: 128 KB), so it stays in L2 between the passes and each tensor
// crosses memory once (forward: read x, write y; backward: read x, dy, write dx). Sums
// run in float over blocks of block_len values (full-width SIMD; the rounding of a
// 512-term float sum is far below the tolerance) and the block partials add in double,
// so long extents do not drift.
#pragma once

#include <cmath>
#include <cstdint>

#include "ambiseg/ops/cpu/math.hpp"

namespace ambiseg::ops::cpu_kernels {

namespace gn_detail {
inline constexpr std::int64_t block_len = 512;

// Σ x[j] over [0, m).
template <class T>
double block_sum(const T* x, std::int64_t m) {
  double total = 0;
  for (std::int64_t j0 = 0; j0 < m; j0 += block_len) {
    const std::int64_t j1 = j0 + block_len < m ? j0 + block_len : m;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = j0; j < j1; ++j) s += x[j];
    total += s;
  }
  return total;
}

// Σ (x[j] − mu)² over [0, m).
template <class T>
double block_sq_dev(const T* x, std::int64_t m, T mu) {
  double total = 0;
  for (std::int64_t j0 = 0; j0 < m; j0 += block_len) {
    const std::int64_t j1 = j0 + block_len < m ? j0 + block_len : m;
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (std::int64_t j = j0; j < j1; ++j) {
      const T d = x[j] - mu;
      s += d * d;
    }
    total += s;
  }
  return total;
}
}  // namespace gn_detail

template <class T, bool Silu = false>
void group_norm_forward(const T* x, const T* gamma, const T* beta, std::int64_t n,
                        std::int64_t c, std::int64_t s, std::int64_t groups, double eps, T* y,
                        T* mean_out, T* rstd_out) {
  const std::int64_t cg = c / groups, m = cg * s;
#pragma omp parallel for schedule(static) collapse(2)
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t g = 0; g < groups; ++g) {
      const T* xg = x + (i * c + g * cg) * s;
      const double mu = gn_detail::block_sum(xg, m) / static_cast<double>(m);
      // The deviations are taken from the mean rounded to T; the tiny rounding offset δ
      // adds δ² to the mean square, negligible against eps.
      const double sq = gn_detail::block_sq_dev(xg, m, static_cast<T>(mu));
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
  using gn_detail::block_len;
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
        // Σ dy and Σ dy·(x − μ) (centred: no cancellation against μ·Σ dy)
        double sdy = 0, sdyx = 0;
        const T mu_t = static_cast<T>(mu);
        if constexpr (Silu) {  // dy := dz = dy·silu'(z), stored in dx for the second pass
          const T a = static_cast<T>(r * gamma[ch]);
          const T b = static_cast<T>(beta[ch] - mu * r * gamma[ch]);
          T* dzc = dx + (i * c + ch) * s;
          for (std::int64_t j0 = 0; j0 < s; j0 += block_len) {
            const std::int64_t j1 = j0 + block_len < s ? j0 + block_len : s;
            T bs = 0, bsx = 0;
#pragma omp simd reduction(+ : bs, bsx)
            for (std::int64_t j = j0; j < j1; ++j) {
              const T z = xc[j] * a + b;
              const T sg = sigmoid(z);
              const T dz = dyc[j] * (sg * (T(1) + z * (T(1) - sg)));
              dzc[j] = dz;
              bs += dz;
              bsx += dz * (xc[j] - mu_t);
            }
            sdy += bs;
            sdyx += bsx;
          }
        } else {
          for (std::int64_t j0 = 0; j0 < s; j0 += block_len) {
            const std::int64_t j1 = j0 + block_len < s ? j0 + block_len : s;
            T bs = 0, bsx = 0;
#pragma omp simd reduction(+ : bs, bsx)
            for (std::int64_t j = j0; j < j1; ++j) {
              bs += dyc[j];
              bsx += dyc[j] * (xc[j] - mu_t);
            }
            sdy += bs;
            sdyx += bsx;
          }
        }
        const double sdy_xhat = sdyx * r;  // Σ dy·x̂
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
