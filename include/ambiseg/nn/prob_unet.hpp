// ambiseg/nn/prob_unet.hpp — the networks of the (Generalized) Probabilistic U-Net, as the
// reference code of Bhat et al. 2022 builds them (docs/models.md has the sources):
//
//   unet_features   contracting path of conv_stacks (pool from level 1, BatchNorm on every
//                   level), expanding path: bilinear ×2 (align_corners), cat[up, skip],
//                   conv_stack (BatchNorm except the last); no output layer: features [N,F0,H,W]
//   latent_encoder  the prior (image) or posterior (image and mask) net: the same encoder
//                   (BatchNorm on every level but the last), the spatial mean, 1×1 conv
//                   heads → a Gaussian latent (diagonal or full covariance) or a mixture of
//                   K of them
//   fcomb           cat[features, z tiled over H×W] → conv1×1 + ReLU, (BN, conv1×1, ReLU) × 2,
//                   conv1×1 → one logit per pixel
//
// Parameter names are the reference's state_dict names (unet.contracting_path.0.layers.0…).
//
// Shape legend: N batch, C image channels, F_i filters at level i, H×W pixels, Z = D latent
// size, K mixture components.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/nn/conv_stack.hpp"
#include "ambiseg/ops/add.hpp"
#include "ambiseg/ops/concat.hpp"
#include "ambiseg/ops/gaussian_fc.hpp"
#include "ambiseg/ops/linear.hpp"
#include "ambiseg/ops/spatial_mean.hpp"
#include "ambiseg/ops/upsample.hpp"

namespace ambiseg::nn {

// The latent's components: axis-aligned (σ per dimension) or full covariance (a Cholesky
// factor per component).
enum class latent_covariance { diagonal, full };

struct prob_unet_net_config {
  std::vector<int> num_filters{32, 64, 128, 256};
  int convs_per_block = 3;
  int latent_dim = 6;
  latent_covariance covariance = latent_covariance::diagonal;
  int n_components = 1;  // mixture components of the prior and the posterior (1: one Gaussian)
  int fcomb_convs = 4;  // 1×1 convs in fcomb, the last (to the logit) included
  bool batch_norm = true;
  double bn_eps = 1e-5, bn_momentum = 0.1;

  int levels() const { return static_cast<int>(num_filters.size()); }
  // H and W must be multiples of this (one 2×2 pooling per level below the first).
  int size_divisor() const { return 1 << (levels() - 1); }
  void validate() const {
    throw_if<value_error>(num_filters.size() < 2 || num_filters.size() > 8, "prob_unet: num_filters needs 2 to 8 levels, got ",
                          num_filters.size());
    for (int f : num_filters)
      throw_if<value_error>(f < 1 || f > 4096, "prob_unet: a level of ", f, " filters (1 to 4096)");
    throw_if<value_error>(convs_per_block < 1 || convs_per_block > 8, "prob_unet: convs_per_block ", convs_per_block,
                          " (1 to 8)");
    // The full-covariance and mixture ops hold a row's factor and components on the stack.
    const int max_latent = covariance == latent_covariance::full || n_components > 1 ? 64 : 256;
    throw_if<value_error>(latent_dim < 1 || latent_dim > max_latent, "prob_unet: latent_dim ", latent_dim, " (1 to ",
                          max_latent, ")");
    throw_if<value_error>(n_components < 1 || n_components > 32, "prob_unet: n_components ", n_components,
                          " (1 to 32)");
    throw_if<value_error>(fcomb_convs < 2 || fcomb_convs > 16, "prob_unet: fcomb_convs ", fcomb_convs, " (2 to 16)");
    throw_if<value_error>(!(bn_eps > 0) || !(bn_momentum >= 0 && bn_momentum <= 1), "prob_unet: BatchNorm eps ",
                          bn_eps, " and momentum ", bn_momentum, " (eps > 0, momentum in [0, 1])");
  }
};

inline void to_json(nlohmann::json& j, const prob_unet_net_config& c) {
  j = {{"num_filters", c.num_filters}, {"convs_per_block", c.convs_per_block}, {"latent_dim", c.latent_dim},
       {"fcomb_convs", c.fcomb_convs}, {"batch_norm", c.batch_norm}, {"bn_eps", c.bn_eps},
       {"bn_momentum", c.bn_momentum}};
  if (c.n_components > 1) j["n_components"] = c.n_components;
}

template <class T, class D>
class unet_features {
 public:
  unet_features(state_registry<T, D>& r, const prob_unet_net_config& c, int image_channels) {
    const int levels = c.levels();
    int cin = image_channels;
    for (int i = 0; i < levels; ++i) {
      down_.emplace_back(r, "unet.contracting_path." + std::to_string(i) + ".layers", 0, cin, c.num_filters[i],
                         typename conv_stack<T, D>::options{i > 0, c.convs_per_block, c.batch_norm, c.bn_eps,
                                                            c.bn_momentum});
      cin = c.num_filters[i];
    }
    for (int i = levels - 2, j = 0; i >= 0; --i, ++j) {
      up_.emplace_back(r, "unet.upsampling_path." + std::to_string(j) + ".conv_block.layers", 0,
                       cin + c.num_filters[i], c.num_filters[i],
                       typename conv_stack<T, D>::options{false, c.convs_per_block, c.batch_norm && i != 0, c.bn_eps,
                                                          c.bn_momentum});
      cin = c.num_filters[i];
    }
  }

  // x [N,C,H,W] → features [N,F0,H,W] (valid until the next forward).
  tensor_view<const T, D> forward(const param_views<T, D>& p, const param_views<T, D>& b,
                                  tensor_view<const T, D> x, norm_mode mode, workspace<D>& ws) {
    input_ = x;
    outs_.clear();
    tensor_view<const T, D> h = x;
    for (auto& block : down_) {
      h = block.forward(p, b, h, mode, ws);                                   // d_i [N,F_i,H/2^i,W/2^i]
      outs_.push_back(h);
    }
    ups_.resize(up_.size());
    cats_.resize(up_.size());
    for (std::size_t j = 0; j < up_.size(); ++j) {
      const tensor_view<const T, D> skip = outs_[down_.size() - 2 - j];
      ups_[j].resize(shape{h.size(0), h.size(1), 2 * h.size(2), 2 * h.size(3)});
      ops::upsample_bilinear2x_forward(h, ups_[j].view(), true);              // up  [N,C,2h,2w]
      cats_[j].resize(shape{h.size(0), h.size(1) + skip.size(1), skip.size(2), skip.size(3)});
      ops::concat_channels_forward(ups_[j].cview(), skip, cats_[j].view());   // cat [N,C+F_i,2h,2w]
      h = up_[j].forward(p, b, cats_[j].cview(), mode, ws);                   // u_j [N,F_i,2h,2w]
      outs_.push_back(h);
    }
    return h;
  }

  // After a batch-statistics forward: d features [N,F0,H,W] → parameter gradients (+=).
  void backward(const param_views<T, D>& p, tensor_view<const T, D> dfeatures, workspace<D>& ws) {
    const std::size_t levels = down_.size();
    grads_.resize(outs_.size());  // d(output of every block), in forward order
    for (std::size_t i = 0; i < outs_.size(); ++i) grads_[i].resize(outs_[i].shape());
    tensor_view<const T, D> dh = dfeatures;
    // The expanding path in reverse; each block's skip gradient lands in its level's slot.
    for (std::size_t j = up_.size(); j-- > 0;) {
      const std::size_t level = levels - 2 - j;
      dcat_.resize(cats_[j].shape());
      up_[j].backward(p, cats_[j].cview(), dh, dcat_.view(), ws);             // dcat [N,C+F_i,2h,2w]
      dup_.resize(ups_[j].shape());
      ops::concat_channels_backward(dcat_.cview(), dup_.view(), grads_[level].view());  // d skip
      const std::size_t below = j == 0 ? levels - 1 : levels + j - 1;        // the block upsampled
      ops::upsample_bilinear2x_backward(dup_.cview(), grads_[below].view(), true);      // [N,C,h,w]
      dh = grads_[below].cview();
    }
    // The contracting path from the bottom: d d_i = d skip_i + (from level i + 1).
    for (std::size_t i = levels; i-- > 0;) {
      const tensor_view<const T, D> in = i == 0 ? input_ : outs_[i - 1];
      if (i == 0) {
        down_[0].backward(p, in, grads_[0].cview(), tensor_view<T, D>{}, ws);
        break;
      }
      dx_.resize(in.shape());
      down_[i].backward(p, in, grads_[i].cview(), dx_.view(), ws);            // [N,F_{i−1},…]
      ops::add_forward(grads_[i - 1].cview(), dx_.cview(), grads_[i - 1].view());
    }
  }

 private:
  std::vector<conv_stack<T, D>> down_, up_;
  tensor_view<const T, D> input_;
  std::vector<tensor_view<const T, D>> outs_;  // down_ outputs, then up_ outputs
  std::vector<tensor<T, D>> ups_, cats_, grads_;
  tensor<T, D> dcat_, dup_, dx_;
};

// The prior or posterior net: encoder, spatial mean, 1×1 heads on the pooled encoding m:
//   conv_layer (diagonal) or mean_log_sigma_op (full) [2KD]: per component k, channels
//     k·2D … k·2D+D−1 are μ_k and the next D are log σ_k          → μ, log σ [N,K,D]
//   cov_tril_op [K·D·D] (full only): row-major raw factors        → tril_raw [N,K,D,D],
//     L = strictly-lower(tril_raw) + diag(exp(log σ) + 1e-4)     → L [N,K,D,D]
//   mixture_weights_conv [K] (K > 1 only): the mixture's logits   → logits [N,K]
// The split of the [N,2KD] head output into μ and log σ is the channel split of a
// [N·K, 2D] concat.
template <class T, class D>
class latent_encoder {
 public:
  latent_encoder(state_registry<T, D>& r, const std::string& name, int in_channels, const prob_unet_net_config& c)
      : z_(c.latent_dim), k_(c.n_components), full_(c.covariance == latent_covariance::full) {
    const int levels = c.levels();
    int index = 0, cin = in_channels;
    for (int i = 0; i < levels; ++i) {
      blocks_.emplace_back(r, name + ".encoder.layers", index, cin, c.num_filters[i],
                           typename conv_stack<T, D>::options{i > 0, c.convs_per_block,
                                                              c.batch_norm && i + 1 < levels, c.bn_eps,
                                                              c.bn_momentum});
      index = blocks_.back().next_index();
      cin = c.num_filters[i];
    }
    channels_ = cin;
    const conv_init head_init{param_init::kaiming_normal(cin), {param_init::normal, 0, 1.0}};
    mean_log_sigma_ = make_conv(r, name + (full_ ? ".mean_log_sigma_op" : ".conv_layer"), cin, 2 * k_ * z_, 1, head_init);
    if (full_) cov_tril_ = make_conv(r, name + ".cov_tril_op", cin, k_ * z_ * z_, 1, head_init);
    // Never initialised by the reference: PyTorch's default U(±1/√fan_in) for both.
    const param_init fan_in_uniform{param_init::uniform_fan_in, cin};
    if (k_ > 1) mixture_ = make_conv(r, name + ".mixture_weights_conv", cin, k_, 1, {fan_in_uniform, fan_in_uniform});
  }

  int latent_dim() const { return z_; }
  int components() const { return k_; }
  bool full_covariance() const { return full_; }

  // x [N,Ci,H,W] → the heads' outputs (views valid until the next forward).
  void forward(const param_views<T, D>& p, const param_views<T, D>& b, tensor_view<const T, D> x, norm_mode mode,
               workspace<D>& ws) {
    input_ = x;
    outs_.clear();
    tensor_view<const T, D> h = x;
    for (auto& block : blocks_) {
      h = block.forward(p, b, h, mode, ws);                                   // e_i [N,F_i,…]
      outs_.push_back(h);
    }
    const std::int64_t n = x.size(0);
    pooled_.resize(shape{n, channels_});
    ops::spatial_mean_forward(h, pooled_.view());                            // m [N,F_last]
    head_out_.resize(shape{n, 2 * k_ * z_});
    ops::linear_forward(pooled_.cview(), weight_matrix(p.value(mean_log_sigma_.weight)), p.value(mean_log_sigma_.bias),
                        head_out_.view());                                    // [N,2KD]
    mu_.resize(shape{n, k_, z_});
    log_sigma_.resize(shape{n, k_, z_});
    ops::concat_channels_backward(components_view(head_out_.cview(), 2), components_view(mu_.view(), 1),
                                  components_view(log_sigma_.view(), 1));     // μ, log σ [N,K,D]
    if (full_) {
      tril_raw_.resize(shape{n, k_, z_, z_});
      ops::linear_forward(pooled_.cview(), weight_matrix(p.value(cov_tril_.weight)), p.value(cov_tril_.bias),
                          tril_raw_.view().reshaped(shape{n, k_ * z_ * z_}));  // [N,K,D,D]
      scale_tril_.resize(tril_raw_.shape());
      ops::fc_scale_tril_forward(log_sigma_.cview(), tril_raw_.cview(), scale_tril_.view());  // L [N,K,D,D]
    }
    if (k_ > 1) {
      logits_.resize(shape{n, k_});
      ops::linear_forward(pooled_.cview(), weight_matrix(p.value(mixture_.weight)), p.value(mixture_.bias),
                          logits_.view());                                    // [N,K]
    }
  }
  tensor_view<const T, D> mu() const { return mu_.cview(); }                      // [N,K,D]
  tensor_view<const T, D> log_sigma() const { return log_sigma_.cview(); }        // [N,K,D]
  tensor_view<const T, D> scale_tril() const { return scale_tril_.cview(); }      // [N,K,D,D] (full)
  tensor_view<const T, D> tril_raw() const { return tril_raw_.cview(); }          // [N,K,D,D] (full)
  tensor_view<const T, D> mixture_logits() const { return logits_.cview(); }      // [N,K] (K > 1)

  // After a batch-statistics forward: the gradients of the loss with respect to μ, log σ
  // [N,K,D], L [N,K,D,D] (full; empty otherwise) and the logits [N,K] (K > 1) → parameter
  // gradients (+=). dlog_sigma is the gradient through log σ directly; the part through L
  // is added here.
  void backward(const param_views<T, D>& p, tensor_view<const T, D> dmu, tensor_view<const T, D> dlog_sigma,
                tensor_view<const T, D> dscale_tril, tensor_view<const T, D> dlogits, workspace<D>& ws) {
    const std::int64_t n = pooled_.size(0);
    expect_shape("latent_encoder::backward", "dmu", dmu, mu_.shape());
    expect_shape("latent_encoder::backward", "dlog_sigma", dlog_sigma, log_sigma_.shape());
    dls_.resize(log_sigma_.shape());
    device_memory<D>::copy(dls_.data(), dlog_sigma.data(), sizeof(T) * static_cast<std::size_t>(dls_.numel()));
    dpooled_.resize(pooled_.shape());
    dpooled2_.resize(pooled_.shape());
    if (full_) {
      expect_shape("latent_encoder::backward", "dscale_tril", dscale_tril, scale_tril_.shape());
      dtril_raw_.resize(tril_raw_.shape());
      dtril_raw_.zero();
      ops::fc_scale_tril_backward(log_sigma_.cview(), dscale_tril, dls_.view(), dtril_raw_.view());
      ops::linear_backward(pooled_.cview(), weight_matrix(p.value(cov_tril_.weight)),
                           dtril_raw_.cview().reshaped(shape{n, k_ * z_ * z_}), dpooled2_.view(),
                           weight_matrix(p.grad(cov_tril_.weight)), p.grad(cov_tril_.bias));
    }
    dhead_.resize(head_out_.shape());
    ops::concat_channels_forward(components_view(dmu, 1), components_view(dls_.cview(), 1),
                                 components_view(dhead_.view(), 2));          // d head [N,2KD]
    ops::linear_backward(pooled_.cview(), weight_matrix(p.value(mean_log_sigma_.weight)), dhead_.cview(),
                         dpooled_.view(), weight_matrix(p.grad(mean_log_sigma_.weight)),
                         p.grad(mean_log_sigma_.bias));
    if (full_) ops::add_forward(dpooled_.cview(), dpooled2_.cview(), dpooled_.view());
    if (k_ > 1) {
      expect_shape("latent_encoder::backward", "dlogits", dlogits, logits_.shape());
      ops::linear_backward(pooled_.cview(), weight_matrix(p.value(mixture_.weight)), dlogits, dpooled2_.view(),
                           weight_matrix(p.grad(mixture_.weight)), p.grad(mixture_.bias));
      ops::add_forward(dpooled_.cview(), dpooled2_.cview(), dpooled_.view());  // dm [N,F_last]
    }
    const tensor_view<const T, D> last = outs_.back();
    dh_.resize(last.shape());
    ops::spatial_mean_backward(dpooled_.cview(), dh_.view());                 // [N,F_last,h,w]
    for (std::size_t i = blocks_.size(); i-- > 0;) {
      const tensor_view<const T, D> in = i == 0 ? input_ : outs_[i - 1];
      if (i == 0) {
        blocks_[0].backward(p, in, dh_.cview(), tensor_view<T, D>{}, ws);
        break;
      }
      dx_.resize(in.shape());
      blocks_[i].backward(p, in, dh_.cview(), dx_.view(), ws);
      std::swap(dh_, dx_);
    }
  }

 private:
  // A 1×1 conv weight [O,C,1,1] as the matrix [O,C].
  template <class U>
  static tensor_view<U, D> weight_matrix(tensor_view<U, D> w) {
    return w.reshaped(shape{w.size(0), w.size(1)});
  }
  // [N,K,parts·D] (or [N, parts·K·D]) as [N·K, parts·D, 1, 1], the layout concat splits.
  template <class U>
  tensor_view<U, D> components_view(tensor_view<U, D> v, int parts) const {
    return v.reshaped(shape{v.numel() / (parts * z_), parts * z_, 1, 1});
  }

  int z_, k_;
  bool full_;
  int channels_ = 0;
  std::vector<conv_stack<T, D>> blocks_;
  conv_layer mean_log_sigma_, cov_tril_, mixture_;
  tensor_view<const T, D> input_;
  std::vector<tensor_view<const T, D>> outs_;
  tensor<T, D> pooled_, head_out_, mu_, log_sigma_, tril_raw_, scale_tril_, logits_;
  tensor<T, D> dls_, dtril_raw_, dhead_, dpooled_, dpooled2_, dh_, dx_;
};

// fcomb: features [N,F0,H,W] and z [N,Z] → logits [N,1,H,W].
//   layers.0 conv1×1 (F0+Z → F0), ReLU, then (fcomb_convs − 2) × [BN, conv1×1, ReLU]
//   (BatchNorm only with batch_norm), last_layer conv1×1 (F0 → 1). Orthogonal weights.
template <class T, class D>
class fcomb {
 public:
  fcomb(state_registry<T, D>& r, const prob_unet_net_config& c) : batch_norm_(c.batch_norm) {
    const int f = c.num_filters[0];
    const conv_init init{{param_init::orthogonal}, {param_init::truncated_normal, 0, 1e-3}};
    int index = 0;
    convs_.push_back(make_conv(r, "fcomb.layers." + std::to_string(index), f + c.latent_dim, f, 1, init));
    index += 2;
    for (int k = 0; k < c.fcomb_convs - 2; ++k) {
      if (batch_norm_) norms_.push_back(batch_norm_layer::make(r, "fcomb.layers." + std::to_string(index++), f, c.bn_eps, c.bn_momentum));
      convs_.push_back(make_conv(r, "fcomb.layers." + std::to_string(index), f, f, 1, init));
      index += 2;
    }
    last_ = make_conv(r, "fcomb.last_layer", f, 1, 1, init);
  }

  // features [N,F0,H,W], z [N,Z] → logits [N,1,H,W] (valid until the next forward).
  tensor_view<const T, D> forward(const param_views<T, D>& p, const param_views<T, D>& b,
                                  tensor_view<const T, D> features, tensor_view<const T, D> z, norm_mode mode,
                                  workspace<D>& ws) {
    const std::int64_t n = features.size(0), h = features.size(2), w = features.size(3);
    tiled_.resize(shape{n, z.size(1), h, w});
    tiled_.zero();
    ops::add_channel_bias_forward(tiled_.view(), z);                          // z⊗1 [N,Z,H,W]
    cat_.resize(shape{n, features.size(1) + z.size(1), h, w});
    ops::concat_channels_forward(features, tiled_.cview(), cat_.view());     // [N,F0+Z,H,W]
    acts_.resize(convs_.size());
    normed_.resize(norms_.size());
    means_.resize(norms_.size());
    rstds_.resize(norms_.size());
    tensor_view<const T, D> in = cat_.cview();
    for (std::size_t k = 0; k < convs_.size(); ++k) {
      if (k > 0 && batch_norm_) {
        const batch_norm_layer& bn = norms_[k - 1];
        normed_[k - 1].resize(in.shape());
        if (mode == norm_mode::batch) {
          means_[k - 1].resize(shape{bn.channels});
          rstds_[k - 1].resize(shape{bn.channels});
          ops::batch_norm_forward_training(in, p.value(bn.weight), p.value(bn.bias), bn.eps, bn.momentum,
                                           normed_[k - 1].view(), means_[k - 1].view(), rstds_[k - 1].view(),
                                           b.value(bn.running_mean), b.value(bn.running_var));
        } else {
          ops::batch_norm_forward_inference(in, p.value(bn.weight), p.value(bn.bias), b.value(bn.running_mean),
                                            b.value(bn.running_var), bn.eps, normed_[k - 1].view());
        }
        in = normed_[k - 1].cview();                                          // [N,F0,H,W]
      }
      acts_[k].resize(shape{n, convs_[k].out_channels, h, w});
      ops::conv2d_forward(in, p.conv_weight(convs_[k]), p.value(convs_[k].bias), acts_[k].view(), {}, ws);
      ops::relu_forward(acts_[k].cview(), acts_[k].view());                   // a_k [N,F0,H,W]
      in = acts_[k].cview();
    }
    logits_.resize(shape{n, 1, h, w});
    ops::conv2d_forward(in, p.conv_weight(last_), p.value(last_.bias), logits_.view(), {}, ws);  // [N,1,H,W]
    return logits_.cview();
  }

  // After a batch-statistics forward: dlogits [N,1,H,W] → dfeatures [N,F0,H,W] (=),
  // dz [N,Z] (=), parameter gradients (+=).
  void backward(const param_views<T, D>& p, tensor_view<const T, D> dlogits, tensor_view<T, D> dfeatures,
                tensor_view<T, D> dz, workspace<D>& ws) {
    da_.resize(acts_.back().shape());
    ops::conv2d_backward(acts_.back().cview(), p.conv_weight(last_), dlogits, da_.view(), p.conv_weight_grad(last_),
                         p.grad(last_.bias), {}, ws);                         // [N,F0,H,W]
    for (std::size_t k = convs_.size(); k-- > 0;) {
      ops::relu_backward(acts_[k].cview(), da_.cview(), da_.view());
      const bool normed = k > 0 && batch_norm_;
      const tensor_view<const T, D> in =
          k == 0 ? cat_.cview() : (normed ? normed_[k - 1].cview() : acts_[k - 1].cview());
      db_.resize(in.shape());
      ops::conv2d_backward(in, p.conv_weight(convs_[k]), da_.cview(), db_.view(), p.conv_weight_grad(convs_[k]),
                           p.grad(convs_[k].bias), {}, ws);
      if (normed) {
        const batch_norm_layer& bn = norms_[k - 1];
        da_.resize(acts_[k - 1].shape());
        ops::batch_norm_backward(acts_[k - 1].cview(), p.value(bn.weight), means_[k - 1].cview(),
                                 rstds_[k - 1].cview(), db_.cview(), da_.view(), p.grad(bn.weight), p.grad(bn.bias));
      } else {
        std::swap(da_, db_);
      }
    }
    // da_ now holds d cat [N,F0+Z,H,W].
    dtiled_.resize(tiled_.shape());
    ops::concat_channels_backward(da_.cview(), dfeatures, dtiled_.view());
    ops::add_channel_bias_backward(dtiled_.cview(), dz);                     // dz [N,Z]
  }

 private:
  bool batch_norm_;
  std::vector<conv_layer> convs_;
  std::vector<batch_norm_layer> norms_;
  conv_layer last_;
  tensor<T, D> tiled_, cat_, logits_, da_, db_, dtiled_;
  std::vector<tensor<T, D>> acts_, normed_, means_, rstds_;
};

}  // namespace ambiseg::nn
