// ambiseg/nn/resblock.hpp — the reference's ResBlock with a time-embedding bias.
//
//   h = conv3x3(SiLU(GN(x)));  h += Linear(SiLU(emb)) per channel;
//   h = conv3x3(SiLU(GN(h)));  y = skip(x) + h,   skip = identity or conv1x1 (Ci ≠ Co).
// Parameter names (reference): in_layers.{0 GN, 2 conv}, emb_layers.1 (Linear),
// out_layers.{0 GN, 3 conv (zero-initialised)}, skip_connection (conv1x1).
//
// Shape legend: N batch, Ci/Co channels in/out, H×W spatial, E embedding width (4·C).
// SiLU(emb) [N,E] is computed once per step by the UNet and shared by every block.
#pragma once

#include <optional>
#include <string>

#include "ambiseg/core/workspace.hpp"
#include "ambiseg/nn/arena.hpp"
#include "ambiseg/nn/layers.hpp"
#include "ambiseg/ops/add.hpp"
#include "ambiseg/ops/conv2d.hpp"
#include "ambiseg/ops/group_norm.hpp"
#include "ambiseg/ops/linear.hpp"

namespace ambiseg::nn {

template <class T, class D>
class resblock {
 public:
  resblock(param_registry<T, D>& r, const std::string& prefix, int cin, int cout, int emb_channels,
           double eps)
      : eps_(eps) {
    in_norm_ = norm_layer::make(r, prefix + ".in_layers.0", cin);
    in_conv_ = conv_layer::make(r, prefix + ".in_layers.2", cin, cout, 3, 1, false);
    emb_linear_ = linear_layer::make(r, prefix + ".emb_layers.1", emb_channels, cout);
    out_norm_ = norm_layer::make(r, prefix + ".out_layers.0", cout);
    out_conv_ = conv_layer::make(r, prefix + ".out_layers.3", cout, cout, 3, 1, true);
    if (cin != cout) skip_ = conv_layer::make(r, prefix + ".skip_connection", cin, cout, 1, 1, false);
  }

  int in_channels() const { return in_conv_.in_channels; }
  int out_channels() const { return in_conv_.out_channels; }

  // Buffers for an input [N,Ci,H,W]. Training keeps what backward reads; inference takes
  // everything from scratch. GroupNorm and SiLU run fused: the normalised values are never
  // stored (the backward recomputes them from the norm's input and statistics).
  void plan(activation_arena<T, D>& arena, std::int64_t n, std::int64_t h, std::int64_t w,
            bool training) {
    typename activation_arena<T, D>::scratch_scope scope(arena, !training);
    const std::int64_t ci = in_channels(), co = out_channels();
    a1_ = arena.take(shape{n, ci, h, w});                       // SiLU(GN(x))    [N,Ci,H,W]
    mean1_ = arena.take(shape{n, in_norm_.groups});             //                [N,G]
    rstd1_ = arena.take(shape{n, in_norm_.groups});             //                [N,G]
    h1_ = arena.take(shape{n, co, h, w});                       // conv1 + bias   [N,Co,H,W]
    emb_out_ = arena.take(shape{n, co});                        // Linear(emb)    [N,Co]
    a2_ = arena.take(shape{n, co, h, w});                       // SiLU(GN(h1))   [N,Co,H,W]
    mean2_ = arena.take(shape{n, out_norm_.groups});            //                [N,G]
    rstd2_ = arena.take(shape{n, out_norm_.groups});            //                [N,G]
    skip_out_ = skip_ ? arena.take_scratch(shape{n, co, h, w})  // conv1x1(x)     [N,Co,H,W]
                      : tensor_view<T, D>{};
  }

  // x [N,Ci,H,W], emb_act = SiLU(emb) [N,E] → y [N,Co,H,W] (y must not alias x).
  void forward(const param_views<T, D>& p, tensor_view<const T, D> x,
               tensor_view<const T, D> emb_act, tensor_view<T, D> y, workspace<D>& ws) {
    ops::group_norm_silu_forward(x, p.value(in_norm_.weight), p.value(in_norm_.bias),
                                 in_norm_.groups, eps_, a1_, mean1_, rstd1_); // a1 [N,Ci,H,W]
    ops::conv2d_forward(a1_, p.conv_weight(in_conv_), p.value(in_conv_.bias), h1_, {}, ws);
                                                                              // h1 [N,Co,H,W]
    ops::linear_forward(emb_act, p.value(emb_linear_.weight), p.value(emb_linear_.bias),
                        emb_out_);                                            // e  [N,Co]
    ops::add_channel_bias_forward(h1_, emb_out_);                             // h1 [N,Co,H,W]
    ops::group_norm_silu_forward(h1_, p.value(out_norm_.weight), p.value(out_norm_.bias),
                                 out_norm_.groups, eps_, a2_, mean2_, rstd2_); // a2 [N,Co,H,W]
    ops::conv2d_forward(a2_, p.conv_weight(out_conv_), p.value(out_conv_.bias), y, {}, ws);
                                                                              // y  [N,Co,H,W]
    if (skip_) {
      ops::conv2d_forward(x, p.conv_weight(*skip_), p.value(skip_->bias), skip_out_, {}, ws);
                                                                              // s  [N,Co,H,W]
      ops::add_forward(y, skip_out_, y);                                      // y  [N,Co,H,W]
    } else {
      ops::add_forward(y, x, y);                                              // y  [N,Co,H,W]
    }
  }

  // After a training forward with the same x: dy [N,Co,H,W] → dx [N,Ci,H,W] (=),
  // d_emb_act [N,E] (+=), parameter gradients (+=). s.a, s.b, s.c, s.emb are clobbered.
  void backward(const param_views<T, D>& p, tensor_view<const T, D> x,
                tensor_view<const T, D> emb_act, tensor_view<const T, D> dy, tensor_view<T, D> dx,
                tensor_view<T, D> d_emb_act, const backward_scratch<T, D>& s, workspace<D>& ws) {
    const shape out_shape = h1_.shape(), in_shape = a1_.shape();
    auto da2 = carve(s.a, out_shape);                                         // [N,Co,H,W]
    ops::conv2d_backward(a2_, p.conv_weight(out_conv_), dy, da2, p.conv_weight_grad(out_conv_),
                         p.grad(out_conv_.bias), {}, ws);                     // da2 [N,Co,H,W]
    auto dh1 = carve(s.b, out_shape);                                         // [N,Co,H,W]
    ops::group_norm_silu_backward(h1_, p.value(out_norm_.weight), p.value(out_norm_.bias), mean2_,
                                  rstd2_, da2, out_norm_.groups, dh1, p.grad(out_norm_.weight),
                                  p.grad(out_norm_.bias));
                                                                              // dh1 [N,Co,H,W]
    auto de = emb_out_;                                  // e is no longer needed: reuse [N,Co]
    ops::add_channel_bias_backward(dh1, de);                                  // de  [N,Co]
    ops::linear_backward(emb_act, p.value(emb_linear_.weight), de, s.emb,
                         p.grad(emb_linear_.weight), p.grad(emb_linear_.bias)); // [N,E]
    ops::add_forward(d_emb_act, s.emb, d_emb_act);                            // [N,E] +=
    auto da1 = carve(s.c, in_shape);                                          // [N,Ci,H,W]
    ops::conv2d_backward(a1_, p.conv_weight(in_conv_), dh1, da1, p.conv_weight_grad(in_conv_),
                         p.grad(in_conv_.bias), {}, ws);                      // da1 [N,Ci,H,W]
    ops::group_norm_silu_backward(x, p.value(in_norm_.weight), p.value(in_norm_.bias), mean1_,
                                  rstd1_, da1, in_norm_.groups, dx, p.grad(in_norm_.weight),
                                  p.grad(in_norm_.bias));                     // dx  [N,Ci,H,W]
    if (skip_) {
      auto dx_skip = carve(s.c, in_shape);                                    // [N,Ci,H,W]
      ops::conv2d_backward(x, p.conv_weight(*skip_), dy, dx_skip, p.conv_weight_grad(*skip_),
                           p.grad(skip_->bias), {}, ws);                      // [N,Ci,H,W]
      ops::add_forward(dx, dx_skip, dx);                                      // dx  [N,Ci,H,W]
    } else {
      ops::add_forward(dx, dy, dx);                                           // dx  [N,Ci,H,W]
    }
  }

 private:
  double eps_;
  norm_layer in_norm_, out_norm_;
  conv_layer in_conv_, out_conv_;
  linear_layer emb_linear_;
  std::optional<conv_layer> skip_;
  tensor_view<T, D> a1_, mean1_, rstd1_, h1_, emb_out_, a2_, mean2_, rstd2_, skip_out_;
};

}  // namespace ambiseg::nn
