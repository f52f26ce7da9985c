// Finite-difference gradient checks (double, central differences) for every op, with the
// random scalar loss L = Σ dy·y. Parameter gradients are checked to accumulate (+=).
#include "conv_reference.hpp"

#include <ambiseg/ops/all.hpp>

#include <vector>

using namespace ambiseg;
using namespace ops_test;

namespace {

struct conv_case {
  std::int64_t n, ci, h, w, co, k;
  int stride, padding;
  bool bias;
};

void check_conv_gradients(const conv_case& c, rng& r) {
  INFO("conv N=" << c.n << " Ci=" << c.ci << " " << c.h << "x" << c.w << " Co=" << c.co
                 << " K=" << c.k << " stride=" << c.stride << " pad=" << c.padding);
  const ops::conv2d_params p{c.stride, c.padding};
  auto x = randn({c.n, c.ci, c.h, c.w}, r);
  auto w = randn({c.co, c.ci, c.k, c.k}, r);
  auto b = c.bias ? randn({c.co}, r) : tensor<double>();
  const shape ys = ops::conv2d_output_shape(x.shape(), w.shape(), p);
  auto dy = randn(ys, r);
  tensor<double> y(ys);
  workspace<cpu> ws;
  auto loss = [&] {
    ops::conv2d_forward(x, w, b, y.view(), p, ws);
    return dot(dy, y);
  };
  tensor<double> dx(x.shape());
  auto dw = randn(w.shape(), r);  // nonzero start: dw must accumulate
  auto dw0 = dw.clone();
  auto db = c.bias ? randn({c.co}, r) : tensor<double>();
  // (a default tensor is rank 0 with numel() 1 but no data: only touch db with a bias)
  auto db0 = c.bias ? db.clone() : tensor<double>();
  ops::conv2d_backward(x, w, dy, dx, dw.view(), db, p, ws);
  for (std::int64_t i = 0; i < dw.numel(); ++i) dw[i] -= dw0[i];
  if (c.bias)
    for (std::int64_t i = 0; i < db.numel(); ++i) db[i] -= db0[i];
  check_gradient("conv x", x, dx, loss);
  check_gradient("conv w", w, dw, loss);
  if (c.bias) check_gradient("conv b", b, db, loss);
}

}  // namespace

TEST_CASE("conv2d gradients: 3x3 stride 1/2, 1x1, every threading mode and band size",
          "[ops][conv2d][grad]") {
  rng r(11);
  conv_settings_guard guard;
  const std::vector<conv_case> cases = {
      {2, 3, 6, 5, 4, 3, 1, -1, true},   // "same" 3×3: dx by the flipped filter
      {3, 2, 7, 6, 3, 3, 2, 1, true},    // stride 2 on odd/even extents: dcol + col2im
      {2, 4, 5, 5, 3, 1, 1, 0, true},    // 1×1: no im2col
      {2, 2, 5, 4, 3, 3, 1, 0, false},   // "valid" 3×3, stride 1: general dx path
      {1, 2, 6, 6, 2, 3, 2, 1, false},   // one image: multithreaded GEMM mode
  };
  using ops::cpu_kernels::conv_threading;
  for (auto mode : {conv_threading::automatic, conv_threading::images, conv_threading::gemm})
    for (std::int64_t band : {std::int64_t{1} << 20, std::int64_t{64}})  // 64 B: one row per band
    for (std::int64_t shifted_min : {0, 1}) {  // 1: the shifted-GEMM path for every "same" conv
      ops::cpu_kernels::conv_settings().shifted_min_width = shifted_min;
      ops::cpu_kernels::conv_settings().shifted_min_ci_forward = band > 200 ? 1 : 8;  // 8: im2col forward, shifted dW
      ops::cpu_kernels::conv_settings().shifted_fwd_cols = band > 64 ? 320 : 1;
      ops::cpu_kernels::conv_settings().shifted_dw_cols = band > 64 ? 2048 : 1;
      ops::cpu_kernels::conv_settings().threading = mode;
      ops::cpu_kernels::conv_settings().band_bytes = band;
      ops::cpu_kernels::conv_settings().min_band_cols = 1;
      INFO("mode " << static_cast<int>(mode) << " band_bytes " << band << " shifted " << shifted_min);
      for (const auto& c : cases) check_conv_gradients(c, r);
    }
}

TEST_CASE("conv2d backward skips dx and db when their views are empty", "[ops][conv2d][grad]") {
  rng r(12);
  auto x = randn({2, 3, 5, 5}, r);
  auto w = randn({4, 3, 3, 3}, r);
  auto dy = randn({2, 4, 5, 5}, r);
  workspace<cpu> ws;
  tensor<double> dx(x.shape());
  auto dw_full = tensor<double>::zeros(w.shape());
  auto db = tensor<double>::zeros({4});
  ops::conv2d_backward(x, w, dy, dx, dw_full.view(), db, {}, ws);
  auto dw_only = tensor<double>::zeros(w.shape());
  ops::conv2d_backward(x, w, dy, {}, dw_only.view(), {}, {}, ws);
  CHECK(max_abs_diff(dw_full, dw_only) < 1e-12);
}

TEST_CASE("group norm gradients", "[ops][group_norm][grad]") {
  rng r(21);
  for (auto xs : {shape{2, 6, 3, 4}, shape{3, 4, 5}}) {
    for (int groups : {1, 2, 3}) {
      if (xs[1] % groups) continue;
      INFO("x " << xs << " groups " << groups);
      auto x = randn(xs, r, 2.0);
      for (auto& v : x) v += 0.7;  // a nonzero mean must cancel exactly
      auto gamma = randn({xs[1]}, r);
      auto beta = randn({xs[1]}, r);
      auto dy = randn(xs, r);
      tensor<double> y(xs), mean({xs[0], groups}), rstd({xs[0], groups});
      const double eps = 1e-5;
      auto loss = [&] {
        ops::group_norm_forward(x, gamma, beta, groups, eps, y.view(), mean, rstd);
        return dot(dy, y);
      };
      loss();
      tensor<double> dx(xs);
      auto dgamma = tensor<double>::zeros({xs[1]});
      auto dbeta = tensor<double>::zeros({xs[1]});
      ops::group_norm_backward(x, gamma, mean, rstd, dy, groups, dx.view(), dgamma, dbeta);
      check_gradient("gn x", x, dx, loss);
      check_gradient("gn gamma", gamma, dgamma, loss);
      check_gradient("gn beta", beta, dbeta, loss);
      // accumulate: a second backward doubles the parameter gradients
      auto dgamma1 = dgamma.clone();
      ops::group_norm_backward(x, gamma, mean, rstd, dy, groups, dx.view(), dgamma, dbeta);
      for (std::int64_t i = 0; i < dgamma.numel(); ++i) CHECK(dgamma[i] == Approx(2 * dgamma1[i]));
    }
  }
}

TEST_CASE("silu and tanh gradients", "[ops][silu][tanh][grad]") {
  rng r(31);
  auto x = randn({2, 3, 4, 5}, r, 3.0);
  auto dy = randn(x.shape(), r);
  tensor<double> y(x.shape()), dx(x.shape());
  auto silu_loss = [&] {
    ops::silu_forward(x, y.view());
    return dot(dy, y);
  };
  ops::silu_backward(x, dy, dx.view());
  check_gradient("silu x", x, dx, silu_loss);

  auto tanh_loss = [&] {
    ops::tanh_forward(x, y.view());
    return dot(dy, y);
  };
  tanh_loss();
  ops::tanh_backward(y, dy, dx.view());
  check_gradient("tanh x", x, dx, tanh_loss);
}

TEST_CASE("linear gradients", "[ops][linear][grad]") {
  rng r(41);
  auto x = randn({3, 5}, r);
  auto w = randn({4, 5}, r);
  auto b = randn({4}, r);
  auto dy = randn({3, 4}, r);
  tensor<double> y({3, 4}), dx(x.shape());
  auto loss = [&] {
    ops::linear_forward(x, w, b, y.view());
    return dot(dy, y);
  };
  auto dw = tensor<double>::zeros(w.shape());
  auto db = tensor<double>::zeros({4});
  ops::linear_backward(x, w, dy, dx, dw.view(), db);
  check_gradient("linear x", x, dx, loss);
  check_gradient("linear w", w, dw, loss);
  check_gradient("linear b", b, db, loss);
}

TEST_CASE("attention gradients (legacy qkv layout)", "[ops][attention][grad]") {
  rng r(51);
  for (int heads : {1, 2}) {
    INFO("heads " << heads);
    const std::int64_t B = 2, C = 6, T = 5;
    auto qkv = randn({B, 3 * C, T}, r);
    auto dy = randn({B, C, T}, r);
    tensor<double> y({B, C, T}), probs({B * heads, T, T}), dqkv(qkv.shape());
    workspace<cpu> ws;
    auto loss = [&] {
      ops::attention_forward(qkv, heads, y.view(), probs, ws);
      return dot(dy, y);
    };
    loss();
    ops::attention_backward(qkv, probs, dy, heads, dqkv.view(), ws);
    check_gradient("attention qkv", qkv, dqkv, loss);
  }
}

TEST_CASE("upsample, concat, channel bias gradients", "[ops][grad]") {
  rng r(61);
  {
    auto x = randn({2, 3, 3, 4}, r);
    auto dy = randn({2, 3, 6, 8}, r);
    tensor<double> y(dy.shape()), dx(x.shape());
    auto loss = [&] {
      ops::upsample_nearest2x_forward(x, y.view());
      return dot(dy, y);
    };
    ops::upsample_nearest2x_backward(dy, dx.view());
    check_gradient("upsample x", x, dx, loss);
  }
  {
    auto a = randn({2, 3, 2, 3}, r);
    auto b = randn({2, 2, 2, 3}, r);
    auto dy = randn({2, 5, 2, 3}, r);
    tensor<double> y(dy.shape()), da(a.shape()), db(b.shape());
    auto loss = [&] {
      ops::concat_channels_forward(a, b, y.view());
      return dot(dy, y);
    };
    ops::concat_channels_backward(dy, da.view(), db);
    check_gradient("concat a", a, da, loss);
    check_gradient("concat b", b, db, loss);
    // one side not needed: the other still gets its slice
    tensor<double> db_only(b.shape());
    ops::concat_channels_backward(dy, tensor_view<double>{}, db_only);
    CHECK(max_abs_diff(db_only, db) == 0.0);
  }
  {
    auto h0 = randn({2, 3, 4, 5}, r);
    auto e = randn({2, 3}, r);
    auto dy = randn(h0.shape(), r);
    tensor<double> h(h0.shape()), de({2, 3});
    auto loss = [&] {
      h.copy_from(h0);
      ops::add_channel_bias_forward(h.view(), e);
      return dot(dy, h);
    };
    ops::add_channel_bias_backward(dy, de.view());
    check_gradient("channel bias e", e, de, loss);
  }
}

TEST_CASE("fused group norm + SiLU: gradients, and equal to the two ops composed",
          "[ops][group_norm][silu][grad]") {
  rng r(71);
  const shape xs{2, 6, 3, 3};
  const int groups = 3;
  auto x = randn(xs, r, 2.0);
  auto gamma = randn({6}, r);
  auto beta = randn({6}, r);
  auto dy = randn(xs, r);
  tensor<double> y(xs), mean({2, groups}), rstd({2, groups});
  auto loss = [&] {
    ops::group_norm_silu_forward(x, gamma, beta, groups, 1e-5, y.view(), mean, rstd);
    return dot(dy, y);
  };
  loss();
  tensor<double> dx(xs);
  auto dgamma = tensor<double>::zeros({6});
  auto dbeta = tensor<double>::zeros({6});
  ops::group_norm_silu_backward(x, gamma, beta, mean, rstd, dy, groups, dx.view(), dgamma, dbeta);
  check_gradient("gn+silu x", x, dx, loss);
  check_gradient("gn+silu gamma", gamma, dgamma, loss);
  check_gradient("gn+silu beta", beta, dbeta, loss);

  // the composition GN → SiLU, forward and backward
  tensor<double> z(xs), y2(xs), dz(xs), dx2(xs);
  auto dgamma2 = tensor<double>::zeros({6});
  auto dbeta2 = tensor<double>::zeros({6});
  ops::group_norm_forward(x, gamma, beta, groups, 1e-5, z.view(), mean, rstd);
  ops::silu_forward(z, y2.view());
  loss();
  CHECK(max_abs_diff(y, y2) < 1e-14);
  ops::silu_backward(z, dy, dz.view());
  ops::group_norm_backward(x, gamma, mean, rstd, dz, groups, dx2.view(), dgamma2, dbeta2);
  ops::group_norm_silu_backward(x, gamma, beta, mean, rstd, dy, groups, dx.view(), dgamma, dbeta);
  CHECK(max_abs_diff(dx, dx2) < 1e-13);
  for (std::int64_t i = 0; i < 6; ++i) CHECK(dgamma[i] == Approx(dgamma2[i] * 2).epsilon(1e-12));
  CHECK_THROWS_WITH(
      ops::group_norm_silu_backward(x, gamma, beta, mean, rstd, dy, groups, dy.view(), {}, {}),
      Catch::Contains("group_norm_silu_backward: dx must not alias"));
}
