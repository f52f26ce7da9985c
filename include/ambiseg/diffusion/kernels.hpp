// ambiseg/diffusion/kernels.hpp — the per-element maths of the diffusion process with
// per-sample coefficients [B], per device: diffusion_kernels<cpu> here, diffusion_kernels<cuda>
// over the compiled kernels of diffusion/cuda/.
//
// Shape legend: N samples (rows), E = elements per sample; coefficient vectors are [N].
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/diffusion/predictions.hpp"
#include "ambiseg/diffusion/samplers.hpp"
#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/diffusion/cuda/api.hpp"
#endif

namespace ambiseg::diffusion {
// ---- the per-element maths with per-sample coefficients [B], per device -----------------
// The signatures of diffusion/cuda/api.hpp's diffusion_* functions. The cpu versions compute in T
// exactly as the kernels do (same functions, same coefficient rounding), except that the
// host compiler may contract differently from nvcc.
template <class D>
struct diffusion_kernels;

template <>
struct diffusion_kernels<cpu> {
  template <class T>
  using in = tensor_view<const T, cpu>;
  template <class T>
  using out = tensor_view<T, cpu>;

  template <class T>
  static void noise(in<T> x0, in<T> eps, in<T> alpha, in<T> sigma, out<T> x_t) {
    const char* op = "diffusion_kernels::noise";
    expect_shape(op, "eps", eps, x0.shape());
    expect_shape(op, "x_t", x_t, x0.shape());
    const std::int64_t e = per_sample(op, x0, {alpha.shape(), sigma.shape()});
    for (std::int64_t i = 0; i < x0.numel(); ++i)
      x_t[i] = noised(alpha[i / e], sigma[i / e], x0[i], eps[i]);
  }
  template <class T>
  static void target(in<T> x0, in<T> eps, in<T> c_x0, in<T> c_eps, out<T> y) {
    const char* op = "diffusion_kernels::target";
    expect_shape(op, "eps", eps, x0.shape());
    expect_shape(op, "out", y, x0.shape());
    const std::int64_t e = per_sample(op, x0, {c_x0.shape(), c_eps.shape()});
    for (std::int64_t i = 0; i < x0.numel(); ++i)
      y[i] = regression_target(c_x0[i / e], c_eps[i / e], x0[i], eps[i]);
  }
  template <class T>
  static void predicted_x0(in<T> x_t, in<T> f, in<T> c_xt, in<T> c_f, bool clip, out<T> x0_hat) {
    const char* op = "diffusion_kernels::predicted_x0";
    expect_shape(op, "f", f, x_t.shape());
    expect_shape(op, "x0_hat", x0_hat, x_t.shape());
    const std::int64_t e = per_sample(op, x_t, {c_xt.shape(), c_f.shape()});
    for (std::int64_t i = 0; i < x_t.numel(); ++i) {
      const T v = diffusion::predicted_x0(c_xt[i / e], c_f[i / e], x_t[i], f[i]);
      x0_hat[i] = clip ? clip_unit(v) : v;
    }
  }
  template <class T>
  static void predicted_eps(in<T> x_t, in<T> f, in<T> c_xt, in<T> c_f, in<T> alpha,
                            in<T> inv_sigma, out<T> eps_hat) {
    const char* op = "diffusion_kernels::predicted_eps";
    expect_shape(op, "f", f, x_t.shape());
    expect_shape(op, "eps_hat", eps_hat, x_t.shape());
    const std::int64_t e =
        per_sample(op, x_t, {c_xt.shape(), c_f.shape(), alpha.shape(), inv_sigma.shape()});
    for (std::int64_t i = 0; i < x_t.numel(); ++i) {
      const std::int64_t n = i / e;
      const T x0h = diffusion::predicted_x0(c_xt[n], c_f[n], x_t[i], f[i]);
      eps_hat[i] = diffusion::predicted_eps(alpha[n], inv_sigma[n], x_t[i], x0h);
    }
  }
  template <class T>
  static void x0_loss(in<T> x0, in<T> x_t, in<T> f, in<double> c_xt, in<double> c_f,
                      in<double> grad_coeff, out<T> grad_f, out<double> squared_sums) {
    const char* op = "diffusion_kernels::x0_loss";
    expect_shape(op, "x_t", x_t, x0.shape());
    expect_shape(op, "f", f, x0.shape());
    const bool want_grad = grad_f.data() != nullptr;
    if (want_grad) expect_shape(op, "grad_f", grad_f, x0.shape());
    const std::int64_t e = per_sample(op, x0, {c_xt.shape(), c_f.shape(), squared_sums.shape()});
    if (want_grad) per_sample(op, x0, {grad_coeff.shape()});
    for (std::int64_t n = 0; n < x0.size(0); ++n) {
      double acc = 0.0;
      for (std::int64_t i = n * e; i < (n + 1) * e; ++i) {
        const double diff = diffusion::predicted_x0<double>(c_xt[n], c_f[n], x_t[i], f[i]) - x0[i];
        acc += diff * diff;
        if (want_grad) grad_f[i] = static_cast<T>(grad_coeff[n] * diff);
      }
      squared_sums[n] = acc;
    }
  }
  static void loss_report(in<double> sums, in<double> weights, double per, out<double> report) {
    const std::int64_t n = sums.numel();
    throw_if<shape_error>(n < 1 || weights.numel() != n || report.numel() != n + 1,
                          "diffusion_kernels::loss_report: sums ", sums.shape(), ", weights ",
                          weights.shape(), " and report ", report.shape(),
                          " must be [N], [N] and [N + 1] with N >= 1");
    diffusion::x0_loss_report(sums.data(), weights.data(), per, n, report.data());
  }
  template <class T>
  static void reverse_step(in<T> x_t, in<T> x0_hat, in<T> z, in<T> c_xt, in<T> c_x0,
                           in<T> c_noise, out<T> x_s) {
    const char* op = "diffusion_kernels::reverse_step";
    expect_shape(op, "x0_hat", x0_hat, x_t.shape());
    const bool has_z = z.data() != nullptr;
    if (has_z) expect_shape(op, "z", z, x_t.shape());
    expect_shape(op, "x_s", x_s, x_t.shape());
    const std::int64_t e = per_sample(op, x_t, {c_xt.shape(), c_x0.shape(), c_noise.shape()});
    for (std::int64_t i = 0; i < x_t.numel(); ++i) {
      const std::int64_t n = i / e;
      x_s[i] = has_z ? diffusion::reverse_step(c_xt[n], c_x0[n], c_noise[n], x_t[i], x0_hat[i], z[i])
                     : diffusion::reverse_step(c_xt[n], c_x0[n], T(0), x_t[i], x0_hat[i], T(0));
    }
  }
  template <class T>
  static void repeat_rows(in<T> src, std::int64_t repeats, out<T> dst) {
    throw_if<value_error>(repeats < 1, "diffusion_kernels::repeat_rows: repeats = ", repeats,
                          " must be >= 1");
    throw_if<shape_error>(src.rank() < 1 || dst.rank() != src.rank() ||
                              dst.size(0) != src.size(0) * repeats ||
                              dst.numel() != src.numel() * repeats,
                          "diffusion_kernels::repeat_rows: src ", src.shape(), " and dst ",
                          dst.shape(), " for ", repeats, " repeats");
    if (src.numel() == 0) return;
    const std::int64_t row = src.numel() / src.size(0);
    for (std::int64_t b = 0; b < src.size(0); ++b)
      for (std::int64_t j = 0; j < repeats; ++j)
        std::copy(src.data() + b * row, src.data() + (b + 1) * row, dst.data() + (b * repeats + j) * row);
  }

 private:
  template <class V>
  static std::int64_t per_sample(const char* op, const V& batch, std::initializer_list<shape> coeffs) {
    throw_if<shape_error>(batch.rank() < 1 || batch.size(0) < 1, op, ": the batch has shape ",
                          batch.shape(), ", expected [N, ...] with N >= 1");
    for (const shape& s : coeffs)
      throw_if<shape_error>(!(s == shape{batch.size(0)}), op, ": a coefficient vector has shape ",
                            s, ", expected [", batch.size(0), "]");
    return std::max<std::int64_t>(batch.numel() / batch.size(0), 1);
  }
};

#if defined(AMBISEG_WITH_CUDA)
template <>
struct diffusion_kernels<cuda> {
  template <class T>
  static void noise(ambiseg::in_view<T, cuda> x0, ambiseg::in_view<T, cuda> eps,
                    ambiseg::in_view<T, cuda> alpha, ambiseg::in_view<T, cuda> sigma,
                    ambiseg::out_view<T, cuda> x_t) {
    cuda_kernels::diffusion_noise<T>(x0, eps, alpha, sigma, x_t);
  }
  template <class T>
  static void target(ambiseg::in_view<T, cuda> x0, ambiseg::in_view<T, cuda> eps,
                     ambiseg::in_view<T, cuda> c_x0, ambiseg::in_view<T, cuda> c_eps,
                     ambiseg::out_view<T, cuda> y) {
    cuda_kernels::diffusion_target<T>(x0, eps, c_x0, c_eps, y);
  }
  template <class T>
  static void predicted_x0(ambiseg::in_view<T, cuda> x_t, ambiseg::in_view<T, cuda> f,
                           ambiseg::in_view<T, cuda> c_xt, ambiseg::in_view<T, cuda> c_f, bool clip,
                           ambiseg::out_view<T, cuda> x0_hat) {
    cuda_kernels::diffusion_predicted_x0<T>(x_t, f, c_xt, c_f, clip, x0_hat);
  }
  template <class T>
  static void predicted_eps(ambiseg::in_view<T, cuda> x_t, ambiseg::in_view<T, cuda> f,
                            ambiseg::in_view<T, cuda> c_xt, ambiseg::in_view<T, cuda> c_f,
                            ambiseg::in_view<T, cuda> alpha, ambiseg::in_view<T, cuda> inv_sigma,
                            ambiseg::out_view<T, cuda> eps_hat) {
    cuda_kernels::diffusion_predicted_eps<T>(x_t, f, c_xt, c_f, alpha, inv_sigma, eps_hat);
  }
  template <class T>
  static void x0_loss(ambiseg::in_view<T, cuda> x0, ambiseg::in_view<T, cuda> x_t,
                      ambiseg::in_view<T, cuda> f, ambiseg::in_view<double, cuda> c_xt,
                      ambiseg::in_view<double, cuda> c_f, ambiseg::in_view<double, cuda> grad_coeff,
                      ambiseg::out_view<T, cuda> grad_f,
                      ambiseg::out_view<double, cuda> squared_sums) {
    cuda_kernels::diffusion_x0_loss<T>(x0, x_t, f, c_xt, c_f, grad_coeff, grad_f, squared_sums);
  }
  static void loss_report(ambiseg::in_view<double, cuda> sums,
                          ambiseg::in_view<double, cuda> weights, double per,
                          ambiseg::out_view<double, cuda> report) {
    cuda_kernels::diffusion_loss_report(sums, weights, per, report);
  }
  template <class T>
  static void reverse_step(ambiseg::in_view<T, cuda> x_t, ambiseg::in_view<T, cuda> x0_hat,
                           ambiseg::in_view<T, cuda> z, ambiseg::in_view<T, cuda> c_xt,
                           ambiseg::in_view<T, cuda> c_x0, ambiseg::in_view<T, cuda> c_noise,
                           ambiseg::out_view<T, cuda> x_s) {
    cuda_kernels::diffusion_reverse_step<T>(x_t, x0_hat, z, c_xt, c_x0, c_noise, x_s);
  }
  template <class T>
  static void repeat_rows(ambiseg::in_view<T, cuda> src, std::int64_t repeats,
                          ambiseg::out_view<T, cuda> dst) {
    cuda_kernels::repeat_rows<T>(src, repeats, dst);
  }
};
#endif

}  // namespace ambiseg::diffusion
