// ambiseg/ops/cpu/batch_norm.hpp — batch normalisation kernels (PyTorch's BatchNorm2d).
//
//   x [N, C, S] (S = H·W, or 1 for [N, C])  gamma/beta/mean/rstd/running stats [C]
//   channel c is N rows of S contiguous values, m = N·S values in all.
//
// Statistics are two-pass (mean, then the mean squared deviation, so a large mean does not
// cancel the variance) and accumulate in double. Backward of the training forward, with
// x̂ = (x − μ)·σ⁻¹ and the sums over the channel's m values:
//   dx = σ⁻¹γ/m · (m·dy − Σdy − x̂·Σ(dy·x̂)),  dγ += Σ dy·x̂,  dβ += Σ dy
// Every loop runs in parallel over channels: each thread owns its channels' statistics and
// dγ/dβ entries, so nothing is reduced across threads.
#pragma once

#include <cmath>
#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

namespace bn_detail {

// Σ x over channel ch.
template <class T>
double channel_sum(const T* x, std::int64_t n, std::int64_t c, std::int64_t s, std::int64_t ch) {
  double total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const T* xr = x + (i * c + ch) * s;
#pragma omp simd reduction(+ : total)
    for (std::int64_t j = 0; j < s; ++j) total += static_cast<double>(xr[j]);
  }
  return total;
}

// Σ (x − mu)² over channel ch.
template <class T>
double channel_sq_dev(const T* x, std::int64_t n, std::int64_t c, std::int64_t s,
                      std::int64_t ch, double mu) {
  double total = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const T* xr = x + (i * c + ch) * s;
#pragma omp simd reduction(+ : total)
    for (std::int64_t j = 0; j < s; ++j) {
      const double d = static_cast<double>(xr[j]) - mu;
      total += d * d;
    }
  }
  return total;
}

// y = (x − mu)·a + b over channel ch (may run in place). The deviation is taken before the
// scale so that a large mean does not cancel in T.
template <class T>
void channel_affine(const T* x, std::int64_t n, std::int64_t c, std::int64_t s, std::int64_t ch,
                    T mu, T a, T b, T* y) {
  for (std::int64_t i = 0; i < n; ++i) {
    const T* xr = x + (i * c + ch) * s;
    T* yr = y + (i * c + ch) * s;
#pragma omp simd
    for (std::int64_t j = 0; j < s; ++j) yr[j] = (xr[j] - mu) * a + b;
  }
}

}  // namespace bn_detail

// m = n·s ≥ 2 (checked by the front end). running_mean/running_var may be null (not tracked).
template <class T>
void batch_norm_forward_training(const T* x, const T* gamma, const T* beta, std::int64_t n,
                                 std::int64_t c, std::int64_t s, double eps, double momentum,
                                 T* y, T* mean_out, T* rstd_out, T* running_mean,
                                 T* running_var) {
  const std::int64_t m = n * s;
  const double inv_m = 1.0 / static_cast<double>(m);
  const double unbias = static_cast<double>(m) / static_cast<double>(m - 1);
#pragma omp parallel for schedule(static)
  for (std::int64_t ch = 0; ch < c; ++ch) {
    const double mu = bn_detail::channel_sum(x, n, c, s, ch) * inv_m;
    const double var = bn_detail::channel_sq_dev(x, n, c, s, ch, mu) * inv_m;
    const double rstd = 1.0 / std::sqrt(var + eps);
    mean_out[ch] = static_cast<T>(mu);
    rstd_out[ch] = static_cast<T>(rstd);
    if (running_mean) {
      running_mean[ch] = static_cast<T>((1 - momentum) * running_mean[ch] + momentum * mu);
      running_var[ch] = static_cast<T>((1 - momentum) * running_var[ch] + momentum * var * unbias);
    }
    bn_detail::channel_affine(x, n, c, s, ch, static_cast<T>(mu),
                              static_cast<T>(rstd * gamma[ch]), beta[ch], y);
  }
}

// y may alias x.
template <class T>
void batch_norm_forward_inference(const T* x, const T* gamma, const T* beta,
                                  const T* running_mean, const T* running_var, std::int64_t n,
                                  std::int64_t c, std::int64_t s, double eps, T* y) {
#pragma omp parallel for schedule(static)
  for (std::int64_t ch = 0; ch < c; ++ch) {
    const double rstd = 1.0 / std::sqrt(static_cast<double>(running_var[ch]) + eps);
    bn_detail::channel_affine(x, n, c, s, ch, running_mean[ch], static_cast<T>(rstd * gamma[ch]),
                              beta[ch], y);
  }
}

// dx (assigned), dgamma, dbeta (accumulated) may each be null when not needed. dx may
// alias dy: each channel's sums are complete before its dx is written, element by element.
template <class T>
void batch_norm_backward(const T* x, const T* gamma, const T* mean, const T* rstd, const T* dy,
                         std::int64_t n, std::int64_t c, std::int64_t s, T* dx, T* dgamma,
                         T* dbeta) {
  const std::int64_t m = n * s;
  if (m == 0) return;  // no values: every sum is zero
  const double inv_m = 1.0 / static_cast<double>(m);
#pragma omp parallel for schedule(static)
  for (std::int64_t ch = 0; ch < c; ++ch) {
    const double mu = mean[ch], r = rstd[ch];
    // Σ dy and Σ dy·(x − μ) (centred: no cancellation against μ·Σdy)
    double sdy = 0, sdyx = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      const T* xr = x + (i * c + ch) * s;
      const T* dyr = dy + (i * c + ch) * s;
#pragma omp simd reduction(+ : sdy, sdyx)
      for (std::int64_t j = 0; j < s; ++j) {
        const double g = static_cast<double>(dyr[j]);
        sdy += g;
        sdyx += g * (static_cast<double>(xr[j]) - mu);
      }
    }
    const double sdy_xhat = sdyx * r;  // Σ dy·x̂
    if (dgamma) dgamma[ch] += static_cast<T>(sdy_xhat);
    if (dbeta) dbeta[ch] += static_cast<T>(sdy);
    if (!dx) continue;
    // dx = a·dy + k·(x − μ) + b, a = σ⁻¹γ, k = −a·σ⁻¹·Σ(dy·x̂)/m, b = −a·Σdy/m
    const double a = r * gamma[ch];
    const T at = static_cast<T>(a), kt = static_cast<T>(-a * r * sdy_xhat * inv_m),
            bt = static_cast<T>(-a * sdy * inv_m), mut = static_cast<T>(mu);
    for (std::int64_t i = 0; i < n; ++i) {
      const T* xr = x + (i * c + ch) * s;
      const T* dyr = dy + (i * c + ch) * s;
      T* dxr = dx + (i * c + ch) * s;
#pragma omp simd
      for (std::int64_t j = 0; j < s; ++j) dxr[j] = at * dyr[j] + kt * (xr[j] - mut) + bt;
    }
  }
}

}  // namespace ambiseg::ops::cpu_kernels
