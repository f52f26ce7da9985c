// Progressive distillation (diffusion/distillation.hpp): the target's identity (one student
// DDIM step through x̃0 lands on the teacher's two), the job's target against the teacher's
// steps written out by hand with the exact denoiser, a student that outputs the target
// reproducing the teacher's 2N-step sampler in N steps, the loss, the draws and bad input.
#include <catch2/catch.hpp>

#include <ambiseg/diffusion/all.hpp>

#include "diffusion/reference_diffusion.hpp"

#include <algorithm>
#include <cmath>
#include <span>
#include <vector>

using namespace ambiseg;
using namespace ambiseg::diffusion;
using reference::binary_denoiser;

namespace {

using schedule_t = clipped<input_scaled<cosine>>;
using model_t = gaussian_diffusion<schedule_t, x_prediction, snr_plus_one_weighting>;

model_t test_model() { return model_t(schedule_t(input_scaled<cosine>(cosine{}, 0.5), 10.0, -10.0)); }

using runner_t = diffusion_runner<model_t, double, cpu>;
static_assert(distillable_diffusion<runner_t, double, cpu>);

// The same p in every pixel of every cond row.
tensor<double> prior_of(std::int64_t rows, std::int64_t pixels, double p) {
  tensor<double> c({rows, 1, 1, pixels});
  for (double& v : c) v = p;
  return c;
}

// A student that never moves: the tests only read the target and the loss's inputs.
auto zero_student() {
  return [](tensor_view<const double> x_t, std::span<const double>, tensor_view<const double>, tensor_view<double> f) {
    for (std::int64_t i = 0; i < x_t.numel(); ++i) f[i] = 0.0;
  };
}

}  // namespace

TEST_CASE("distillation target: the student's DDIM step through x̃0 lands on the teacher's x″",
          "[diffusion][distillation]") {
  const model_t model = test_model();
  auto lambda = [&](double t) { return model.level(t).log_snr; };
  for (time_spacing spacing : {time_spacing::uniform_t, time_spacing::uniform_lambda}) {
    const std::vector<double> grid = sampling_times(model.schedule(), 6, spacing);  // a 3-step student
    for (int k = 0; k < 2; ++k) {
      const distillation_step s = plan_distillation_step(grid, k, lambda);
      REQUIRE_FALSE(s.last);
      CHECK(s.t == grid[static_cast<std::size_t>(2 * k)]);
      CHECK(s.t_mid == grid[static_cast<std::size_t>(2 * k + 1)]);
      CHECK(s.t_end == grid[static_cast<std::size_t>(2 * k + 2)]);
      // Salimans & Ho's closed form, from α and σ.
      const noise_level a = model.level(s.t), e = model.level(s.t_end);
      const double ratio = e.sigma / a.sigma, den = e.alpha - ratio * a.alpha;
      for (double x_t : {-1.7, 0.3, 2.2})
        for (double x2 : {-0.9, 0.1, 1.4}) {
          const double target = s.to_x2 * x2 + s.to_xt * x_t;
          CHECK(target == Approx((x2 - ratio * x_t) / den).epsilon(1e-12));
          const step_coeffs direct = ddim_sampler{}.coefficients(a.log_snr, e.log_snr);
          CHECK(direct.c_xt * x_t + direct.c_x0 * target == Approx(x2).epsilon(1e-12).margin(1e-12));
        }
    }
    CHECK(plan_distillation_step(grid, 2, lambda).last);
  }
}

TEST_CASE("distillation job: x_t, the teacher's two DDIM steps and x̃0 as written out by hand",
          "[diffusion][distillation]") {
  const model_t model = test_model();
  runner_t run(model);
  const double p = 0.3;
  for (time_spacing spacing : {time_spacing::uniform_t, time_spacing::uniform_lambda}) {
    const std::vector<double> grid = sampling_times(model.schedule(), 4, spacing);  // a 2-step student
    progressive_distillation<double, cpu> job(grid);
    REQUIRE(job.student_steps() == 2);
    const std::int64_t b = 4, pixels = 3;
    tensor<double> x0({b, 1, 1, pixels}), eps({b, 1, 1, pixels});
    rng g(5);
    for (double& v : x0) v = g.uniform() < 0.5 ? -1.0 : 1.0;
    for (double& v : eps) v = g.normal();
    const std::vector<int> steps{0, 1, 1, 0};
    job.set_draws(steps, eps.cview());
    const tensor<double> cond = prior_of(b, pixels, p);
    tensor<double> report({b + 1});
    job.loss_async(run, binary_denoiser(model), zero_student(), x0.cview(), cond.cview(), report.view());

    auto x0_hat = [&](double x, const noise_level& lv) {
      return std::tanh(lv.alpha * x / (lv.sigma * lv.sigma) + std::atanh(2 * p - 1));
    };
    auto ddim = [](double x, double x0h, const noise_level& from, const noise_level& to) {
      return to.sigma / from.sigma * x + (to.alpha - from.alpha * to.sigma / from.sigma) * x0h;
    };
    for (std::int64_t i = 0; i < b; ++i) {
      const int k = steps[static_cast<std::size_t>(i)];
      const noise_level l0 = model.level(grid[static_cast<std::size_t>(2 * k)]);
      const noise_level l1 = model.level(grid[static_cast<std::size_t>(2 * k + 1)]);
      const noise_level l2 = model.level(grid[static_cast<std::size_t>(2 * k + 2)]);
      CHECK(job.times()[static_cast<std::size_t>(i)] == l0.t);
      for (std::int64_t e = i * pixels; e < (i + 1) * pixels; ++e) {
        const double x_t = l0.alpha * x0[e] + l0.sigma * eps[e];
        const double x_mid = ddim(x_t, x0_hat(x_t, l0), l0, l1);
        const bool last = 2 * k + 2 == static_cast<int>(grid.size()) - 1;
        double want = 0;
        if (last) {
          want = x0_hat(x_mid, l1);  // the sampler's last step returns x̂0
        } else {
          const double x_end = ddim(x_mid, x0_hat(x_mid, l1), l1, l2);
          want = (x_end - l2.sigma / l0.sigma * x_t) / (l2.alpha - l2.sigma / l0.sigma * l0.alpha);
        }
        INFO("case " << i << " (student step " << k << "), element " << e << ", " << spacing_name(spacing));
        CHECK(job.x_t()[e] == Approx(x_t).epsilon(1e-12));
        CHECK(job.target()[e] == Approx(want).epsilon(1e-10).margin(1e-12));
      }
    }
  }
}

TEST_CASE("a student that outputs x̃0 reproduces the teacher's 2N-step DDIM sample in N steps",
          "[diffusion][distillation]") {
  const model_t model = test_model();
  runner_t run(model);
  const double p = 0.7;
  const std::int64_t chains = 5;
  tensor<double> x1({chains, 1, 1, 1});
  for (std::int64_t c = 0; c < chains; ++c) x1[c] = -2.0 + 1.0 * static_cast<double>(c);
  const tensor<double> cond = prior_of(chains, 1, p);
  for (int n : {1, 2, 4})
    for (time_spacing spacing : {time_spacing::uniform_t, time_spacing::uniform_lambda}) {
      // The teacher: 2N DDIM steps from x_1.
      tensor<double> teacher = x1.clone();
      rng unused(0);
      run.sample_chains(binary_denoiser(model), ddim_sampler{}, teacher.view(), cond.cview(), unused,
                        {.steps = 2 * n, .spacing = spacing});
      // The student: at each of its N steps, x̃0 from the job (x0 = 0 and ε = x/σ_t put x_t = x),
      // then its own DDIM step; at the last the sampler returns x̃0.
      const std::vector<double> grid = sampling_times(model.schedule(), 2 * n, spacing);
      progressive_distillation<double, cpu> job(grid);
      tensor<double> x = x1.clone(), zeros({chains, 1, 1, 1}), eps({chains, 1, 1, 1});
      std::fill(zeros.begin(), zeros.end(), 0.0);  // a new tensor's values are unspecified
      for (int k = 0; k < n; ++k) {
        const noise_level from = model.level(grid[static_cast<std::size_t>(2 * k)]);
        const noise_level to = model.level(grid[static_cast<std::size_t>(2 * k + 2)]);
        for (std::int64_t c = 0; c < chains; ++c) eps[c] = x[c] / from.sigma;
        job.set_draws(std::vector<int>(static_cast<std::size_t>(chains), k), eps.cview());
        tensor<double> report({chains + 1});
        job.loss_async(run, binary_denoiser(model), zero_student(), zeros.cview(), cond.cview(), report.view());
        const step_coeffs direct = ddim_sampler{}.coefficients(from.log_snr, to.log_snr);
        for (std::int64_t c = 0; c < chains; ++c)
          x[c] = k + 1 == n ? job.target()[c] : direct.c_xt * x[c] + direct.c_x0 * job.target()[c];
      }
      INFO(n << " student steps, " << spacing_name(spacing));
      for (std::int64_t c = 0; c < chains; ++c) CHECK(x[c] == Approx(teacher[c]).epsilon(1e-9).margin(1e-12));
    }
}

TEST_CASE("distillation loss: the diffusion's weighted x-space loss of the student against x̃0",
          "[diffusion][distillation]") {
  const model_t model = test_model();
  runner_t run(model), check(model);
  progressive_distillation<double, cpu> job(sampling_times(model.schedule(), 8, time_spacing::uniform_t));
  const std::int64_t b = 8, pixels = 4;
  tensor<double> x0({b, 1, 2, 2});
  for (std::int64_t i = 0; i < x0.numel(); ++i) x0[i] = (i % 3 == 0) ? 1.0 : -1.0;
  rng g(9);
  job.draw(x0.shape(), g);
  // Stratified: a batch of 2·N cases takes every student step twice.
  std::vector<int> seen(4, 0);
  for (int k : job.steps()) ++seen[static_cast<std::size_t>(k)];
  CHECK(seen == std::vector<int>{2, 2, 2, 2});
  const tensor<double> cond = prior_of(b, pixels, 0.4);
  auto student = [](tensor_view<const double> x_t, std::span<const double>, tensor_view<const double>,
                    tensor_view<double> f) {
    for (std::int64_t i = 0; i < x_t.numel(); ++i) f[i] = std::tanh(0.5 * x_t[i]);
  };
  tensor<double> report({b + 1});
  job.loss_async(run, binary_denoiser(model), student, x0.cview(), cond.cview(), report.view());
  tensor<double> f(x0.shape()), grad(x0.shape());
  for (std::int64_t i = 0; i < f.numel(); ++i) f[i] = std::tanh(0.5 * job.x_t()[i]);
  std::vector<double> per(static_cast<std::size_t>(b));
  const double loss = check.loss(job.target(), job.x_t(), job.times(), f.cview(), grad.view(), per);
  CHECK(report[b] == Approx(loss).epsilon(1e-12));
  for (std::int64_t i = 0; i < b; ++i) CHECK(report[i] == Approx(per[static_cast<std::size_t>(i)]).epsilon(1e-12));
  for (std::int64_t i = 0; i < grad.numel(); ++i) CHECK(job.grad_f()[i] == Approx(grad[i]).epsilon(1e-12).margin(1e-15));

  // The same seed draws the same steps and noise.
  progressive_distillation<double, cpu> again(job.teacher_grid());
  rng g2(9);
  again.draw(x0.shape(), g2);
  CHECK(again.steps() == job.steps());
}

TEST_CASE("distillation refuses a grid without a midpoint, steps out of range and missing draws",
          "[diffusion][distillation]") {
  const model_t model = test_model();
  auto lambda = [&](double t) { return model.level(t).log_snr; };
  CHECK_THROWS_AS(progressive_distillation<double>(std::vector<double>{1.0, 0.0}), value_error);
  CHECK_THROWS_AS(progressive_distillation<double>(std::vector<double>{1.0, 0.6, 0.3, 0.0}), value_error);
  const std::vector<double> grid = sampling_times(model.schedule(), 4, time_spacing::uniform_t);
  CHECK_THROWS_AS(plan_distillation_step(grid, 2, lambda), value_error);
  CHECK_THROWS_AS(plan_distillation_step(grid, -1, lambda), value_error);
  progressive_distillation<double, cpu> job(grid);
  tensor<double> eps({2, 1, 1, 1});
  CHECK_THROWS_AS(job.set_draws({0, 2}, eps.cview()), value_error);
  CHECK_THROWS_AS(job.set_draws({0}, eps.cview()), shape_error);
  runner_t run(model);
  tensor<double> x0({2, 1, 1, 1}), report({3});
  CHECK_THROWS_AS(job.loss_async(run, binary_denoiser(model), zero_student(), x0.cview(), {}, report.view()),
                  shape_error);  // nothing drawn yet
}
