// Gradient clipping, the learning-rate schedule and the weight EMA, against hand values.
#include <catch2/catch.hpp>

#include <ambiseg/optim/clip.hpp>
#include <ambiseg/optim/ema.hpp>
#include <ambiseg/optim/lr_schedule.hpp>

#include <omp.h>

#include <array>
#include <cmath>
#include <limits>
#include <numbers>

using namespace ambiseg;
using namespace ambiseg::optim;

TEST_CASE("clip_grad_norm uses the global norm over all parameters", "[optim][clip]") {
  parameter_store<double> store;
  store.add("a", {3});
  store.add("b", {1, 2});
  store.allocate();
  auto ga = store.grad(0), gb = store.grad(1);
  ga[0] = 1, ga[1] = 2, ga[2] = 2;  // norm 3
  gb[0] = 0, gb[1] = 4;             // norm 4 → total 5
  const double norm = clip_grad_norm(store, 1.0);
  CHECK(norm == 5.0);
  const double scale = 1.0 / (5.0 + 1e-6);
  CHECK(ga[0] == Approx(1 * scale).epsilon(1e-15));
  CHECK(ga[2] == Approx(2 * scale).epsilon(1e-15));
  CHECK(gb[1] == Approx(4 * scale).epsilon(1e-15));
  CHECK(gb[0] == 0.0);
  // After clipping, the norm is max_norm·norm/(norm+1e-6).
  CHECK(global_grad_norm<double>(store.flat_grads()) == Approx(5.0 / (5.0 + 1e-6)).epsilon(1e-14));

  // Below the threshold nothing changes.
  ga[0] = 0.3, ga[1] = 0.4, ga[2] = 0, gb[0] = 0, gb[1] = 0;
  CHECK(clip_grad_norm(store, 1.0) == Approx(0.5).epsilon(1e-15));
  CHECK(ga[0] == 0.3);
  CHECK(ga[1] == 0.4);

  // PyTorch's rule scales already at norm == max_norm, by max/(max + 1e-6).
  ga[0] = 3, ga[1] = 4;
  CHECK(clip_grad_norm(store, 5.0) == 5.0);
  CHECK(ga[0] == Approx(3 * 5.0 / (5.0 + 1e-6)).epsilon(1e-15));
  CHECK(ga[0] != 3.0);
}

TEST_CASE("clip_grad_norm accumulates in double", "[optim][clip]") {
  // Float squares of 3e30 overflow a float accumulator; a float sum of 1e6 tiny terms drifts.
  auto big = tensor<float>::from({2}, {3e30f, 4e30f});
  CHECK(clip_grad_norm<float>(big.view(), 1.0) == Approx(5e30).epsilon(1e-7));
  CHECK(big[0] == Approx(0.6f).epsilon(1e-6));

  const std::int64_t n = 1'000'000;
  tensor<float> g({n});
  g.fill(1e-3f);
  const double exact = std::sqrt(static_cast<double>(n)) * static_cast<double>(1e-3f);
  CHECK(global_grad_norm<float>(g.cview()) == Approx(exact).epsilon(1e-12));
}

TEST_CASE("clip_grad_norm is independent of the thread count", "[optim][clip]") {
  const std::int64_t n = 300'007;
  tensor<float> g({n});
  for (std::int64_t i = 0; i < n; ++i) g[i] = std::sin(0.7f * static_cast<float>(i)) * 1e-2f;
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const double one = global_grad_norm<float>(g.cview());
  omp_set_num_threads(2);
  const double two = global_grad_norm<float>(g.cview());
  omp_set_num_threads(saved);
  CHECK(one == two);
}

TEST_CASE("clip_grad_norm on a non-finite norm", "[optim][clip]") {
  auto g = tensor<float>::from({3}, {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f});
  CHECK_THROWS_AS(clip_grad_norm<float>(g.view(), 1.0), value_error);
  CHECK_THROWS_WITH(clip_grad_norm<float>(g.view(), 1.0), Catch::Contains("nan"));
  CHECK(std::isnan(clip_grad_norm<float>(g.view(), 1.0, nonfinite_policy::report)));
  CHECK(g[0] == 1.0f);  // untouched
  CHECK(g[2] == 2.0f);
  g[1] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_WITH(clip_grad_norm<float>(g.view(), 1.0), Catch::Contains("inf"));
  CHECK(std::isinf(clip_grad_norm<float>(g.view(), 1.0, nonfinite_policy::report)));
  CHECK(g[0] == 1.0f);
  g[1] = 0.0f;
  CHECK_THROWS_AS(clip_grad_norm<float>(g.view(), -1.0), value_error);
  CHECK_THROWS_AS(clip_grad_norm<float>(g.view(), std::nan("")), value_error);
}

TEST_CASE("warm-up, constant, cosine decay at the SPEC §7 key steps", "[optim][lr]") {
  const warmup_cosine_schedule s;  // 1e-4, warm-up 1000, 400k total, last 100k decay
  s.validate();
  CHECK(s.lr(0) == Approx(1e-7).epsilon(1e-14));
  CHECK(s.lr(499) == Approx(5e-5).epsilon(1e-14));
  CHECK(s.lr(998) == Approx(0.999e-4).epsilon(1e-14));
  CHECK(s.lr(999) == 1e-4);
  CHECK(s.lr(1000) == 1e-4);
  CHECK(s.lr(299'999) == 1e-4);
  CHECK(s.lr(300'000) == 1e-4);
  CHECK(s.lr(325'000) == Approx(1e-4 * (0.5 + 0.5 * std::sqrt(0.5))).epsilon(1e-14));
  CHECK(s.lr(350'000) == Approx(5e-5).epsilon(1e-14));
  CHECK(s.lr(375'000) == Approx(1e-4 * (0.5 - 0.5 * std::sqrt(0.5))).epsilon(1e-12));
  CHECK(s.lr(399'999) > 0.0);
  CHECK(s.lr(399'999) == Approx(1e-4 * 0.5 * (1 - std::cos(std::numbers::pi * 1e-5))).epsilon(1e-9));
  CHECK(s.lr(400'000) == 0.0);
  CHECK(s.lr(1'000'000) == 0.0);
  CHECK_THROWS_AS(s.lr(-1), value_error);
  // Monotone within the decay window.
  for (std::int64_t k = 300'000; k < 400'000; k += 997) CHECK(s.lr(k + 1) <= s.lr(k));

  const warmup_cosine_schedule ablation{.base_lr = 1e-4, .warmup_steps = 1000, .total_steps = 50'000,
                                        .decay_steps = 10'000};
  CHECK(ablation.lr(39'999) == 1e-4);
  CHECK(ablation.lr(45'000) == Approx(5e-5).epsilon(1e-14));
  CHECK(ablation.lr(50'000) == 0.0);

  // Overlapping windows multiply; no warm-up means full rate at step 0.
  const warmup_cosine_schedule overlap{.base_lr = 1.0, .warmup_steps = 10, .total_steps = 10, .decay_steps = 10};
  CHECK(overlap.lr(4) == Approx(0.5 * 0.5 * (1 + std::cos(std::numbers::pi * 0.4))).epsilon(1e-15));
  const warmup_cosine_schedule flat{.base_lr = 2.0, .warmup_steps = 0, .total_steps = 5, .decay_steps = 0};
  CHECK(flat.lr(0) == 2.0);
  CHECK(flat.lr(4) == 2.0);
  CHECK(flat.lr(5) == 0.0);

  CHECK_THROWS_AS((warmup_cosine_schedule{.decay_steps = 500'000}.validate()), value_error);
  CHECK_THROWS_AS((warmup_cosine_schedule{.warmup_steps = -1}.validate()), value_error);
  CHECK_THROWS_AS((warmup_cosine_schedule{.base_lr = -1e-4}.validate()), value_error);
}

TEST_CASE("ema follows decay·shadow + (1−decay)·value and swaps in", "[optim][ema]") {
  parameter_store<double> store;
  store.add("w", {2});
  store.allocate();
  auto w = store.value(0);
  w[0] = 1.0, w[1] = -4.0;
  ema<double> avg(store, 0.9);
  CHECK(avg.shadow()[0] == 1.0);
  w[0] = 2.0, w[1] = 6.0;
  avg.update(store);
  CHECK(avg.shadow()[0] == Approx(1.1).epsilon(1e-15));
  CHECK(avg.shadow()[1] == Approx(-3.0).epsilon(1e-15));
  w[0] = 3.0, w[1] = 6.0;
  avg.update(store);
  CHECK(avg.shadow()[0] == Approx(0.9 * 1.1 + 0.3).epsilon(1e-15));
  CHECK(avg.shadow()[1] == Approx(0.9 * -3.0 + 0.6).epsilon(1e-15));
  CHECK(avg.updates() == 2);

  avg.swap_with(store);
  CHECK(w[0] == Approx(1.29).epsilon(1e-15));
  CHECK(avg.shadow()[0] == 3.0);
  avg.swap_with(store);
  CHECK(w[0] == 3.0);
  avg.copy_to(store);
  CHECK(w[1] == Approx(-2.1).epsilon(1e-15));

  CHECK_THROWS_AS(ema<double>(store, 1.5), value_error);
  parameter_store<double> other;
  other.add("w", {200});
  other.allocate();
  CHECK_THROWS_AS(avg.update(other), shape_error);
}

TEST_CASE("ema with a guard skips a non-finite step; clip_grad_norm_async reports instead of "
          "throwing", "[optim][ema][clip]") {
  parameter_store<double> store;
  store.add("w", {2});
  store.allocate();
  auto w = store.value(0);
  w[0] = 1.0, w[1] = -4.0;
  ema<double> avg(store, 0.5);
  w[0] = 3.0;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::array<double, 2> bad{1.0, nan}, good{1.0, 2.0};
  avg.update(store, tensor_view<const double>(bad.data(), shape{2}));
  CHECK(avg.shadow()[0] == 1.0);
  CHECK(avg.updates() == 1);
  avg.update(store, tensor_view<const double>(good.data(), shape{2}));
  CHECK(avg.shadow()[0] == 2.0);

  // The norm lands in the slot; a finite one clips as clip_grad_norm does.
  auto g = store.grad(0);
  g[0] = 3.0, g[1] = 4.0;
  double norm = -1.0;
  clip_grad_norm_async(store, 1.0, tensor_view<double>(&norm, shape{1}));
  CHECK(norm == 5.0);
  CHECK(g[0] == Approx(3.0 / (5.0 + 1e-6)).epsilon(1e-15));
  // A non-finite one is reported, the gradients untouched, nothing thrown.
  g[0] = nan, g[1] = 4.0;
  CHECK_NOTHROW(clip_grad_norm_async(store, 1.0, tensor_view<double>(&norm, shape{1})));
  CHECK(std::isnan(norm));
  CHECK(g[1] == 4.0);
  CHECK_THROWS_AS(clip_grad_norm_async(store, 1.0, tensor_view<double>(nullptr, shape{1})), shape_error);
}
