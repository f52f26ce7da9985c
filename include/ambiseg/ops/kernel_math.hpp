// ambiseg/ops/kernel_math.hpp — per-element maths of the ops, written once (AMBISEG_HD) for
// the CPU kernels (ops/cpu/) and the CUDA kernels (ops/cuda/), so both devices evaluate the
// same formulas in the same order. Plain C++ over core/ only: nvcc compiles it.
//
//   bilinear ×2: in → out = 2·in along one axis; dst an output index, src an input index
//   Gaussian latents: mu, log_sigma (log σ), eps, per element, in double
#pragma once

#include <cmath>
#include <cstdint>

#include "ambiseg/core/config.hpp"

namespace ambiseg::ops {

// Where output pixel dst of a ×2 bilinear up-sampling reads the input, per axis:
//   half_pixel     (dst + ½)/2 − ½ clamped at 0   (PyTorch align_corners = false)
//   align_corners  dst·(in − 1)/(2·in − 1)         (PyTorch align_corners = true)
//   asymmetric     dst/2                           (TensorFlow 1's legacy resize_bilinear,
//                  align_corners = half_pixel_centers = false: PHiSeg's reference)
enum class bilinear_mode : int { half_pixel, align_corners, asymmetric };

}  // namespace ambiseg::ops

namespace ambiseg::ops::kernel_math {

// ---- bilinear ×2 up-sampling (scale_factor = 2, any bilinear_mode) ------------------------

// Output index dst reads input i0 with weight l0 and i1 with weight l1 (i1 = i0 at the last
// input, so both weights land on one pixel there).
struct bilinear_tap {
  std::int64_t i0, i1;
  double l0, l1;
};

// half_pixel and asymmetric sources are exact in binary. align_corners: one integer product
// and one division, so that every source that is an integer (the corners above all) is
// exact; PyTorch multiplies by a rounded scale instead, which differs by at most an ulp.
AMBISEG_HD bilinear_tap bilinear2x_tap(std::int64_t dst, std::int64_t in, bilinear_mode mode) {
  double src;
  if (mode == bilinear_mode::align_corners) {
    src = static_cast<double>(dst * (in - 1)) / static_cast<double>(2 * in - 1);
  } else if (mode == bilinear_mode::asymmetric) {
    src = 0.5 * static_cast<double>(dst);
  } else {
    src = 0.5 * (static_cast<double>(dst) + 0.5) - 0.5;
    if (src < 0.0) src = 0.0;
  }
  std::int64_t i0 = static_cast<std::int64_t>(src);  // src ≥ 0: truncation is floor
  if (i0 > in - 1) i0 = in - 1;
  const std::int64_t i1 = i0 + (i0 < in - 1 ? 1 : 0);
  const double l1 = src - static_cast<double>(i0);
  return {i0, i1, 1.0 - l1, l1};
}

// y at (th, tw) from one input plane x with row length w, in PyTorch's order.
template <class T>
AMBISEG_HD T bilinear2x_sample(const T* x, std::int64_t w, const bilinear_tap& th,
                               const bilinear_tap& tw) {
  const T h0 = static_cast<T>(th.l0), h1 = static_cast<T>(th.l1);
  const T w0 = static_cast<T>(tw.l0), w1 = static_cast<T>(tw.l1);
  const T* r0 = x + th.i0 * w;
  const T* r1 = x + th.i1 * w;
  return h0 * (w0 * r0[tw.i0] + w1 * r0[tw.i1]) + h1 * (w0 * r1[tw.i0] + w1 * r1[tw.i1]);
}

// The backward as a gather: the outputs along one axis that read input index src and the
// weight each gives it. In every mode the source position of output dst lies in
// [dst/2 − ½, dst/2] (align_corners: the scale is below ½ by 1/(2(2·in − 1)); half_pixel:
// dst/2 − ¼, clamped at 0; asymmetric: dst/2), and dst reads src only if that position is in [src − 1, src + 1),
// so only dst ∈ [2·src − 2, 2·src + 2] can: five candidates, at most four of which touch.
// `touches` marks those (a zero weight on a touched pixel still counts, as in PyTorch's
// scatter, so a NaN in dy spreads the same way).
struct bilinear_gather {
  std::int64_t first;  // the first candidate output index
  int count;           // candidates first .. first + count − 1
  unsigned touches;    // bit k: output first + k reads src
  double weight[5];
};

AMBISEG_HD bilinear_gather bilinear2x_gather(std::int64_t src, std::int64_t in,
                                             bilinear_mode mode) {
  bilinear_gather g{};
  g.first = 2 * src - 2 < 0 ? 0 : 2 * src - 2;
  const std::int64_t last = 2 * src + 2 < 2 * in - 1 ? 2 * src + 2 : 2 * in - 1;
  g.count = static_cast<int>(last - g.first + 1);
  for (int k = 0; k < g.count; ++k) {
    const bilinear_tap t = bilinear2x_tap(g.first + k, in, mode);
    double wk = 0.0;
    if (t.i0 == src) wk += t.l0;
    if (t.i1 == src) wk += t.l1;
    g.weight[k] = wk;
    if (t.i0 == src || t.i1 == src) g.touches |= 1u << k;
  }
  return g;
}

// dx at (r, c) of one plane: Σ_rows wr·(Σ_cols wc·dy), dy a plane with row length 2·w.
template <class T>
AMBISEG_HD T bilinear2x_gather_value(const T* dy, std::int64_t w, const bilinear_gather& gr,
                                     const bilinear_gather& gc) {
  T acc = T(0);
  for (int k = 0; k < gr.count; ++k) {
    if (!(gr.touches >> k & 1u)) continue;
    const T* row = dy + (gr.first + k) * 2 * w;
    T part = T(0);
    for (int l = 0; l < gc.count; ++l)
      if (gc.touches >> l & 1u) part += static_cast<T>(gc.weight[l]) * row[gc.first + l];
    acc += static_cast<T>(gr.weight[k]) * part;
  }
  return acc;
}

// ---- binary cross-entropy with logits ----------------------------------------------------

// −[y·log σ(l) + (1 − y)·log(1 − σ(l))] in the form that neither overflows nor loses the
// small term: max(l, 0) − l·y + log1p(exp(−|l|)).
AMBISEG_HD double sigmoid_cross_entropy(double logit, double target) {
  return (logit > 0.0 ? logit : 0.0) - logit * target + std::log1p(std::exp(-std::fabs(logit)));
}

// σ(l) without overflow: exp of a non-positive argument only.
AMBISEG_HD double stable_sigmoid(double logit) {
  if (logit >= 0.0) return 1.0 / (1.0 + std::exp(-logit));
  const double e = std::exp(logit);
  return e / (1.0 + e);
}

// ---- diagonal Gaussian latents -------------------------------------------------------------

// z = mu + σ·eps, σ = exp(log_sigma) (Normal.rsample).
AMBISEG_HD double gaussian_rsample(double mu, double log_sigma, double eps) {
  return mu + std::exp(log_sigma) * eps;
}
// ∂z/∂log_sigma·dz = dz·σ·eps (∂z/∂mu = 1).
AMBISEG_HD double gaussian_rsample_dlog_sigma(double log_sigma, double eps, double dz) {
  return dz * std::exp(log_sigma) * eps;
}

// KL(N(mu_q, σ_q²) ‖ N(mu_p, σ_p²)) of one dimension and its four partial derivatives:
//   KL = log σ_p − log σ_q + (σ_q² + (mu_q − mu_p)²)/(2σ_p²) − ½
// with σ_q²/σ_p² formed as one exp of a difference (no overflow for large equal log σ).
struct gaussian_kl_terms {
  double kl, d_mu_q, d_log_sigma_q, d_mu_p, d_log_sigma_p;
};

AMBISEG_HD gaussian_kl_terms gaussian_kl(double mu_q, double log_sigma_q, double mu_p,
                                         double log_sigma_p) {
  const double d = mu_q - mu_p;
  const double inv_var_p = std::exp(-2.0 * log_sigma_p);
  const double ratio = std::exp(2.0 * (log_sigma_q - log_sigma_p));
  const double m = d * d * inv_var_p;
  return {log_sigma_p - log_sigma_q + 0.5 * (ratio + m) - 0.5, d * inv_var_p, ratio - 1.0,
          -d * inv_var_p, 1.0 - ratio - m};
}

}  // namespace ambiseg::ops::kernel_math
