// ambiseg/models/prob_unet_step.hpp — the computation of the (Generalized) Probabilistic
// U-Net on given noise, on any T: the model runs it in float with noise from its rng; the
// tests run it in double on the reference's noise.
//
//   training  q = posterior(cat[image, mask01]), p = prior(image); z ~ q (reparameterised;
//             mixtures: straight-through Gumbel-softmax choice of the component);
//             logits = fcomb(unet(image), z);
//             loss = (Σ BCE(logits, mask01) + β·Σ_b KL(q_b ‖ p_b)) / B, the KL analytic for
//             one Gaussian and (1/S)Σ_s log q_b(z_s) − log p_b(z_s), z_s ~ q, for mixtures
//   sampling  one prior and U-Net pass per image (BatchNorm on running statistics), then per
//             draw z ~ p and fcomb only; the mask is logit > 0
//
// Shape legend: B cases, C image channels, s×s crop, K components, Z latent size, S
// Monte-Carlo KL samples per case; R rows of a draw (B, or S·B for the KL samples).
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/nn/prob_unet.hpp"
#include "ambiseg/ops/affine.hpp"
#include "ambiseg/ops/concat.hpp"
#include "ambiseg/ops/gaussian_fc.hpp"
#include "ambiseg/ops/gaussian_latent.hpp"
#include "ambiseg/ops/sigmoid_cross_entropy.hpp"
#include "ambiseg/ops/tile.hpp"

namespace ambiseg::models {

// The networks and their stores.
template <class T, class D>
struct prob_unet_networks {
  parameter_store<T, D> params, buffers;
  std::vector<nn::param_init> inits;
  std::vector<std::pair<std::size_t, T>> buffer_inits;
  nn::state_registry<T, D> registry{{params, inits}, buffers, buffer_inits};
  nn::unet_features<T, D> unet;
  nn::latent_encoder<T, D> prior, posterior;
  nn::fcomb<T, D> head;

  prob_unet_networks(const nn::prob_unet_net_config& c, int image_channels)
      : unet(registry, c, image_channels),
        prior(registry, "prior", image_channels, c),
        posterior(registry, "posterior", image_channels + 1, c),
        head(registry, c) {}

  // Allocates both stores, draws the parameters (seeded) and sets the buffers.
  void allocate(std::uint64_t seed) { nn::allocate_state(params, buffers, inits, buffer_inits, seed); }
};

// One latent distribution's head outputs (views): μ, log σ [R,K,Z]; L [R,K,Z,Z] (full
// covariance) or empty; the mixture logits [R,K] (K > 1) or empty.
template <class T, class D>
struct latent_params {
  tensor_view<const T, D> mu, log_sigma, scale_tril, logits;

  static latent_params of(const nn::latent_encoder<T, D>& e) {
    return {e.mu(), e.log_sigma(), e.full_covariance() ? e.scale_tril() : tensor_view<const T, D>{},
            e.components() > 1 ? e.mixture_logits() : tensor_view<const T, D>{}};
  }
  std::int64_t rows() const { return mu.size(0); }
  std::int64_t components() const { return mu.size(1); }
  std::int64_t latent() const { return mu.size(2); }
  bool full() const { return scale_tril.data() != nullptr; }
};

// Owned tensors of those shapes: a distribution's gradients (zeroed by reset), or its
// heads' outputs tiled.
template <class T, class D>
struct latent_tensors {
  tensor<T, D> mu, log_sigma, scale_tril, logits;

  void reset(const latent_params<T, D>& p) {
    mu.resize(p.mu.shape());
    log_sigma.resize(p.log_sigma.shape());
    mu.zero();
    log_sigma.zero();
    if (p.full()) {
      scale_tril.resize(p.scale_tril.shape());
      scale_tril.zero();
    }
    if (p.components() > 1) {
      logits.resize(p.logits.shape());
      logits.zero();
    }
  }
  tensor_view<T, D> dscale_tril(bool full) { return full ? scale_tril.view() : tensor_view<T, D>{}; }
  tensor_view<T, D> dlogits(bool mixture) { return mixture ? logits.view() : tensor_view<T, D>{}; }
};

// A reparameterised draw from a latent distribution for given noise, and its backward.
//   one Gaussian: z = μ + σ⊙ε (diagonal) or μ + L·ε (full)
//   mixture: every component drawn so, then the straight-through Gumbel-softmax choice
//            (in value: component argmax_k (logits + gumbel)_k, a draw from softmax(logits))
template <class T, class D>
class latent_draw {
 public:
  // eps [R,K,Z], gumbel [R,K] (mixtures) → z [R,Z] (valid until the next forward).
  tensor_view<const T, D> forward(const latent_params<T, D>& q, tensor_view<const T, D> eps,
                                  tensor_view<const T, D> gumbel, double tau) {
    const std::int64_t r = q.rows(), k = q.components(), z = q.latent();
    z_.resize(shape{r, z});
    tensor_view<T, D> out = k == 1 ? z_.view() : (samples_.resize(shape{r, k, z}), samples_.view());
    if (q.full())
      ops::fc_gaussian_rsample_forward(q.mu, q.scale_tril, eps, out.reshaped(shape{r, k, z}));  // [R,K,Z]
    else
      ops::diag_gaussian_rsample_forward(q.mu.reshaped(shape{r * k, z}), q.log_sigma.reshaped(shape{r * k, z}),
                                         eps.reshaped(shape{r * k, z}), out.reshaped(shape{r * k, z}));
    if (k > 1) {
      relaxed_.resize(shape{r, k});
      choice_.resize(shape{r});
      ops::straight_through_mixture_sample_forward(q.logits, gumbel, tau, samples_.cview(), z_.view(),
                                                   relaxed_.view(), choice_.view());  // z [R,Z]
    }
    return z_.cview();
  }

  // dz [R,Z] → the gradients of the last forward's distribution (+=).
  void backward(const latent_params<T, D>& q, tensor_view<const T, D> eps, double tau, tensor_view<const T, D> dz,
                latent_tensors<T, D>& g) {
    const std::int64_t r = q.rows(), k = q.components(), z = q.latent();
    tensor_view<const T, D> dsamples = dz;
    if (k > 1) {
      dsamples_.resize(shape{r, k, z});
      dsamples_.zero();
      ops::straight_through_mixture_sample_backward(samples_.cview(), relaxed_.cview(), choice_.cview(), tau, dz,
                                                    g.logits.view(), dsamples_.view());  // [R,K,Z]
      dsamples = dsamples_.cview();
    }
    if (q.full())
      ops::fc_gaussian_rsample_backward(eps, dsamples.reshaped(shape{r, k, z}), g.mu.view(), g.scale_tril.view());
    else
      ops::diag_gaussian_rsample_backward(q.log_sigma.reshaped(shape{r * k, z}), eps.reshaped(shape{r * k, z}),
                                          dsamples.reshaped(shape{r * k, z}), g.mu.view().reshaped(shape{r * k, z}),
                                          g.log_sigma.view().reshaped(shape{r * k, z}));
  }

  tensor_view<const T, D> z() const { return z_.cview(); }                        // [R,Z]
  tensor_view<const T, D> component_samples() const { return samples_.cview(); }  // [R,K,Z] (mixtures)
  tensor_view<const T, D> relaxed() const { return relaxed_.cview(); }            // [R,K] (mixtures)
  tensor_view<const std::int32_t, D> choice() const { return choice_.cview(); }  // [R] (mixtures)

 private:
  tensor<T, D> z_, samples_, relaxed_, dsamples_;
  tensor<std::int32_t, D> choice_;
};

// The noise of one training step, consumed from one stream in the reference's order:
// one Gaussian: eps [B,Z]; mixtures: gumbel [B,K], eps [B,K,Z], kl_gumbel [S,B,K],
// kl_eps [S,B,K,Z] (Gumbel(0, 1) = −log(−log u)).
template <class T, class D>
struct prob_unet_noise {
  tensor_view<const T, D> eps, gumbel, kl_eps, kl_gumbel;
};

struct prob_unet_step_options {
  double beta = 1.0;
  double temperature = 0.1;  // mixtures: the Gumbel-softmax τ (straight-through gradients only)
};

template <class T, class D>
class prob_unet_step {
 public:
  // images [B,C,s,s], masks [B,1,s,s] in {−1,+1} → report [B+1] (per-case rec_b + β·KL_b,
  // then their mean) and parameter gradients (+=).
  void loss_and_gradient(prob_unet_networks<T, D>& nets, const prob_unet_step_options& o,
                         tensor_view<const T, D> images, tensor_view<const T, D> masks,
                         const prob_unet_noise<T, D>& noise, tensor_view<double, D> report) {
    const std::int64_t b = images.size(0);
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    mask01_.resize(masks.shape());
    ops::affine_forward(masks, 0.5, 0.5, mask01_.view());                      // y  [B,1,s,s] in {0,1}
    posterior_in_.resize(shape{b, images.size(1) + 1, images.size(2), images.size(3)});
    ops::concat_channels_forward(images, mask01_.cview(), posterior_in_.view());  // [B,C+1,s,s]
    nets.posterior.forward(p, buf, posterior_in_.cview(), nn::norm_mode::batch, ws_);  // q [B,K,Z]…
    nets.prior.forward(p, buf, images, nn::norm_mode::batch, ws_);             // p [B,K,Z]…
    const auto q = latent_params<T, D>::of(nets.posterior), pr = latent_params<T, D>::of(nets.prior);
    const std::int64_t k = q.components(), zd = q.latent();
    const auto eps = noise.eps.reshaped(shape{b, k, zd});
    z_ = rec_draw_.forward(q, eps, noise.gumbel, o.temperature);               // z [B,Z]
    features_ = nets.unet.forward(p, buf, images, nn::norm_mode::batch, ws_);  // [B,F0,s,s]
    logits_ = nets.head.forward(p, buf, features_, z_, nn::norm_mode::batch, ws_);  // [B,1,s,s]

    rec_.resize(shape{b});
    dlogits_.resize(logits_.shape());
    ops::sigmoid_cross_entropy_forward_backward(logits_, mask01_.cview(), 1.0 / double(b), rec_.view(),
                                                dlogits_.view());              // rec [B], dlogits
    dq_.reset(q);
    dp_.reset(pr);
    kl_.resize(shape{b});
    const double scale = o.beta / double(b);
    if (k == 1 && !q.full())
      ops::diag_gaussian_kl_forward_backward(flat(q.mu), flat(q.log_sigma), flat(pr.mu), flat(pr.log_sigma), scale,
                                             kl_.view(), flat(dq_.mu.view()), flat(dq_.log_sigma.view()),
                                             flat(dp_.mu.view()), flat(dp_.log_sigma.view()));  // kl [B]
    else if (k == 1)
      ops::fc_gaussian_kl_forward_backward(q.mu, q.scale_tril, pr.mu, pr.scale_tril, scale, kl_.view(),
                                           dq_.mu.view(), dq_.scale_tril.view(), dp_.mu.view(),
                                           dp_.scale_tril.view());             // kl [B]
    else
      monte_carlo_kl(q, pr, noise, o.temperature, scale);                      // kl [B]
    ops::combine_case_losses(rec_.cview(), kl_.cview(), o.beta, report);      // report [B+1]

    dfeatures_.resize(features_.shape());
    dz_.resize(z_.shape());
    nets.head.backward(p, dlogits_.cview(), dfeatures_.view(), dz_.view(), ws_);
    rec_draw_.backward(q, eps, o.temperature, dz_.cview(), dq_);               // += through z
    nets.unet.backward(p, dfeatures_.cview(), ws_);
    nets.posterior.backward(p, dq_.mu.cview(), dq_.log_sigma.cview(), dq_.dscale_tril(q.full()),
                            dq_.dlogits(k > 1), ws_);
    nets.prior.backward(p, dp_.mu.cview(), dp_.log_sigma.cview(), dp_.dscale_tril(q.full()), dp_.dlogits(k > 1),
                        ws_);
  }

  // Inference: the prior and the U-Net on running statistics, once per image.
  void encode(prob_unet_networks<T, D>& nets, tensor_view<const T, D> images) {
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    nets.prior.forward(p, buf, images, nn::norm_mode::running, ws_);           // p [B,K,Z]…
    features_ = nets.unet.forward(p, buf, images, nn::norm_mode::running, ws_);  // [B,F0,H,W]
  }
  // After encode: one draw per image from the prior for noise eps [B,K,Z] (and gumbel
  // [B,K] for mixtures) → logits [B,1,H,W].
  tensor_view<const T, D> draw(prob_unet_networks<T, D>& nets, tensor_view<const T, D> eps,
                               tensor_view<const T, D> gumbel = {}) {
    const auto pr = latent_params<T, D>::of(nets.prior);
    // τ only shapes the straight-through gradient; the drawn component is argmax(logits + gumbel).
    z_ = prior_draw_.forward(pr, eps.reshaped(shape{pr.rows(), pr.components(), pr.latent()}), gumbel, 1.0);
    return decode(nets, z_);                                                   // [B,1,H,W]
  }
  // Given z [B,Z] instead of noise.
  tensor_view<const T, D> decode(prob_unet_networks<T, D>& nets, tensor_view<const T, D> z) {
    const nn::param_views<T, D> p{&nets.params}, buf{&nets.buffers};
    logits_ = nets.head.forward(p, buf, features_, z, nn::norm_mode::running, ws_);
    return logits_;
  }

  // The last step's intermediate values (tests and diagnostics).
  tensor_view<const T, D> z() const { return z_; }
  tensor_view<const T, D> features() const { return features_; }
  tensor_view<const T, D> logits() const { return logits_; }
  tensor_view<const double, D> reconstruction() const { return rec_.cview(); }
  tensor_view<const double, D> kl() const { return kl_.cview(); }
  const latent_draw<T, D>& reconstruction_draw() const { return rec_draw_; }
  const latent_draw<T, D>& kl_draws() const { return kl_draw_; }
  tensor_view<const double, D> kl_log_q() const { return log_q_.cview(); }  // [S·B] (mixtures)
  tensor_view<const double, D> kl_log_p() const { return log_p_.cview(); }  // [S·B] (mixtures)

 private:
  // [B,1,Z] as [B,Z] (the diagonal KL op's layout).
  template <class U>
  static tensor_view<U, D> flat(tensor_view<U, D> v) {
    return v.reshaped(shape{v.size(0), v.numel() / v.size(0)});
  }

  // The mixtures' KL, (1/S)Σ_s log q_b(z_s) − log p_b(z_s) with z_s ~ q drawn by the
  // reparameterised straight-through sampler, and its gradients scaled by `scale` (+=).
  // Both heads are tiled S times (one parameter set per row) and their gradients summed back.
  void monte_carlo_kl(const latent_params<T, D>& q, const latent_params<T, D>& pr, const prob_unet_noise<T, D>& noise,
                      double tau, double scale) {
    const std::int64_t b = q.rows(), k = q.components(), zd = q.latent();
    const std::int64_t s = noise.kl_eps.numel() / std::max<std::int64_t>(1, b * k * zd);
    expect_shape("prob_unet: the Monte-Carlo KL noise", "kl_eps", noise.kl_eps, shape{s, b, k, zd});
    expect_shape("prob_unet: the Monte-Carlo KL noise", "kl_gumbel", noise.kl_gumbel, shape{s, b, k});
    const auto tq = tile(q, s, tiled_q_), tp = tile(pr, s, tiled_p_);
    const auto kl_eps = noise.kl_eps.reshaped(shape{s * b, k, zd});
    const auto kz = kl_draw_.forward(tq, kl_eps, noise.kl_gumbel.reshaped(shape{s * b, k}), tau);  // z_s [S·B,Z]
    tdq_.reset(tq);
    tdp_.reset(tp);
    dkz_.resize(kz.shape());
    dkz_.zero();
    log_q_.resize(shape{s * b});
    log_p_.resize(shape{s * b});
    const double per_sample = scale / double(s);
    if (q.full()) {
      ops::mixture_log_prob_forward_backward(kz, tq.logits, tq.mu, tq.scale_tril, per_sample, log_q_.view(),
                                             dkz_.view(), tdq_.logits.view(), tdq_.mu.view(), tdq_.scale_tril.view());
      ops::mixture_log_prob_forward_backward(kz, tp.logits, tp.mu, tp.scale_tril, -per_sample, log_p_.view(),
                                             dkz_.view(), tdp_.logits.view(), tdp_.mu.view(), tdp_.scale_tril.view());
    } else {
      ops::diag_mixture_log_prob_forward_backward(kz, tq.logits, tq.mu, tq.log_sigma, per_sample, log_q_.view(),
                                                  dkz_.view(), tdq_.logits.view(), tdq_.mu.view(),
                                                  tdq_.log_sigma.view());
      ops::diag_mixture_log_prob_forward_backward(kz, tp.logits, tp.mu, tp.log_sigma, -per_sample, log_p_.view(),
                                                  dkz_.view(), tdp_.logits.view(), tdp_.mu.view(),
                                                  tdp_.log_sigma.view());
    }
    kl_draw_.backward(tq, kl_eps, tau, dkz_.cview(), tdq_);                    // through z_s
    untile(tdq_, dq_, q.full());
    untile(tdp_, dp_, q.full());
    kl_.zero();
    ops::tile_rows_backward(log_q_.cview(), 1.0 / double(s), kl_.view());      // kl [B]
    ops::tile_rows_backward(log_p_.cview(), -1.0 / double(s), kl_.view());
  }

  latent_params<T, D> tile(const latent_params<T, D>& x, std::int64_t s, latent_tensors<T, D>& into) {
    auto copy = [&](tensor_view<const T, D> from, tensor<T, D>& to) {
      std::vector<std::int64_t> dims(from.shape().begin(), from.shape().end());
      dims[0] *= s;
      to.resize(shape::from_range(dims.begin(), dims.end()));
      ops::tile_rows_forward(from, to.view());
      return to.cview();
    };
    latent_params<T, D> out;
    out.mu = copy(x.mu, into.mu);
    out.log_sigma = copy(x.log_sigma, into.log_sigma);
    if (x.full()) out.scale_tril = copy(x.scale_tril, into.scale_tril);
    out.logits = copy(x.logits, into.logits);
    return out;
  }
  static void untile(latent_tensors<T, D>& from, latent_tensors<T, D>& to, bool full) {
    ops::tile_rows_backward(from.mu.cview(), 1.0, to.mu.view());
    ops::tile_rows_backward(from.log_sigma.cview(), 1.0, to.log_sigma.view());
    if (full) ops::tile_rows_backward(from.scale_tril.cview(), 1.0, to.scale_tril.view());
    ops::tile_rows_backward(from.logits.cview(), 1.0, to.logits.view());
  }

  workspace<D> ws_;
  tensor_view<const T, D> features_, logits_, z_;
  tensor<T, D> mask01_, posterior_in_, dlogits_, dfeatures_, dz_, dkz_;
  tensor<double, D> rec_, kl_, log_q_, log_p_;
  latent_draw<T, D> rec_draw_, kl_draw_, prior_draw_;
  latent_tensors<T, D> dq_, dp_, tiled_q_, tiled_p_, tdq_, tdp_;
};

}  // namespace ambiseg::models
