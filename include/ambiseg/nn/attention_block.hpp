// ambiseg/nn/attention_block.hpp — the reference's spatial self-attention block.
//
//   qkv = conv1x1(GN(x)) [N,3C,T];  a = QKVAttentionLegacy(qkv, heads) [N,C,T];
//   y = x + proj_out(a)  (proj_out zero-initialised).
// The reference's qkv and proj_out are Conv1d with weights [3C,C,1] and [C,C,1]; here they
// run as 1×1 Conv2d on the same memory. The legacy head split (qkv viewed as
// [N·heads, 3·C/heads, T] before q|k|v) is the op's (ops/attention.hpp).
//
// Shape legend: N batch, C channels, H×W spatial, T = H·W tokens.
#pragma once

#include <string>

#include "ambiseg/core/workspace.hpp"
#include "ambiseg/nn/arena.hpp"
#include "ambiseg/nn/layers.hpp"
#include "ambiseg/ops/add.hpp"
#include "ambiseg/ops/attention.hpp"
#include "ambiseg/ops/conv2d.hpp"
#include "ambiseg/ops/group_norm.hpp"

namespace ambiseg::nn {

template <class T, class D>
class attention_block {
 public:
  attention_block(param_registry<T, D>& r, const std::string& prefix, int channels, int heads,
                  double eps)
      : heads_(heads), eps_(eps) {
    throw_if<value_error>(heads < 1 || channels % heads != 0, "attention_block(", prefix, "): ",
                          channels, " channels do not split into ", heads, " heads");
    norm_ = norm_layer::make(r, prefix + ".norm", channels);
    qkv_ = conv_layer::make(r, prefix + ".qkv", channels, 3 * channels, 1, 1, false, true);
    proj_ = conv_layer::make(r, prefix + ".proj_out", channels, channels, 1, 1, true, true);
  }

  int channels() const { return norm_.channels; }

  void plan(activation_arena<T, D>& arena, std::int64_t n, std::int64_t h, std::int64_t w,
            bool training) {
    typename activation_arena<T, D>::scratch_scope scope(arena, !training);
    const std::int64_t c = channels(), t = h * w;
    normed_ = arena.take(shape{n, c, h, w});                 // GN(x)       [N,C,H,W]
    mean_ = arena.take(shape{n, norm_.groups});              //             [N,G]
    rstd_ = arena.take(shape{n, norm_.groups});              //             [N,G]
    qkv_out_ = arena.take(shape{n, 3 * c, h, w});            // qkv         [N,3C,H,W]
    probs_ = arena.take(shape{n * heads_, t, t});            // softmax     [N·heads,T,T]
    attended_ = arena.take(shape{n, c, h, w});               // attention   [N,C,H,W]
  }

  // x [N,C,H,W] → y [N,C,H,W] (y must not alias x).
  void forward(const param_views<T, D>& p, tensor_view<const T, D> x, tensor_view<T, D> y,
               workspace<D>& ws) {
    const std::int64_t n = x.size(0), c = x.size(1), t = x.size(2) * x.size(3);
    ops::group_norm_forward(x, p.value(norm_.weight), p.value(norm_.bias), norm_.groups, eps_,
                            normed_, mean_, rstd_);                           // [N,C,H,W]
    ops::conv2d_forward(normed_, p.conv_weight(qkv_), p.value(qkv_.bias), qkv_out_, {}, ws);
                                                                              // [N,3C,H,W]
    ops::attention_forward(qkv_out_.reshaped(shape{n, 3 * c, t}), heads_,
                           attended_.reshaped(shape{n, c, t}), probs_, ws);   // [N,C,T]
    ops::conv2d_forward(attended_, p.conv_weight(proj_), p.value(proj_.bias), y, {}, ws);
                                                                              // [N,C,H,W]
    ops::add_forward(y, x, y);                                                // [N,C,H,W]
  }

  // dy [N,C,H,W] → dx [N,C,H,W] (=), parameter gradients (+=). s.a and s.b are clobbered.
  void backward(const param_views<T, D>& p, tensor_view<const T, D> x,
                tensor_view<const T, D> dy, tensor_view<T, D> dx, const backward_scratch<T, D>& s,
                workspace<D>& ws) {
    const std::int64_t n = x.size(0), c = x.size(1), t = x.size(2) * x.size(3);
    auto d_attended = carve(s.a, x.shape());                                  // [N,C,H,W]
    ops::conv2d_backward(attended_, p.conv_weight(proj_), dy, d_attended,
                         p.conv_weight_grad(proj_), p.grad(proj_.bias), {}, ws);
    auto d_qkv = carve(s.b, qkv_out_.shape());                                // [N,3C,H,W]
    ops::attention_backward(qkv_out_.reshaped(shape{n, 3 * c, t}), probs_,
                            d_attended.reshaped(shape{n, c, t}), heads_,
                            d_qkv.reshaped(shape{n, 3 * c, t}), ws);          // [N,3C,T]
    auto d_normed = carve(s.a, x.shape());                                    // [N,C,H,W]
    ops::conv2d_backward(normed_, p.conv_weight(qkv_), d_qkv, d_normed, p.conv_weight_grad(qkv_),
                         p.grad(qkv_.bias), {}, ws);                          // [N,C,H,W]
    ops::group_norm_backward(x, p.value(norm_.weight), mean_, rstd_, d_normed, norm_.groups, dx,
                             p.grad(norm_.weight), p.grad(norm_.bias));       // [N,C,H,W]
    ops::add_forward(dx, dy, dx);                                             // [N,C,H,W]
  }

 private:
  int heads_;
  double eps_;
  norm_layer norm_;
  conv_layer qkv_, proj_;
  tensor_view<T, D> normed_, mean_, rstd_, qkv_out_, probs_, attended_;
};

}  // namespace ambiseg::nn
