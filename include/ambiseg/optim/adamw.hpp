// ambiseg/optim/adamw.hpp — AdamW with the semantics of torch.optim.AdamW (PyTorch 1.13,
// amsgrad=False, maximize=False), on a parameter_store's flat buffers.
//
// One step, for every scalar p with gradient g (t = the step number, 1 for the first):
//   p ← p · (1 − lr·wd)                         decoupled weight decay, applied first
//   m ← β1·m + (1 − β1)·g
//   v ← β2·v + (1 − β2)·g²
//   p ← p − (lr / (1 − β1^t)) · m / (√v / √(1 − β2^t) + eps)
// The per-step scalars are computed in double and rounded to T once, as PyTorch does with
// its Python-float hyperparameters; the element update runs in T. Padding slots of the
// flat buffer have zero value, gradient and moments, and stay exactly zero.
// Every parameter is decayed (the reference uses one param group with weight_decay).
#pragma once

#include <cmath>
#include <cstdint>

#include "ambiseg/core/config.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/tensor.hpp"

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

// The element update in PyTorch's operation order (one rounding per torch op).
template <class T>
AMBISEG_HD void adamw_update_element(T& p, T g, T& m, T& v, const adamw_step_scalars<T>& s) {
  p = p * s.decay;
  m = m * s.beta1 + s.one_minus_beta1 * g;
  v = v * s.beta2 + s.one_minus_beta2 * (g * g);
  const T denom = std::sqrt(v) / s.bias_correction2_sqrt + s.eps;
  p = p + (-s.step_size) * (m / denom);
}

template <class T, class D = cpu>
class adamw {
  static_assert(std::is_floating_point_v<T>, "adamw: T must be float or double");

 public:
  // State for a flat buffer of `flat_size` elements (moments start at zero, step 0).
  explicit adamw(std::int64_t flat_size, adamw_options options = {}) : options_(options) {
    options_.validate();
    throw_if<value_error>(flat_size < 0, "adamw: negative size ", flat_size);
    exp_avg_ = tensor<T, D>::zeros(shape{flat_size});
    exp_avg_sq_ = tensor<T, D>::zeros(shape{flat_size});
  }
  explicit adamw(const parameter_store<T, D>& params, adamw_options options = {})
      : adamw(params.flat_values().numel(), options) {}

  adamw(adamw&&) = default;
  adamw& operator=(adamw&&) = default;

  void step(parameter_store<T, D>& params) { step(params.flat_values(), params.flat_grads()); }

  // values += update(grads); values and grads are the flat buffers the state was made for.
  void step(tensor_view<T, D> values, tensor_view<const T, D> grads) {
    const std::int64_t n = exp_avg_.numel();
    throw_if<shape_error>(values.numel() != n || grads.numel() != n, "adamw::step: values (",
                          values.numel(), ") and grads (", grads.numel(), ") must have the ", n,
                          " elements the optimiser state was created for");
    const auto s = adamw_step_scalars<T>::make(options_, steps_ + 1);
    if constexpr (std::same_as<D, cpu>) {
      T* p = values.data();
      const T* g = grads.data();
      T* m = exp_avg_.data();
      T* v = exp_avg_sq_.data();
      // Elements are independent: the result does not depend on the thread count.
#pragma omp parallel for simd schedule(static) if (n >= (1 << 15))
      for (std::int64_t i = 0; i < n; ++i) adamw_update_element(p[i], g[i], m[i], v[i], s);
    } else {
      static_assert(dependent_false<D>,
                    "adamw::step: only the CPU loop exists; a device kernel applies "
                    "adamw_update_element with adamw_step_scalars<T>::make(options, t)");
    }
    ++steps_;
  }

  const adamw_options& options() const { return options_; }
  void set_options(const adamw_options& o) {
    o.validate();
    options_ = o;
  }
  double lr() const { return options_.lr; }
  void set_lr(double lr) {
    throw_if<value_error>(!(lr >= 0.0) || !std::isfinite(lr), "adamw::set_lr: invalid learning rate ", lr);
    options_.lr = lr;
  }

  // Completed steps; the next step uses bias corrections for steps() + 1.
  std::int64_t steps() const { return steps_; }
  void set_steps(std::int64_t t) {
    throw_if<value_error>(t < 0, "adamw::set_steps: negative step count ", t);
    steps_ = t;
  }

  // First and second moments, laid out like the parameter_store's flat buffers.
  tensor_view<T, D> exp_avg() { return exp_avg_.view(); }
  tensor_view<const T, D> exp_avg() const { return exp_avg_.view(); }
  tensor_view<T, D> exp_avg_sq() { return exp_avg_sq_.view(); }
  tensor_view<const T, D> exp_avg_sq() const { return exp_avg_sq_.view(); }

  void reset() {
    exp_avg_.zero();
    exp_avg_sq_.zero();
    steps_ = 0;
  }

 private:
  adamw_options options_;
  tensor<T, D> exp_avg_;
  tensor<T, D> exp_avg_sq_;
  std::int64_t steps_ = 0;
};

}  // namespace ambiseg::optim
