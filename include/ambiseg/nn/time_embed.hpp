// ambiseg/nn/time_embed.hpp — the time-embedding MLP (reference: time_embed.{0,2}).
//
//   s = sinusoid(t) [N,C];  emb = Linear(SiLU(Linear(s))) [N,E];  out = SiLU(emb) [N,E].
// Every ResBlock's emb_layers start with SiLU on the same emb, so the SiLU is applied once
// here and its result shared; backward receives the sum of the blocks' gradients.
//
// Shape legend: N batch, C model channels, E = 4·C embedding width.
#pragma once

#include "ambiseg/nn/arena.hpp"
#include "ambiseg/nn/layers.hpp"
#include "ambiseg/ops/linear.hpp"
#include "ambiseg/ops/silu.hpp"
#include "ambiseg/ops/timestep_embedding.hpp"

namespace ambiseg::nn {

template <class T, class D>
class time_embed {
 public:
  time_embed(param_registry<T, D>& r, int model_channels, double max_period)
      : channels_(model_channels), max_period_(max_period) {
    first_ = linear_layer::make(r, "time_embed.0", model_channels, 4 * model_channels);
    second_ = linear_layer::make(r, "time_embed.2", 4 * model_channels, 4 * model_channels);
  }

  int embedding_channels() const { return first_.out_features; }

  // Small ([N,E] at most), so always kept whole.
  void plan(activation_arena<T, D>& arena, std::int64_t n) {
    const std::int64_t e = embedding_channels();
    sinusoid_ = arena.take_persistent(shape{n, channels_});  // [N,C]
    hidden_ = arena.take_persistent(shape{n, e});            // Linear₀(s)        [N,E]
    hidden_act_ = arena.take_persistent(shape{n, e});        // SiLU(Linear₀(s))  [N,E]
    emb_ = arena.take_persistent(shape{n, e});               // emb               [N,E]
    emb_act_ = arena.take_persistent(shape{n, e});           // SiLU(emb)         [N,E]
  }

  // t [N] → SiLU(emb) [N,E] (a view of this module's buffer).
  tensor_view<const T, D> forward(const param_views<T, D>& p, tensor_view<const T, D> t) {
    ops::timestep_embedding(t, channels_, max_period_, sinusoid_);           // [N,C]
    ops::linear_forward(sinusoid_, p.value(first_.weight), p.value(first_.bias), hidden_); // [N,E]
    ops::silu_forward(hidden_, hidden_act_);                                  // [N,E]
    ops::linear_forward(hidden_act_, p.value(second_.weight), p.value(second_.bias), emb_); // [N,E]
    ops::silu_forward(emb_, emb_act_);                                        // [N,E]
    return emb_act_;
  }

  // d_emb_act [N,E] → parameter gradients (+=); t needs no gradient. Clobbers d_emb_act
  // and emb (a new forward rewrites them).
  void backward(const param_views<T, D>& p, tensor_view<T, D> d_emb_act) {
    ops::silu_backward(emb_, d_emb_act, d_emb_act);                           // d emb     [N,E]
    // emb is no longer read: its buffer takes the hidden gradient.
    auto d_hidden = emb_;
    ops::linear_backward(hidden_act_, p.value(second_.weight), d_emb_act, d_hidden,
                         p.grad(second_.weight), p.grad(second_.bias));       // d hid_act [N,E]
    ops::silu_backward(hidden_, d_hidden, d_hidden);                          // d hidden  [N,E]
    ops::linear_backward(sinusoid_, p.value(first_.weight), d_hidden, tensor_view<T, D>{},
                         p.grad(first_.weight), p.grad(first_.bias));         // no ds
  }

 private:
  int channels_;
  double max_period_;
  linear_layer first_, second_;
  tensor_view<T, D> sinusoid_, hidden_, hidden_act_, emb_, emb_act_;
};

}  // namespace ambiseg::nn
