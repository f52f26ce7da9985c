// ambiseg/diffusion/distillation.hpp — progressive distillation (Salimans & Ho 2022): the
// target that makes one deterministic (DDIM) step of a student land where two DDIM steps
// of its teacher land, and the student's loss on it, written once for every device.
//
//   grid     the student's N steps are every other point of the teacher's 2N-step grid
//            g_0 = 1 > g_1 > … > g_2N = 0 (sampling_times); a case draws one student step
//            k: t = g_2k → t″ = g_2k+2, through the teacher's midpoint t′ = g_2k+1
//   teacher  x_t = α_t·x0 + σ_t·ε
//            x′ = DDIM(x_t, x̂0_T(x_t, t), t → t′);  x″ = DDIM(x′, x̂0_T(x′, t′), t′ → t″)
//   target   x̃0 = (x″ − (σ″/σ_t)·x_t) / (α″ − α_t·σ″/σ_t): the x̂0 whose DDIM step t → t″
//            gives x″ (DDIM: x_s = (σ_s/σ_t)·x_t + (α_s − α_t·σ_s/σ_t)·x̂0). At the grid's
//            end the sampler returns x̂0 instead of stepping to t = 0, so there x̃0 is the
//            teacher's last x̂0_T(x′, t′), as its 2-step sample is.
//   student  the diffusion's weighted x-space loss of x̂0_S(x_t, t) against x̃0, i.e. the
//            usual training loss with x̃0 in place of x0 (S&H's x-space loss; the weighting
//            is the teacher's own: truncated SNR or SNR+1 in the paper's choices)
//
// Draw order on the host (the steps, then ε row-major): k = ⌊u·N⌋ with u stratified over
// the batch as the training times are, so a seed gives the same draws on every device.
//
// Shape legend: B cases, P elements per case, Cc conditioning channels; device tensors.
#pragma once

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "ambiseg/core/device_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/diffusion/concepts.hpp"
#include "ambiseg/diffusion/kernels.hpp"
#include "ambiseg/diffusion/samplers.hpp"
#include "ambiseg/diffusion/timesteps.hpp"

namespace ambiseg::diffusion {

// One student step of the teacher's grid in scalars (host, double).
struct distillation_step {
  double t = 1, t_mid = 0.5, t_end = 0;
  step_coeffs first, second;  // the teacher's DDIM steps t → t′ and t′ → t″
  bool last = false;          // t″ = 0: the sampler returns x̂0 there
  // x̃0 = to_x2·x″ + to_xt·x_t (last: x̃0 = x̂0_T(x′, t′), these unused)
  double to_x2 = 1, to_xt = 0;
};

// `teacher_grid` holds the 2N + 1 times of the teacher's sampler, from 1 down to 0;
// `log_snr` is the diffusion's λ(t).
template <class LogSnr>
distillation_step plan_distillation_step(std::span<const double> teacher_grid, int k, LogSnr&& log_snr) {
  const int points = static_cast<int>(teacher_grid.size());
  throw_if<value_error>(points < 3 || points % 2 == 0, "plan_distillation_step: the teacher grid has ", points,
                        " points; a student of N steps needs 2N + 1");
  throw_if<value_error>(k < 0 || 2 * k + 2 > points - 1, "plan_distillation_step: step ",
                        k, " outside the student's ", (points - 1) / 2, " steps");
  distillation_step s;
  s.t = teacher_grid[static_cast<std::size_t>(2 * k)];
  s.t_mid = teacher_grid[static_cast<std::size_t>(2 * k + 1)];
  s.t_end = teacher_grid[static_cast<std::size_t>(2 * k + 2)];
  s.last = 2 * k + 2 == points - 1;
  const double l_t = log_snr(s.t), l_mid = log_snr(s.t_mid), l_end = log_snr(s.t_end);
  const ddim_sampler ddim;
  s.first = ddim.coefficients(l_t, l_mid);
  s.second = ddim.coefficients(l_mid, l_end);
  if (!s.last) {
    // The student's own DDIM step t → t″ is x″ = c_xt·x_t + c_x0·x̃0; solved for x̃0.
    const step_coeffs direct = ddim.coefficients(l_t, l_end);
    throw_if<value_error>(!(std::abs(direct.c_x0) > 0) || !std::isfinite(direct.c_x0) || !std::isfinite(direct.c_xt),
                          "plan_distillation_step: the DDIM step from t = ", s.t, " to ", s.t_end,
                          " has x̂0 coefficient ", direct.c_x0, "; no target reproduces it");
    s.to_x2 = 1.0 / direct.c_x0;
    s.to_xt = -direct.c_xt / direct.c_x0;
  }
  return s;
}

// What the job needs from a diffusion: its λ(t) on the host and three device operations
// with per-sample times (diffusion_runner has them; models::diffusion_model forwards them).
template <class Dm, class T, class D>
concept distillable_diffusion =
    requires(Dm& d, double t, tensor_view<const T, D> in, std::span<const double> ts, tensor_view<T, D> out,
             tensor_view<double, D> report) {
      { d.log_snr(t) } -> std::convertible_to<double>;
      d.add_noise(in, ts, in, out);                // (x0, t, ε, x_t)
      d.predict_x0(in, ts, in, out);               // (x_t, t, f, x̂0)
      d.loss_async(in, in, ts, in, out, report);   // (x0, x_t, t, f, grad_f, report [B + 1])
    };

template <class T = float, class D = cpu>
class progressive_distillation {
  using kernels = diffusion_kernels<D>;

 public:
  // teacher_grid: the 2N + 1 times of the teacher's sampler (sampling_times(2N, spacing)).
  explicit progressive_distillation(std::vector<double> teacher_grid) : grid_(std::move(teacher_grid)) {
    throw_if<value_error>(grid_.size() < 3 || grid_.size() % 2 == 0, "progressive_distillation: the teacher grid has ",
                          grid_.size(), " points; a student of N steps needs 2N + 1");
  }
  int student_steps() const { return static_cast<int>(grid_.size() / 2); }
  const std::vector<double>& teacher_grid() const { return grid_; }

  // The student steps k [B] (stratified over the batch) and ε [B, ...], drawn on the host
  // from g; ε is uploaded.
  void draw(const shape& x0_shape, rng& g) {
    draw_on_host(x0_shape, g);
    upload_eps(x0_shape);
  }
  // Data parallel: the draws of the whole global batch of `global` rows, as one process
  // makes them (stratified k spans it); this rank keeps rows [first, first + B),
  // B = x0_shape[0]. So the run's draws do not depend on the number of ranks.
  void draw_rows(const shape& x0_shape, std::int64_t first, std::int64_t global, rng& g) {
    throw_if<shape_error>(x0_shape.rank() < 1 || first < 0 || first + x0_shape[0] > global,
                          "progressive_distillation: rows [", first, ", ", first + x0_shape[0],
                          ") are not inside the global batch of ", global);
    std::vector<std::int64_t> extents(x0_shape.begin(), x0_shape.end());
    extents[0] = global;
    draw_on_host(shape::from_range(extents.begin(), extents.end()), g);
    const std::int64_t b = x0_shape[0], per_row = x0_shape.numel() / std::max<std::int64_t>(b, 1);
    steps_ = std::vector<int>(steps_.begin() + first, steps_.begin() + first + b);
    strata_ = std::vector<double>(strata_.begin() + first, strata_.begin() + first + b);
    tensor<T> rows(x0_shape);
    std::copy_n(eps_host_.data() + first * per_row, b * per_row, rows.data());
    eps_host_ = std::move(rows);
    upload_eps(x0_shape);
  }
  // Fixed draws (tests): steps [B] in [0, N), eps [B, ...] on the host.
  void set_draws(std::vector<int> steps, tensor_view<const T> eps) {
    for (int k : steps)
      throw_if<value_error>(k < 0 || k >= student_steps(), "progressive_distillation: step ", k, " outside [0, ",
                            student_steps(), ")");
    throw_if<shape_error>(eps.rank() < 1 || eps.size(0) != static_cast<std::int64_t>(steps.size()),
                          "progressive_distillation: eps ", eps.shape(), " for ", steps.size(), " steps");
    steps_ = std::move(steps);
    eps_host_ = tensor<T>(eps.shape());
    std::copy(eps.data(), eps.data() + eps.numel(), eps_host_.data());
    if (!(eps_.shape() == eps.shape())) eps_ = tensor<T, D>(eps.shape());
    enqueue_upload<D>(eps_.data(), eps_host_.data(), sizeof(T) * static_cast<std::size_t>(eps.numel()));
  }

  // With the drawn (or set) k and ε: x_t, the teacher's two steps and x̃0, then the
  // student's output f and its loss against x̃0 into report [B + 1] and grad_f() — all
  // enqueued, nothing read back (a NaN shows in the report). The denoisers are
  // void(x_t, t (host), cond, f_out); the teacher's runs without gradients.
  template <class Dm, class Teacher, class Student>
    requires distillable_diffusion<Dm, T, D>
  void loss_async(Dm& diffusion, Teacher&& teacher, Student&& student, tensor_view<const T, D> x0,
                  tensor_view<const T, D> cond, tensor_view<double, D> report) {
    const std::int64_t b = x0.rank() >= 1 ? x0.size(0) : 0;
    throw_if<shape_error>(b < 1 || static_cast<std::int64_t>(steps_.size()) != b || !(eps_.shape() == x0.shape()),
                          "progressive_distillation: x0 ", x0.shape(), " does not match the ", steps_.size(),
                          " drawn steps and eps ", eps_.shape(), " (draw first)");
    throw_if<shape_error>(cond.data() != nullptr && (cond.rank() < 1 || cond.size(0) != b),
                          "progressive_distillation: cond ", cond.shape(), " for a batch of ", b);
    expect_shape("progressive_distillation", "report", report, shape{b + 1});
    for (tensor<T, D>* buf : {&x_t_, &x_mid_, &x_end_, &x0_hat_, &f_, &target_, &grad_f_})
      if (!(buf->shape() == x0.shape())) *buf = tensor<T, D>(x0.shape());

    // Host scalars: times per case and the step coefficients as one [7, B] block.
    t_.resize(static_cast<std::size_t>(b));
    t_mid_.resize(static_cast<std::size_t>(b));
    coeff_host_.resize(shape{7, b});
    for (std::int64_t i = 0; i < b; ++i) {
      const distillation_step s =
          plan_distillation_step(grid_, steps_[static_cast<std::size_t>(i)], [&](double t) { return diffusion.log_snr(t); });
      t_[static_cast<std::size_t>(i)] = s.t;
      t_mid_[static_cast<std::size_t>(i)] = s.t_mid;
      const double row[7] = {s.first.c_xt, s.first.c_x0, s.second.c_xt, s.second.c_x0,
                             s.last ? 0.0 : s.to_x2, s.last ? 0.0 : s.to_xt, s.last ? 1.0 : 0.0};
      for (int j = 0; j < 7; ++j) coeff_host_[j * b + i] = static_cast<T>(row[j]);
    }
    if (!(coeff_dev_.shape() == coeff_host_.shape())) coeff_dev_ = tensor<T, D>(coeff_host_.shape());
    enqueue_upload<D>(coeff_dev_.data(), coeff_host_.data(), sizeof(T) * static_cast<std::size_t>(coeff_host_.numel()));
    auto row = [&](int j) { return tensor_view<const T, D>(coeff_dev_.data() + j * b, shape{b}); };
    const tensor_view<const T, D> none;  // no z: reverse_step then reads no noise coefficient

    const std::span<const double> t(t_), t_mid(t_mid_);
    diffusion.add_noise(x0, t, eps_.cview(), x_t_.view());
    std::invoke(teacher, x_t_.cview(), t, cond, f_.view());
    diffusion.predict_x0(x_t_.cview(), t, f_.cview(), x0_hat_.view());
    kernels::template reverse_step<T>(x_t_.cview(), x0_hat_.cview(), none, row(0), row(1), row(0), x_mid_.view());
    std::invoke(teacher, x_mid_.cview(), t_mid, cond, f_.view());
    diffusion.predict_x0(x_mid_.cview(), t_mid, f_.cview(), x0_hat_.view());
    kernels::template reverse_step<T>(x_mid_.cview(), x0_hat_.cview(), none, row(2), row(3), row(2), x_end_.view());
    // x̃0 = to_x2·x″ + to_xt·x_t + [last]·x̂0_T(x′, t′) (one of the two parts is zero).
    kernels::template reverse_step<T>(x_end_.cview(), x_t_.cview(), x0_hat_.cview(), row(4), row(5), row(6),
                                      target_.view());

    std::invoke(student, x_t_.cview(), t, cond, f_.view());
    diffusion.loss_async(target_.cview(), x_t_.cview(), t, f_.cview(), grad_f_.view(), report);
  }

  // The last call's buffers: dL/df for the student's backward pass, and (tests) the noisy
  // input and the target x̃0.
  tensor_view<const T, D> grad_f() const { return grad_f_.cview(); }
  tensor_view<const T, D> x_t() const { return x_t_.cview(); }
  tensor_view<const T, D> target() const { return target_.cview(); }
  const std::vector<double>& times() const { return t_; }
  const std::vector<int>& steps() const { return steps_; }

 private:
  void draw_on_host(const shape& x0_shape, rng& g) {
    throw_if<shape_error>(x0_shape.rank() < 1 || x0_shape[0] < 1, "progressive_distillation: x0 shape ",
                          x0_shape.to_string(), " has no batch axis");
    const std::int64_t b = x0_shape[0];
    const int n = student_steps();
    strata_.resize(static_cast<std::size_t>(b));
    stratified_timesteps{}.draw(std::span<double>(strata_), g);
    steps_.resize(strata_.size());
    for (std::size_t i = 0; i < strata_.size(); ++i) steps_[i] = std::min(n - 1, static_cast<int>(strata_[i] * n));
    eps_host_.resize(x0_shape);
    for (T& e : eps_host_) e = static_cast<T>(g.normal());
  }
  void upload_eps(const shape& x0_shape) {
    if (!(eps_.shape() == x0_shape)) eps_ = tensor<T, D>(x0_shape);
    enqueue_upload<D>(eps_.data(), eps_host_.data(), sizeof(T) * static_cast<std::size_t>(eps_host_.numel()));
  }

  std::vector<double> grid_;
  std::vector<int> steps_;
  std::vector<double> strata_, t_, t_mid_;  // u ∈ [0, 1) per case, then the times of its step
  tensor<T> eps_host_, coeff_host_;
  tensor<T, D> eps_, coeff_dev_, x_t_, x_mid_, x_end_, x0_hat_, f_, target_, grad_f_;
};

}  // namespace ambiseg::diffusion
