// Forward values of the Probabilistic U-Net's ops (ReLU, 2×2 average pooling, bilinear ×2
// up-sampling, spatial mean, BCE with logits, Gaussian latents) against independent
// computations: hand values, closed forms, naive formulas and a literal port of PyTorch's
// bilinear index maths; aliasing, float agreement and shape errors.
#include "ops_test_util.hpp"

#include <ambiseg/ops/all.hpp>

#include <cmath>
#include <limits>
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

// PyTorch's upsample_bilinear2d index maths (ATen UpSample.h: area_pixel_compute_scale,
// area_pixel_compute_source_index, compute_source_index_and_lambda), written out literally,
// with scale_factor = 2 given (so 1/scale = ½ when align_corners is false).
struct torch_tap {
  std::int64_t i0, i1;
  double l0, l1;
};
torch_tap torch_bilinear_tap(std::int64_t dst, std::int64_t in, bool align_corners) {
  const std::int64_t out = 2 * in;
  double real;
  if (align_corners) {
    const double scale = out > 1 ? static_cast<double>(in - 1) / static_cast<double>(out - 1) : 0.0;
    real = scale * static_cast<double>(dst);
  } else {
    real = 0.5 * (static_cast<double>(dst) + 0.5) - 0.5;
    if (real < 0) real = 0;
  }
  torch_tap t;
  t.i0 = static_cast<std::int64_t>(real);
  t.i1 = t.i0 + (t.i0 < in - 1 ? 1 : 0);
  t.l1 = std::min(std::max(real - static_cast<double>(t.i0), 0.0), 1.0);
  t.l0 = 1.0 - t.l1;
  return t;
}

// Forward by PyTorch's taps; backward as PyTorch computes it, a scatter of each output's
// gradient onto its four inputs (independent of the gather the op uses).
tensor<double> torch_bilinear_forward(const tensor<double>& x, bool ac) {
  const std::int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  tensor<double> y({n, c, 2 * h, 2 * w});
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t i = 0; i < 2 * h; ++i)
        for (std::int64_t j = 0; j < 2 * w; ++j) {
          const torch_tap th = torch_bilinear_tap(i, h, ac), tw = torch_bilinear_tap(j, w, ac);
          const auto& X = x;
          auto at = [&](std::int64_t r, std::int64_t q) {
            return X[((b * c + ch) * h + r) * w + q];
          };
          y.at(b, ch, i, j) = th.l0 * (tw.l0 * at(th.i0, tw.i0) + tw.l1 * at(th.i0, tw.i1)) +
                              th.l1 * (tw.l0 * at(th.i1, tw.i0) + tw.l1 * at(th.i1, tw.i1));
        }
  return y;
}
tensor<double> torch_bilinear_backward(const tensor<double>& dy, bool ac) {
  const std::int64_t n = dy.size(0), c = dy.size(1), h = dy.size(2) / 2, w = dy.size(3) / 2;
  auto dx = tensor<double>::zeros({n, c, h, w});
  for (std::int64_t b = 0; b < n; ++b)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t i = 0; i < 2 * h; ++i)
        for (std::int64_t j = 0; j < 2 * w; ++j) {
          const torch_tap th = torch_bilinear_tap(i, h, ac), tw = torch_bilinear_tap(j, w, ac);
          const double g = dy[((b * c + ch) * 2 * h + i) * 2 * w + j];
          dx.at(b, ch, th.i0, tw.i0) += th.l0 * tw.l0 * g;
          dx.at(b, ch, th.i0, tw.i1) += th.l0 * tw.l1 * g;
          dx.at(b, ch, th.i1, tw.i0) += th.l1 * tw.l0 * g;
          dx.at(b, ch, th.i1, tw.i1) += th.l1 * tw.l1 * g;
        }
  return dx;
}

}  // namespace

TEST_CASE("relu: values, NaN, aliasing, float agreement, shape errors", "[ops][relu]") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  auto x = tensor<double>::from({1, 1, 1, 6}, {-2.0, -0.0, 0.0, 0.5, 3.0, nan});
  tensor<double> y(x.shape());
  ops::relu_forward(x, y.view());
  CHECK(y[0] == 0.0);
  CHECK(y[1] == 0.0);
  CHECK(y[2] == 0.0);
  CHECK(y[3] == 0.5);
  CHECK(y[4] == 3.0);
  CHECK(std::isnan(y[5]));  // a diverging network shows, as with torch.relu
  auto dy = tensor<double>::from({1, 1, 1, 6}, {1, 2, 3, 4, 5, 6});
  tensor<double> dx(x.shape());
  ops::relu_backward(y, dy, dx.view());
  const double expected[] = {0, 0, 0, 4, 5, 0};
  for (int i = 0; i < 6; ++i) CHECK(dx[i] == expected[i]);

  rng r(901);
  auto xd = randn({2, 3, 4, 5}, r, 2.0);
  auto xf = cast<float>(xd);
  tensor<double> yd(xd.shape());
  ops::relu_forward(xd, yd.view());
  ops::relu_forward(xf, xf.view());  // in place
  CHECK(max_abs_diff(xf, yd) < 1e-6);
  auto gd = randn(xd.shape(), r);
  auto gf = cast<float>(gd);
  tensor<double> dxd(xd.shape());
  ops::relu_backward(yd, gd, dxd.view());
  ops::relu_backward(xf, gf, gf.view());  // dx aliases dy
  CHECK(max_abs_diff(gf, dxd) < 1e-6);
  tensor<double> bad({1, 1, 1, 5});
  CHECK_THROWS_WITH(ops::relu_forward(x, bad.view()), Catch::Contains("relu_forward: y"));
  CHECK_THROWS_WITH(ops::relu_backward(y, bad, dx.view()), Catch::Contains("relu_backward: dy"));
}

TEST_CASE("avg_pool2x2: hand values, a direct loop, odd extents refused", "[ops][avg_pool]") {
  auto x = tensor<double>::from({1, 1, 2, 4}, {1, 2, 3, 4, 5, 6, 7, 8});
  tensor<double> y({1, 1, 1, 2});
  ops::avg_pool2x2_forward(x, y.view());
  CHECK(y[0] == 3.5);  // (1 + 2 + 5 + 6)/4
  CHECK(y[1] == 5.5);  // (3 + 4 + 7 + 8)/4
  auto dy = tensor<double>::from({1, 1, 1, 2}, {4, 8});
  tensor<double> dx(x.shape());
  ops::avg_pool2x2_backward(dy, dx.view());
  const double dx_expected[] = {1, 1, 2, 2, 1, 1, 2, 2};
  for (int i = 0; i < 8; ++i) CHECK(dx[i] == dx_expected[i]);

  rng r(902);
  auto xr = randn({2, 3, 6, 8}, r);
  tensor<double> yr({2, 3, 3, 4});
  ops::avg_pool2x2_forward(xr, yr.view());
  double worst = 0;
  for (std::int64_t n = 0; n < 2; ++n)
    for (std::int64_t c = 0; c < 3; ++c)
      for (std::int64_t i = 0; i < 3; ++i)
        for (std::int64_t j = 0; j < 4; ++j) {
          const double m = (xr.at(n, c, 2 * i, 2 * j) + xr.at(n, c, 2 * i, 2 * j + 1) +
                            xr.at(n, c, 2 * i + 1, 2 * j) + xr.at(n, c, 2 * i + 1, 2 * j + 1)) /
                           4;
          worst = std::max(worst, std::abs(yr.at(n, c, i, j) - m));
        }
  CHECK(worst < 1e-15);
  auto xf = cast<float>(xr);
  tensor<float> yf({2, 3, 3, 4});
  ops::avg_pool2x2_forward(xf, yf.view());
  CHECK(max_abs_diff(yf, yr) < 1e-6);

  tensor<double> odd_h({1, 2, 3, 4}), odd_w({1, 2, 4, 5}), y_odd({1, 2, 1, 2});
  CHECK_THROWS_AS(ops::avg_pool2x2_forward(odd_h, y_odd.view()), shape_error);
  CHECK_THROWS_WITH(ops::avg_pool2x2_forward(odd_h, y_odd.view()),
                    Catch::Contains("avg_pool2x2_forward: x") && Catch::Contains("even H and W"));
  CHECK_THROWS_WITH(ops::avg_pool2x2_backward(y_odd, odd_w.view()),
                    Catch::Contains("avg_pool2x2_backward: dx") && Catch::Contains("even"));
  tensor<double> y_bad({1, 1, 1, 3});
  CHECK_THROWS_WITH(ops::avg_pool2x2_forward(x, y_bad.view()),
                    Catch::Contains("avg_pool2x2_forward: y"));
  CHECK_THROWS_WITH(ops::avg_pool2x2_backward(y_bad, dx.view()),
                    Catch::Contains("avg_pool2x2_backward: dy"));
}

TEST_CASE("bilinear 2x: PyTorch's documented values for both align_corners", "[ops][upsample]") {
  // nn.Upsample's documentation: torch.arange(1, 5).view(1, 1, 2, 2), scale_factor=2.
  auto x = tensor<float>::from({1, 1, 2, 2}, {1, 2, 3, 4});
  tensor<float> y({1, 1, 4, 4});
  ops::upsample_bilinear2x_forward(x, y.view(), false);
  const float half_pixel[] = {1.0f, 1.25f, 1.75f, 2.0f, 1.5f, 1.75f, 2.25f, 2.5f,
                              2.5f, 2.75f, 3.25f, 3.5f, 3.0f, 3.25f, 3.75f, 4.0f};
  for (int i = 0; i < 16; ++i) CHECK(y[i] == half_pixel[i]);  // weights ¼, ¾: exact
  ops::upsample_bilinear2x_forward(x, y.view(), true);
  const double corners[] = {1.0,     4.0 / 3, 5.0 / 3, 2.0,      5.0 / 3, 2.0,
                            7.0 / 3, 8.0 / 3, 7.0 / 3, 8.0 / 3,  3.0,     10.0 / 3,
                            3.0,     10.0 / 3, 11.0 / 3, 4.0};
  for (int i = 0; i < 16; ++i) CHECK(y[i] == Approx(corners[i]).epsilon(1e-6));
}

TEST_CASE("bilinear 2x, asymmetric: TensorFlow 1's legacy resize_bilinear by hand", "[ops][upsample]") {
  // Per axis out[2k] = in[k], out[2k+1] = ½(in[k] + in[k+1]), the last output = in[n−1];
  // rows first, then columns: [[1, 2], [3, 4]] → the 4×4 below (PHiSeg's up-sampling).
  auto x = tensor<double>::from({1, 1, 2, 2}, {1, 2, 3, 4});
  tensor<double> y({1, 1, 4, 4});
  ops::upsample_bilinear2x_forward(x, y.view(), ops::bilinear_mode::asymmetric);
  const double tf[] = {1.0, 1.5, 2.0, 2.0, 2.0, 2.5, 3.0, 3.0, 3.0, 3.5, 4.0, 4.0, 3.0, 3.5, 4.0, 4.0};
  for (int i = 0; i < 16; ++i) CHECK(y[i] == tf[i]);
  // The backward of a one at every output: each input's total weight (1 + ½ + ½ per axis
  // inside, 1 + ½ + ½ + … at the end: the last input collects 2 per axis).
  tensor<double> ones({1, 1, 4, 4}), dx({1, 1, 2, 2});
  ones.fill(1.0);
  ops::upsample_bilinear2x_backward(ones, dx.view(), ops::bilinear_mode::asymmetric);
  CHECK(dx[0] == 1.5 * 1.5);
  CHECK(dx[1] == 1.5 * 2.5);
  CHECK(dx[3] == 2.5 * 2.5);
}

TEST_CASE("bilinear 2x reproduces an affine image at the source positions", "[ops][upsample]") {
  // x[h, w] = h + 10·w is linear in each axis, so y = s_h + 10·s_w with the source positions
  // s = max((i + ½)/2 − ½, 0) clamped to in − 1 (half-pixel) or i·(in − 1)/(2·in − 1).
  for (const bool ac : {false, true})
    for (const auto& hw : {std::pair<std::int64_t, std::int64_t>{5, 3}, {1, 4}, {2, 1}}) {
      const auto [h, w] = hw;
      INFO("align_corners " << ac << ", " << h << "x" << w);
      tensor<double> x({1, 1, h, w});
      for (std::int64_t i = 0; i < h; ++i)
        for (std::int64_t j = 0; j < w; ++j) x.at(0, 0, i, j) = static_cast<double>(i + 10 * j);
      tensor<double> y({1, 1, 2 * h, 2 * w});
      ops::upsample_bilinear2x_forward(x, y.view(), ac);
      auto source = [&](std::int64_t o, std::int64_t in) {
        if (ac) return static_cast<double>(o) * static_cast<double>(in - 1) / (2.0 * in - 1.0);
        return std::min(std::max(o / 2.0 - 0.25, 0.0), static_cast<double>(in - 1));
      };
      double worst = 0;
      for (std::int64_t i = 0; i < 2 * h; ++i)
        for (std::int64_t j = 0; j < 2 * w; ++j)
          worst = std::max(worst, std::abs(y.at(0, 0, i, j) - (source(i, h) + 10 * source(j, w))));
      CHECK(worst < 1e-12);
    }
}

TEST_CASE("bilinear 2x: align_corners keeps the corners exactly; ones back to 4 without",
          "[ops][upsample]") {
  rng r(903);
  for (const shape s : {shape{2, 3, 5, 7}, shape{1, 2, 1, 3}, shape{1, 1, 4, 1}}) {
    INFO("x " << s);
    auto x = cast<float>(randn(s, r));
    const std::int64_t h = s[2], w = s[3];
    tensor<float> y({s[0], s[1], 2 * h, 2 * w});
    ops::upsample_bilinear2x_forward(x, y.view(), true);
    for (std::int64_t n = 0; n < s[0]; ++n)
      for (std::int64_t c = 0; c < s[1]; ++c) {
        CHECK(y.at(n, c, 0, 0) == x.at(n, c, 0, 0));
        CHECK(y.at(n, c, 0, 2 * w - 1) == x.at(n, c, 0, w - 1));
        CHECK(y.at(n, c, 2 * h - 1, 0) == x.at(n, c, h - 1, 0));
        CHECK(y.at(n, c, 2 * h - 1, 2 * w - 1) == x.at(n, c, h - 1, w - 1));
      }
    // Half-pixel: each input row (and column) receives a total weight of 2 — ¼ + ¾ + ¾ + ¼
    // inside, 1 + ¾ + ¼ at the clamped borders — so ones come back as 4 everywhere.
    tensor<float> ones({s[0], s[1], 2 * h, 2 * w}), dx(s);
    ones.fill(1.0f);
    ops::upsample_bilinear2x_backward(ones, dx.view(), false);
    for (float v : dx) CHECK(v == 4.0f);
  }
}

TEST_CASE("bilinear 2x matches PyTorch's index maths forward and its scatter backward",
          "[ops][upsample]") {
  rng r(904);
  for (const bool ac : {false, true})
    for (const shape s : {shape{2, 3, 5, 4}, shape{1, 2, 1, 3}, shape{1, 1, 2, 1},
                          shape{1, 1, 9, 6}, shape{1, 1, 3, 3}}) {
      INFO("align_corners " << ac << ", x " << s);
      auto x = randn(s, r);
      auto dy = randn({s[0], s[1], 2 * s[2], 2 * s[3]}, r);
      tensor<double> y(dy.shape()), dx(s);
      ops::upsample_bilinear2x_forward(x, y.view(), ac);
      ops::upsample_bilinear2x_backward(dy, dx.view(), ac);
      CHECK(max_abs_diff(y, torch_bilinear_forward(x, ac)) < 1e-14);
      CHECK(max_abs_diff(dx, torch_bilinear_backward(dy, ac)) < 1e-13);
      auto xf = cast<float>(x), dyf = cast<float>(dy);
      tensor<float> yf(dy.shape()), dxf(s);
      ops::upsample_bilinear2x_forward(xf, yf.view(), ac);
      ops::upsample_bilinear2x_backward(dyf, dxf.view(), ac);
      CHECK(max_abs_diff(yf, y) < 1e-5);
      CHECK(max_abs_diff(dxf, dx) < 1e-5);
    }
  tensor<double> x({1, 1, 2, 2}), y_bad({1, 1, 4, 3}), dx_bad({1, 1, 2});
  CHECK_THROWS_WITH(ops::upsample_bilinear2x_forward(x, y_bad.view(), true),
                    Catch::Contains("upsample_bilinear2x_forward: y"));
  CHECK_THROWS_WITH(ops::upsample_bilinear2x_backward(y_bad, x.view(), false),
                    Catch::Contains("upsample_bilinear2x_backward: dy"));
  CHECK_THROWS_WITH(ops::upsample_bilinear2x_backward(y_bad, dx_bad.view(), false),
                    Catch::Contains("upsample_bilinear2x_backward: dx must have rank 4"));
}

TEST_CASE("spatial mean: hand values, double accumulation for float, errors",
          "[ops][spatial_mean]") {
  auto x = tensor<double>::from({1, 2, 2, 2}, {1, 2, 3, 4, 10, 20, 30, 40});
  tensor<double> y({1, 2});
  ops::spatial_mean_forward(x, y.view());
  CHECK(y[0] == 2.5);
  CHECK(y[1] == 25.0);
  auto dy = tensor<double>::from({1, 2}, {4, 8});
  tensor<double> dx(x.shape());
  ops::spatial_mean_backward(dy, dx.view());
  for (int i = 0; i < 4; ++i) CHECK(dx[i] == 1.0);
  for (int i = 4; i < 8; ++i) CHECK(dx[i] == 2.0);

  // 65536 copies of 0.1f: a float running sum drifts by ~1e-3 relative; in double the sum
  // is exact and the mean rounds back to 0.1f.
  tensor<float> xf({2, 1, 256, 256}), yf({2, 1});
  xf.fill(0.1f);
  ops::spatial_mean_forward(xf, yf.view());
  CHECK(yf[0] == 0.1f);
  CHECK(yf[1] == 0.1f);

  tensor<double> empty({1, 2, 0, 3}), y_empty({1, 2});
  CHECK_THROWS_WITH(ops::spatial_mean_forward(empty, y_empty.view()),
                    Catch::Contains("spatial_mean_forward: x") && Catch::Contains("no pixels"));
  tensor<double> y_bad({2, 1});
  CHECK_THROWS_WITH(ops::spatial_mean_forward(x, y_bad.view()),
                    Catch::Contains("spatial_mean_forward: y"));
  CHECK_THROWS_WITH(ops::spatial_mean_backward(y_bad, dx.view()),
                    Catch::Contains("spatial_mean_backward: dy"));
}

TEST_CASE("sigmoid cross-entropy: the naive formula, extreme logits, optional gradient",
          "[ops][sigmoid_cross_entropy]") {
  rng r(905);
  const shape s{3, 2, 4, 5};
  auto logits = randn(s, r, 4.0);
  tensor<double> targets(s);
  for (std::int64_t i = 0; i < targets.numel(); ++i)  // hard and soft labels
    targets[i] = i % 3 == 0 ? 0.0 : (i % 3 == 1 ? 1.0 : r.uniform());
  tensor<double> per_case({3}), dlogits(s);
  const double scale = 0.37;
  ops::sigmoid_cross_entropy_forward_backward(logits, targets, scale, per_case.view(),
                                              dlogits.view());
  const std::int64_t k = logits.numel() / 3;
  for (std::int64_t n = 0; n < 3; ++n) {
    long double sum = 0;
    for (std::int64_t j = n * k; j < (n + 1) * k; ++j) {
      const long double l = logits[j], y = targets[j];
      const long double p = 1 / (1 + std::exp(-l));
      sum += -(y * std::log(p) + (1 - y) * std::log(1 - p));
      CHECK(dlogits[j] ==
            Approx(static_cast<double>(scale * (p - y))).epsilon(1e-12).margin(1e-15));
    }
    CHECK(per_case[n] == Approx(static_cast<double>(sum)).epsilon(1e-12));
  }
  // Without the gradient: the same loss, dlogits untouched.
  tensor<double> per_case2({3});
  ops::sigmoid_cross_entropy_forward_backward(logits, targets, scale, per_case2.view(),
                                              tensor_view<double>{});
  CHECK(max_abs_diff(per_case, per_case2) == 0.0);
  // Float logits: the same per-case sums (each term in double), float gradients.
  auto lf = cast<float>(logits), tf = cast<float>(targets);
  tensor<double> pcf({3});
  tensor<float> df(s);
  ops::sigmoid_cross_entropy_forward_backward(lf, tf, scale, pcf.view(), df.view());
  for (std::int64_t n = 0; n < 3; ++n) CHECK(pcf[n] == Approx(per_case[n]).epsilon(1e-5));
  CHECK(max_abs_diff(df, dlogits) < 1e-6);

  // |l| = 1000 overflows exp in the naive form; the stable one gives |l| or 0.
  auto lx = tensor<float>::from({2, 2}, {1000.f, -1000.f, 1000.f, -1000.f});
  auto yx = tensor<float>::from({2, 2}, {1.f, 0.f, 0.f, 1.f});
  tensor<double> pcx({2});
  tensor<float> dx({2, 2});
  ops::sigmoid_cross_entropy_forward_backward(lx, yx, 1.0, pcx.view(), dx.view());
  CHECK(pcx[0] == 0.0);
  CHECK(pcx[1] == 2000.0);
  const float dx_expected[] = {0.f, 0.f, 1.f, -1.f};
  for (int i = 0; i < 4; ++i) CHECK(dx[i] == dx_expected[i]);
  // l = 0: log 2 per element whatever the target.
  auto l0 = tensor<double>::zeros({1, 3});
  auto y0 = tensor<double>::from({1, 3}, {0.0, 0.5, 1.0});
  tensor<double> pc0({1});
  ops::sigmoid_cross_entropy_forward_backward(l0, y0, 1.0, pc0.view(), tensor_view<double>{});
  CHECK(pc0[0] == Approx(3 * std::log(2.0)).epsilon(1e-15));

  const char* op = "sigmoid_cross_entropy_forward_backward";
  tensor<double> t_bad({3, 2, 4, 4}), pc_bad({4});
  CHECK_THROWS_WITH(ops::sigmoid_cross_entropy_forward_backward(logits, t_bad, 1.0, per_case.view(),
                                                                dlogits.view()),
                    Catch::Contains(std::string(op) + ": targets"));
  CHECK_THROWS_WITH(ops::sigmoid_cross_entropy_forward_backward(logits, targets, 1.0, pc_bad.view(),
                                                                dlogits.view()),
                    Catch::Contains(std::string(op) + ": per_case"));
  CHECK_THROWS_WITH(ops::sigmoid_cross_entropy_forward_backward(logits, targets, 1.0,
                                                                per_case.view(), t_bad.view()),
                    Catch::Contains(std::string(op) + ": dlogits"));
}

TEST_CASE("Gaussian latents: rsample and KL by hand, KL(p||p) = 0, accumulation, errors",
          "[ops][gaussian_latent]") {
  const double ln2 = std::log(2.0);
  auto mu = tensor<double>::from({2, 2}, {1.0, 0.0, -1.0, 3.0});
  auto ls = tensor<double>::from({2, 2}, {ln2, 0.0, -ln2, 0.0});
  auto eps = tensor<double>::from({2, 2}, {0.5, -1.5, 2.0, 0.0});
  tensor<double> z({2, 2});
  ops::diag_gaussian_rsample_forward(mu, ls, eps, z.view());
  const double z_expected[] = {2.0, -1.5, 0.0, 3.0};
  for (int i = 0; i < 4; ++i) CHECK(z[i] == Approx(z_expected[i]).margin(1e-15));
  auto dz = tensor<double>::from({2, 2}, {2.0, 1.0, 1.0, 1.0});
  auto dmu = tensor<double>::from({2, 2}, {1.0, 1.0, 1.0, 1.0});  // += onto these
  auto dls = tensor<double>::from({2, 2}, {1.0, 1.0, 1.0, 1.0});
  ops::diag_gaussian_rsample_backward(ls, eps, dz, dmu.view(), dls);
  CHECK(dmu[0] == 3.0);
  CHECK(dls[0] == Approx(1.0 + 2.0 * 2.0 * 0.5));  // dz·σ·eps
  CHECK(dls[1] == Approx(1.0 - 1.5));
  CHECK(dls[2] == Approx(1.0 + 0.5 * 2.0));
  ops::diag_gaussian_rsample_backward(ls, eps, dz, tensor_view<double>{}, dls);  // dmu not needed
  CHECK(dmu[0] == 3.0);
  CHECK(dls[0] == Approx(5.0));

  // KL of one dimension by hand: (mu_q, log σ_q, mu_p, log σ_p).
  //   (1, 0, 0, 0): ½;  (0, ln 2, 0, 0): −ln 2 + 4/2 − ½;  (0, 0, 2, ln 2): ln 2 + 5/8 − ½
  auto mq = tensor<double>::from({1, 3}, {1.0, 0.0, 0.0});
  auto lq = tensor<double>::from({1, 3}, {0.0, ln2, 0.0});
  auto mp = tensor<double>::from({1, 3}, {0.0, 0.0, 2.0});
  auto lp = tensor<double>::from({1, 3}, {0.0, 0.0, ln2});
  tensor<double> kl({1});
  ops::diag_gaussian_kl_forward_backward(mq, lq, mp, lp, 1.0, kl.view(), tensor_view<double>{},
                                         {}, {}, {});
  CHECK(kl[0] == Approx(0.5 + (1.5 - ln2) + (ln2 + 0.125)).epsilon(1e-14));

  // KL(p‖p) = 0 with zero gradients, even for large log σ (ratio formed as one exp).
  rng r(906);
  auto m = randn({3, 4}, r);
  auto l = randn({3, 4}, r);
  l[0] = 400.0;
  tensor<double> klp({3});
  auto g1 = tensor<double>::zeros({3, 4}), g2 = tensor<double>::zeros({3, 4});
  auto g3 = tensor<double>::zeros({3, 4}), g4 = tensor<double>::zeros({3, 4});
  ops::diag_gaussian_kl_forward_backward(m, l, m, l, 2.0, klp.view(), g1.view(), g2, g3, g4);
  for (double v : klp) CHECK(v == Approx(0.0).margin(1e-15));
  for (const auto* g : {&g1, &g2, &g3, &g4}) CHECK(max_abs(*g) < 1e-15);

  // Against PyTorch's kl_normal_normal: ½(var_ratio + t1 − 1 − log var_ratio) per dimension,
  // var_ratio = (σ_q/σ_p)², t1 = ((mu_q − mu_p)/σ_p)²; and the gradients accumulate.
  auto mu_q = randn({3, 5}, r), ls_q = randn({3, 5}, r, 0.5);
  auto mu_p = randn({3, 5}, r), ls_p = randn({3, 5}, r, 0.5);
  tensor<double> klr({3});
  auto dmq = randn({3, 5}, r);
  auto dmq0 = dmq.clone();
  ops::diag_gaussian_kl_forward_backward(mu_q, ls_q, mu_p, ls_p, 0.5, klr.view(), dmq.view(), {},
                                         {}, {});
  for (std::int64_t b = 0; b < 3; ++b) {
    double sum = 0;
    for (std::int64_t j = b * 5; j < (b + 1) * 5; ++j) {
      const double var_ratio = std::pow(std::exp(ls_q[j]) / std::exp(ls_p[j]), 2);
      const double t1 = std::pow((mu_q[j] - mu_p[j]) / std::exp(ls_p[j]), 2);
      sum += 0.5 * (var_ratio + t1 - 1 - std::log(var_ratio));
      CHECK(dmq[j] - dmq0[j] ==
            Approx(0.5 * (mu_q[j] - mu_p[j]) / std::exp(2 * ls_p[j])).epsilon(1e-12));
    }
    CHECK(klr[b] == Approx(sum).epsilon(1e-12));
  }

  const char* op = "diag_gaussian_kl_forward_backward";
  tensor<double> bad({3, 4}), kl_bad({2});
  CHECK_THROWS_WITH(ops::diag_gaussian_kl_forward_backward(mu_q, ls_q, bad, ls_p, 1.0, klr.view(),
                                                           dmq.view(), {}, {}, {}),
                    Catch::Contains(std::string(op) + ": mu_p"));
  CHECK_THROWS_WITH(ops::diag_gaussian_kl_forward_backward(mu_q, ls_q, mu_p, ls_p, 1.0,
                                                           kl_bad.view(), dmq.view(), {}, {}, {}),
                    Catch::Contains(std::string(op) + ": kl"));
  CHECK_THROWS_WITH(ops::diag_gaussian_kl_forward_backward(mu_q, ls_q, mu_p, ls_p, 1.0, klr.view(),
                                                           dmq.view(), {}, {}, bad),
                    Catch::Contains(std::string(op) + ": dlog_sigma_p"));
  CHECK_THROWS_WITH(ops::diag_gaussian_rsample_forward(mu_q, ls_q, bad, z.view()),
                    Catch::Contains("diag_gaussian_rsample_forward: eps"));
  CHECK_THROWS_WITH(ops::diag_gaussian_rsample_backward(ls_q, mu_q, dz, tensor_view<double>{}, {}),
                    Catch::Contains("diag_gaussian_rsample_backward: dz"));
}
