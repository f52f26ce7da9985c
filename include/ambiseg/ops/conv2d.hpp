// ambiseg/ops/conv2d.hpp — 2-D convolution, square kernel, with bias.
//
//   x [N,Ci,H,W]  w [Co,Ci,K,K]  b [Co] or empty  y [N,Co,Ho,Wo]
//   Ho = (H + 2p − K)/stride + 1 (likewise Wo); p = K/2 when params.padding is −1.
// Kernels: ops/cpu/conv2d.hpp (im2col bands + GEMM; see there for the layout choice).
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/conv2d.hpp"

namespace ambiseg::ops {

struct conv2d_params {
  int stride = 1;
  int padding = -1;  // -1: K/2 ("same" for odd K at stride 1)
};

namespace detail {
inline cpu_kernels::conv_geometry conv2d_check(const char* op, const shape& x, const shape& w,
                                               conv2d_params p) {
  throw_if<shape_error>(x.rank() != 4, op, ": x must have rank 4 [N,Ci,H,W], got ", x);
  throw_if<shape_error>(w.rank() != 4, op, ": w must have rank 4 [Co,Ci,K,K], got ", w);
  throw_if<shape_error>(w[2] != w[3], op, ": w must have a square kernel, got ", w);
  throw_if<shape_error>(w[1] != x[1], op, ": w has shape ", w, " but x ", x, " has ", x[1],
                        " channels");
  throw_if<value_error>(p.stride < 1, op, ": stride must be >= 1, got ", p.stride);
  const std::int64_t k = w[2];
  const std::int64_t pad = p.padding < 0 ? k / 2 : p.padding;
  throw_if<value_error>(k > 0 && pad >= k, op, ": padding ", pad,
                        " must be below the kernel size ", k);
  const std::int64_t hp = x[2] + 2 * pad - k, wp = x[3] + 2 * pad - k;
  throw_if<shape_error>(k < 1 || hp < 0 || wp < 0, op, ": kernel ", w,
                        " does not fit input ", x, " with padding ", pad);
  return {x[0], x[1], x[2], x[3], w[0], k, p.stride, pad, hp / p.stride + 1, wp / p.stride + 1};
}
// One pass's arithmetic (forward, dx or dW alike), multiply-add = 2: for the profile.
inline double conv2d_flop(const cpu_kernels::conv_geometry& g) {
  return 2.0 * static_cast<double>(g.n * g.co * g.ho * g.wo) * static_cast<double>(g.ckk());
}
}  // namespace detail

// Output extents for a given input and filter (for callers sizing y).
inline shape conv2d_output_shape(const shape& x, const shape& w, conv2d_params p = {}) {
  const auto g = detail::conv2d_check("conv2d_output_shape", x, w, p);
  return shape{g.n, g.co, g.ho, g.wo};
}

template <op_scalar T, class D>
void conv2d_forward(in_view<T, D> x, in_view<T, D> w, in_view<T, D> b, tensor_view<T, D> y,
                    conv2d_params p, workspace<D>& ws) {
  const char* op = "conv2d_forward";
  const auto g = detail::conv2d_check(op, x.shape(), w.shape(), p);
  if (detail::present(b)) expect_shape(op, "b", b, shape{g.co});
  expect_shape(op, "y", y, shape{g.n, g.co, g.ho, g.wo});
  if constexpr (std::same_as<D, cpu>) {
    const profile::scope timer(op, {g.n, g.ci, g.h, g.w, g.co, g.k, g.stride}, detail::conv2d_flop(g));
    cpu_kernels::conv2d_forward(x.data(), w.data(), b.data(), y.data(), g, ws);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    if constexpr (std::same_as<T, float>)
      cuda_kernels::conv2d_forward(x, w, b, y, p.stride, p.padding, ws);
    else
      static_assert(dependent_false<T>, "ambiseg::ops::conv2d_forward: the CUDA convolution "
                                        "(cuDNN) is float only; use tensor<float, cuda>");
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// dx = ∂L/∂x (optional, assigned), dw += ∂L/∂w, db += ∂L/∂b (optional).
template <op_scalar T, class D>
void conv2d_backward(in_view<T, D> x, in_view<T, D> w, in_view<T, D> dy, out_view<T, D> dx,
                     tensor_view<T, D> dw, out_view<T, D> db, conv2d_params p,
                     workspace<D>& ws) {
  const char* op = "conv2d_backward";
  const auto g = detail::conv2d_check(op, x.shape(), w.shape(), p);
  expect_shape(op, "dy", dy, shape{g.n, g.co, g.ho, g.wo});
  if (detail::present(dx)) expect_shape(op, "dx", dx, x.shape());
  if (detail::present(dw)) expect_shape(op, "dw", dw, w.shape());
  if (detail::present(db)) expect_shape(op, "db", db, shape{g.co});
  if constexpr (std::same_as<D, cpu>) {
    // dx and dW each cost a forward's arithmetic (db is a sum over dy).
    const double passes = (detail::present(dx) ? 1.0 : 0.0) + (detail::present(dw) ? 1.0 : 0.0);
    const profile::scope timer(op, {g.n, g.ci, g.h, g.w, g.co, g.k, g.stride}, passes * detail::conv2d_flop(g));
    cpu_kernels::conv2d_backward(x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(),
                                 g, ws);
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    if constexpr (std::same_as<T, float>)
      cuda_kernels::conv2d_backward(x, w, dy, dx, dw, db, p.stride, p.padding, ws);
    else
      static_assert(dependent_false<T>, "ambiseg::ops::conv2d_backward: the CUDA convolution "
                                        "(cuDNN) is float only; use tensor<float, cuda>");
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
