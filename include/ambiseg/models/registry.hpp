// ambiseg/models/registry.hpp — models chosen by name at run time.
//
//   any_model<D>        a segmentation_model behind a virtual interface (what the trainer,
//                       the sampler and the CLI hold; it satisfies the concept itself)
//   model_registry<D>   kind name → how to validate a config, lay out its parameters
//                       without allocating them, and build the model on D
//   register_model<M>   adds a model template (M<cpu>, and M<cuda> in CUDA builds)
//
// A new model is one header defining M<D> with a JSON `config_type`, plus one line:
//   inline const bool registered_my_model = models::register_model<my_model>();
// diffusion_segmenter registers itself in builtin_models.hpp.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/models/model.hpp"

namespace ambiseg::models {

template <class D>
class any_model {
 public:
  using device_type = D;
  virtual ~any_model() = default;

  virtual std::string_view kind_name() const = 0;
  virtual parameter_store<float, D>& parameters() = 0;
  virtual const parameter_store<float, D>& parameters() const = 0;
  virtual nlohmann::json config_json() const = 0;
  virtual input_spec inputs() const = 0;
  virtual void loss_and_gradient(training_inputs<D> batch, rng& g, tensor_view<double, D> report) = 0;
  virtual void sample(tensor_view<const float, D> images, const sampling_request& request, rng& g,
                      tensor_view<float, D> scores, tensor_view<const float, D> init_noise = {}) = 0;
  virtual std::int64_t network_passes(const sampling_request& request) const = 0;
  // The model's buffers (model_with_buffers), or nullptr when it has none.
  virtual parameter_store<float, D>* buffers() = 0;
  const parameter_store<float, D>* buffers() const { return const_cast<any_model*>(this)->buffers(); }
  // The steps, sampler and spacing every draw runs whatever a request asks
  // (model_with_fixed_sampling), or nullopt when the request decides.
  virtual std::optional<sampling_request> fixed_sampling() const = 0;

  // The model inside, when it is an M (nullptr otherwise): for code that needs more than
  // the concept, e.g. a diffusion model's network.
  template <class M>
  M* as() {
    return static_cast<M*>(typed(typeid(M)));
  }
  template <class M>
  const M* as() const {
    return static_cast<const M*>(const_cast<any_model*>(this)->typed(typeid(M)));
  }

 protected:
  virtual void* typed(const std::type_info& type) = 0;
};

template <segmentation_model M>
class model_holder final : public any_model<typename M::device_type> {
  using D = typename M::device_type;

 public:
  template <class... Args>
  explicit model_holder(Args&&... args) : model_(std::forward<Args>(args)...) {}

  std::string_view kind_name() const override { return M::kind; }
  parameter_store<float, D>& parameters() override { return model_.parameters(); }
  const parameter_store<float, D>& parameters() const override { return model_.parameters(); }
  nlohmann::json config_json() const override { return model_.config_json(); }
  input_spec inputs() const override { return model_.inputs(); }
  void loss_and_gradient(training_inputs<D> batch, rng& g, tensor_view<double, D> report) override {
    model_.loss_and_gradient(batch, g, report);
  }
  void sample(tensor_view<const float, D> images, const sampling_request& request, rng& g,
              tensor_view<float, D> scores, tensor_view<const float, D> init_noise) override {
    model_.sample(images, request, g, scores, init_noise);
  }
  std::int64_t network_passes(const sampling_request& request) const override {
    return model_.network_passes(request);
  }
  parameter_store<float, D>* buffers() override {
    if constexpr (model_with_buffers<M>) return &model_.buffers();
    else return nullptr;
  }
  std::optional<sampling_request> fixed_sampling() const override {
    if constexpr (model_with_fixed_sampling<M>) return model_.fixed_sampling();
    else return std::nullopt;
  }

 private:
  void* typed(const std::type_info& type) override { return type == typeid(M) ? &model_ : nullptr; }
  M model_;
};

template <class D>
struct model_entry {
  // Throws value_error (a bad config) or format_error (malformed JSON).
  std::function<void(const nlohmann::json& config, const build_context&)> validate;
  std::function<std::vector<typename parameter_store<float, D>::entry>(const nlohmann::json& config,
                                                                       const build_context&)>
      parameter_layout;
  // What the model would accept, known without building it (a crop size checked early).
  std::function<input_spec(const nlohmann::json& config, const build_context&)> inputs;
  std::function<std::unique_ptr<any_model<D>>(const nlohmann::json& config, const build_context&)> build;
};

template <class D>
class model_registry {
 public:
  static model_registry& instance() {
    static model_registry registry;
    return registry;
  }

  void add(std::string kind, model_entry<D> entry) {
    const std::lock_guard lock(mutex_);
    entries_[std::move(kind)] = std::move(entry);
  }
  const model_entry<D>& at(const std::string& kind) const {
    const std::lock_guard lock(mutex_);
    auto it = entries_.find(kind);
    if (it == entries_.end()) {
      std::string known;
      for (const auto& [name, e] : entries_) known += (known.empty() ? "" : ", ") + name;
      throw value_error("unknown model '" + kind + "' on " + std::string(D::name) + " (known: " + known +
                        ")");
    }
    return it->second;
  }
  std::vector<std::string> kinds() const {
    const std::lock_guard lock(mutex_);
    std::vector<std::string> names;
    for (const auto& [name, e] : entries_) names.push_back(name);
    return names;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, model_entry<D>> entries_;
};

namespace detail {
template <template <class> class M, class D>
void register_on() {
  using model = M<D>;
  using config = typename model::config_type;
  model_entry<D> e;
  e.validate = [](const nlohmann::json& j, const build_context& c) { j.get<config>().validate(c.image_channels); };
  e.parameter_layout = [](const nlohmann::json& j, const build_context& c) {
    return model::parameter_layout(j.get<config>(), c);
  };
  e.inputs = [](const nlohmann::json& j, const build_context& c) { return model::inputs_of(j.get<config>(), c); };
  e.build = [](const nlohmann::json& j, const build_context& c) -> std::unique_ptr<any_model<D>> {
    return std::make_unique<model_holder<model>>(j.get<config>(), c);
  };
  model_registry<D>::instance().add(std::string(model::kind), std::move(e));
}
}  // namespace detail

// Registers M<cpu> (and M<cuda> when the CUDA backend is compiled in) under M's kind, or
// on the listed devices only (register_model<M, cpu>() for a model without device code).
// M<D> needs: `using config_type` (JSON-convertible, validate(image_channels)), a
// constructor (config_type, build_context), static parameter_layout(config_type,
// build_context) and inputs_of(config_type, build_context), and the segmentation_model
// members.
template <template <class> class M, class... Devices>
bool register_model() {
  if constexpr (sizeof...(Devices) > 0) {
    (detail::register_on<M, Devices>(), ...);
  } else {
    detail::register_on<M, cpu>();
#if defined(AMBISEG_WITH_CUDA)
    detail::register_on<M, cuda>();
#endif
  }
  return true;
}

}  // namespace ambiseg::models
