// ambiseg/nn/conv_stack.hpp — the Probabilistic U-Net's building block (Kohl et al. 2018, as
// in the Generalized Probabilistic U-Net of Bhat et al. 2022):
//
//   y = BN( ReLU(conv3×3( … ReLU(conv3×3( pool(x) )) … )) )
//        pool: 2×2 average (optional)   convs: `convs` of them   BN: BatchNorm2d (optional)
//
// Parameters are registered under the reference's nn.Sequential indices: pooling and ReLU
// layers take an index too, so the first conv of a pooled block is "<prefix>.1". BatchNorm
// running statistics go to the model's buffer store (they are state, not parameters).
//
// Shape legend: N batch, Ci/Co channels in/out, H×W input spatial (H'×W' after pooling).
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/nn/layers.hpp"
#include "ambiseg/ops/avg_pool.hpp"
#include "ambiseg/ops/batch_norm.hpp"
#include "ambiseg/ops/conv2d.hpp"
#include "ambiseg/ops/relu.hpp"

namespace ambiseg::nn {

// Parameters with their init rules, and buffers with their initial values.
template <class T, class D>
struct state_registry {
  param_registry<T, D> params;
  parameter_store<T, D>& buffers;
  std::vector<std::pair<std::size_t, T>>& buffer_inits;  // (buffer index, constant value)

  std::size_t add_buffer(const std::string& name, shape s, T value) {
    const std::size_t index = buffers.add(name, s);
    buffer_inits.push_back({index, value});
    return index;
  }
};

// Allocates a network's parameter and buffer stores, draws the parameters (seeded) and sets
// every buffer to its initial value.
template <class T, class D>
void allocate_state(parameter_store<T, D>& params, parameter_store<T, D>& buffers, const std::vector<param_init>& inits,
                    const std::vector<std::pair<std::size_t, T>>& buffer_inits, std::uint64_t seed) {
  params.allocate();
  buffers.allocate();
  initialise_parameters(params, inits, seed);
  std::vector<T> host(static_cast<std::size_t>(buffers.flat_values().numel()), T(0));
  for (const auto& [index, value] : buffer_inits) {
    const auto v = buffers.value(index);
    const auto first = v.data() - buffers.flat_values().data();
    std::fill(host.begin() + first, host.begin() + first + v.numel(), value);
  }
  device_memory<D>::copy_from_host(buffers.flat_values().data(), host.data(), host.size() * sizeof(T));
}

// BatchNorm2d: γ, β trained; running mean and variance as buffers.
struct batch_norm_layer {
  std::size_t weight = 0, bias = 0;   // in the parameter store
  std::size_t running_mean = 0, running_var = 0;  // in the buffer store
  int channels = 0;
  double eps = 1e-5, momentum = 0.1;

  template <class T, class D>
  static batch_norm_layer make(state_registry<T, D>& r, const std::string& prefix, int channels, double eps,
                               double momentum) {
    batch_norm_layer b;
    b.channels = channels;
    b.eps = eps;
    b.momentum = momentum;
    b.weight = r.params.add(prefix + ".weight", shape{channels}, {param_init::ones});
    b.bias = r.params.add(prefix + ".bias", shape{channels}, {param_init::zeros});
    b.running_mean = r.add_buffer(prefix + ".running_mean", shape{channels}, T(0));
    b.running_var = r.add_buffer(prefix + ".running_var", shape{channels}, T(1));
    return b;
  }
};

// How the reference initialises a conv: weight and bias rules.
struct conv_init {
  param_init weight, bias;
};

// The reference's conv initialisation: He-normal weights (fan in, ReLU gain), biases
// N(0, 0.001²) truncated at two standard deviations.
inline conv_init he_normal_init(int cin, int kernel) {
  return {param_init::kaiming_normal(static_cast<std::int64_t>(cin) * kernel * kernel),
          {param_init::truncated_normal, 0, 1e-3}};
}

// A 3×3 (or any odd K) "same" convolution registered with explicit init rules.
template <class T, class D>
conv_layer make_conv(state_registry<T, D>& r, const std::string& prefix, int cin, int cout, int kernel,
                     const conv_init& init) {
  conv_layer c;
  c.in_channels = cin;
  c.out_channels = cout;
  c.kernel = kernel;
  c.stride = 1;
  c.weight = r.params.add(prefix + ".weight", shape{cout, cin, kernel, kernel}, init.weight);
  c.bias = r.params.add(prefix + ".bias", shape{cout}, init.bias);
  return c;
}

// Whether BatchNorm normalises with batch statistics (and updates its running ones) or
// with the running statistics.
enum class norm_mode { batch, running };

template <class T, class D>
class conv_stack {
 public:
  struct options {
    bool pool = false;
    int convs = 3;
    bool batch_norm = false;
    double bn_eps = 1e-5, bn_momentum = 0.1;
  };

  // Registers the layers as `prefix`.<index> from `first_index` on; returns the next index.
  conv_stack(state_registry<T, D>& r, const std::string& prefix, int first_index, int cin, int cout,
             const options& o)
      : pool_(o.pool) {
    int index = first_index;
    if (pool_) ++index;
    for (int i = 0; i < o.convs; ++i) {
      const int in = i == 0 ? cin : cout;
      convs_.push_back(make_conv(r, prefix + "." + std::to_string(index), in, cout, 3, he_normal_init(in, 3)));
      index += 2;  // the conv and its ReLU
    }
    if (o.batch_norm) {
      norm_ = batch_norm_layer::make(r, prefix + "." + std::to_string(index), cout, o.bn_eps, o.bn_momentum);
      has_norm_ = true;
      ++index;
    }
    next_index_ = index;
  }

  int next_index() const { return next_index_; }
  int out_channels() const { return convs_.back().out_channels; }

  // x [N,Ci,H,W] → y [N,Co,H',W'] (a view of this block's output buffer, valid until the
  // next forward). Keeps what backward reads.
  tensor_view<const T, D> forward(const param_views<T, D>& p, const param_views<T, D>& buffers,
                                  tensor_view<const T, D> x, norm_mode mode, workspace<D>& ws) {
    const std::int64_t n = x.size(0), h = pool_ ? x.size(2) / 2 : x.size(2), w = pool_ ? x.size(3) / 2 : x.size(3);
    tensor_view<const T, D> in = x;
    if (pool_) {
      pooled_.resize(shape{n, x.size(1), h, w});
      ops::avg_pool2x2_forward(x, pooled_.view());                           // p  [N,Ci,H',W']
      in = pooled_.cview();
    }
    acts_.resize(convs_.size());
    for (std::size_t i = 0; i < convs_.size(); ++i) {
      const conv_layer& c = convs_[i];
      acts_[i].resize(shape{n, c.out_channels, h, w});
      ops::conv2d_forward(in, p.conv_weight(c), p.value(c.bias), acts_[i].view(), {}, ws);  // [N,Co,H',W']
      ops::relu_forward(acts_[i].cview(), acts_[i].view());                 // a_i [N,Co,H',W']
      in = acts_[i].cview();
    }
    if (!has_norm_) return in;
    out_.resize(in.shape());
    if (mode == norm_mode::batch) {
      mean_.resize(shape{norm_.channels});
      rstd_.resize(shape{norm_.channels});
      ops::batch_norm_forward_training(in, p.value(norm_.weight), p.value(norm_.bias), norm_.eps, norm_.momentum,
                                       out_.view(), mean_.view(), rstd_.view(), buffers.value(norm_.running_mean),
                                       buffers.value(norm_.running_var));  // y [N,Co,H',W']
    } else {
      ops::batch_norm_forward_inference(in, p.value(norm_.weight), p.value(norm_.bias),
                                        buffers.value(norm_.running_mean), buffers.value(norm_.running_var),
                                        norm_.eps, out_.view());             // y [N,Co,H',W']
    }
    return out_.cview();
  }

  // After a batch-statistics forward with the same x: dy [N,Co,H',W'] → dx [N,Ci,H,W] (=,
  // optional: empty = not needed); parameter gradients (+=).
  void backward(const param_views<T, D>& p, tensor_view<const T, D> x, tensor_view<const T, D> dy,
                tensor_view<T, D> dx, workspace<D>& ws) {
    const tensor_view<const T, D> last = acts_.back().cview();
    grad_a_.resize(last.shape());
    if (has_norm_) {
      ops::batch_norm_backward(last, p.value(norm_.weight), mean_.cview(), rstd_.cview(), dy, grad_a_.view(),
                               p.grad(norm_.weight), p.grad(norm_.bias));   // da [N,Co,H',W']
    } else {
      device_memory<D>::copy(grad_a_.data(), dy.data(), sizeof(T) * static_cast<std::size_t>(dy.numel()));
    }
    for (std::size_t k = convs_.size(); k-- > 0;) {
      const conv_layer& c = convs_[k];
      ops::relu_backward(acts_[k].cview(), grad_a_.cview(), grad_a_.view());  // dz [N,Co,H',W']
      const tensor_view<const T, D> in = k > 0 ? acts_[k - 1].cview() : (pool_ ? pooled_.cview() : x);
      if (k > 0) {
        grad_b_.resize(in.shape());
        ops::conv2d_backward(in, p.conv_weight(c), grad_a_.cview(), grad_b_.view(), p.conv_weight_grad(c),
                             p.grad(c.bias), {}, ws);                          // da_{k-1} [N,Co,H',W']
        std::swap(grad_a_, grad_b_);
      } else if (pool_) {
        grad_b_.resize(in.shape());
        const bool need_dx = dx.data() != nullptr;
        ops::conv2d_backward(in, p.conv_weight(c), grad_a_.cview(), need_dx ? grad_b_.view() : tensor_view<T, D>{},
                             p.conv_weight_grad(c), p.grad(c.bias), {}, ws); // dp [N,Ci,H',W']
        if (need_dx) ops::avg_pool2x2_backward(grad_b_.cview(), dx);         // dx [N,Ci,H,W]
      } else {
        ops::conv2d_backward(in, p.conv_weight(c), grad_a_.cview(), dx, p.conv_weight_grad(c), p.grad(c.bias), {},
                             ws);                                             // dx [N,Ci,H,W]
      }
    }
  }

 private:
  bool pool_;
  std::vector<conv_layer> convs_;
  batch_norm_layer norm_;
  bool has_norm_ = false;
  int next_index_ = 0;
  tensor<T, D> pooled_, out_, mean_, rstd_, grad_a_, grad_b_;
  std::vector<tensor<T, D>> acts_;
};

}  // namespace ambiseg::nn
