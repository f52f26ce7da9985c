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
//
// A step may carry a guard (optim::guard_allows): doubles on the step's device, typically
// the step's loss and gradient norm, that the update reads before it changes anything; if
// one is not finite, nothing changes. The step counter advances either way — on a GPU the
// host does not know without waiting — so a caller that reads the guard afterwards and
// abandons the step sets it back (train::trainer does).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/config.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/optim/adamw_update.hpp"

#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/optim/cuda/api.hpp"
#endif

namespace ambiseg::optim {

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

  void step(parameter_store<T, D>& params, tensor_view<const double, D> guard = {}) {
    step(params.flat_values(), params.flat_grads(), guard);
  }

  // values += update(grads); values and grads are the flat buffers the state was made for.
  void step(tensor_view<T, D> values, tensor_view<const T, D> grads,
            tensor_view<const double, D> guard = {}) {
    const std::int64_t n = exp_avg_.numel();
    throw_if<shape_error>(values.numel() != n || grads.numel() != n, "adamw::step: values (",
                          values.numel(), ") and grads (", grads.numel(), ") must have the ", n,
                          " elements the optimiser state was created for");
    const auto s = adamw_step_scalars<T>::make(options_, steps_ + 1);
    if constexpr (std::same_as<D, cpu>) {
      if (guard.data() && !guard_allows(guard.data(), guard.numel())) {
        ++steps_;
        return;
      }
      T* p = values.data();
      const T* g = grads.data();
      T* m = exp_avg_.data();
      T* v = exp_avg_sq_.data();
      // Elements are independent: the result does not depend on the thread count.
#pragma omp parallel for simd schedule(static) if (n >= (1 << 15))
      for (std::int64_t i = 0; i < n; ++i) adamw_update_element(p[i], g[i], m[i], v[i], s);
    } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
      // One launch, the same adamw_update_element per element; enqueued, not awaited.
      cuda_kernels::adamw_step<T>(values, grads, exp_avg_.view(), exp_avg_sq_.view(), s, guard);
#else
      static_assert(dependent_false<D>,
                    "adamw<T, ambiseg::cuda>: the CUDA backend is not built in; configure with "
                    "-DAMBISEG_CUDA=ON and link the target ambiseg::cuda");
#endif
    } else {
      static_assert(dependent_false<D>, "adamw::step: no update for this device");
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

  // ---- state for checkpoints (train/checkpoint.hpp): named flat tensors + JSON scalars --
  static constexpr std::string_view checkpoint_key = "optimizer";
  static constexpr std::string_view checkpoint_prefix = "optim.";
  std::vector<named_flat_state<T, D>> state_tensors() {
    return {{"m", exp_avg(), "AdamW first moment"}, {"v", exp_avg_sq(), "AdamW second moment"}};
  }
  nlohmann::json state_json() const {
    return {{"type", "adamw"},       {"lr", options_.lr},   {"beta1", options_.beta1}, {"beta2", options_.beta2},
            {"eps", options_.eps},   {"weight_decay", options_.weight_decay}, {"steps", steps_}};
  }
  // Throws value_error unless j is a state_json() this optimiser can take.
  void check_state_json(const nlohmann::json& j) const { (void)parse_state(j); }
  // Hyperparameters and the step count, as torch's load_state_dict restores them.
  void load_state_json(const nlohmann::json& j) {
    const auto [options, steps] = parse_state(j);
    options_ = options;
    steps_ = steps;
  }

 private:
  static std::pair<adamw_options, std::int64_t> parse_state(const nlohmann::json& j) {
    try {
      throw_if<value_error>(!j.is_object() || j.value("type", std::string()) != "adamw",
                            "adamw state: not an AdamW state (", j.dump(), ")");
      for (const char* key : {"lr", "beta1", "beta2", "eps", "weight_decay", "steps"})
        throw_if<value_error>(!j.contains(key), "adamw state lacks \"", key, "\"");
      const adamw_options o{j.at("lr").get<double>(), j.at("beta1").get<double>(), j.at("beta2").get<double>(),
                            j.at("eps").get<double>(), j.at("weight_decay").get<double>()};
      o.validate();
      const auto steps = j.at("steps").get<std::int64_t>();
      throw_if<value_error>(steps < 0, "adamw state: negative step count ", steps);
      return {o, steps};
    } catch (const nlohmann::json::exception& e) {
      throw value_error(std::string("adamw state: ") + e.what());
    }
  }

  adamw_options options_;
  tensor<T, D> exp_avg_;
  tensor<T, D> exp_avg_sq_;
  std::int64_t steps_ = 0;
};

}  // namespace ambiseg::optim
