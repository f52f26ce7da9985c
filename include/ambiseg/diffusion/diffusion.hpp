// ambiseg/diffusion/diffusion.hpp — gaussian_diffusion<Schedule, Prediction, Weighting>:
// the per-sample scalars of one diffusion process (λ, α, σ, the x̂0 coefficients of the
// parameterisation, the loss weight), checked where they are undefined. The loops over
// tensors (noising, the loss, sampling) are diffusion_runner's (runner.hpp), written once
// for every device; they take these scalars in double from here.
#pragma once

#include <cmath>
#include <concepts>
#include <utility>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/diffusion/concepts.hpp"
#include "ambiseg/diffusion/predictions.hpp"
#include "ambiseg/diffusion/samplers.hpp"
#include "ambiseg/diffusion/sampling_grid.hpp"
#include "ambiseg/diffusion/schedules.hpp"
#include "ambiseg/diffusion/timesteps.hpp"
#include "ambiseg/diffusion/weightings.hpp"

namespace ambiseg::diffusion {

struct sampling_options {
  int steps = 10;         // N: N + 1 grid points from t = 1 down to 0, N network evaluations
  time_spacing spacing = time_spacing::uniform_t;  // where the grid points lie (sampling_grid.hpp)
  bool clip_x0 = false;   // clip x̂0 to [−1, 1] at every step and in the result
  int mask_channels = 1;  // channels of the diffused mask (diffusion_runner::sample only)
};

template <class Schedule, class Prediction, class Weighting>
class gaussian_diffusion {
  // One message per missing requirement; the weighting is only checked against a valid
  // schedule, so a bad schedule does not also report a bad weighting.
  static constexpr bool policies_are_valid() {
    check_noise_schedule<Schedule>();
    check_prediction<Prediction>();
    if constexpr (noise_schedule<Schedule>) check_loss_weighting<Weighting, Schedule>();
    return true;
  }
  static_assert(policies_are_valid());

 public:
  using schedule_type = Schedule;
  using prediction_type = Prediction;
  using weighting_type = Weighting;

  gaussian_diffusion()
    requires std::default_initializable<Schedule> && std::default_initializable<Weighting>
  = default;
  explicit gaussian_diffusion(Schedule schedule, Weighting weighting = {})
      : schedule_(std::move(schedule)), weighting_(std::move(weighting)) {}

  const Schedule& schedule() const { return schedule_; }
  const Weighting& weighting() const { return weighting_; }

  // ---- per-sample scalars ------------------------------------------------------------

  noise_level level(double t) const { return noise_level_at(schedule_, t); }

  // x̂0 = c_xt·x_t + c_f·f at time t; throws where the parameterisation is undefined.
  affine x0_coeffs(const noise_level& lv) const {
    const affine c = Prediction::x0_coeffs(lv.alpha, lv.sigma);
    throw_if<value_error>(!std::isfinite(c.c_xt) || !std::isfinite(c.c_f) || c.c_f == 0.0,
                          "gaussian_diffusion: ", Prediction::name,
                          "-prediction is undefined at t = ", lv.t, " (alpha = ", lv.alpha,
                          ", sigma = ", lv.sigma, "); wrap the schedule in clipped<> to keep "
                          "alpha and sigma away from 0");
    return c;
  }

  double weight(double t) const {
    const double w = static_cast<double>(weighting_.weight(schedule_, t));
    throw_if<value_error>(!std::isfinite(w) || w < 0.0, "gaussian_diffusion: weighting ",
                          Weighting::name, " gives w(", t, ") = ", w,
                          "; an unclipped schedule has infinite SNR at t = 0 (use clipped<>)");
    return w;
  }

 private:
  Schedule schedule_;
  Weighting weighting_;
};

// The configurations named in the paper and the reference implementation.
using paper_diffusion = gaussian_diffusion<reference_schedule, x_prediction, truncated_snr_weighting>;
using reference_config_diffusion =
    gaussian_diffusion<reference_schedule, x_prediction, snr_plus_one_weighting>;

}  // namespace ambiseg::diffusion
