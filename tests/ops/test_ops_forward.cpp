// Forward values against independent computations (naive loops, hand values, closed
// forms), float vs double agreement, shape errors, and workspace reuse.
#include "conv_reference.hpp"

#include <ambiseg/ops/all.hpp>

#include <cmath>
#include <numbers>
#include <vector>

using namespace ambiseg;
using namespace ops_test;

namespace {

template <class To>
tensor<To> cast(const tensor<double>& t) {
  tensor<To> r(t.shape());
  for (std::int64_t i = 0; i < t.numel(); ++i) r[i] = static_cast<To>(t[i]);
  return r;
}

}  // namespace

TEST_CASE("conv2d forward matches a direct convolution (double and float)", "[ops][conv2d]") {
  rng r(101);
  conv_settings_guard guard;
  struct c_t { std::int64_t n, ci, h, w, co, k; int stride, pad; };
  const std::vector<c_t> cases = {{2, 3, 9, 7, 5, 3, 1, 1}, {3, 4, 9, 8, 2, 3, 2, 1},
                                  {2, 5, 6, 6, 3, 1, 1, 0}, {2, 2, 6, 5, 3, 3, 1, 0},
                                  {1, 3, 8, 8, 4, 3, 2, 1}};
  using ops::cpu_kernels::conv_threading;
  for (auto mode : {conv_threading::images, conv_threading::gemm})
    for (std::int64_t band : {std::int64_t{1} << 20, std::int64_t{200}})
    for (std::int64_t shifted_min : {0, 1}) {
      ops::cpu_kernels::conv_settings().shifted_min_width = shifted_min;
      ops::cpu_kernels::conv_settings().shifted_min_ci_forward = band > 200 ? 1 : 8;  // 8: im2col forward, shifted dW
      ops::cpu_kernels::conv_settings().shifted_fwd_cols = band > 200 ? 320 : 1;
      ops::cpu_kernels::conv_settings().threading = mode;
      ops::cpu_kernels::conv_settings().band_bytes = band;
      ops::cpu_kernels::conv_settings().min_band_cols = 1;
      for (const auto& c : cases) {
        INFO("N=" << c.n << " Ci=" << c.ci << " " << c.h << "x" << c.w << " Co=" << c.co
                  << " K=" << c.k << " s=" << c.stride << " p=" << c.pad << " mode "
                  << static_cast<int>(mode) << " band " << band << " shifted " << shifted_min);
        auto x = randn({c.n, c.ci, c.h, c.w}, r);
        auto w = randn({c.co, c.ci, c.k, c.k}, r);
        auto b = randn({c.co}, r);
        const ops::conv2d_params p{c.stride, c.pad};
        auto expected = naive_conv(x, w, &b, c.stride, c.pad);
        workspace<cpu> ws;
        tensor<double> y(expected.shape());
        ops::conv2d_forward(x, w, b, y.view(), p, ws);
        CHECK(max_abs_diff(y, expected) < 1e-12);
        ops::conv2d_forward(x, w, {}, y.view(), p, ws);  // without bias
        auto nobias = naive_conv(x, w, nullptr, c.stride, c.pad);
        CHECK(max_abs_diff(y, nobias) < 1e-12);

        auto xf = cast<float>(x), wf = cast<float>(w), bf = cast<float>(b);
        tensor<float> yf(expected.shape());
        ops::conv2d_forward(xf, wf, bf, yf.view(), p, ws);
        CHECK(max_abs_diff(yf, expected) < 1e-4 * std::max(1.0, max_abs(expected)));
      }
    }
}

TEST_CASE("conv2d float and double backward agree", "[ops][conv2d]") {
  rng r(102);
  for (int stride : {1, 2}) {
    auto x = randn({4, 6, 10, 10}, r);
    auto w = randn({5, 6, 3, 3}, r);
    const ops::conv2d_params p{stride, 1};
    const shape ys = ops::conv2d_output_shape(x.shape(), w.shape(), p);
    auto dy = randn(ys, r);
    workspace<cpu> ws;
    tensor<double> dx(x.shape());
    auto dw = tensor<double>::zeros(w.shape());
    auto db = tensor<double>::zeros({5});
    ops::conv2d_backward(x, w, dy, dx, dw.view(), db, p, ws);
    auto xf = cast<float>(x), wf = cast<float>(w), dyf = cast<float>(dy);
    tensor<float> dxf(x.shape());
    auto dwf = tensor<float>::zeros(w.shape());
    auto dbf = tensor<float>::zeros({5});
    ops::conv2d_backward(xf, wf, dyf, dxf, dwf.view(), dbf, p, ws);
    CHECK(max_abs_diff(dxf, dx) < 1e-5 * max_abs(dx));
    CHECK(max_abs_diff(dwf, dw) < 1e-5 * max_abs(dw));
    CHECK(max_abs_diff(dbf, db) < 1e-5 * max_abs(db));
  }
}

TEST_CASE("conv2d reuses its workspace", "[ops][conv2d][workspace]") {
  rng r(103);
  auto x = randn<float>({4, 8, 16, 16}, r);
  auto w = randn<float>({8, 8, 3, 3}, r);
  auto b = randn<float>({8}, r);
  tensor<float> y({4, 8, 16, 16}), dx(x.shape());
  auto dw = tensor<float>::zeros(w.shape());
  auto db = tensor<float>::zeros({8});
  workspace<cpu> ws;
  ops::conv2d_forward(x, w, b, y.view(), {}, ws);
  ops::conv2d_backward(x, w, y, dx, dw.view(), db, {}, ws);
  const auto allocations = ws.allocations();
  ops::conv2d_forward(x, w, b, y.view(), {}, ws);
  ops::conv2d_backward(x, w, y, dx, dw.view(), db, {}, ws);
  ops::conv2d_forward(x, w, b, y.view(), {}, ws);
  CHECK(ws.allocations() == allocations);
}

TEST_CASE("conv2d rejects wrong shapes naming the op and argument", "[ops][conv2d][errors]") {
  workspace<cpu> ws;
  auto x = tensor<float>::zeros({2, 3, 8, 8});
  auto w = tensor<float>::zeros({4, 3, 3, 3});
  auto b = tensor<float>::zeros({4});
  auto y = tensor<float>::zeros({2, 4, 8, 8});
  auto w_bad = tensor<float>::zeros({4, 2, 3, 3});
  CHECK_THROWS_AS(ops::conv2d_forward(x, w_bad, b, y.view(), {}, ws), shape_error);
  CHECK_THROWS_WITH(ops::conv2d_forward(x, w_bad, b, y.view(), {}, ws),
                    Catch::Contains("conv2d_forward") && Catch::Contains("[4, 2, 3, 3]"));
  auto y_bad = tensor<float>::zeros({2, 4, 4, 4});
  CHECK_THROWS_WITH(ops::conv2d_forward(x, w, b, y_bad.view(), {}, ws),
                    Catch::Contains("conv2d_forward: y has shape [2, 4, 4, 4], expected [2, 4, 8, 8]"));
  auto b_bad = tensor<float>::zeros({3});
  CHECK_THROWS_AS(ops::conv2d_forward(x, w, b_bad, y.view(), {}, ws), shape_error);
  auto dw_bad = tensor<float>::zeros({4, 3, 1, 1});
  CHECK_THROWS_WITH(ops::conv2d_backward(x, w, y, {}, dw_bad.view(), {}, {}, ws),
                    Catch::Contains("conv2d_backward: dw"));
  auto w_rect = tensor<float>::zeros({4, 3, 3, 1});
  CHECK_THROWS_AS(ops::conv2d_forward(x, w_rect, b, y.view(), {}, ws), shape_error);
  CHECK_THROWS_AS(ops::conv2d_forward(x, w, b, y.view(), {0, 1}, ws), value_error);
}

TEST_CASE("group norm: hand values on a tiny tensor", "[ops][group_norm]") {
  // Two groups of two channels with two values each. Group 0 holds {1, 3, 1, 3}: mean 2,
  // variance 1; group 1 holds {10, 10, 10, 14}: mean 11, variance 3.
  auto x = tensor<double>::from({1, 4, 2}, {1, 3, 1, 3, 10, 10, 10, 14});
  auto gamma = tensor<double>::from({4}, {1, 2, 1, -1});
  auto beta = tensor<double>::from({4}, {0, 0.5, 0, 1});
  tensor<double> y({1, 4, 2}), mean({1, 2}), rstd({1, 2});
  const double eps = 1e-5;
  ops::group_norm_forward(x, gamma, beta, 2, eps, y.view(), mean, rstd);
  const double r0 = 1 / std::sqrt(1 + eps), r1 = 1 / std::sqrt(3 + eps);
  CHECK(mean[0] == Approx(2).epsilon(1e-14));
  CHECK(mean[1] == Approx(11).epsilon(1e-14));
  CHECK(rstd[0] == Approx(r0).epsilon(1e-14));
  CHECK(rstd[1] == Approx(r1).epsilon(1e-14));
  const double expected[] = {-r0, r0, 2 * -r0 + 0.5, 2 * r0 + 0.5,
                             -r1, -r1, r1 + 1, -3 * r1 + 1};
  for (int i = 0; i < 8; ++i) CHECK(y[i] == Approx(expected[i]).epsilon(1e-13));
}

TEST_CASE("group norm: a large mean does not spoil the variance; float agrees", "[ops][group_norm]") {
  rng r(111);
  auto x = randn({2, 8, 6, 6}, r);
  for (auto& v : x) v += 1000;
  auto gamma = randn({8}, r);
  auto beta = randn({8}, r);
  tensor<double> y(x.shape()), mean({2, 4}), rstd({2, 4});
  ops::group_norm_forward(x, gamma, beta, 4, 1e-5, y.view(), mean, rstd);
  auto xf = cast<float>(x), gf = cast<float>(gamma), bf = cast<float>(beta);
  tensor<float> yf(x.shape()), meanf({2, 4}), rstdf({2, 4});
  ops::group_norm_forward(xf, gf, bf, 4, 1e-5, yf.view(), meanf, rstdf);
  // float input carries 1000 ± 3 with ~6e-5 resolution: relative error ~1e-4 at most
  CHECK(max_abs_diff(yf, y) < 2e-3);
  // per group, the normalised values have zero mean and unit variance
  for (std::int64_t n = 0; n < 2; ++n)
    for (int g = 0; g < 4; ++g) {
      double s = 0, s2 = 0;
      for (int c = 2 * g; c < 2 * g + 2; ++c)
        for (int i = 0; i < 36; ++i) {
          const double xh = (x[(n * 8 + c) * 36 + i] - mean[n * 4 + g]) * rstd[n * 4 + g];
          s += xh;
          s2 += xh * xh;
        }
      CHECK(std::abs(s / 72) < 1e-12);
      CHECK(s2 / 72 == Approx(1.0).epsilon(1e-4));  // var/(var+eps)
    }
}

TEST_CASE("group norm rejects bad groups and shapes", "[ops][group_norm][errors]") {
  auto x = tensor<float>::zeros({2, 6, 4});
  auto g = tensor<float>::zeros({6});
  tensor<float> y(x.shape()), m({2, 4}), s({2, 4});
  CHECK_THROWS_WITH(ops::group_norm_forward(x, g, g, 4, 1e-5, y.view(), m, s),
                    Catch::Contains("group_norm_forward") && Catch::Contains("4 groups"));
  auto g_bad = tensor<float>::zeros({5});
  tensor<float> m2({2, 2}), s2({2, 2});
  CHECK_THROWS_WITH(ops::group_norm_forward(x, g_bad, g, 2, 1e-5, y.view(), m2, s2),
                    Catch::Contains("group_norm_forward: gamma"));
  CHECK_THROWS_WITH(ops::group_norm_backward(x, g, m2, s2, y, 2, y.view(), g_bad, {}),
                    Catch::Contains("group_norm_backward: dgamma"));
}

namespace {
// Attention per head written from the definition, in the legacy q|k|v-per-head layout.
void naive_attention(const tensor<double>& qkv, int heads, tensor<double>& y) {
  const std::int64_t B = qkv.size(0), C = qkv.size(1) / 3, T = qkv.size(2), ch = C / heads;
  const double scale = std::pow(static_cast<double>(ch), -0.25);
  for (std::int64_t b = 0; b < B; ++b)
    for (int h = 0; h < heads; ++h) {
      // rows of head h inside image b: [h·3ch, (h+1)·3ch) of the 3C rows
      auto q = [&](std::int64_t c, std::int64_t t) { return qkv[(b * 3 * C + h * 3 * ch + c) * T + t]; };
      auto k = [&](std::int64_t c, std::int64_t t) { return qkv[(b * 3 * C + h * 3 * ch + ch + c) * T + t]; };
      auto v = [&](std::int64_t c, std::int64_t t) { return qkv[(b * 3 * C + h * 3 * ch + 2 * ch + c) * T + t]; };
      for (std::int64_t t = 0; t < T; ++t) {
        std::vector<double> w(T);
        double mx = -1e300;
        for (std::int64_t s = 0; s < T; ++s) {
          double d = 0;
          for (std::int64_t c = 0; c < ch; ++c) d += (q(c, t) * scale) * (k(c, s) * scale);
          w[s] = d;
          mx = std::max(mx, d);
        }
        double z = 0;
        for (auto& e : w) z += (e = std::exp(e - mx));
        for (std::int64_t c = 0; c < ch; ++c) {
          double a = 0;
          for (std::int64_t s = 0; s < T; ++s) a += v(c, s) * w[s] / z;
          y[(b * C + h * ch + c) * T + t] = a;
        }
      }
    }
}
}  // namespace

TEST_CASE("attention matches a naive per-head implementation; float agrees", "[ops][attention]") {
  rng r(121);
  for (int heads : {1, 4}) {
    INFO("heads " << heads);
    const std::int64_t B = 2, C = 8, T = 12;
    auto qkv = randn({B, 3 * C, T}, r, 2.0);
    tensor<double> y({B, C, T}), probs({B * heads, T, T}), expected({B, C, T});
    workspace<cpu> ws;
    ops::attention_forward(qkv, heads, y.view(), probs, ws);
    naive_attention(qkv, heads, expected);
    CHECK(max_abs_diff(y, expected) < 1e-12);
    for (std::int64_t row = 0; row < B * heads * T; ++row) {
      double s = 0;
      for (std::int64_t j = 0; j < T; ++j) s += probs[row * T + j];
      CHECK(s == Approx(1.0).epsilon(1e-13));
    }
    auto qf = cast<float>(qkv);
    tensor<float> yf({B, C, T}), pf({B * heads, T, T});
    ops::attention_forward(qf, heads, yf.view(), pf, ws);
    CHECK(max_abs_diff(yf, expected) < 1e-5 * std::max(1.0, max_abs(expected)));

    auto dy = randn({B, C, T}, r);
    tensor<double> dqkv(qkv.shape());
    ops::attention_backward(qkv, probs, dy, heads, dqkv.view(), ws);
    auto dyf = cast<float>(dy);
    tensor<float> dqkvf(qkv.shape());
    ops::attention_backward(qf, pf, dyf, heads, dqkvf.view(), ws);
    CHECK(max_abs_diff(dqkvf, dqkv) < 1e-5 * std::max(1.0, max_abs(dqkv)));
  }
}

TEST_CASE("attention: large scores stay finite (max subtraction)", "[ops][attention]") {
  tensor<float> qkv({1, 3, 2});
  // ch = 1: scores s·t = q_t·k_s; 100·100 overflows exp without the max shift
  float vals[] = {100, -100, 100, 90, 1, 2};
  for (int i = 0; i < 6; ++i) qkv[i] = vals[i];
  tensor<float> y({1, 1, 2}), probs({1, 2, 2});
  workspace<cpu> ws;
  ops::attention_forward(qkv, 1, y.view(), probs, ws);
  CHECK(std::isfinite(y[0]));
  CHECK(y[0] == Approx(1.0f));  // query 0 attends to key 0 (10000 vs 9000)
  CHECK(y[1] == Approx(2.0f));  // query 1 (−100) attends to key 1
}

TEST_CASE("attention workspace reuse and shape errors", "[ops][attention][errors][workspace]") {
  rng r(122);
  auto qkv = randn<float>({2, 24, 16}, r);
  tensor<float> y({2, 8, 16}), probs({8, 16, 16}), dqkv(qkv.shape());
  workspace<cpu> ws;
  ops::attention_forward(qkv, 4, y.view(), probs, ws);
  ops::attention_backward(qkv, probs, y, 4, dqkv.view(), ws);
  const auto allocations = ws.allocations();
  ops::attention_forward(qkv, 4, y.view(), probs, ws);
  ops::attention_backward(qkv, probs, y, 4, dqkv.view(), ws);
  CHECK(ws.allocations() == allocations);
  tensor<float> probs_bad({2, 16, 16});
  CHECK_THROWS_WITH(ops::attention_forward(qkv, 4, y.view(), probs_bad, ws),
                    Catch::Contains("attention_forward: probs"));
  CHECK_THROWS_WITH(ops::attention_forward(qkv, 5, y.view(), probs, ws),
                    Catch::Contains("attention_forward") && Catch::Contains("3·heads"));
}

TEST_CASE("timestep embedding in closed form", "[ops][timestep_embedding]") {
  auto t = tensor<double>::from({2}, {0.0, 1.0});
  tensor<double> emb({2, 4});
  ops::timestep_embedding(t, 4, 10.0, emb.view());
  // t = 0: cos 0 = 1, sin 0 = 0
  CHECK(emb[0] == 1.0);
  CHECK(emb[1] == 1.0);
  CHECK(emb[2] == 0.0);
  CHECK(emb[3] == 0.0);
  // t = 1, dim 4: f = [1, 10^(-1/2)]
  const double f1 = 1 / std::sqrt(10.0);
  CHECK(emb[4] == Approx(std::cos(1.0)).epsilon(1e-15));
  CHECK(emb[5] == Approx(std::cos(f1)).epsilon(1e-15));
  CHECK(emb[6] == Approx(std::sin(1.0)).epsilon(1e-15));
  CHECK(emb[7] == Approx(std::sin(f1)).epsilon(1e-15));
  // odd dim: a zero column at the end
  tensor<float> tf({1}), ef({1, 5});
  tf[0] = 1.0f;
  ops::timestep_embedding(tf, 5, 10.0, ef.view());
  CHECK(ef[0] == Approx(std::cos(1.0)));
  CHECK(ef[1] == Approx(std::cos(f1)));
  CHECK(ef[2] == Approx(std::sin(1.0)));
  CHECK(ef[3] == Approx(std::sin(f1)));
  CHECK(ef[4] == 0.0f);
  CHECK_THROWS_WITH(ops::timestep_embedding(tf, 4, 10.0, ef.view()),
                    Catch::Contains("timestep_embedding: emb"));
}

TEST_CASE("elementwise ops: values, aliasing, float agreement", "[ops][elementwise]") {
  auto x = tensor<double>::from({1, 1, 1, 4}, {-2.0, 0.0, 0.5, 30.0});
  tensor<double> y(x.shape());
  ops::silu_forward(x, y.view());
  CHECK(y[0] == Approx(-2.0 / (1 + std::exp(2.0))).epsilon(1e-15));
  CHECK(y[1] == 0.0);
  CHECK(y[2] == Approx(0.5 / (1 + std::exp(-0.5))).epsilon(1e-15));
  CHECK(y[3] == Approx(30.0).epsilon(1e-12));
  rng r(131);
  auto xd = randn({3, 5, 7, 9}, r, 6.0);
  auto xf = cast<float>(xd);
  tensor<double> yd(xd.shape());
  ops::silu_forward(xd, yd.view());
  ops::silu_forward(xf, xf.view());  // in place
  CHECK(max_abs_diff(xf, yd) < 1e-5);
  auto dyd = randn(xd.shape(), r);
  auto dyf = cast<float>(dyd);
  tensor<double> dxd(xd.shape());
  ops::silu_backward(xd, dyd, dxd.view());
  auto xf2 = cast<float>(xd);
  ops::silu_backward(xf2, dyf, dyf.view());  // dx aliases dy
  CHECK(max_abs_diff(dyf, dxd) < 1e-5);
  // extreme arguments stay finite in float
  auto ext = tensor<float>::from({4}, {-1000.f, -88.f, 88.f, 1000.f});
  tensor<float> ey({4});
  ops::silu_forward(ext, ey.view());
  for (float v : ey) CHECK(std::isfinite(v));
  CHECK(std::abs(ey[0]) < 1e-30f);
  CHECK(ey[3] == 1000.f);

  ops::tanh_forward(x, y.view());
  CHECK(y[2] == Approx(std::tanh(0.5)).epsilon(1e-15));

  auto a = tensor<double>::from({2, 2}, {1, 2, 3, 4});
  auto b = tensor<double>::from({2, 2}, {10, 20, 30, 40});
  ops::add_forward(a, b, a.view());  // aliases a
  CHECK(a[3] == 44.0);
  tensor<double> bad({4});
  CHECK_THROWS_WITH(ops::add_forward(a, bad, a.view()), Catch::Contains("add_forward: b"));

  auto h = tensor<double>::from({1, 2, 1, 2}, {1, 2, 3, 4});
  auto e = tensor<double>::from({1, 2}, {10, 100});
  ops::add_channel_bias_forward(h.view(), e);
  CHECK(h[0] == 11.0);
  CHECK(h[1] == 12.0);
  CHECK(h[2] == 103.0);
  CHECK(h[3] == 104.0);
  tensor<double> de({1, 2});
  ops::add_channel_bias_backward(h, de.view());
  CHECK(de[0] == 23.0);
  CHECK(de[1] == 207.0);
  tensor<double> e_bad({2, 1});
  CHECK_THROWS_WITH(ops::add_channel_bias_forward(h.view(), e_bad),
                    Catch::Contains("add_channel_bias_forward: e"));
}

TEST_CASE("the vectorised float exp is accurate over the whole range", "[ops][math]") {
  double worst = 0;
  for (double x = -87.0; x <= 88.0; x += 0.001) {
    const float xf = static_cast<float>(x);
    const double exact = std::exp(static_cast<double>(xf));
    worst = std::max(worst, std::abs(ops::cpu_kernels::fast_exp(xf) - exact) / exact);
  }
  CHECK(worst < 4e-7);  // a few ulp
  CHECK(ops::cpu_kernels::fast_exp(-1000.0f) < 1e-37f);
  CHECK(std::isfinite(ops::cpu_kernels::fast_exp(1000.0f)));
}

TEST_CASE("upsample and concat values", "[ops][upsample][concat]") {
  auto x = tensor<float>::from({1, 1, 2, 2}, {1, 2, 3, 4});
  tensor<float> y({1, 1, 4, 4});
  ops::upsample_nearest2x_forward(x, y.view());
  const float expected[] = {1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4};
  for (int i = 0; i < 16; ++i) CHECK(y[i] == expected[i]);
  tensor<float> dx({1, 1, 2, 2});
  ops::upsample_nearest2x_backward(y, dx.view());
  CHECK(dx[0] == 4.f);
  CHECK(dx[3] == 16.f);
  tensor<float> y_bad({1, 1, 4, 3});
  CHECK_THROWS_WITH(ops::upsample_nearest2x_forward(x, y_bad.view()),
                    Catch::Contains("upsample_nearest2x_forward: y"));

  auto a = tensor<float>::from({2, 1, 1, 2}, {1, 2, 3, 4});
  auto b = tensor<float>::from({2, 2, 1, 2}, {5, 6, 7, 8, 9, 10, 11, 12});
  tensor<float> c({2, 3, 1, 2});
  ops::concat_channels_forward(a, b, c.view());
  const float ce[] = {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12};
  for (int i = 0; i < 12; ++i) CHECK(c[i] == ce[i]);
  auto b_bad = tensor<float>::zeros({2, 2, 2, 1});
  CHECK_THROWS_WITH(ops::concat_channels_forward(a, b_bad, c.view()),
                    Catch::Contains("concat_channels_forward"));
}

TEST_CASE("linear forward values and shape errors", "[ops][linear]") {
  auto x = tensor<double>::from({2, 3}, {1, 2, 3, 4, 5, 6});
  auto w = tensor<double>::from({2, 3}, {1, 0, -1, 0.5, 0.5, 0.5});
  auto b = tensor<double>::from({2}, {10, 20});
  tensor<double> y({2, 2});
  ops::linear_forward(x, w, b, y.view());
  CHECK(y[0] == 8.0);    // 1 − 3 + 10
  CHECK(y[1] == 23.0);   // 3 + 20
  CHECK(y[2] == 8.0);    // 4 − 6 + 10
  CHECK(y[3] == 27.5);   // 7.5 + 20
  auto w_bad = tensor<double>::zeros({2, 4});
  CHECK_THROWS_WITH(ops::linear_forward(x, w_bad, b, y.view()),
                    Catch::Contains("linear_forward: w has shape [2, 4]"));
}
