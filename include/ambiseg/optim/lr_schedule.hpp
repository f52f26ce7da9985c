// ambiseg/optim/lr_schedule.hpp — linear warm-up, constant, cosine decay to zero.
//
// `step` counts the optimiser updates already taken: lr(0) is the rate of the first update.
//   warm-up   factor (step + 1) / warmup_steps for step < warmup_steps, so the first update
//             uses base_lr / warmup_steps and update number warmup_steps (step =
//             warmup_steps − 1) is the first at the full base_lr;
//   constant  base_lr until decay_start = total_steps − decay_steps;
//   decay     base_lr · ½(1 + cos(π · (step − decay_start) / decay_steps)) for
//             decay_start ≤ step < total_steps: base_lr at decay_start, reaching 0 at
//             step = total_steps (and 0 afterwards).
// If the warm-up and decay windows overlap, the two factors multiply.
// SPEC §7: base 1e-4, warm-up 1000, 400k steps of which the last 100k decay (ablations 50k / 10k).
// The paper gives no formula; this is the usual LambdaLR warm-up with the step offset that
// makes the very first update non-zero.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

#include "ambiseg/core/error.hpp"

namespace ambiseg::optim {

struct warmup_cosine_schedule {
  double base_lr = 1e-4;
  std::int64_t warmup_steps = 1000;
  std::int64_t total_steps = 400000;
  std::int64_t decay_steps = 100000;

  void validate() const {
    throw_if<value_error>(!(base_lr >= 0.0) || !std::isfinite(base_lr), "warmup_cosine_schedule: invalid base_lr ", base_lr);
    throw_if<value_error>(warmup_steps < 0, "warmup_cosine_schedule: negative warmup_steps ", warmup_steps);
    throw_if<value_error>(total_steps < 0, "warmup_cosine_schedule: negative total_steps ", total_steps);
    throw_if<value_error>(decay_steps < 0 || decay_steps > total_steps, "warmup_cosine_schedule: decay_steps ",
                          decay_steps, " must lie in [0, total_steps = ", total_steps, "]");
  }

  std::int64_t decay_start() const { return total_steps - decay_steps; }

  double lr(std::int64_t step) const {
    throw_if<value_error>(step < 0, "warmup_cosine_schedule::lr: negative step ", step);
    if (step >= total_steps) return 0.0;
    double factor = 1.0;
    if (step < warmup_steps) factor = static_cast<double>(step + 1) / static_cast<double>(warmup_steps);
    if (step >= decay_start() && decay_steps > 0) {
      const double progress = static_cast<double>(step - decay_start()) / static_cast<double>(decay_steps);
      factor *= 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
    }
    return base_lr * factor;
  }
};

}  // namespace ambiseg::optim
