// ambiseg/optim/ema.hpp — exponential moving average of the weights.
//
//   shadow ← decay · shadow + (1 − decay) · value      (per flat element, after each step)
// the update of the usual diffusion training loops (guided-diffusion's update_ema). The
// shadow starts as a copy of the weights and shares the parameter_store's flat layout, so
// it is saved, loaded and swapped in by parameter name like the weights themselves.
// ema<T, ambiseg::cuda> keeps the shadow on the GPU and runs optim/cuda kernels (update,
// swap; the copy is a device-to-device copy), enqueued on the current context's stream.
#pragma once

#include <concepts>
#include <cstdint>
#include <utility>

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/optim/adamw_update.hpp"

#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/optim/cuda/api.hpp"
#endif

namespace ambiseg::optim {

template <class T, class D = cpu>
class ema {
#if !defined(AMBISEG_WITH_CUDA)
  static_assert(!std::same_as<D, cuda>,
                "optim::ema<T, ambiseg::cuda>: the CUDA backend is not built in; configure with "
                "-DAMBISEG_CUDA=ON and link the target ambiseg::cuda");
#endif
  static_assert(std::same_as<D, cpu> || std::same_as<D, cuda>, "optim::ema: unknown device");

 public:
  ema(const parameter_store<T, D>& params, double decay) : decay_(decay) {
    throw_if<value_error>(!(decay >= 0.0 && decay <= 1.0), "ema: decay must lie in [0, 1], got ", decay);
    shadow_ = tensor<T, D>(params.flat_values().shape());
    reset(params);
  }

  // Starts the average over at the store's current values (weights set after construction).
  void reset(const parameter_store<T, D>& params) {
    throw_if<shape_error>(params.flat_values().numel() != shadow_.numel(), "ema::reset: the store has ",
                          params.flat_values().numel(), " flat elements, the average ", shadow_.numel());
    shadow_.copy_from(params.flat_values());
    updates_ = 0;
  }

  // With a guard (see optim/adamw.hpp) the average changes only if every guard value is
  // finite; the update count advances either way.
  void update(const parameter_store<T, D>& params, tensor_view<const double, D> guard = {}) {
    const auto values = params.flat_values();
    throw_if<shape_error>(values.numel() != shadow_.numel(), "ema::update: the store has ", values.numel(),
                          " flat elements, the average ", shadow_.numel());
#if defined(AMBISEG_WITH_CUDA)
    if constexpr (std::same_as<D, cuda>) {
      cuda_kernels::ema_update<T>(shadow_.view(), values, decay_, guard);
      ++updates_;
      return;
    }
#endif
    if (guard.data() && !guard_allows(guard.data(), guard.numel())) {
      ++updates_;
      return;
    }
    const T keep = static_cast<T>(decay_), take = static_cast<T>(1.0 - decay_);
    T* s = shadow_.data();
    const T* v = values.data();
    const std::int64_t n = shadow_.numel();
#pragma omp parallel for simd schedule(static) if (n >= (1 << 15))
    for (std::int64_t i = 0; i < n; ++i) s[i] = s[i] * keep + take * v[i];
    ++updates_;
  }

  // Evaluating with the averaged weights: swap in, evaluate, swap back.
  void swap_with(parameter_store<T, D>& params) {
    auto values = params.flat_values();
    throw_if<shape_error>(values.numel() != shadow_.numel(), "ema::swap_with: size mismatch (",
                          values.numel(), " vs ", shadow_.numel(), ")");
#if defined(AMBISEG_WITH_CUDA)
    if constexpr (std::same_as<D, cuda>) {
      cuda_kernels::swap_contents<T>(shadow_.view(), values);
      return;
    }
#endif
    T* s = shadow_.data();
    T* v = values.data();
    for (std::int64_t i = 0; i < shadow_.numel(); ++i) std::swap(s[i], v[i]);
  }
  void copy_to(parameter_store<T, D>& params) const {
    auto values = params.flat_values();
    throw_if<shape_error>(values.numel() != shadow_.numel(), "ema::copy_to: size mismatch (",
                          values.numel(), " vs ", shadow_.numel(), ")");
    if constexpr (std::same_as<D, cuda>) {
      device_memory<D>::copy(values.data(), shadow_.data(), sizeof(T) * shadow_.numel());
      return;
    }
    std::copy(shadow_.data(), shadow_.data() + shadow_.numel(), values.data());
  }

  double decay() const { return decay_; }
  std::int64_t updates() const { return updates_; }
  void set_updates(std::int64_t n) {
    throw_if<value_error>(n < 0, "ema::set_updates: negative count ", n);
    updates_ = n;
  }
  // Laid out like parameter_store::flat_values().
  tensor_view<T, D> shadow() { return shadow_.view(); }
  tensor_view<const T, D> shadow() const { return shadow_.view(); }

  // ---- state for checkpoints (train/checkpoint.hpp): the averaged weights + the count ----
  static constexpr std::string_view checkpoint_key = "ema";
  static constexpr std::string_view checkpoint_prefix = "ema.";
  std::vector<named_flat_state<T, D>> state_tensors() { return {{"", shadow(), "EMA weights"}}; }
  nlohmann::json state_json() const { return {{"decay", decay_}, {"updates", updates_}}; }
  void check_state_json(const nlohmann::json& j) const { (void)parse_updates(j); }
  // The update count; the decay stays the one this EMA was built with.
  void load_state_json(const nlohmann::json& j) { updates_ = parse_updates(j); }

 private:
  static std::int64_t parse_updates(const nlohmann::json& j) {
    try {
      const auto n = j.at("updates").get<std::int64_t>();
      throw_if<value_error>(n < 0, "ema state: negative update count ", n);
      return n;
    } catch (const nlohmann::json::exception& e) {
      throw value_error(std::string("ema state: ") + e.what());
    }
  }

  double decay_;
  tensor<T, D> shadow_;
  std::int64_t updates_ = 0;
};

}  // namespace ambiseg::optim
