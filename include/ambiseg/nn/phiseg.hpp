// ambiseg/nn/phiseg.hpp — the networks of PHiSeg (Baumgartner et al. 2019) as the TensorFlow
// reference builds them (baumgach/PHiSeg-code, phiseg_7_5; tools/phiseg_reference.py is the
// PyTorch port the tests check against; docs/models.md has the sources):
//
//   conv_bn_stack   n × [bilinear ×2 (TF legacy, optional)] → conv3×3 (no bias) → BN → ReLU
//   latent_net      the posterior (image, one-hot mask − ½) or the prior (image): a feature
//                   pyramid pre_z (R levels, 2×2 average pooling), then L latent levels from
//                   the coarsest: z_l = μ_l + σ_l⊙ε_l on pre_z[l + Δ] and the up-sampled
//                   sample of the level above (the posterior's own; the prior's in training is
//                   the posterior's, in generation its own); σ = softplus
//   likelihood      z only → per level logits s_l [N,2,H,W] (nearest up-sampling by 2^l);
//                   the logits are Σ_l s_l
//
// Parameter names follow tools/phiseg_reference.py (each mapped there to its TF scope).
// The reference builds, in each latent net, z-upsampling pairs whose output nothing uses
// ("dead branches": z_ups.<a>.<b>, b < a); they are allocated (the paper's 7,322,210 counts
// them and a converted checkpoint holds them) and, as in TF, run in training only for their
// BatchNorm statistics.
//
// Shape legend: N batch, C channels, H×W image, c_i channels of resolution level i (H/2^i),
// L latent levels, R resolution levels, Δ = R − L, Z latent channels (zdim0), h_l×w_l the
// latent level l's resolution (H/2^(l+Δ)).
#pragma once

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/nn/conv_stack.hpp"
#include "ambiseg/ops/add.hpp"
#include "ambiseg/ops/avg_pool.hpp"
#include "ambiseg/ops/concat.hpp"
#include "ambiseg/ops/gaussian_sigma.hpp"
#include "ambiseg/ops/softplus.hpp"
#include "ambiseg/ops/upsample.hpp"

namespace ambiseg::nn {

struct phiseg_net_config {
  int n0 = 20;  // channels of the finest level; the paper's 7,322,210 parameters (TF's 32)
  int zdim0 = 2;
  int latent_levels = 5;
  int resolution_levels = 7;
  double bn_eps = 1e-3, bn_momentum = 0.01;  // TF's batch_norm: epsilon 1e-3, decay 0.99
  bool dead_branches = true;                 // allocate the reference's unused z-upsampling pairs

  // c_i: n0, 2·n0, 4·n0, then 6·n0.
  std::vector<int> channels() const {
    std::vector<int> c;
    for (int i = 0; i < resolution_levels; ++i) c.push_back(i < 3 ? n0 << i : 6 * n0);
    return c;
  }
  int delta() const { return resolution_levels - latent_levels; }
  // H and W must be multiples of this (the pyramid halves them R − 1 times).
  int size_divisor() const { return 1 << (resolution_levels - 1); }
  void validate() const {
    throw_if<value_error>(n0 < 1 || n0 > 512, "phiseg: n0 ", n0, " (1 to 512)");
    throw_if<value_error>(zdim0 < 1 || zdim0 > 64, "phiseg: zdim0 ", zdim0, " (1 to 64)");
    throw_if<value_error>(resolution_levels < 1 || resolution_levels > 9, "phiseg: resolution_levels ",
                          resolution_levels, " (1 to 9)");
    throw_if<value_error>(latent_levels < 1 || latent_levels > resolution_levels, "phiseg: latent_levels ",
                          latent_levels, " (1 to resolution_levels = ", resolution_levels, ")");
    throw_if<value_error>(!(bn_eps > 0) || !(bn_momentum >= 0 && bn_momentum <= 1), "phiseg: BatchNorm eps ", bn_eps,
                          " and momentum ", bn_momentum, " (eps > 0, momentum in [0, 1])");
  }
};

inline void to_json(nlohmann::json& j, const phiseg_net_config& c) {
  j = {{"n0", c.n0}, {"zdim0", c.zdim0}, {"latent_levels", c.latent_levels},
       {"resolution_levels", c.resolution_levels}, {"bn_eps", c.bn_eps}, {"bn_momentum", c.bn_momentum},
       {"dead_branches", c.dead_branches}};
}

// TF's he_normal: a truncated normal (±2σ) with σ = √(1.3·2/fan_in), the 1.3 undoing the
// truncation's shrinkage; biases 0.
inline param_init tf_he_normal(std::int64_t fan_in) {
  return {param_init::truncated_normal, fan_in, std::sqrt(2.6 / static_cast<double>(fan_in))};
}

template <class T, class D>
class conv_bn_stack {
 public:
  // `convs` × [up2 if upsample] → conv3×3 (cin → cout, then cout → cout) → BN → ReLU.
  conv_bn_stack(state_registry<T, D>& r, const std::string& prefix, int cin, int cout, int convs, bool upsample,
                const phiseg_net_config& c)
      : upsample_(upsample) {
    for (int k = 0; k < convs; ++k) {
      const int in = k == 0 ? cin : cout;
      conv_layer layer;
      layer.in_channels = in;
      layer.out_channels = cout;
      layer.kernel = 3;
      layer.weight = r.params.add(prefix + ".conv." + std::to_string(k) + ".weight", shape{cout, in, 3, 3},
                                  tf_he_normal(9 * in));
      convs_.push_back(layer);
    }
    for (int k = 0; k < convs; ++k)
      norms_.push_back(batch_norm_layer::make(r, prefix + ".bn." + std::to_string(k), cout, c.bn_eps, c.bn_momentum));
  }

  bool empty() const { return convs_.empty(); }

  // x [N,Ci,h,w] → y [N,Co,h',w'] (h' = h·2^convs when up-sampling; a view valid until the
  // next forward; x itself when the stack is empty).
  tensor_view<const T, D> forward(const param_views<T, D>& p, const param_views<T, D>& b, tensor_view<const T, D> x,
                                  norm_mode mode, workspace<D>& ws) {
    const std::size_t n = convs_.size();
    ups_.resize(n);
    pre_.resize(n);
    acts_.resize(n);
    means_.resize(n);
    rstds_.resize(n);
    tensor_view<const T, D> in = x;
    for (std::size_t k = 0; k < n; ++k) {
      if (upsample_) {
        ups_[k].resize(shape{in.size(0), in.size(1), 2 * in.size(2), 2 * in.size(3)});
        ops::upsample_bilinear2x_forward(in, ups_[k].view(), ops::bilinear_mode::asymmetric);  // [N,C,2h,2w]
        in = ups_[k].cview();
      }
      const conv_layer& c = convs_[k];
      const batch_norm_layer& bn = norms_[k];
      pre_[k].resize(shape{in.size(0), c.out_channels, in.size(2), in.size(3)});
      ops::conv2d_forward(in, p.conv_weight(c), tensor_view<const T, D>{}, pre_[k].view(), {}, ws);  // [N,Co,h,w]
      acts_[k].resize(pre_[k].shape());
      if (mode == norm_mode::batch) {
        means_[k].resize(shape{bn.channels});
        rstds_[k].resize(shape{bn.channels});
        ops::batch_norm_forward_training(pre_[k].cview(), p.value(bn.weight), p.value(bn.bias), bn.eps, bn.momentum,
                                         acts_[k].view(), means_[k].view(), rstds_[k].view(),
                                         b.value(bn.running_mean), b.value(bn.running_var));
      } else {
        ops::batch_norm_forward_inference(pre_[k].cview(), p.value(bn.weight), p.value(bn.bias),
                                          b.value(bn.running_mean), b.value(bn.running_var), bn.eps, acts_[k].view());
      }
      ops::relu_forward(acts_[k].cview(), acts_[k].view());                    // a_k [N,Co,h,w]
      in = acts_[k].cview();
    }
    return in;
  }

  // After a batch-statistics forward from x: dy → dx (=, optional), parameter gradients (+=).
  void backward(const param_views<T, D>& p, tensor_view<const T, D> x, tensor_view<const T, D> dy,
                tensor_view<T, D> dx, workspace<D>& ws) {
    const std::size_t n = convs_.size();
    if (n == 0) {
      if (dx.data()) device_memory<D>::copy(dx.data(), dy.data(), sizeof(T) * static_cast<std::size_t>(dy.numel()));
      return;
    }
    da_.resize(dy.shape());
    ops::relu_backward(acts_[n - 1].cview(), dy, da_.view());
    for (std::size_t k = n; k-- > 0;) {
      const conv_layer& c = convs_[k];
      const batch_norm_layer& bn = norms_[k];
      if (k + 1 < n) ops::relu_backward(acts_[k].cview(), da_.cview(), da_.view());
      dpre_.resize(pre_[k].shape());
      ops::batch_norm_backward(pre_[k].cview(), p.value(bn.weight), means_[k].cview(), rstds_[k].cview(),
                               da_.cview(), dpre_.view(), p.grad(bn.weight), p.grad(bn.bias));
      const tensor_view<const T, D> in = upsample_ ? ups_[k].cview() : (k > 0 ? acts_[k - 1].cview() : x);
      const bool need_input_grad = k > 0 || dx.data() != nullptr;
      const bool into_dx = k == 0 && !upsample_;  // the first conv's input is x itself
      din_.resize(in.shape());
      ops::conv2d_backward(in, p.conv_weight(c), dpre_.cview(),
                           !need_input_grad ? tensor_view<T, D>{} : (into_dx ? dx : din_.view()),
                           p.conv_weight_grad(c), tensor_view<T, D>{}, {}, ws);
      if (!need_input_grad || into_dx) break;
      const shape below = k > 0 ? acts_[k - 1].shape() : x.shape();
      if (upsample_) {
        tensor_view<T, D> target = k > 0 ? (da_.resize(below), da_.view()) : dx;
        ops::upsample_bilinear2x_backward(din_.cview(), target, ops::bilinear_mode::asymmetric);
      } else {
        std::swap(da_, din_);
      }
    }
  }

 private:
  bool upsample_;
  std::vector<conv_layer> convs_;
  std::vector<batch_norm_layer> norms_;
  std::vector<tensor<T, D>> ups_, pre_, acts_, means_, rstds_;
  tensor<T, D> da_, dpre_, din_;
};

// A conv with a bias and no normalisation (the μ, σ and output heads).
template <class T, class D>
conv_layer make_head(state_registry<T, D>& r, const std::string& prefix, int cin, int cout, int kernel) {
  return make_conv(r, prefix, cin, cout, kernel, {tf_he_normal(kernel * kernel * cin), {param_init::zeros}});
}

template <class T, class D>
void head_forward(const param_views<T, D>& p, const conv_layer& c, tensor_view<const T, D> x, tensor<T, D>& y,
                  workspace<D>& ws) {
  y.resize(shape{x.size(0), c.out_channels, x.size(2), x.size(3)});
  ops::conv2d_forward(x, p.conv_weight(c), p.value(c.bias), y.view(), {}, ws);
}

template <class T, class D>
class latent_net {
 public:
  latent_net(state_registry<T, D>& r, const std::string& name, int in_channels, const phiseg_net_config& c)
      : levels_(c.latent_levels), delta_(c.delta()), zdim_(c.zdim0) {
    const auto ch = c.channels();
    const int zu = c.zdim0 * c.n0;
    for (int i = 0; i < c.resolution_levels; ++i)
      pre_z_.push_back(std::make_unique<conv_bn_stack<T, D>>(r, name + ".pre_z." + std::to_string(i),
                                                               i == 0 ? in_channels : ch[i - 1], ch[i], 3, false, c));
    z_ups_.resize(levels_);
    for (int a = 1; a < levels_; ++a)
      for (int b = a; b >= 1; --b)
        if (b == a || c.dead_branches)
          z_ups_[a].push_back(std::make_unique<conv_bn_stack<T, D>>(
              r, name + ".z_ups." + std::to_string(a) + "." + std::to_string(b), b == a ? c.zdim0 : zu, zu, 2, false,
              c));
    for (int l = 0; l + 1 < levels_; ++l)
      z_input_.push_back(std::make_unique<conv_bn_stack<T, D>>(r, name + ".z_input." + std::to_string(l),
                                                                 ch[l + delta_] + zu, ch[l], 2, false, c));
    const int top = ch[c.resolution_levels - 1];
    for (int l = 0; l < levels_; ++l)
      mu_.push_back(make_head(r, name + ".mu." + std::to_string(l), l == levels_ - 1 ? top : ch[l], zdim_,
                              l == levels_ - 1 ? 3 : 1));
    for (int l = 0; l < levels_; ++l)
      sigma_.push_back(make_head(r, name + ".sigma." + std::to_string(l), l == levels_ - 1 ? top : ch[l], zdim_, 1));
    mu_out_.resize(levels_);
    raw_.resize(levels_);
    sigma_out_.resize(levels_);
    z_.resize(levels_);
    up_.resize(levels_);
    cat_.resize(levels_);
    dz_.resize(levels_);
    dmu_.resize(levels_);
    dsigma_.resize(levels_);
    g_.resize(levels_);
  }

  int levels() const { return levels_; }

  // The feature pyramid: x [N,Ci,H,W] → pre_z[i] [N,c_i,H/2^i,W/2^i] (kept for latents()).
  void encode(const param_views<T, D>& p, const param_views<T, D>& b, tensor_view<const T, D> x, norm_mode mode,
              workspace<D>& ws) {
    input_ = x;
    pre_.clear();
    pooled_.resize(pre_z_.size());
    for (std::size_t i = 0; i < pre_z_.size(); ++i) {
      tensor_view<const T, D> in = x;
      if (i > 0) {
        const auto prev = pre_.back();
        pooled_[i].resize(shape{prev.size(0), prev.size(1), prev.size(2) / 2, prev.size(3) / 2});
        ops::avg_pool2x2_forward(prev, pooled_[i].view());                     // [N,c_{i−1},h/2,w/2]
        in = pooled_[i].cview();
      }
      pre_.push_back(pre_z_[i]->forward(p, b, in, mode, ws));                  // pre_z[i] [N,c_i,…]
    }
  }

  // After encode: the latent levels from the coarsest. eps[l] [N,Z,h_l,w_l] draws z_l (empty
  // eps: μ and σ only, as the prior in training); cond[l] (non-empty: the prior in training)
  // is the sample each finer level is conditioned on instead of this net's own.
  // `dead_statistics`: run the dead branches for their BatchNorm statistics (training).
  void latents(const param_views<T, D>& p, const param_views<T, D>& b, const std::vector<tensor_view<const T, D>>& eps,
               const std::vector<tensor_view<const T, D>>& cond, norm_mode mode, bool dead_statistics,
               workspace<D>& ws) {
    eps_ = eps;
    cond_ = cond;
    for (int l = levels_ - 1; l >= 0; --l) {
      tensor_view<const T, D> g = pre_[l + delta_];
      if (l < levels_ - 1) {
        const tensor_view<const T, D> src = cond.empty() ? z_[l + 1].cview() : cond[l + 1];
        up_[l].resize(shape{src.size(0), src.size(1), 2 * src.size(2), 2 * src.size(3)});
        ops::upsample_bilinear2x_forward(src, up_[l].view(), ops::bilinear_mode::asymmetric);  // [N,Z,h_l,w_l]
        const auto u = z_ups_[l + 1][0]->forward(p, b, up_[l].cview(), mode, ws);  // [N,zu,h_l,w_l]
        if (dead_statistics && mode == norm_mode::batch) run_dead_branches(p, b, l + 1, u, ws);
        const auto pre = pre_[l + delta_];
        cat_[l].resize(shape{pre.size(0), pre.size(1) + u.size(1), pre.size(2), pre.size(3)});
        ops::concat_channels_forward(pre, u, cat_[l].view());                  // [N,c_{l+Δ}+zu,h_l,w_l]
        g = z_input_[l]->forward(p, b, cat_[l].cview(), mode, ws);            // [N,c_l,h_l,w_l]
      }
      g_[l] = g;
      head_forward(p, mu_[l], g, mu_out_[l], ws);                             // μ_l [N,Z,h_l,w_l]
      head_forward(p, sigma_[l], g, raw_[l], ws);
      sigma_out_[l].resize(raw_[l].shape());
      ops::softplus_forward(raw_[l].cview(), sigma_out_[l].view());           // σ_l [N,Z,h_l,w_l]
      if (!eps.empty()) {
        z_[l].resize(mu_out_[l].shape());
        ops::sigma_gaussian_rsample_forward(mu_out_[l].cview(), sigma_out_[l].cview(), eps[l], z_[l].view());  // z_l
      }
    }
  }

  tensor_view<const T, D> mu(int l) const { return mu_out_[l].cview(); }
  tensor_view<const T, D> sigma(int l) const { return sigma_out_[l].cview(); }
  tensor_view<const T, D> z(int l) const { return z_[l].cview(); }
  std::vector<tensor_view<const T, D>> samples() const {
    std::vector<tensor_view<const T, D>> out;
    for (const auto& t : z_) out.push_back(t.cview());
    return out;
  }

  // Gradient slots for the loss to add into, shaped like the last forward's μ_l, σ_l (and
  // z_l when drawn), zeroed.
  tensor_view<T, D> dmu(int l) { return dmu_[l].view(); }
  tensor_view<T, D> dsigma(int l) { return dsigma_[l].view(); }
  tensor_view<T, D> dz(int l) { return dz_[l].view(); }
  void zero_gradient_slots() {
    for (int l = 0; l < levels_; ++l) {
      for (auto* t : {&dmu_[l], &dsigma_[l]}) {
        t->resize(mu_out_[l].shape());
        t->zero();
      }
      dz_[l].resize(mu_out_[l].shape());
      dz_[l].zero();
    }
  }

  // After a batch-statistics forward and the loss's gradients in the slots: parameter
  // gradients (+=). With cond, d cond[l] (l ≥ 1) is added to dcond[l].
  void backward(const param_views<T, D>& p, const std::vector<tensor_view<T, D>>& dcond, workspace<D>& ws) {
    dpre_.resize(pre_.size());
    for (std::size_t i = 0; i < pre_.size(); ++i) {
      dpre_[i].resize(pre_[i].shape());
      dpre_[i].zero();
    }
    for (int l = 0; l < levels_; ++l) {
      if (!eps_.empty())
        ops::sigma_gaussian_rsample_backward(eps_[l], dz_[l].cview(), dmu_[l].view(), dsigma_[l].view());
      ops::softplus_backward(raw_[l].cview(), dsigma_[l].cview(), dsigma_[l].view());  // d raw_l
      dg_.resize(g_[l].shape());
      dg2_.resize(g_[l].shape());
      ops::conv2d_backward(g_[l], p.conv_weight(mu_[l]), dmu_[l].cview(), dg_.view(), p.conv_weight_grad(mu_[l]),
                           p.grad(mu_[l].bias), {}, ws);
      ops::conv2d_backward(g_[l], p.conv_weight(sigma_[l]), dsigma_[l].cview(), dg2_.view(),
                           p.conv_weight_grad(sigma_[l]), p.grad(sigma_[l].bias), {}, ws);
      ops::add_forward(dg_.cview(), dg2_.cview(), dg_.view());                // d g_l
      auto& dpre = dpre_[l + delta_];
      if (l == levels_ - 1) {
        ops::add_forward(dpre.cview(), dg_.cview(), dpre.view());
        continue;
      }
      dcat_.resize(cat_[l].shape());
      z_input_[l]->backward(p, cat_[l].cview(), dg_.cview(), dcat_.view(), ws);
      dpre_part_.resize(dpre.shape());
      du_.resize(shape{dcat_.size(0), dcat_.size(1) - dpre.size(1), dcat_.size(2), dcat_.size(3)});
      ops::concat_channels_backward(dcat_.cview(), dpre_part_.view(), du_.view());
      ops::add_forward(dpre.cview(), dpre_part_.cview(), dpre.view());
      dup_.resize(up_[l].shape());
      z_ups_[l + 1][0]->backward(p, up_[l].cview(), du_.cview(), dup_.view(), ws);
      dsrc_.resize(mu_out_[l + 1].shape());
      ops::upsample_bilinear2x_backward(dup_.cview(), dsrc_.view(), ops::bilinear_mode::asymmetric);
      tensor_view<T, D> target = cond_.empty() ? dz_[l + 1].view() : dcond[l + 1];
      ops::add_forward(tensor_view<const T, D>(target), dsrc_.cview(), target);
    }
    for (std::size_t i = pre_.size(); i-- > 0;) {
      const tensor_view<const T, D> in = i == 0 ? input_ : pooled_[i].cview();
      if (i == 0) {
        pre_z_[0]->backward(p, in, dpre_[0].cview(), tensor_view<T, D>{}, ws);
        break;
      }
      dpooled_.resize(in.shape());
      pre_z_[i]->backward(p, in, dpre_[i].cview(), dpooled_.view(), ws);
      dbelow_.resize(pre_[i - 1].shape());
      ops::avg_pool2x2_backward(dpooled_.cview(), dbelow_.view());
      ops::add_forward(dpre_[i - 1].cview(), dbelow_.cview(), dpre_[i - 1].view());
    }
  }

 private:
  // z_ups.<a>.<b> for b = a − 1 … 1: each up-samples the previous one's output; nothing reads
  // the result (the reference's graph has them; TF updates their statistics).
  void run_dead_branches(const param_views<T, D>& p, const param_views<T, D>& b, int a, tensor_view<const T, D> u,
                         workspace<D>& ws) {
    tensor_view<const T, D> v = u;
    for (std::size_t k = 1; k < z_ups_[a].size(); ++k) {
      dead_up_.resize(shape{v.size(0), v.size(1), 2 * v.size(2), 2 * v.size(3)});
      ops::upsample_bilinear2x_forward(v, dead_up_.view(), ops::bilinear_mode::asymmetric);
      v = z_ups_[a][k]->forward(p, b, dead_up_.cview(), norm_mode::batch, ws);
    }
  }

  int levels_, delta_, zdim_;
  std::vector<std::unique_ptr<conv_bn_stack<T, D>>> pre_z_, z_input_;
  std::vector<std::vector<std::unique_ptr<conv_bn_stack<T, D>>>> z_ups_;  // [a]: b = a, a − 1, …
  std::vector<conv_layer> mu_, sigma_;
  tensor_view<const T, D> input_;
  std::vector<tensor_view<const T, D>> pre_, g_, eps_, cond_;
  std::vector<tensor<T, D>> pooled_, mu_out_, raw_, sigma_out_, z_, up_, cat_, dz_, dmu_, dsigma_, dpre_;
  tensor<T, D> dead_up_, dg_, dg2_, dcat_, dpre_part_, du_, dup_, dsrc_, dpooled_, dbelow_;
};

template <class T, class D>
class likelihood_net {
 public:
  likelihood_net(state_registry<T, D>& r, const phiseg_net_config& c)
      : levels_(c.latent_levels), delta_(c.delta()) {
    const auto ch = c.channels();
    const int L = levels_;
    for (int l = 0; l < L; ++l) post_c_channels_.push_back(l < L - 1 ? ch[l + delta_] : ch[l]);
    for (int l = 0; l < L; ++l)
      post_z_.push_back(std::make_unique<conv_bn_stack<T, D>>(r, "likelihood.post_z." + std::to_string(l), c.zdim0,
                                                                ch[l], 2, false, c));
    for (int l = 0; l < L; ++l)
      preups_.push_back(std::make_unique<conv_bn_stack<T, D>>(r, "likelihood.preups." + std::to_string(l), ch[l],
                                                                ch[l], delta_, true, c));
    for (int l = 0; l + 1 < L; ++l)
      ups_c_.push_back(std::make_unique<conv_bn_stack<T, D>>(r, "likelihood.ups_c." + std::to_string(l),
                                                               post_c_channels_[l + 1], ch[l], 1, false, c));
    for (int l = 0; l + 1 < L; ++l)
      post_c_.push_back(std::make_unique<conv_bn_stack<T, D>>(r, "likelihood.post_c." + std::to_string(l), 2 * ch[l],
                                                                ch[l + delta_], 2, false, c));
    for (int l = 0; l < L; ++l)
      s_.push_back(make_head(r, "likelihood.s." + std::to_string(l), post_c_channels_[l], 2, 1));
    const auto n = static_cast<std::size_t>(L);
    z_post_.resize(n);
    pz_.resize(n);
    pc_.resize(n);
    a_.resize(n);
    cat_.resize(n);
    small_.resize(n);
    full_.resize(n);
    dpc_.resize(n);
    dpz_.resize(n);
  }

  // z_l [N,Z,h_l,w_l] → the level logits s_l [N,2,H,W] (views valid until the next forward).
  const std::vector<tensor_view<const T, D>>& forward(const param_views<T, D>& p, const param_views<T, D>& b,
                                           const std::vector<tensor_view<const T, D>>& z, norm_mode mode,
                                           workspace<D>& ws) {
    z_in_ = z;
    for (int l = 0; l < levels_; ++l) {
      z_post_[l] = post_z_[l]->forward(p, b, z[l], mode, ws);                 // [N,c_l,h_l,w_l]
      pz_[l] = preups_[l]->forward(p, b, z_post_[l], mode, ws);               // [N,c_l,H/2^l,W/2^l]
    }
    pc_[levels_ - 1] = pz_[levels_ - 1];
    for (int l = levels_ - 2; l >= 0; --l) {
      const auto above = pc_[l + 1];
      a_[l].resize(shape{above.size(0), above.size(1), 2 * above.size(2), 2 * above.size(3)});
      ops::upsample_bilinear2x_forward(above, a_[l].view(), ops::bilinear_mode::asymmetric);
      const auto ub = ups_c_[l]->forward(p, b, a_[l].cview(), mode, ws);      // [N,c_l,H/2^l,W/2^l]
      cat_[l].resize(shape{ub.size(0), pz_[l].size(1) + ub.size(1), ub.size(2), ub.size(3)});
      ops::concat_channels_forward(pz_[l], ub, cat_[l].view());               // [N,2c_l,…]
      pc_[l] = post_c_[l]->forward(p, b, cat_[l].cview(), mode, ws);          // [N,c_{l+Δ},…]
    }
    for (int l = 0; l < levels_; ++l) {
      head_forward(p, s_[l], pc_[l], small_[l], ws);                          // [N,2,H/2^l,W/2^l]
      tensor_view<const T, D> s = small_[l].cview();
      up_chain(l).resize(static_cast<std::size_t>(l));
      for (int k = 0; k < l; ++k) {
        auto& t = up_chain(l)[k];
        t.resize(shape{s.size(0), s.size(1), 2 * s.size(2), 2 * s.size(3)});
        ops::upsample_nearest2x_forward(s, t.view());
        s = t.cview();
      }
      full_[l] = s;                                                           // s_l [N,2,H,W]
    }
    return full_;
  }

  const std::vector<tensor_view<const T, D>>& level_logits() const { return full_; }  // the last forward's s_l

  // After a batch-statistics forward: ds_l [N,2,H,W] → dz_l (=) and parameter gradients (+=).
  void backward(const param_views<T, D>& p, const std::vector<tensor_view<const T, D>>& ds,
                const std::vector<tensor_view<T, D>>& dz, workspace<D>& ws) {
    for (int l = 0; l < levels_; ++l) {
      tensor_view<const T, D> g = ds[l];
      for (int k = l - 1; k >= 0; --k) {
        auto& t = down_[k % 2];
        const auto src_shape = k == 0 ? small_[l].shape() : up_chain(l)[k - 1].shape();
        t.resize(src_shape);
        ops::upsample_nearest2x_backward(g, t.view());
        g = t.cview();
      }
      dpc_[l].resize(pc_[l].shape());
      ops::conv2d_backward(pc_[l], p.conv_weight(s_[l]), g, dpc_[l].view(), p.conv_weight_grad(s_[l]),
                           p.grad(s_[l].bias), {}, ws);                       // d post_c_l
    }
    for (int l = 0; l + 1 < levels_; ++l) {
      dcat_.resize(cat_[l].shape());
      post_c_[l]->backward(p, cat_[l].cview(), dpc_[l].cview(), dcat_.view(), ws);
      dpz_[l].resize(pz_[l].shape());
      dub_.resize(shape{dcat_.size(0), dcat_.size(1) - pz_[l].size(1), dcat_.size(2), dcat_.size(3)});
      ops::concat_channels_backward(dcat_.cview(), dpz_[l].view(), dub_.view());
      da_.resize(a_[l].shape());
      ups_c_[l]->backward(p, a_[l].cview(), dub_.cview(), da_.view(), ws);
      dabove_.resize(pc_[l + 1].shape());
      ops::upsample_bilinear2x_backward(da_.cview(), dabove_.view(), ops::bilinear_mode::asymmetric);
      ops::add_forward(dpc_[l + 1].cview(), dabove_.cview(), dpc_[l + 1].view());
    }
    for (int l = 0; l < levels_; ++l) {
      const tensor_view<const T, D> dp = l == levels_ - 1 ? dpc_[l].cview() : dpz_[l].cview();
      dpost_.resize(z_post_[l].shape());
      preups_[l]->backward(p, z_post_[l], dp, dpost_.view(), ws);
      post_z_[l]->backward(p, z_in_[l], dpost_.cview(), dz[l], ws);
    }
  }

 private:
  std::vector<tensor<T, D>>& up_chain(int l) {
    if (up_chains_.size() < static_cast<std::size_t>(levels_)) up_chains_.resize(levels_);
    return up_chains_[l];
  }

  int levels_, delta_;
  std::vector<int> post_c_channels_;
  std::vector<std::unique_ptr<conv_bn_stack<T, D>>> post_z_, preups_, ups_c_, post_c_;
  std::vector<conv_layer> s_;
  std::vector<tensor_view<const T, D>> z_in_, z_post_, pz_, pc_, full_;
  std::vector<tensor<T, D>> a_, cat_, small_, dpc_, dpz_;
  std::vector<std::vector<tensor<T, D>>> up_chains_;
  tensor<T, D> down_[2], dcat_, dub_, da_, dabove_, dpost_;
};

}  // namespace ambiseg::nn
