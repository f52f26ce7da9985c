// Direct double-precision references for the convolution tests: the forward and its
// transpose by explicit loops, one ops:: forward + backward run, and central differences.
// Expected values come from here, never from another path of the code under test.
//
//   x [N,Ci,H,W]  w [Co,Ci,K,K]  b [Co]  y, dy [N,Co,Ho,Wo]
#pragma once

#include "ops_test_util.hpp"

#include <ambiseg/ops/all.hpp>

#include <utility>

namespace ops_test {

namespace ck = ambiseg::ops::cpu_kernels;

struct conv_settings_guard {
  ck::conv_tuning saved = ck::conv_settings();
  ~conv_settings_guard() { ck::conv_settings() = saved; }
};

inline std::int64_t out_extent(std::int64_t in, std::int64_t k, int stride, int pad) {
  return (in + 2 * pad - k) / stride + 1;
}

inline ck::conv_geometry geometry(const shape& xs, const shape& ws, int stride, int pad) {
  return {xs[0], xs[1], xs[2], xs[3], ws[0], ws[2], stride, pad,
          out_extent(xs[2], ws[2], stride, pad), out_extent(xs[3], ws[2], stride, pad)};
}

// Direct convolution, one output at a time, zero padding.
inline tensor<double> naive_conv(const tensor<double>& x_t, const tensor<double>& w_t, const tensor<double>* b,
                          int stride, int pad) {
  const auto x = x_t.cview();
  const auto w = w_t.cview();
  const std::int64_t N = x.size(0), Ci = x.size(1), H = x.size(2), W = x.size(3);
  const std::int64_t Co = w.size(0), K = w.size(2);
  const std::int64_t Ho = out_extent(H, K, stride, pad), Wo = out_extent(W, K, stride, pad);
  auto y = tensor<double>::zeros({N, Co, Ho, Wo});
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t co = 0; co < Co; ++co)
      for (std::int64_t i = 0; i < Ho; ++i)
        for (std::int64_t j = 0; j < Wo; ++j) {
          double s = b ? (*b)[co] : 0.0;
          for (std::int64_t ci = 0; ci < Ci; ++ci)
            for (std::int64_t kh = 0; kh < K; ++kh)
              for (std::int64_t kw = 0; kw < K; ++kw) {
                const std::int64_t hi = i * stride - pad + kh, wi = j * stride - pad + kw;
                if (hi < 0 || hi >= H || wi < 0 || wi >= W) continue;
                s += x.at(n, ci, hi, wi) * w.at(co, ci, kh, kw);
              }
          y.at(n, co, i, j) = s;
        }
  return y;
}

// The transpose of naive_conv: each product x·w of the forward sends dy back to both.
struct conv_grads {
  tensor<double> dx, dw, db;
};
inline conv_grads naive_conv_backward(const tensor<double>& x_t, const tensor<double>& w_t,
                               const tensor<double>& dy_t, int stride, int pad) {
  const auto x = x_t.cview();
  const auto w = w_t.cview();
  const auto dy = dy_t.cview();
  const std::int64_t N = x.size(0), Ci = x.size(1), H = x.size(2), W = x.size(3);
  const std::int64_t Co = w.size(0), K = w.size(2), Ho = dy.size(2), Wo = dy.size(3);
  conv_grads g{tensor<double>::zeros(x_t.shape()), tensor<double>::zeros(w_t.shape()),
               tensor<double>::zeros({Co})};
  for (std::int64_t n = 0; n < N; ++n)
    for (std::int64_t co = 0; co < Co; ++co)
      for (std::int64_t i = 0; i < Ho; ++i)
        for (std::int64_t j = 0; j < Wo; ++j) {
          const double d = dy.at(n, co, i, j);
          g.db[co] += d;
          for (std::int64_t ci = 0; ci < Ci; ++ci)
            for (std::int64_t kh = 0; kh < K; ++kh)
              for (std::int64_t kw = 0; kw < K; ++kw) {
                const std::int64_t hi = i * stride - pad + kh, wi = j * stride - pad + kw;
                if (hi < 0 || hi >= H || wi < 0 || wi >= W) continue;
                g.dx.at(n, ci, hi, wi) += d * w.at(co, ci, kh, kw);
                g.dw.at(co, ci, kh, kw) += d * x.at(n, ci, hi, wi);
              }
        }
  return g;
}

struct conv_run {
  tensor<double> y, dx, dw, db;  // dw, db: the increments (they start nonzero)
};

// Forward with bias and the full backward through ops::, dw/db starting from random values
// (parameter gradients accumulate) and reported as increments.
inline conv_run run_conv(const tensor<double>& x, const tensor<double>& w, const tensor<double>& b,
                  const tensor<double>& dy, int stride, int pad, rng& r) {
  const ops::conv2d_params p{stride, pad};
  workspace<cpu> ws;
  conv_run out{tensor<double>(dy.shape()), tensor<double>(x.shape()), randn(w.shape(), r),
               randn(b.shape(), r)};
  const auto dw0 = out.dw.clone(), db0 = out.db.clone();
  ops::conv2d_forward(x, w, b, out.y.view(), p, ws);
  ops::conv2d_backward(x, w, dy, out.dx, out.dw.view(), out.db, p, ws);
  for (std::int64_t i = 0; i < out.dw.numel(); ++i) out.dw[i] -= dw0[i];
  for (std::int64_t i = 0; i < out.db.numel(); ++i) out.db[i] -= db0[i];
  return out;
}

// max |got − expected| ≤ tol · max(1, max |expected|)
template <class A>
inline bool close_to(const A& got, const tensor<double>& expected, double tol) {
  return max_abs_diff(got, expected) < tol * std::max(1.0, max_abs(expected));
}

// A run's forward and every gradient against the direct loops, then the forward without
// bias into an output prefilled with 1e3 (it must be overwritten, not accumulated into).
// Returns the expected values, for the callers' own checks on them.
struct conv_expected {
  tensor<double> y;
  conv_grads grads;
};
inline conv_expected check_conv_against_direct(const tensor<double>& x, const tensor<double>& w,
                                                const tensor<double>& b, const tensor<double>& dy,
                                                const conv_run& got, int stride, int pad, double tol) {
  auto expected_y = naive_conv(x, w, &b, stride, pad);
  auto expected = naive_conv_backward(x, w, dy, stride, pad);
  CHECK(close_to(got.y, expected_y, tol));
  CHECK(close_to(got.dx, expected.dx, tol));
  CHECK(close_to(got.dw, expected.dw, tol));
  CHECK(close_to(got.db, expected.db, tol));
  tensor<double> y_nobias(expected_y.shape());
  for (auto& v : y_nobias) v = 1e3;
  workspace<cpu> ws;
  ops::conv2d_forward(x, w, {}, y_nobias.view(), ops::conv2d_params{stride, pad}, ws);
  CHECK(close_to(y_nobias, naive_conv(x, w, nullptr, stride, pad), tol));
  return {std::move(expected_y), std::move(expected)};
}

// Central differences of L = Σ dy·(conv(x, w) + b), with the direct convolution as the
// forward (independent of every path under test, and free of thread start-up costs that
// thousands of threaded forwards would pay), against the analytic gradients of the path.
inline void check_conv_finite_differences(tensor<double>& x, tensor<double>& w, tensor<double>& b,
                                   const tensor<double>& dy, const conv_run& got, int stride,
                                   int pad) {
  auto loss = [&] { return dot(dy, naive_conv(x, w, &b, stride, pad)); };
  check_gradient("conv x", x, got.dx, loss);
  check_gradient("conv w", w, got.dw, loss);
  check_gradient("conv b", b, got.db, loss);
}


}  // namespace ops_test
