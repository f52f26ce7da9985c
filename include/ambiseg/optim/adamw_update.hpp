// ambiseg/optim/adamw_update.hpp — the optimisers' scalar maths, callable on the host and
// on the device: AdamW's options, per-step scalars and element update, and the step guard.
// The CPU loops (optim/adamw.hpp, optim/ema.hpp) and the kernels (optim/cuda/kernels.cuh)
// share it; it stays free of OpenMP and JSON so that nvcc compiles it. The semantics are
// documented in optim/adamw.hpp.
#pragma once

#include <cmath>
#include <cstdint>

#include "ambiseg/core/config.hpp"
#include "ambiseg/core/error.hpp"

namespace ambiseg::optim {

struct adamw_options {
  double lr = 1e-4;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double weight_decay = 0.01;

  // The ranges torch.optim.AdamW accepts.
  void validate() const {
    throw_if<value_error>(!(lr >= 0.0) || !std::isfinite(lr), "adamw: invalid learning rate ", lr);
    throw_if<value_error>(!(eps >= 0.0) || !std::isfinite(eps), "adamw: invalid eps ", eps);
    throw_if<value_error>(!(beta1 >= 0.0 && beta1 < 1.0), "adamw: invalid beta1 ", beta1, " (need 0 <= beta1 < 1)");
    throw_if<value_error>(!(beta2 >= 0.0 && beta2 < 1.0), "adamw: invalid beta2 ", beta2, " (need 0 <= beta2 < 1)");
    throw_if<value_error>(!(weight_decay >= 0.0) || !std::isfinite(weight_decay),
                          "adamw: invalid weight_decay ", weight_decay);
  }
};

// The scalars of one step, shared by every element (and by a device kernel).
template <class T>
struct adamw_step_scalars {
  T decay;                  // 1 − lr·wd
  T beta1, one_minus_beta1;
  T beta2, one_minus_beta2;
  T step_size;              // lr / (1 − β1^t)
  T bias_correction2_sqrt;  // √(1 − β2^t)
  T eps;

  static adamw_step_scalars make(const adamw_options& o, std::int64_t t) {
    const double bias_correction1 = 1.0 - std::pow(o.beta1, static_cast<double>(t));
    const double bias_correction2 = 1.0 - std::pow(o.beta2, static_cast<double>(t));
    return {static_cast<T>(1.0 - o.lr * o.weight_decay),
            static_cast<T>(o.beta1),
            static_cast<T>(1.0 - o.beta1),
            static_cast<T>(o.beta2),
            static_cast<T>(1.0 - o.beta2),
            static_cast<T>(o.lr / bias_correction1),
            static_cast<T>(std::sqrt(bias_correction2)),
            static_cast<T>(o.eps)};
  }
};

// A step guard: device (or host) doubles, e.g. a training step's loss and gradient norm,
// that an update reads before it changes anything. The update runs only if every one is
// finite, so a step whose loss or gradients hold NaN or ∞ leaves the weights, moments and
// averages untouched without the host waiting to read the values first. (v − v == 0 is
// false exactly for NaN and ±∞, and needs no <cmath> in device code.)
AMBISEG_HD bool guard_allows(const double* guard, std::int64_t count) {
  for (std::int64_t i = 0; i < count; ++i)
    if (!(guard[i] - guard[i] == 0.0)) return false;
  return true;
}

// The element update in PyTorch's operation order (one rounding per torch op).
template <class T>
AMBISEG_HD void adamw_update_element(T& p, T g, T& m, T& v, const adamw_step_scalars<T>& s) {
  p = p * s.decay;
  m = m * s.beta1 + s.one_minus_beta1 * g;
  v = v * s.beta2 + s.one_minus_beta2 * (g * g);
  const T denom = std::sqrt(v) / s.bias_correction2_sqrt + s.eps;
  p = p + (-s.step_size) * (m / denom);
}

}  // namespace ambiseg::optim
