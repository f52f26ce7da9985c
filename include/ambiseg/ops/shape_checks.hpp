// ambiseg/ops/shape_checks.hpp — argument checks shared by the op front ends and the CUDA
// backend's entry points (which can be called directly), so both give the same message.
// Depends only on core/, so nvcc translation units include it too.
#pragma once

#include <cmath>
#include <cstdint>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/shape.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/ops/kernel_math_fc.hpp"

namespace ambiseg::ops::detail {

// An optional gradient argument is "not needed" when its view is empty.
template <class V>
inline bool present(const V& v) { return v.data() != nullptr; }

// b must match a in every extent but the channels.
inline void concat_check(const char* op, const char* a_name, const shape& a, const char* b_name,
                         const shape& b) {
  throw_if<shape_error>(a.rank() != 4 || b.rank() != 4 || a[0] != b[0] || a[2] != b[2] ||
                            a[3] != b[3],
                        op, ": ", a_name, " ", a, " and ", b_name, " ", b,
                        " must be [N,C,H,W] with equal N, H, W");
}

inline void group_norm_check(const char* op, const shape& x, int groups) {
  throw_if<shape_error>(x.rank() < 2, op, ": x must have rank 2 to 4 [N, C, ...], got ", x);
  throw_if<value_error>(groups < 1 || x[1] % groups != 0, op, ": ", x[1],
                        " channels cannot be split into ", groups, " groups (x ", x, ")");
}
inline std::int64_t spatial_extent(const shape& x) {
  std::int64_t s = 1;
  for (int a = 2; a < x.rank(); ++a) s *= x[a];
  return s;
}

// Batch norm (ops/batch_norm.hpp): x is [N, C] or [N, C, H, W]; the statistics run over
// m = N·H·W values per channel. The three checks below are the whole validation of the
// three ops, shared by the front end and the CUDA entry points.
inline std::int64_t batch_norm_x_check(const char* op, const shape& x) {
  throw_if<shape_error>(x.rank() != 2 && x.rank() != 4, op,
                        ": x must be [N, C] or [N, C, H, W], got ", x);
  return x[0] * spatial_extent(x);
}
inline void batch_norm_eps_check(const char* op, double eps) {
  throw_if<value_error>(!(eps > 0) || !std::isfinite(eps), op,
                        ": eps must be positive and finite, got ", eps);
}

template <class In, class Out>
void batch_norm_training_check(const char* op, const In& x, const In& gamma, const In& beta,
                               double eps, double momentum, const Out& y, const Out& mean,
                               const Out& rstd, const Out& running_mean,
                               const Out& running_var) {
  const std::int64_t m = batch_norm_x_check(op, x.shape());
  batch_norm_eps_check(op, eps);
  throw_if<value_error>(!(momentum >= 0 && momentum <= 1), op,
                        ": momentum must lie in [0, 1], got ", momentum);
  const shape c{x.shape()[1]};
  expect_shape(op, "gamma", gamma, c);
  expect_shape(op, "beta", beta, c);
  expect_shape(op, "y", y, x.shape());
  expect_shape(op, "saved_mean", mean, c);
  expect_shape(op, "saved_rstd", rstd, c);
  throw_if<value_error>(present(running_mean) != present(running_var), op,
                        ": give both running_mean and running_var, or neither");
  if (present(running_mean)) {
    expect_shape(op, "running_mean", running_mean, c);
    expect_shape(op, "running_var", running_var, c);
  }
  // PyTorch refuses this too: one value per channel has no variance (and m − 1 = 0 in the
  // unbiased running variance).
  throw_if<value_error>(m < 2, op, ": expected more than 1 value per channel when training, got ",
                        "N·H·W = ", m, " for x ", x.shape());
  throw_if<value_error>(present(y) && static_cast<const void*>(y.data()) ==
                                          static_cast<const void*>(x.data()),
                        op, ": y must not alias x (the backward needs x)");
}

template <class In, class Out>
void batch_norm_inference_check(const char* op, const In& x, const In& gamma, const In& beta,
                                const In& running_mean, const In& running_var, double eps,
                                const Out& y) {
  batch_norm_x_check(op, x.shape());
  batch_norm_eps_check(op, eps);
  const shape c{x.shape()[1]};
  expect_shape(op, "gamma", gamma, c);
  expect_shape(op, "beta", beta, c);
  expect_shape(op, "running_mean", running_mean, c);
  expect_shape(op, "running_var", running_var, c);
  expect_shape(op, "y", y, x.shape());
}

template <class In, class Out>
void batch_norm_backward_check(const char* op, const In& x, const In& gamma, const In& mean,
                               const In& rstd, const In& dy, const Out& dx, const Out& dgamma,
                               const Out& dbeta) {
  batch_norm_x_check(op, x.shape());
  const shape c{x.shape()[1]};
  expect_shape(op, "gamma", gamma, c);
  expect_shape(op, "saved_mean", mean, c);
  expect_shape(op, "saved_rstd", rstd, c);
  expect_shape(op, "dy", dy, x.shape());
  if (present(dx)) expect_shape(op, "dx", dx, x.shape());
  if (present(dgamma)) expect_shape(op, "dgamma", dgamma, c);
  if (present(dbeta)) expect_shape(op, "dbeta", dbeta, c);
}

inline void linear_check(const char* op, const shape& x, const shape& w) {
  throw_if<shape_error>(x.rank() != 2, op, ": x must have rank 2 [N, In], got ", x);
  throw_if<shape_error>(w.rank() != 2 || w[1] != x[1], op, ": w has shape ", w,
                        ", expected [Out, ", x[1], "] for x ", x);
}

struct attention_dims {
  std::int64_t b, c, t, bh, ch;
};
inline attention_dims attention_check(const char* op, const shape& qkv, int heads) {
  throw_if<shape_error>(qkv.rank() != 3, op, ": qkv must have rank 3 [B, 3C, T], got ", qkv);
  throw_if<value_error>(heads < 1, op, ": heads must be positive, got ", heads);
  throw_if<shape_error>(qkv[1] % (3 * heads) != 0, op, ": qkv ", qkv, " has ", qkv[1],
                        " rows, not divisible by 3·heads = ", 3 * heads);
  const std::int64_t c = qkv[1] / 3;
  return {qkv[0], c, qkv[2], qkv[0] * heads, c / heads};
}

// x [N,C,H,W] with even H and W: 2×2 pooling with stride 2 and no padding. PyTorch's
// ceil_mode would average a partial last window; the networks here never produce odd
// extents, so one is refused rather than given a meaning nobody tested.
template <class V>
void avg_pool2x2_check(const char* op, const char* arg, const V& x) {
  expect_rank(op, arg, x, 4);
  throw_if<shape_error>(x.size(2) % 2 != 0 || x.size(3) % 2 != 0, op, ": ", arg, " ", x.shape(),
                        " must have even H and W (2x2 pooling with stride 2)");
}

// x [N,C,H,W] with at least one pixel (the spatial mean divides by H·W).
template <class V>
void spatial_mean_check(const char* op, const char* arg, const V& x) {
  expect_rank(op, arg, x, 4);
  throw_if<shape_error>(x.size(2) * x.size(3) == 0, op, ": ", arg, " ", x.shape(),
                        " has no pixels to average");
}

// logits [N, ...], targets like logits, per_case [N], dlogits like logits or empty.
template <class L, class Y, class P, class G>
void sigmoid_cross_entropy_check(const char* op, const L& logits, const Y& targets,
                                 const P& per_case, const G& dlogits) {
  throw_if<shape_error>(logits.rank() < 1, op, ": logits must have rank 1 to ", shape::max_rank,
                        " [N, ...], got ", logits.shape());
  expect_shape(op, "targets", targets, logits.shape());
  expect_shape(op, "per_case", per_case, shape{logits.size(0)});
  if (present(dlogits)) expect_shape(op, "dlogits", dlogits, logits.shape());
}

// An optional gradient: checked only when present (an empty view means "not needed").
template <class V>
void expect_shape_if_present(const char* op, const char* arg, const V& v, const shape& expected) {
  if (present(v)) expect_shape(op, arg, v, expected);
}

// Latent vectors [B, Z]: `ref` fixes the shape, a and b (both required) must match it.
template <class R, class A, class B>
void latent_check(const char* op, const char* ref_name, const R& ref, const char* a_name,
                  const A& a, const char* b_name, const B& b) {
  expect_rank(op, ref_name, ref, 2);
  expect_shape(op, a_name, a, ref.shape());
  expect_shape(op, b_name, b, ref.shape());
}

// mu_q, log_sigma_q, mu_p, log_sigma_p [B, Z], kl [B], the four gradients [B, Z] or empty.
template <class V, class K, class G0, class G1, class G2, class G3>
void diag_gaussian_kl_check(const char* op, const V& mu_q, const V& log_sigma_q, const V& mu_p,
                            const V& log_sigma_p, const K& kl, const G0& dmu_q,
                            const G1& dlog_sigma_q, const G2& dmu_p, const G3& dlog_sigma_p) {
  expect_rank(op, "mu_q", mu_q, 2);
  const shape& s = mu_q.shape();
  expect_shape(op, "log_sigma_q", log_sigma_q, s);
  expect_shape(op, "mu_p", mu_p, s);
  expect_shape(op, "log_sigma_p", log_sigma_p, s);
  expect_shape(op, "kl", kl, shape{s[0]});
  expect_shape_if_present(op, "dmu_q", dmu_q, s);
  expect_shape_if_present(op, "dlog_sigma_q", dlog_sigma_q, s);
  expect_shape_if_present(op, "dmu_p", dmu_p, s);
  expect_shape_if_present(op, "dlog_sigma_p", dlog_sigma_p, s);
}

// ---- full-covariance Gaussian latents (ops/gaussian_fc.hpp) --------------------------------
// A vector argument [B, K, D] and its Cholesky factors [B, K, D, D].
inline shape fc_matrix_shape(const shape& v) { return shape{v[0], v[1], v[2], v[2]}; }

// The row kernels keep D-sized (and D²-sized) scratch in fixed arrays.
inline void fc_dim_check(const char* op, const char* arg, const shape& v) {
  throw_if<shape_error>(v[v.rank() - 1] > kernel_math::fc_max_dim, op, ": ", arg, " ", v,
                        " has latent size ", v[v.rank() - 1], ", above the supported ",
                        kernel_math::fc_max_dim);
}

// log_sigma [B, K, D], a [B, K, D, D] (tril_raw or dL), b like a or empty when optional.
template <class V, class A, class B>
void fc_scale_tril_check(const char* op, const V& log_sigma, const char* a_name, const A& a,
                         const char* b_name, const B& b, bool b_optional) {
  expect_rank(op, "log_sigma", log_sigma, 3);
  const shape m = fc_matrix_shape(log_sigma.shape());
  expect_shape(op, a_name, a, m);
  if (!b_optional || present(b)) expect_shape(op, b_name, b, m);
}

// z = mu + L·eps: mu, eps, z [B, K, D], L [B, K, D, D].
template <class V, class Z>
void fc_rsample_forward_check(const char* op, const V& mu, const V& l, const V& eps, const Z& z) {
  expect_rank(op, "mu", mu, 3);
  expect_shape(op, "L", l, fc_matrix_shape(mu.shape()));
  expect_shape(op, "eps", eps, mu.shape());
  expect_shape(op, "z", z, mu.shape());
}
// eps, dz [B, K, D]; dmu like eps, dL [B, K, D, D], each optional.
template <class V, class G0, class G1>
void fc_rsample_backward_check(const char* op, const V& eps, const V& dz, const G0& dmu,
                               const G1& dl) {
  expect_rank(op, "eps", eps, 3);
  expect_shape(op, "dz", dz, eps.shape());
  expect_shape_if_present(op, "dmu", dmu, eps.shape());
  expect_shape_if_present(op, "dL", dl, fc_matrix_shape(eps.shape()));
}

// mu_q, mu_p [B, 1, D], L_q, L_p [B, 1, D, D], kl [B], the gradients like their inputs or empty.
template <class V, class K, class G0, class G1, class G2, class G3>
void fc_gaussian_kl_check(const char* op, const V& mu_q, const V& l_q, const V& mu_p,
                          const V& l_p, const K& kl, const G0& dmu_q, const G1& dl_q,
                          const G2& dmu_p, const G3& dl_p) {
  expect_rank(op, "mu_q", mu_q, 3);
  const shape& s = mu_q.shape();
  throw_if<shape_error>(s[1] != 1, op, ": mu_q ", s,
                        " must be [B, 1, D] (one Gaussian per row; mixtures have no analytic KL)");
  fc_dim_check(op, "mu_q", s);
  const shape m = fc_matrix_shape(s);
  expect_shape(op, "L_q", l_q, m);
  expect_shape(op, "mu_p", mu_p, s);
  expect_shape(op, "L_p", l_p, m);
  expect_shape(op, "kl", kl, shape{s[0]});
  expect_shape_if_present(op, "dmu_q", dmu_q, s);
  expect_shape_if_present(op, "dL_q", dl_q, m);
  expect_shape_if_present(op, "dmu_p", dmu_p, s);
  expect_shape_if_present(op, "dL_p", dl_p, m);
}

// ---- mixtures of Gaussians (ops/gaussian_fc.hpp) --------------------------------------------
// z [B, D], logits [B, K] (1 ≤ K ≤ 32), mu [B, K, D], `second` L [B, K, D, D] (full) or
// log_sigma [B, K, D] (diagonal), log_prob [B]; the gradients like their inputs or empty.
template <class V, class P, class G0, class G1, class G2, class G3>
void mixture_log_prob_check(const char* op, const V& z, const V& logits, const V& mu,
                            const char* second_name, const V& second, bool diagonal,
                            const P& log_prob, const G0& dz, const G1& dlogits, const G2& dmu,
                            const G3& dsecond, const char* dsecond_name) {
  expect_rank(op, "z", z, 2);
  fc_dim_check(op, "z", z.shape());
  expect_rank(op, "logits", logits, 2);
  const std::int64_t b = z.size(0), d = z.size(1), k = logits.size(1);
  expect_shape(op, "logits", logits, shape{b, k});
  throw_if<shape_error>(k < 1 || k > kernel_math::mixture_max_components, op, ": logits ",
                        logits.shape(), " must have 1 to ",
                        kernel_math::mixture_max_components, " components");
  expect_shape(op, "mu", mu, shape{b, k, d});
  const shape s2 = diagonal ? shape{b, k, d} : shape{b, k, d, d};
  expect_shape(op, second_name, second, s2);
  expect_shape(op, "log_prob", log_prob, shape{b});
  expect_shape_if_present(op, "dz", dz, z.shape());
  expect_shape_if_present(op, "dlogits", dlogits, logits.shape());
  expect_shape_if_present(op, "dmu", dmu, mu.shape());
  expect_shape_if_present(op, dsecond_name, dsecond, s2);
}

inline void tau_check(const char* op, double tau) {
  throw_if<value_error>(!(tau > 0) || !std::isfinite(tau), op,
                        ": tau must be positive and finite, got ", tau);
}

// logits, gumbel, relaxed [B, K], samples [B, K, D], z [B, D], choice [B].
template <class V, class Z, class R, class C>
void st_mixture_sample_check(const char* op, const V& logits, const V& gumbel, double tau,
                             const V& samples, const Z& z, const R& relaxed, const C& choice) {
  tau_check(op, tau);
  expect_rank(op, "samples", samples, 3);
  const std::int64_t b = samples.size(0), k = samples.size(1), d = samples.size(2);
  throw_if<shape_error>(k < 1, op, ": samples ", samples.shape(), " has no components");
  expect_shape(op, "logits", logits, shape{b, k});
  expect_shape(op, "gumbel", gumbel, shape{b, k});
  expect_shape(op, "z", z, shape{b, d});
  expect_shape(op, "relaxed", relaxed, shape{b, k});
  expect_shape(op, "choice", choice, shape{b});
}

// samples [B, K, D], relaxed [B, K], choice [B], dz [B, D]; dlogits, dsamples optional.
template <class V, class C, class G0, class G1>
void st_mixture_sample_backward_check(const char* op, const V& samples, const V& relaxed,
                                      const C& choice, double tau, const V& dz,
                                      const G0& dlogits, const G1& dsamples) {
  tau_check(op, tau);
  expect_rank(op, "samples", samples, 3);
  const std::int64_t b = samples.size(0), k = samples.size(1), d = samples.size(2);
  expect_shape(op, "relaxed", relaxed, shape{b, k});
  expect_shape(op, "choice", choice, shape{b});
  expect_shape(op, "dz", dz, shape{b, d});
  expect_shape_if_present(op, "dlogits", dlogits, shape{b, k});
  expect_shape_if_present(op, "dsamples", dsamples, samples.shape());
}

// tile_rows_*: y's (or dy's) first axis a positive multiple of x's, the other axes equal;
// returns the number of copies.
template <class X, class Y>
std::int64_t tile_copies(const char* op, const char* x_name, const X& x, const char* y_name, const Y& y) {
  throw_if<shape_error>(x.rank() < 1 || y.rank() != x.rank(), op, ": ", x_name, " ", x.shape().to_string(),
                        " and ", y_name, " ", y.shape().to_string(), " must have the same rank (at least 1)");
  for (int i = 1; i < x.rank(); ++i)
    throw_if<shape_error>(x.size(i) != y.size(i), op, ": ", y_name, " ", y.shape().to_string(),
                          " is not copies of ", x_name, " ", x.shape().to_string());
  throw_if<shape_error>(x.size(0) < 1 || y.size(0) % x.size(0) != 0, op, ": ", y_name, " ",
                        y.shape().to_string(), " is not copies of ", x_name, " ", x.shape().to_string());
  return y.size(0) / x.size(0);
}

// gaussian_kl_sigma_forward_backward: four inputs of one shape [B, ...], kl [B], the
// gradients that shape or empty, a floor ≥ 0.
template <class V, class K, class G0, class G1, class G2, class G3>
void gaussian_kl_sigma_check(const char* op, const V& mu_q, const V& sigma_q, const V& mu_p, const V& sigma_p,
                             double floor, const K& kl, const G0& dmu_q, const G1& dsigma_q, const G2& dmu_p,
                             const G3& dsigma_p) {
  throw_if<shape_error>(mu_q.rank() < 1, op, ": mu_q needs a batch axis, got ", mu_q.shape().to_string());
  const shape& s = mu_q.shape();
  expect_shape(op, "sigma_q", sigma_q, s);
  expect_shape(op, "mu_p", mu_p, s);
  expect_shape(op, "sigma_p", sigma_p, s);
  expect_shape(op, "kl", kl, shape{s[0]});
  expect_shape_if_present(op, "dmu_q", dmu_q, s);
  expect_shape_if_present(op, "dsigma_q", dsigma_q, s);
  expect_shape_if_present(op, "dmu_p", dmu_p, s);
  expect_shape_if_present(op, "dsigma_p", dsigma_p, s);
  throw_if<value_error>(!(floor >= 0.0), op, ": the variance floor must be ≥ 0, got ", floor);
}

}  // namespace ambiseg::ops::detail
