// Batch norm (ops/batch_norm.hpp), PyTorch's BatchNorm2d semantics: gradients by central
// differences in double, forward values against numbers worked out by hand and against a
// direct evaluation of the formulas (running statistics with the unbiased factor, inference,
// [N, C] input), and the refusal of bad arguments.
#include "ops_test_util.hpp"

#include <ambiseg/ops/all.hpp>

#include <cmath>
#include <limits>
#include <vector>

using namespace ambiseg;
using namespace ops_test;

namespace {

// Per-channel batch statistics of x [N, C, ...] by direct loops: mean, biased variance.
struct channel_stats {
  std::vector<double> mean, var;
  std::int64_t m = 0;
};
template <class T>
channel_stats direct_stats(const tensor<T>& x) {
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  channel_stats st{std::vector<double>(c, 0.0), std::vector<double>(c, 0.0), n * s};
  for (std::int64_t ch = 0; ch < c; ++ch) {
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < s; ++j) st.mean[ch] += x[(i * c + ch) * s + j];
    st.mean[ch] /= static_cast<double>(st.m);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < s; ++j) {
        const double d = x[(i * c + ch) * s + j] - st.mean[ch];
        st.var[ch] += d * d;
      }
    st.var[ch] /= static_cast<double>(st.m);
  }
  return st;
}

// y = (x − mean_c)/sqrt(var_c + eps)·γ_c + β_c element by element.
template <class T>
tensor<double> direct_normalise(const tensor<T>& x, const std::vector<double>& mean,
                                const std::vector<double>& var, const tensor<T>& gamma,
                                const tensor<T>& beta, double eps) {
  const std::int64_t n = x.size(0), c = x.size(1), s = x.numel() / (n * c);
  tensor<double> y(x.shape());
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t ch = 0; ch < c; ++ch)
      for (std::int64_t j = 0; j < s; ++j) {
        const std::int64_t k = (i * c + ch) * s + j;
        y[k] = (x[k] - mean[ch]) / std::sqrt(var[ch] + eps) * gamma[ch] + beta[ch];
      }
  return y;
}

}  // namespace

TEST_CASE("batch norm gradients (training forward: x, gamma, beta)", "[ops][batch_norm][grad]") {
  rng r(41);
  for (const shape xs : {shape{2, 3, 4, 5}, shape{3, 2, 1, 1}, shape{5, 3}, shape{1, 2, 3, 3}}) {
    for (const double eps : {1e-5, 1e-3}) {
      INFO("x " << xs << " eps " << eps);
      const std::int64_t c = xs[1];
      auto x = randn(xs, r, 2.0);
      for (auto& v : x) v += 0.7;  // a nonzero mean must cancel exactly
      auto gamma = randn({c}, r);
      auto beta = randn({c}, r);
      auto w = randn(xs, r);  // the loss weight: L = Σ w·y, so dL/dy = w
      tensor<double> y(xs), mean({c}), rstd({c});
      auto run_mean = tensor<double>::zeros({c});
      auto run_var = tensor<double>::zeros({c});
      auto loss = [&] {
        ops::batch_norm_forward_training(x, gamma, beta, eps, 0.1, y.view(), mean, rstd,
                                         run_mean, run_var);
        return dot(w, y);
      };
      loss();
      tensor<double> dx(xs);
      auto dgamma = randn({c}, r), dbeta = randn({c}, r);  // nonzero: they must accumulate
      const auto dgamma0 = dgamma.clone(), dbeta0 = dbeta.clone();
      ops::batch_norm_backward(x, gamma, mean, rstd, w, dx.view(), dgamma, dbeta);
      for (std::int64_t i = 0; i < c; ++i) {
        dgamma[i] -= dgamma0[i];
        dbeta[i] -= dbeta0[i];
      }
      check_gradient("bn x", x, dx, loss);
      check_gradient("bn gamma", gamma, dgamma, loss);
      check_gradient("bn beta", beta, dbeta, loss);

      // Optional outputs: dx alone, dγ alone, and dx written over dy in place.
      loss();
      tensor<double> dx_only(xs);
      ops::batch_norm_backward(x, gamma, mean, rstd, w, dx_only.view(), {}, {});
      CHECK(max_abs_diff(dx_only, dx) < 1e-12);
      auto dgamma_only = tensor<double>::zeros({c});
      ops::batch_norm_backward(x, gamma, mean, rstd, w, tensor_view<double>{}, dgamma_only, {});
      CHECK(max_abs_diff(dgamma_only, dgamma) < 1e-12);
      auto dy_inplace = w.clone();
      ops::batch_norm_backward(x, gamma, mean, rstd, dy_inplace, dy_inplace.view(), {}, {});
      CHECK(max_abs_diff(dy_inplace, dx) < 1e-12);
    }
  }
}

TEST_CASE("batch norm: hand values, running statistics after one and two steps",
          "[ops][batch_norm]") {
  // Channel 0 holds 1, 3, 5, 7: mean 4, biased variance 5, unbiased 20/3.
  // Channel 1 holds 0, 0, 2, −2: mean 0, biased variance 2, unbiased 8/3.
  const auto x = tensor<double>::from({2, 2, 1, 2}, {1, 3, 0, 0, 5, 7, 2, -2});
  const auto gamma = tensor<double>::from({2}, {2, 0.5});
  const auto beta = tensor<double>::from({2}, {1, -1});
  auto run_mean = tensor<double>::from({2}, {0.5, -1});
  auto run_var = tensor<double>::from({2}, {2, 3});
  const double eps = 1e-5, momentum = 0.1;
  tensor<double> y(x.shape()), mean({2}), rstd({2});
  ops::batch_norm_forward_training(x, gamma, beta, eps, momentum, y.view(), mean, rstd, run_mean,
                                   run_var);
  CHECK(mean[0] == Approx(4).epsilon(1e-15));
  CHECK(mean[1] == Approx(0).margin(1e-15));
  CHECK(rstd[0] == Approx(1 / std::sqrt(5 + eps)).epsilon(1e-14));
  CHECK(rstd[1] == Approx(1 / std::sqrt(2 + eps)).epsilon(1e-14));
  // y of channel 0 at x = 1: (1 − 4)/sqrt(5 + eps)·2 + 1; channel 1 at x = 2: 2/sqrt(2 + eps)·0.5 − 1
  CHECK(y[0] == Approx(-6 / std::sqrt(5 + eps) + 1).epsilon(1e-14));
  CHECK(y[6] == Approx(1 / std::sqrt(2 + eps) - 1).epsilon(1e-14));
  CHECK(y[2] == Approx(-1).epsilon(1e-14));  // x = 0 = the mean: y = β
  // running = 0.9·running + 0.1·batch, with the unbiased variance
  CHECK(run_mean[0] == Approx(0.9 * 0.5 + 0.1 * 4).epsilon(1e-15));
  CHECK(run_mean[1] == Approx(-0.9).epsilon(1e-15));
  CHECK(run_var[0] == Approx(0.9 * 2 + 0.1 * 20.0 / 3).epsilon(1e-15));
  CHECK(run_var[1] == Approx(0.9 * 3 + 0.1 * 8.0 / 3).epsilon(1e-15));
  const auto st1 = direct_stats(x);
  CHECK(max_abs_diff(y, direct_normalise(x, st1.mean, st1.var, gamma, beta, eps)) < 1e-14);

  // A second step on another batch (PHiSeg's settings this time), against the formula.
  rng r(42);
  auto x2 = randn({3, 2, 3, 4}, r, 3.0);
  for (auto& v : x2) v -= 2;
  tensor<double> y2(x2.shape());
  const double eps2 = 1e-3, momentum2 = 0.01;
  const double rm1[2] = {run_mean[0], run_mean[1]}, rv1[2] = {run_var[0], run_var[1]};
  ops::batch_norm_forward_training(x2, gamma, beta, eps2, momentum2, y2.view(), mean, rstd,
                                   run_mean, run_var);
  const auto st2 = direct_stats(x2);
  REQUIRE(st2.m == 36);
  for (int ch = 0; ch < 2; ++ch) {
    CHECK(run_mean[ch] == Approx(0.99 * rm1[ch] + 0.01 * st2.mean[ch]).epsilon(1e-14));
    CHECK(run_var[ch] == Approx(0.99 * rv1[ch] + 0.01 * st2.var[ch] * 36 / 35).epsilon(1e-14));
    CHECK(mean[ch] == Approx(st2.mean[ch]).epsilon(1e-14));
    CHECK(rstd[ch] == Approx(1 / std::sqrt(st2.var[ch] + eps2)).epsilon(1e-14));
  }
  CHECK(max_abs_diff(y2, direct_normalise(x2, st2.mean, st2.var, gamma, beta, eps2)) < 1e-13);

  // momentum 0 keeps the running statistics, 1 replaces them by the batch's.
  auto keep_mean = run_mean.clone(), keep_var = run_var.clone();
  ops::batch_norm_forward_training(x2, gamma, beta, eps2, 0.0, y2.view(), mean, rstd, keep_mean,
                                   keep_var);
  CHECK(max_abs_diff(keep_mean, run_mean) == 0);
  CHECK(max_abs_diff(keep_var, run_var) == 0);
  ops::batch_norm_forward_training(x2, gamma, beta, eps2, 1.0, y2.view(), mean, rstd, keep_mean,
                                   keep_var);
  CHECK(keep_mean[1] == Approx(st2.mean[1]).epsilon(1e-14));
  CHECK(keep_var[1] == Approx(st2.var[1] * 36 / 35).epsilon(1e-14));

  // Running statistics not tracked (both empty): the same y.
  tensor<double> y3(x2.shape());
  ops::batch_norm_forward_training(x2, gamma, beta, eps2, momentum2, y3.view(), mean, rstd, {}, {});
  CHECK(max_abs_diff(y3, y2) == 0);
}

TEST_CASE("batch norm: inference with given running statistics, in place", "[ops][batch_norm]") {
  rng r(43);
  const shape xs{3, 4, 5, 6};
  auto x = randn(xs, r, 2.0);
  auto gamma = randn({4}, r), beta = randn({4}, r), run_mean = randn({4}, r);
  auto run_var = tensor<double>::from({4}, {0.5, 1.0, 2.5, 0.01});
  const std::vector<double> rm(run_mean.begin(), run_mean.end()), rv(run_var.begin(), run_var.end());
  tensor<double> y(xs);
  ops::batch_norm_forward_inference(x, gamma, beta, run_mean, run_var, 1e-5, y.view());
  const auto expected = direct_normalise(x, rm, rv, gamma, beta, 1e-5);
  CHECK(max_abs_diff(y, expected) < 1e-13);
  // y may alias x
  auto xin = x.clone();
  ops::batch_norm_forward_inference(xin, gamma, beta, run_mean, run_var, 1e-5, xin.view());
  CHECK(max_abs_diff(xin, expected) < 1e-13);
  // After training steps, inference with the updated statistics is the same formula.
  tensor<double> yt(xs), mean({4}), rstd({4});
  ops::batch_norm_forward_training(x, gamma, beta, 1e-5, 0.1, yt.view(), mean, rstd, run_mean,
                                   run_var);
  const std::vector<double> rm2(run_mean.begin(), run_mean.end()),
      rv2(run_var.begin(), run_var.end());
  ops::batch_norm_forward_inference(x, gamma, beta, run_mean, run_var, 1e-5, y.view());
  CHECK(max_abs_diff(y, direct_normalise(x, rm2, rv2, gamma, beta, 1e-5)) < 1e-13);
}

TEST_CASE("batch norm: [N, C] input equals [N, C, 1, 1]; float agrees with double",
          "[ops][batch_norm]") {
  rng r(44);
  auto x2 = randn({7, 3}, r, 1.5);
  auto x4 = x2.clone();
  x4.reshape({7, 3, 1, 1});
  auto gamma = randn({3}, r), beta = randn({3}, r);
  tensor<double> y2({7, 3}), y4({7, 3, 1, 1}), mean2({3}), rstd2({3}), mean4({3}), rstd4({3});
  auto rm2 = tensor<double>::zeros({3}), rv2 = tensor<double>::from({3}, {1, 1, 1});
  auto rm4 = rm2.clone(), rv4 = rv2.clone();
  ops::batch_norm_forward_training(x2, gamma, beta, 1e-5, 0.1, y2.view(), mean2, rstd2, rm2, rv2);
  ops::batch_norm_forward_training(x4, gamma, beta, 1e-5, 0.1, y4.view(), mean4, rstd4, rm4, rv4);
  CHECK(max_abs_diff(y2, y4) == 0);
  CHECK(max_abs_diff(rv2, rv4) == 0);
  const auto st = direct_stats(x2);
  CHECK(max_abs_diff(y2, direct_normalise(x2, st.mean, st.var, gamma, beta, 1e-5)) < 1e-13);
  for (int ch = 0; ch < 3; ++ch) CHECK(rv2[ch] == Approx(0.9 + 0.1 * st.var[ch] * 7 / 6).epsilon(1e-14));

  // float, with a mean far from zero: the deviations are taken before scaling.
  auto xb = randn({4, 3, 8, 8}, r);
  for (auto& v : xb) v += 1000;
  tensor<float> xf(xb.shape()), gf({3}), bf({3});
  for (std::int64_t i = 0; i < xb.numel(); ++i) xf[i] = static_cast<float>(xb[i]);
  for (int ch = 0; ch < 3; ++ch) {
    gf[ch] = static_cast<float>(gamma[ch]);
    bf[ch] = static_cast<float>(beta[ch]);
  }
  tensor<float> yf(xb.shape()), mf({3}), sf({3});
  ops::batch_norm_forward_training(xf, gf, bf, 1e-5, 0.1, yf.view(), mf, sf, {}, {});
  const auto stf = direct_stats(xf);  // statistics of the float values, in double
  CHECK(max_abs_diff(yf, direct_normalise(xf, stf.mean, stf.var, gf, bf, 1e-5)) < 2e-4);
}

TEST_CASE("batch norm rejects bad shapes and values, naming the op", "[ops][batch_norm][errors]") {
  auto x = tensor<double>::zeros({2, 3, 4, 4}), y = tensor<double>::zeros({2, 3, 4, 4});
  auto g = tensor<double>::zeros({3}), m = g.clone(), s = g.clone(), rm = g.clone(), rv = g.clone();
  tensor<double> g_bad({4}), x3({2, 3, 4});
  const char* fwd = "batch_norm_forward_training";
  CHECK_THROWS_WITH(ops::batch_norm_forward_training(x, g_bad, g, 1e-5, 0.1, y.view(), m, s, rm, rv),
                    Catch::Contains("batch_norm_forward_training: gamma has shape [4]"));
  CHECK_THROWS_AS(ops::batch_norm_forward_training(x, g, g_bad, 1e-5, 0.1, y.view(), m, s, rm, rv),
                  shape_error);
  CHECK_THROWS_AS(ops::batch_norm_forward_training(x3, g, g, 1e-5, 0.1, x3.view(), m, s, rm, rv),
                  shape_error);
  CHECK_THROWS_WITH(ops::batch_norm_forward_training(x3, g, g, 1e-5, 0.1, x3.view(), m, s, rm, rv),
                    Catch::Contains(fwd) && Catch::Contains("[N, C] or [N, C, H, W]"));
  tensor<double> y_bad({2, 3, 4, 5});
  CHECK_THROWS_WITH(ops::batch_norm_forward_training(x, g, g, 1e-5, 0.1, y_bad.view(), m, s, rm, rv),
                    Catch::Contains("batch_norm_forward_training: y"));
  CHECK_THROWS_WITH(ops::batch_norm_forward_training(x, g, g, 1e-5, 0.1, y.view(), g_bad, s, rm, rv),
                    Catch::Contains("batch_norm_forward_training: saved_mean"));
  CHECK_THROWS_WITH(ops::batch_norm_forward_training(x, g, g, 1e-5, 0.1, y.view(), m, s, rm, g_bad),
                    Catch::Contains("batch_norm_forward_training: running_var"));
  CHECK_THROWS_AS(ops::batch_norm_forward_training(x, g, g, 1e-5, 0.1, y.view(), m, s, rm, {}),
                  value_error);
  // one value per channel: [1, C, 1, 1] and [1, C]
  auto x1 = tensor<double>::zeros({1, 3, 1, 1}), y1 = x1.clone(), x1b = tensor<double>::zeros({1, 3});
  CHECK_THROWS_WITH(ops::batch_norm_forward_training(x1, g, g, 1e-5, 0.1, y1.view(), m, s, rm, rv),
                    Catch::Contains(fwd) && Catch::Contains("more than 1 value per channel"));
  CHECK_THROWS_AS(ops::batch_norm_forward_training(x1b, g, g, 1e-5, 0.1, x1b.view(), m, s, rm, rv),
                  value_error);
  // eps must be positive, momentum in [0, 1]
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (double eps : {0.0, -1e-5, nan})
    CHECK_THROWS_WITH(ops::batch_norm_forward_training(x, g, g, eps, 0.1, y.view(), m, s, rm, rv),
                      Catch::Contains(fwd) && Catch::Contains("eps"));
  for (double mom : {-0.1, 1.5, nan})
    CHECK_THROWS_WITH(ops::batch_norm_forward_training(x, g, g, 1e-5, mom, y.view(), m, s, rm, rv),
                      Catch::Contains(fwd) && Catch::Contains("momentum"));
  CHECK_THROWS_WITH(ops::batch_norm_forward_training(x, g, g, 1e-5, 0.1, x.view(), m, s, rm, rv),
                    Catch::Contains("y must not alias x"));

  CHECK_THROWS_WITH(ops::batch_norm_forward_inference(x, g, g, rm, g_bad, 1e-5, y.view()),
                    Catch::Contains("batch_norm_forward_inference: running_var"));
  CHECK_THROWS_AS(ops::batch_norm_forward_inference(x, g, g, rm, rv, 0.0, y.view()), value_error);
  CHECK_THROWS_AS(ops::batch_norm_forward_inference(x3, g, g, rm, rv, 1e-5, x3.view()), shape_error);
  // inference has no batch statistics: one value per channel is fine
  CHECK_NOTHROW(ops::batch_norm_forward_inference(x1, g, g, rm, rv, 1e-5, y1.view()));

  CHECK_THROWS_WITH(ops::batch_norm_backward(x, g, m, s, y, y_bad.view(), {}, {}),
                    Catch::Contains("batch_norm_backward: dx"));
  CHECK_THROWS_WITH(ops::batch_norm_backward(x, g, m, s, y, tensor_view<double>{}, g_bad, {}),
                    Catch::Contains("batch_norm_backward: dgamma"));
  CHECK_THROWS_WITH(ops::batch_norm_backward(x, g, m, g_bad, y, y.view(), {}, {}),
                    Catch::Contains("batch_norm_backward: saved_rstd"));
  CHECK_THROWS_WITH(ops::batch_norm_backward(x, g, m, s, y_bad, y.view(), {}, {}),
                    Catch::Contains("batch_norm_backward: dy"));
}
