// ambiseg/diffusion/weightings.hpp — w(t) in L = E_t[ w(t)·mean_pixels (x0 − x̂0)² ].
//
// The loss is always taken in x-space (paper Eq. 8), so each weighting says how much a
// time counts in x-space units: snr_weighting with eps-prediction is the plain ε-MSE,
// snr_plus_one_weighting with v-prediction the plain v-MSE. SNR is that of the schedule
// handed in, i.e. of the scaled, clipped schedule when the model uses one.
//
//   snr_weighting            SNR
//   truncated_snr_weighting  max(SNR, 1)          (the paper's final model)
//   snr_plus_one_weighting   SNR + 1              (the reference config)
//   uniform_weighting        1
//   sigmoid_weighting        sigmoid(λ + bias)    (the reference writes sigmoid(λ − b'))
//   decoupled<W>             −dλ/dt · W           (the paper's printed sigmoid weighting is
//                                                  decoupled<sigmoid_weighting>)
#pragma once

#include <algorithm>
#include <cmath>

#include "ambiseg/diffusion/concepts.hpp"

namespace ambiseg::diffusion {

struct snr_weighting {
  static constexpr const char* name = "snr";
  template <noise_schedule S>
  double weight(const S& s, double t) const { return snr(s, t); }
};

struct truncated_snr_weighting {
  static constexpr const char* name = "truncated_snr";
  template <noise_schedule S>
  double weight(const S& s, double t) const { return std::max(snr(s, t), 1.0); }
};

struct snr_plus_one_weighting {
  static constexpr const char* name = "snr_plus_one";
  template <noise_schedule S>
  double weight(const S& s, double t) const { return snr(s, t) + 1.0; }
};

struct uniform_weighting {
  static constexpr const char* name = "uniform";
  template <noise_schedule S>
  double weight(const S& /*s*/, double /*t*/) const { return 1.0; }
};

struct sigmoid_weighting {
  static constexpr const char* name = "sigmoid";
  double bias = 0.0;  // b̃; larger moves the weight towards low noise (b̃ = 2 resembles SNR)
  template <noise_schedule S>
  double weight(const S& s, double t) const { return stable_sigmoid(log_snr(s, t) + bias); }
};

// Multiplies any weighting by −dλ/dt (positive, λ decreases), turning a weighting over λ
// into one over t.
template <class W>
struct decoupled {
  static constexpr const char* name = "decoupled";
  W inner{};
  template <noise_schedule S>
  double weight(const S& s, double t) const {
    static_assert(check_loss_weighting<W, S>(), "decoupled<W>: W must be a loss_weighting");
    return -d_log_snr(s, t) * static_cast<double>(inner.weight(s, t));
  }
};

}  // namespace ambiseg::diffusion
