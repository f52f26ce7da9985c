// ambiseg/models/diffusion_policies.hpp — the run-time choice of (schedule, prediction,
// weighting) mapped onto the compile-time policies of diffusion/ through one dispatch.
//
//   policy_choice       names read from the command line or a checkpoint's config JSON
//   make_diffusion<D>   → std::unique_ptr<diffusion_model<D>>, a virtual facade over
//                       diffusion_runner<gaussian_diffusion<clipped<input_scaled<S>>, P, W>, float, D>
//
// The schedule is always input-scaled and λ-clipped (SPEC §2; clipping keeps ε/v
// predictions defined at t = 0, 1), with S ∈ {cosine, linear, linear_simple, parabola},
// P ∈ {x, eps, v}, W ∈ {snr, trunc_snr, snr_plus_one, uniform, sigmoid}: 60 classes per
// device, each instantiating the loss, the noise draw and one sampling loop per sampler.
//
// Shape legend: B batch (or chains), Cc image channels, H×W pixels.
#pragma once

#include <cmath>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/diffusion/all.hpp"
#include "ambiseg/models/diffusion_config.hpp"

namespace ambiseg::models {

// void(x_t [B,1,H,W], t [B] (host), cond [B,Cc,H,W], f_out [B,1,H,W]) on device D.
template <class D>
using denoiser_fn = std::function<void(tensor_view<const float, D>, std::span<const double>,
                                       tensor_view<const float, D>, tensor_view<float, D>)>;

template <class D>
class diffusion_model {
 public:
  virtual ~diffusion_model() = default;
  virtual const policy_choice& choice() const = 0;
  // Names of the compile-time policies actually instantiated (for logs and tests).
  virtual std::string describe() const = 0;
  virtual double log_snr(double t) const = 0;
  virtual double weight(double t) const = 0;
  // The N + 1 times of an N-step sampler on this schedule (diffusion/sampling_grid.hpp).
  virtual std::vector<double> sampling_times(int steps, diffusion::time_spacing spacing) const = 0;
  // The runner's device operations with per-sample times t [B] (host): x_t = α x0 + σ ε;
  // x̂0 from f; the weighted x-space loss against x0 into report [B + 1] and grad_f.
  virtual void add_noise(tensor_view<const float, D> x0, std::span<const double> t, tensor_view<const float, D> eps,
                         tensor_view<float, D> x_t) = 0;
  virtual void predict_x0(tensor_view<const float, D> x_t, std::span<const double> t, tensor_view<const float, D> f,
                          tensor_view<float, D> x0_hat) = 0;
  virtual void loss_async(tensor_view<const float, D> x0, tensor_view<const float, D> x_t, std::span<const double> t,
                          tensor_view<const float, D> f, tensor_view<float, D> grad_f,
                          tensor_view<double, D> report) = 0;
  // batch.t (stratified or uniform, per the choice) and batch.eps ~ N(0, 1), drawn on the
  // host in a fixed order and uploaded; global > 0: rows [first, first + B) of the draws of
  // a global batch (diffusion_runner::draw_training_noise).
  virtual void draw_training_noise(const shape& x0_shape, rng& g, diffusion::training_batch<float, D>& batch,
                                   std::int64_t first = 0, std::int64_t global = 0) = 0;
  // The x-space weighted loss (read back to the host: it waits for the device);
  // batch.grad_f receives dL/df on the device.
  virtual double training_loss(const denoiser_fn<D>& net, tensor_view<const float, D> x0,
                               tensor_view<const float, D> cond,
                               diffusion::training_batch<float, D>& batch) = 0;
  // The same, enqueued: report [B + 1] (device) receives the per-sample losses and the loss;
  // nothing is read back or checked (diffusion_runner::training_loss_async).
  virtual void training_loss_async(const denoiser_fn<D>& net, tensor_view<const float, D> x0,
                                   tensor_view<const float, D> cond,
                                   diffusion::training_batch<float, D>& batch,
                                   tensor_view<double, D> report) = 0;
  // images [B,Cc,H,W] → x [B·n,1,H,W] = x̂0 of n chains per image (diffusion_runner::sample).
  virtual void sample(const denoiser_fn<D>& net, sampler_kind sampler, tensor_view<const float, D> images,
                      int n, rng& g, const diffusion::sampling_options& opts, tensor_view<float, D> x,
                      tensor_view<const float, D> init_noise) = 0;
  // x [B,1,H,W] holds x_1 on entry and x̂0 on return; cond row-aligned with x.
  virtual void sample_chains(const denoiser_fn<D>& net, sampler_kind sampler, tensor_view<float, D> x,
                             tensor_view<const float, D> cond, rng& g,
                             const diffusion::sampling_options& opts) = 0;
};

// The multistep solvers share one sampling loop per policy class: their coefficients are
// host maths behind diffusion::any_multistep_sampler.
inline diffusion::any_multistep_sampler multistep_sampler_of(sampler_kind s) {
  switch (s) {
    case sampler_kind::dpmpp_2m: return diffusion::any_multistep_sampler(diffusion::dpmpp_2m{});
    case sampler_kind::dpmpp_3m: return diffusion::any_multistep_sampler(diffusion::dpmpp_3m{});
    case sampler_kind::sde_dpmpp_2m: return diffusion::any_multistep_sampler(diffusion::sde_dpmpp_2m{});
    case sampler_kind::unipc: return diffusion::any_multistep_sampler(diffusion::unipc<2>{});
    case sampler_kind::unipc3: return diffusion::any_multistep_sampler(diffusion::unipc<3>{});
    default: break;
  }
  throw value_error("multistep_sampler_of: " + sampler_name(s) + " is a one-step sampler");
}

template <class Diffusion, class D>
class diffusion_model_impl final : public diffusion_model<D> {
 public:
  diffusion_model_impl(Diffusion d, policy_choice choice) : d_(std::move(d)), choice_(std::move(choice)) {}

  const policy_choice& choice() const override { return choice_; }
  std::string describe() const override {
    return std::string("gaussian_diffusion<clipped<input_scaled<") + choice_.schedule + ">>, " +
           Diffusion::prediction_type::name + "_prediction, " + Diffusion::weighting_type::name + ">";
  }
  double log_snr(double t) const override { return d_.host().level(t).log_snr; }
  double weight(double t) const override { return d_.host().weight(t); }
  std::vector<double> sampling_times(int steps, diffusion::time_spacing spacing) const override {
    return diffusion::sampling_times(d_.host().schedule(), steps, spacing);
  }
  void add_noise(tensor_view<const float, D> x0, std::span<const double> t, tensor_view<const float, D> eps,
                 tensor_view<float, D> x_t) override {
    d_.add_noise(x0, t, eps, x_t);
  }
  void predict_x0(tensor_view<const float, D> x_t, std::span<const double> t, tensor_view<const float, D> f,
                  tensor_view<float, D> x0_hat) override {
    d_.predict_x0(x_t, t, f, x0_hat);
  }
  void loss_async(tensor_view<const float, D> x0, tensor_view<const float, D> x_t, std::span<const double> t,
                  tensor_view<const float, D> f, tensor_view<float, D> grad_f,
                  tensor_view<double, D> report) override {
    d_.loss_async(x0, x_t, t, f, grad_f, report);
  }
  void draw_training_noise(const shape& x0_shape, rng& g, diffusion::training_batch<float, D>& batch,
                           std::int64_t first = 0, std::int64_t global = 0) override {
    if (choice_.stratified_t)
      d_.draw_training_noise(x0_shape, g, batch, diffusion::stratified_timesteps{}, first, global);
    else
      d_.draw_training_noise(x0_shape, g, batch, diffusion::uniform_timesteps{}, first, global);
  }
  double training_loss(const denoiser_fn<D>& net, tensor_view<const float, D> x0,
                       tensor_view<const float, D> cond,
                       diffusion::training_batch<float, D>& batch) override {
    return d_.training_loss(net, x0, cond, batch);
  }
  void training_loss_async(const denoiser_fn<D>& net, tensor_view<const float, D> x0,
                           tensor_view<const float, D> cond,
                           diffusion::training_batch<float, D>& batch,
                           tensor_view<double, D> report) override {
    d_.training_loss_async(net, x0, cond, batch, report);
  }
  void sample(const denoiser_fn<D>& net, sampler_kind sampler, tensor_view<const float, D> images, int n,
              rng& g, const diffusion::sampling_options& opts, tensor_view<float, D> x,
              tensor_view<const float, D> init_noise) override {
    switch (sampler) {
      case sampler_kind::ddim: d_.sample(net, diffusion::ddim_sampler{}, images, n, g, opts, x, init_noise); break;
      case sampler_kind::ddpm_small: d_.sample(net, diffusion::ddpm_small{}, images, n, g, opts, x, init_noise); break;
      case sampler_kind::ddpm_large: d_.sample(net, diffusion::ddpm_large{}, images, n, g, opts, x, init_noise); break;
      default: d_.sample(net, multistep_sampler_of(sampler), images, n, g, opts, x, init_noise); break;
    }
  }
  void sample_chains(const denoiser_fn<D>& net, sampler_kind sampler, tensor_view<float, D> x,
                     tensor_view<const float, D> cond, rng& g,
                     const diffusion::sampling_options& opts) override {
    switch (sampler) {
      case sampler_kind::ddim: d_.sample_chains(net, diffusion::ddim_sampler{}, x, cond, g, opts); break;
      case sampler_kind::ddpm_small: d_.sample_chains(net, diffusion::ddpm_small{}, x, cond, g, opts); break;
      case sampler_kind::ddpm_large: d_.sample_chains(net, diffusion::ddpm_large{}, x, cond, g, opts); break;
      default: d_.sample_chains(net, multistep_sampler_of(sampler), x, cond, g, opts); break;
    }
  }

 private:
  diffusion::diffusion_runner<Diffusion, float, D> d_;
  policy_choice choice_;
};

namespace policy_detail {

// visit(gaussian_diffusion<…>{…}) for the class the choice names; every branch must
// return the same type. 
template <class S, class P, class Visit>
auto with_weighting(const policy_choice& c, Visit&& visit) {
  using schedule_t = diffusion::clipped<diffusion::input_scaled<S>>;
  schedule_t schedule{diffusion::input_scaled<S>(S{}, c.input_scale)};
  auto make = [&]<class W>(W w) {
    using D = diffusion::gaussian_diffusion<schedule_t, P, W>;
    return visit(D(schedule, w));
  };
  if (c.weighting == "snr") return make(diffusion::snr_weighting{});
  if (c.weighting == "trunc_snr") return make(diffusion::truncated_snr_weighting{});
  if (c.weighting == "snr_plus_one") return make(diffusion::snr_plus_one_weighting{});
  if (c.weighting == "uniform") return make(diffusion::uniform_weighting{});
  return make(diffusion::sigmoid_weighting{c.sigmoid_bias});
}

template <class S, class Visit>
auto with_prediction(const policy_choice& c, Visit&& visit) {
  if (c.prediction == "x") return with_weighting<S, diffusion::x_prediction>(c, visit);
  if (c.prediction == "eps") return with_weighting<S, diffusion::eps_prediction>(c, visit);
  return with_weighting<S, diffusion::v_prediction>(c, visit);
}

template <class Visit>
auto visit_diffusion(const policy_choice& c, Visit&& visit) {
  c.validate();
  if (c.schedule == "cosine") return with_prediction<diffusion::cosine>(c, visit);
  if (c.schedule == "linear") return with_prediction<diffusion::linear>(c, visit);
  if (c.schedule == "linear_simple") return with_prediction<diffusion::linear_simple>(c, visit);
  return with_prediction<diffusion::parabola>(c, visit);
}

}  // namespace policy_detail

template <class D = cpu>
std::unique_ptr<diffusion_model<D>> make_diffusion(const policy_choice& c) {
  return policy_detail::visit_diffusion(c, [&]<class Dm>(Dm d) -> std::unique_ptr<diffusion_model<D>> {
    return std::make_unique<diffusion_model_impl<Dm, D>>(std::move(d), c);
  });
}

// make_diffusion<D> instantiates 60 policy classes with their loss and sampling loops, the
// bulk of the compile time of any program that builds a diffusion model. A build that
// compiles src/models/diffusion_instances*.cpp once (this project's CMake does, for its own
// tests, tools and benchmarks) defines these macros so that other translation units only
// reference the function; a header-only user instantiates it wherever it is used.
#if defined(AMBISEG_PRECOMPILED_MODELS_CPU)
extern template std::unique_ptr<diffusion_model<cpu>> make_diffusion<cpu>(const policy_choice&);
#endif
#if defined(AMBISEG_PRECOMPILED_MODELS_CUDA) && defined(AMBISEG_WITH_CUDA)
extern template std::unique_ptr<diffusion_model<cuda>> make_diffusion<cuda>(const policy_choice&);
#endif

}  // namespace ambiseg::models
