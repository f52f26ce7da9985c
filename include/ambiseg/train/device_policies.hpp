// ambiseg/train/device_policies.hpp — the run-time policy choice (policies.hpp) on a
// device: device_diffusion_model<D>, a virtual interface over device_diffusion<
// gaussian_diffusion<…>, float, D> (diffusion/device.hpp), built by
// make_device_diffusion<D>(choice) through the same dispatch as make_diffusion.
//
// D = cuda is the GPU trainer's and sampler's diffusion; D = cpu runs the same device
// layer on host tensors (the tests' way to run the device trainer without a GPU). The
// random draws are the host facade's, in its order, so a seed gives the same t, ε, x_1 and
// z on every device.
//
// Shape legend: B batch (or chains), Cc image channels, H×W pixels.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <utility>

#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/diffusion/device.hpp"
#include "ambiseg/train/policies.hpp"

namespace ambiseg::train {

// void(x_t [B,1,H,W], t [B] (host), cond [B,Cc,H,W], f_out [B,1,H,W]) on device D.
template <class D>
using device_denoiser_fn = std::function<void(tensor_view<const float, D>, std::span<const double>,
                                              tensor_view<const float, D>, tensor_view<float, D>)>;

template <class D>
class device_diffusion_model {
 public:
  virtual ~device_diffusion_model() = default;
  virtual const policy_choice& choice() const = 0;
  // batch.t and batch.eps (drawn on the host as diffusion_model::draw_training_noise does,
  // ε uploaded).
  virtual void draw_training_noise(const shape& x0_shape, rng& g,
                                   diffusion::device_training_batch<float, D>& batch) = 0;
  // The x-space weighted loss (read back to the host: it waits for the device);
  // batch.grad_f receives dL/df on the device.
  virtual double training_loss(const device_denoiser_fn<D>& net, tensor_view<const float, D> x0,
                               tensor_view<const float, D> cond,
                               diffusion::device_training_batch<float, D>& batch) = 0;
  // The same, enqueued: report [B + 1] (device) receives the per-sample losses and the loss;
  // nothing is read back or checked (device_diffusion::training_loss_async).
  virtual void training_loss_async(const device_denoiser_fn<D>& net, tensor_view<const float, D> x0,
                                   tensor_view<const float, D> cond,
                                   diffusion::device_training_batch<float, D>& batch,
                                   tensor_view<double, D> report) = 0;
  // x [B,1,H,W] holds x_1 on entry and x̂0 on return; cond row-aligned with x.
  virtual void sample_chains(const device_denoiser_fn<D>& net, sampler_kind sampler, tensor_view<float, D> x,
                             tensor_view<const float, D> cond, rng& g,
                             const diffusion::sampling_options& opts) = 0;
};

template <class Diffusion, class D>
class device_diffusion_model_impl final : public device_diffusion_model<D> {
 public:
  device_diffusion_model_impl(Diffusion d, policy_choice choice) : d_(std::move(d)), choice_(std::move(choice)) {}

  const policy_choice& choice() const override { return choice_; }
  void draw_training_noise(const shape& x0_shape, rng& g,
                           diffusion::device_training_batch<float, D>& batch) override {
    if (choice_.stratified_t)
      d_.draw_training_noise(x0_shape, g, batch, diffusion::stratified_timesteps{});
    else
      d_.draw_training_noise(x0_shape, g, batch, diffusion::uniform_timesteps{});
  }
  double training_loss(const device_denoiser_fn<D>& net, tensor_view<const float, D> x0,
                       tensor_view<const float, D> cond,
                       diffusion::device_training_batch<float, D>& batch) override {
    return d_.training_loss(net, x0, cond, batch);
  }
  void training_loss_async(const device_denoiser_fn<D>& net, tensor_view<const float, D> x0,
                           tensor_view<const float, D> cond,
                           diffusion::device_training_batch<float, D>& batch,
                           tensor_view<double, D> report) override {
    d_.training_loss_async(net, x0, cond, batch, report);
  }
  void sample_chains(const device_denoiser_fn<D>& net, sampler_kind sampler, tensor_view<float, D> x,
                     tensor_view<const float, D> cond, rng& g,
                     const diffusion::sampling_options& opts) override {
    switch (sampler) {
      case sampler_kind::ddim: d_.sample_chains(net, diffusion::ddim_sampler{}, x, cond, g, opts); break;
      case sampler_kind::ddpm_small: d_.sample_chains(net, diffusion::ddpm_small{}, x, cond, g, opts); break;
      case sampler_kind::ddpm_large: d_.sample_chains(net, diffusion::ddpm_large{}, x, cond, g, opts); break;
    }
  }

 private:
  diffusion::device_diffusion<Diffusion, float, D> d_;
  policy_choice choice_;
};

template <class D>
std::unique_ptr<device_diffusion_model<D>> make_device_diffusion(const policy_choice& c) {
  return policy_detail::visit_diffusion(c, [&]<class Dm>(Dm d) -> std::unique_ptr<device_diffusion_model<D>> {
    return std::make_unique<device_diffusion_model_impl<Dm, D>>(std::move(d), c);
  });
}

}  // namespace ambiseg::train
