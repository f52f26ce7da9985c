// ambiseg/nn/unet.hpp — the reference diffusion UNet (SPEC.md §6), forward and backward.
//
//   f = UNet(cat[x_t, image], t)
//   encoder  input_blocks.0 = stem conv3x3; per level l: num_res_blocks[l] × (ResBlock
//            [+ AttentionBlock]), then (all levels but the lowest) a stride-2 conv3x3
//            Downsample. Every input block's output is kept as a skip.
//   middle   middle_block: Res, Attn, Res, Attn, …, Res.
//   decoder  output_blocks, per level from the lowest: num_res_blocks[l] + 1 ×
//            (ResBlock(cat[h, skip.pop()]) [+ AttentionBlock]), the level's last block
//            ending (all levels but 0) with Upsample = nearest ×2, conv3x3.
//   head     out.{1 GN, 2 SiLU, 3 conv3x3 (zero-initialised)}, then tanh if final_tanh.
// Parameters carry the reference's state_dict names, registered in its order, so a
// reference checkpoint loads by name (io/checkpoint.hpp) and the flat store matches it.
//
// Memory: reserve(N, H, W, mode) lays out every activation once (nn/arena.hpp); later
// steps at that size or smaller allocate nothing. Inference keeps only the skips, two
// ping-pong buffers and the largest module's temporaries; training keeps what backward
// reads. Shape legend: N batch, C_l channels of level l, H_l×W_l = (H, W)/2^l, E = 4·C_0.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/nn/arena.hpp"
#include "ambiseg/nn/attention_block.hpp"
#include "ambiseg/nn/config.hpp"
#include "ambiseg/nn/layers.hpp"
#include "ambiseg/nn/resblock.hpp"
#include "ambiseg/nn/time_embed.hpp"
#include "ambiseg/ops/all.hpp"

namespace ambiseg::nn {

enum class pass { inference, training };

template <class T, class D = cpu>
class unet {
 public:
  explicit unet(unet_config config, std::uint64_t seed = 0) : config_(std::move(config)) {
    config_.validate();
    build();
    params_.allocate();
    plan_final_gradients();
    initialise(seed);
  }

  // The parameters' names and shapes for a config, found without allocating them: what a
  // loader checks a file against before building a network its config may have inflated.
  static std::vector<typename parameter_store<T, D>::entry> parameter_layout(unet_config config) {
    return unet(std::move(config), layout_only{}).params_.entries();
  }

  const unet_config& config() const { return config_; }
  parameter_store<T, D>& parameters() { return params_; }
  const parameter_store<T, D>& parameters() const { return params_; }

  // Re-draws every parameter as the reference initialises it (PyTorch defaults, GroupNorm
  // 1/0, zero for the head conv, each ResBlock's out_layers.3 and each proj_out).
  void initialise(std::uint64_t seed) { initialise_parameters(params_, inits_, seed); }

  // Lays out activations for inputs [N, ·, H, W]. Called by forward() when the size or
  // mode changes; call it up front to keep allocation out of the first step.
  void reserve(std::int64_t n, std::int64_t h, std::int64_t w, pass mode) {
    const int div = config_.size_divisor();
    throw_if<shape_error>(n < 1 || h < 1 || w < 1 || h % div != 0 || w % div != 0,
                          "unet::reserve: batch ", n, ", size ", h, "x", w, " (H and W must be ",
                          "positive multiples of ", div, ")");
    arena_.begin_measure();
    layout(n, h, w, mode == pass::training);
    arena_.begin_bind();
    layout(n, h, w, mode == pass::training);
    planned_ = {n, h, w, mode == pass::training};
    backward_ready_ = false;
  }

  // x_t [N,Co,H,W], image [N,Ci−Co,H,W], t [N] → f [N,Co,H,W] (a view of the network's
  // buffer, valid until the next forward). pass::training keeps what backward() needs.
  // t_host: on a device other than the CPU, the host values t was uploaded from, if the
  // caller has them; t is then checked for NaN/∞ there instead of being read back (the
  // read-back waits for the device). Ignored on the CPU.
  tensor_view<const T, D> forward(tensor_view<const T, D> x_t, tensor_view<const T, D> image,
                                  tensor_view<const T, D> t, pass mode = pass::inference,
                                  tensor_view<const T, cpu> t_host = {}) {
    check_inputs(x_t, image, t, t_host);
    const std::int64_t n = x_t.size(0), h = x_t.size(2), w = x_t.size(3);
    const bool training = mode == pass::training;
    if (!(planned_.n == n && planned_.h == h && planned_.w == w &&
          (planned_.training || !training)))
      reserve(n, h, w, mode);
    const param_views<T, D> p{&params_};

    ops::concat_channels_forward(x_t, image, input_);                         // [N,Ci,H,W]
    emb_act_ = time_->forward(p, t);                                           // [N,E]
    tensor_view<const T, D> h_cur = input_;
    for (auto& b : encoder_) {
      if (b.res) {
        b.res->forward(p, h_cur, emb_act_, b.attn ? b.res_out : b.out, ws_); // [N,C_l,H_l,W_l]
        if (b.attn) b.attn->forward(p, b.res_out, b.out, ws_);               // [N,C_l,H_l,W_l]
      } else {
        ops::conv2d_forward(h_cur, p.conv_weight(b.conv), p.value(b.conv.bias), b.out,
                            {b.conv.stride, -1}, ws_);  // stem [N,C_0,H,W] / down [N,C,H/2,W/2]
      }
      h_cur = b.out;
    }
    for (auto& m : middle_) {
      if (m.res) m.res->forward(p, h_cur, emb_act_, m.out, ws_);             // [N,C_L,H_L,W_L]
      else m.attn->forward(p, h_cur, m.out, ws_);                            // [N,C_L,H_L,W_L]
      h_cur = m.out;
    }
    for (auto& b : decoder_) {
      ops::concat_channels_forward(h_cur, encoder_[b.skip_index].out, b.cat); // [N,C+Cs,H_l,W_l]
      b.res.forward(p, b.cat, emb_act_, b.res_out, ws_);                     // [N,C_l,H_l,W_l]
      tensor_view<T, D> last = b.res_out;
      if (b.attn) {
        b.attn->forward(p, b.res_out, b.attn_out, ws_);                      // [N,C_l,H_l,W_l]
        last = b.attn_out;
      }
      if (b.up) {
        ops::upsample_nearest2x_forward(last, b.up_in);                      // [N,C_l,2H_l,2W_l]
        ops::conv2d_forward(b.up_in, p.conv_weight(*b.up), p.value(b.up->bias), b.out, {}, ws_);
        last = b.out;                                                        // [N,C_l,2H_l,2W_l]
      }
      h_cur = last;
    }
    head_in_ = h_cur;                                                        // [N,C_0,H,W]
    ops::group_norm_silu_forward(h_cur, p.value(head_norm_.weight), p.value(head_norm_.bias),
                                 head_norm_.groups, config_.norm_eps, head_act_, head_mean_,
                                 head_rstd_);                                // [N,C_0,H,W]
    ops::conv2d_forward(head_act_, p.conv_weight(head_conv_), p.value(head_conv_.bias),
                        head_conv_out_, {}, ws_);                            // [N,Co,H,W]
    if (config_.final_tanh) ops::tanh_forward(head_conv_out_, output_);       // [N,Co,H,W]
    backward_ready_ = training;
    return output_;
  }

  // After forward(·, pass::training): df = ∂L/∂f [N,Co,H,W] → every parameter gradient
  // (+=; call parameters().zero_grad() between steps). Clobbers the saved activations'
  // gradient scratch; a second backward needs a new forward.
  void backward(tensor_view<const T, D> df) {
    throw_if(!backward_ready_, "unet::backward: needs a forward(·, pass::training) first");
    expect_shape("unet::backward", "df", df, output_.shape());
    backward_ready_ = false;
    const param_views<T, D> p{&params_};
    device_memory<D>::zero(d_emb_act_.data(), sizeof(T) * d_emb_act_.numel());
    tensor_view<T, D> cur = grad_a_, other = grad_b_;

    // head
    tensor_view<const T, D> d_conv_out = df;
    if (config_.final_tanh) {
      auto d = carve(scratch_.a, head_conv_out_.shape());                    // [N,Co,H,W]
      ops::tanh_backward(output_, df, d);
      d_conv_out = d;
    }
    auto d_act = carve(scratch_.b, head_act_.shape());                       // [N,C_0,H,W]
    ops::conv2d_backward(head_act_, p.conv_weight(head_conv_), d_conv_out, d_act,
                         p.conv_weight_grad(head_conv_), p.grad(head_conv_.bias), {}, ws_);
    auto d_head_in = carve(cur, head_in_.shape());                           // [N,C_0,H,W]
    ops::group_norm_silu_backward(head_in_, p.value(head_norm_.weight), p.value(head_norm_.bias),
                                  head_mean_, head_rstd_, d_act, head_norm_.groups, d_head_in,
                                  p.grad(head_norm_.weight), p.grad(head_norm_.bias));
    std::size_t stage = 0;  // final_from_'s index: one per block, in backward order
    params_.gradients_final_from(final_from_[stage++]);

    // decoder, last block first; `cur` holds ∂L/∂(block output)
    for (auto it = decoder_.rbegin(); it != decoder_.rend(); ++it) {
      auto& b = *it;
      tensor_view<T, D> last_in = b.attn ? b.attn_out : b.res_out;           // [N,C_l,H_l,W_l]
      if (b.up) {
        auto d_up = carve(scratch_.a, b.up_in.shape());                      // [N,C_l,2H_l,2W_l]
        ops::conv2d_backward(b.up_in, p.conv_weight(*b.up), carve(cur, b.out.shape()), d_up,
                             p.conv_weight_grad(*b.up), p.grad(b.up->bias), {}, ws_);
        ops::upsample_nearest2x_backward(d_up, carve(other, last_in.shape())); // [N,C_l,H_l,W_l]
        std::swap(cur, other);
      }
      if (b.attn) {
        b.attn->backward(p, b.res_out, carve(cur, b.attn_out.shape()),
                         carve(other, b.res_out.shape()), scratch_, ws_);    // [N,C_l,H_l,W_l]
        std::swap(cur, other);
      }
      auto d_cat = carve(other, b.cat.shape());                              // [N,C+Cs,H_l,W_l]
      b.res.backward(p, b.cat, emb_act_, carve(cur, b.res_out.shape()), d_cat, d_emb_act_,
                     scratch_, ws_);
      const std::int64_t c_prev = b.cat.size(1) - d_skip_[b.skip_index].size(1);
      ops::concat_channels_backward(d_cat, carve(cur, shape{b.cat.size(0), c_prev, b.cat.size(2),
                                                            b.cat.size(3)}),
                                    d_skip_[b.skip_index]);                  // [N,C,H_l,W_l]
      params_.gradients_final_from(final_from_[stage++]);
    }

    // middle, last layer first
    for (std::size_t i = middle_.size(); i-- > 0;) {
      auto& m = middle_[i];
      tensor_view<const T, D> x = i > 0 ? middle_[i - 1].out : encoder_.back().out;
      auto dy = carve(cur, m.out.shape());                                   // [N,C_L,H_L,W_L]
      auto dx = carve(other, m.out.shape());                                 // [N,C_L,H_L,W_L]
      if (m.res) m.res->backward(p, x, emb_act_, dy, dx, d_emb_act_, scratch_, ws_);
      else m.attn->backward(p, x, dy, dx, scratch_, ws_);
      std::swap(cur, other);
      params_.gradients_final_from(final_from_[stage++]);
    }

    // encoder, last block first; each output's gradient also receives its skip's
    for (std::size_t i = encoder_.size(); i-- > 0;) {
      auto& b = encoder_[i];
      auto dy = carve(cur, b.out.shape());                                   // [N,C,H_l,W_l]
      ops::add_forward(dy, d_skip_[i], dy);
      if (i == 0) {  // the stem: the input needs no gradient
        ops::conv2d_backward(input_, p.conv_weight(b.conv), dy, tensor_view<T, D>{},
                             p.conv_weight_grad(b.conv), p.grad(b.conv.bias), {}, ws_);
        params_.gradients_final_from(final_from_[stage++]);
        break;
      }
      tensor_view<const T, D> x = encoder_[i - 1].out;
      auto dx = carve(other, x.shape());                                     // [N,C,H_l',W_l']
      if (b.res) {
        if (b.attn) {
          auto d_res_out = carve(other, b.res_out.shape());                  // [N,C_l,H_l,W_l]
          b.attn->backward(p, b.res_out, dy, d_res_out, scratch_, ws_);
          std::swap(cur, other);
          dy = carve(cur, b.res_out.shape());
          dx = carve(other, x.shape());
        }
        b.res->backward(p, x, emb_act_, dy, dx, d_emb_act_, scratch_, ws_);
      } else {
        ops::conv2d_backward(x, p.conv_weight(b.conv), dy, dx, p.conv_weight_grad(b.conv),
                             p.grad(b.conv.bias), {b.conv.stride, -1}, ws_);
      }
      std::swap(cur, other);
      params_.gradients_final_from(final_from_[stage++]);
    }
    time_->backward(p, d_emb_act_);
    params_.gradients_final_from(0);
  }

  // Heap allocations made by the activation plan and the op workspace so far (a steady
  // training or sampling step adds none).
  std::size_t allocations() const { return arena_.allocations() + ws_.allocations(); }
  std::int64_t activation_bytes() const { return arena_.bytes(); }
  std::size_t workspace_bytes() const { return ws_.bytes(); }
  workspace<D>& op_workspace() { return ws_; }

 private:
  struct layout_only {};
  unet(unet_config config, layout_only) : config_(std::move(config)) {
    config_.validate();
    build();
  }

  struct encoder_block {
    std::optional<resblock<T, D>> res;        // a ResBlock level block
    std::optional<attention_block<T, D>> attn;
    conv_layer conv;                          // the stem or a Downsample when !res
    int level = 0;
    tensor_view<T, D> res_out, out;           // out is the skip
  };
  struct middle_layer {
    std::optional<resblock<T, D>> res;
    std::optional<attention_block<T, D>> attn;
    tensor_view<T, D> out;
  };
  struct decoder_block {
    explicit decoder_block(resblock<T, D> r) : res(std::move(r)) {}
    resblock<T, D> res;
    std::optional<attention_block<T, D>> attn;
    std::optional<conv_layer> up;
    int level = 0;
    std::size_t skip_index = 0;
    tensor_view<T, D> cat, res_out, attn_out, up_in, out;
  };

  // Registers the parameters in the reference's state_dict order.
  void build() {
    param_registry<T, D> r{params_, inits_};
    const auto& c = config_;
    const int e = c.embedding_channels();
    const double eps = c.norm_eps;
    time_.emplace(r, c.model_channels, c.max_period);
    std::vector<int> skip_channels;
    int ch = c.channels(0);
    {
      encoder_block stem;
      stem.conv = conv_layer::make(r, "input_blocks.0.0", c.in_channels, ch, 3, 1, false);
      encoder_.push_back(std::move(stem));
      skip_channels.push_back(ch);
    }
    for (int l = 0; l < c.levels(); ++l) {
      for (int i = 0; i < c.num_res_blocks[l]; ++i) {
        const std::string prefix = "input_blocks." + std::to_string(encoder_.size());
        encoder_block b;
        b.level = l;
        b.res.emplace(r, prefix + ".0", ch, c.channels(l), e, eps);
        ch = c.channels(l);
        if (c.has_attention(l)) b.attn.emplace(r, prefix + ".1", ch, c.num_heads, eps);
        encoder_.push_back(std::move(b));
        skip_channels.push_back(ch);
      }
      if (l != c.levels() - 1) {
        encoder_block b;
        b.level = l + 1;  // its output lives at the next level's resolution
        b.conv = conv_layer::make(r, "input_blocks." + std::to_string(encoder_.size()) + ".0.op",
                                  ch, ch, 3, 2, false);
        encoder_.push_back(std::move(b));
        skip_channels.push_back(ch);
      }
    }
    for (int i = 0; i < c.num_middle_res_blocks; ++i) {
      if (i > 0) {
        middle_layer a;
        a.attn.emplace(r, "middle_block." + std::to_string(middle_.size()), ch, c.num_heads, eps);
        middle_.push_back(std::move(a));
      }
      middle_layer m;
      m.res.emplace(r, "middle_block." + std::to_string(middle_.size()), ch, ch, e, eps);
      middle_.push_back(std::move(m));
    }
    std::size_t next_skip = encoder_.size();
    for (int l = c.levels() - 1; l >= 0; --l) {
      for (int i = 0; i <= c.num_res_blocks[l]; ++i) {
        const std::string prefix = "output_blocks." + std::to_string(decoder_.size());
        const std::size_t skip = --next_skip;
        decoder_block b(resblock<T, D>(r, prefix + ".0", ch + skip_channels[skip], c.channels(l), e,
                                       eps));
        b.level = l;
        b.skip_index = skip;
        ch = c.channels(l);
        int index = 1;
        if (c.has_attention(l)) b.attn.emplace(r, prefix + "." + std::to_string(index++), ch,
                                               c.num_heads, eps);
        if (l > 0 && i == c.num_res_blocks[l])
          b.up = conv_layer::make(r, prefix + "." + std::to_string(index) + ".conv", ch, ch, 3, 1,
                                  false);
        decoder_.push_back(std::move(b));
      }
    }
    head_norm_ = norm_layer::make(r, "out.1", ch);
    head_conv_ = conv_layer::make(r, "out.3", ch, c.out_channels, 3, 1, true);
  }

  // Where the flat gradients are final after each block of the backward pass (head,
  // decoder blocks last first, middle layers last first, encoder blocks last first): the
  // end of the last parameter that a later block still writes. The time embedding collects
  // every ResBlock's contribution and is final only at the end.
  void plan_final_gradients() {
    std::vector<std::string> done;  // the prefixes finished so far
    auto final_from = [&] {
      std::int64_t from = 0;
      for (const auto& e : params_.entries()) {
        bool finished = false;
        for (const auto& prefix : done) finished = finished || e.name.rfind(prefix, 0) == 0;
        if (!finished) from = std::max(from, e.offset + e.shape.numel());
      }
      return from;
    };
    done.push_back("out.");
    final_from_.push_back(final_from());
    for (std::size_t i = decoder_.size(); i-- > 0;) {
      done.push_back("output_blocks." + std::to_string(i) + ".");
      final_from_.push_back(final_from());
    }
    for (std::size_t i = middle_.size(); i-- > 0;) {
      done.push_back("middle_block." + std::to_string(i) + ".");
      final_from_.push_back(final_from());
    }
    for (std::size_t i = encoder_.size(); i-- > 0;) {
      done.push_back("input_blocks." + std::to_string(i) + ".");
      final_from_.push_back(final_from());
    }
  }

  // Both arena passes run this; the order of take() calls is the memory layout.
  void layout(std::int64_t n, std::int64_t h, std::int64_t w, bool training) {
    using scope = typename activation_arena<T, D>::scratch_scope;
    auto& a = arena_;
    const auto& c = config_;
    auto hl = [&](int l) { return h >> l; };
    auto wl = [&](int l) { return w >> l; };
    time_->plan(a, n);
    input_ = a.take_persistent(shape{n, c.in_channels, h, w});               // [N,Ci,H,W]
    int ch = c.channels(0);
    for (std::size_t i = 0; i < encoder_.size(); ++i) {
      auto& b = encoder_[i];
      if (b.res) {
        scope s(a, !training);
        if (b.attn) b.res_out = a.take(shape{n, b.res->out_channels(), hl(b.level), wl(b.level)});
        b.res->plan(a, n, hl(b.level), wl(b.level), training);
        if (b.attn) b.attn->plan(a, n, hl(b.level), wl(b.level), training);
        ch = b.res->out_channels();
      }
      b.out = a.take_persistent(shape{n, ch, hl(b.level), wl(b.level)});     // skip
    }
    // Inference: middle and decoder outputs alternate between two buffers.
    const int lowest = c.levels() - 1;
    std::int64_t pingpong_size = 0;
    for (int l = 0; l <= lowest; ++l) {  // a level's output, and its upsampled output
      pingpong_size = std::max<std::int64_t>(pingpong_size, n * c.channels(l) * hl(l) * wl(l));
      if (l > 0)
        pingpong_size = std::max<std::int64_t>(pingpong_size, n * c.channels(l) * hl(l - 1) * wl(l - 1));
    }
    tensor_view<T, D> pingpong[2];
    if (!training)
      for (auto& pp : pingpong) pp = a.take_persistent(shape{pingpong_size});
    int next = 0;
    auto output = [&](shape s) {
      if (training) return a.take_persistent(s);
      tensor_view<T, D> v = carve(pingpong[next], s);
      next ^= 1;
      return v;
    };
    for (auto& m : middle_) {
      if (m.res) m.res->plan(a, n, hl(lowest), wl(lowest), training);
      else m.attn->plan(a, n, hl(lowest), wl(lowest), training);
      m.out = output(shape{n, ch, hl(lowest), wl(lowest)});                  // [N,C_L,H_L,W_L]
    }
    for (auto& b : decoder_) {
      const std::int64_t H = hl(b.level), W = wl(b.level);
      const std::int64_t co = b.res.out_channels();
      scope s(a, !training);
      b.cat = a.take(shape{n, b.res.in_channels(), H, W});                   // [N,C+Cs,H_l,W_l]
      // Outputs before the modules' temporaries, so that none overlaps them.
      const bool res_is_last = !b.attn && !b.up;
      b.res_out = res_is_last ? output(shape{n, co, H, W}) : a.take(shape{n, co, H, W});
      if (b.attn) b.attn_out = b.up ? a.take(shape{n, co, H, W}) : output(shape{n, co, H, W});
      if (b.up) {
        b.up_in = a.take(shape{n, co, 2 * H, 2 * W});                        // [N,C_l,2H_l,2W_l]
        b.out = output(shape{n, co, 2 * H, 2 * W});
      } else {
        b.out = b.attn ? b.attn_out : b.res_out;
      }
      b.res.plan(a, n, H, W, training);
      if (b.attn) b.attn->plan(a, n, H, W, training);
      ch = static_cast<int>(co);
    }
    {
      scope s(a, !training);
      head_act_ = a.take(shape{n, ch, h, w});                  // SiLU(GN(·))  [N,C_0,H,W]
      head_mean_ = a.take(shape{n, head_norm_.groups});
      head_rstd_ = a.take(shape{n, head_norm_.groups});
    }
    output_ = a.take_persistent(shape{n, c.out_channels, h, w});             // [N,Co,H,W]
    head_conv_out_ = c.final_tanh ? a.take_persistent(shape{n, c.out_channels, h, w}) : output_;
    if (training) {
      d_skip_.clear();
      for (auto& b : encoder_) d_skip_.push_back(a.take_persistent(b.out.shape()));
      d_emb_act_ = a.take_persistent(shape{n, c.embedding_channels()});
      scratch_.emb = a.take_persistent(shape{n, c.embedding_channels()});
      const shape largest{a.largest_buffer()};
      grad_a_ = a.take_persistent(largest);
      grad_b_ = a.take_persistent(largest);
      scratch_.a = a.take_persistent(largest);
      scratch_.b = a.take_persistent(largest);
      scratch_.c = a.take_persistent(largest);
    }
  }

  void check_inputs(tensor_view<const T, D> x_t, tensor_view<const T, D> image,
                    tensor_view<const T, D> t, tensor_view<const T, cpu> t_host) const {
    const char* op = "unet::forward";
    expect_rank(op, "x_t", x_t, 4);
    const std::int64_t n = x_t.size(0), h = x_t.size(2), w = x_t.size(3);
    expect_shape(op, "x_t", x_t, shape{n, config_.out_channels, h, w});
    expect_shape(op, "image", image, shape{n, config_.image_channels(), h, w});
    expect_shape(op, "t", t, shape{n});
    if constexpr (std::same_as<D, cpu>) {
      expect_finite<T>("unet::forward: t", t);
    } else if (t_host.data() != nullptr) {
      expect_shape(op, "t_host", t_host, shape{n});
      expect_finite<T>("unet::forward: t", t_host);
    } else {  // t is [N]: a copy this small is cheaper than a device-side flag
      tensor<T> t_host(t.shape());
      device_memory<D>::copy_to_host(t_host.data(), t.data(), sizeof(T) * t.numel());
      expect_finite<T>("unet::forward: t", t_host.cview());
    }
  }

  struct plan_key {
    std::int64_t n = 0, h = 0, w = 0;
    bool training = false;
  };

  unet_config config_;
  parameter_store<T, D> params_;
  std::vector<std::int64_t> final_from_;  // plan_final_gradients()
  std::vector<param_init> inits_;
  std::optional<time_embed<T, D>> time_;
  std::vector<encoder_block> encoder_;
  std::vector<middle_layer> middle_;
  std::vector<decoder_block> decoder_;
  norm_layer head_norm_;
  conv_layer head_conv_;

  activation_arena<T, D> arena_;
  workspace<D> ws_;
  plan_key planned_;
  bool backward_ready_ = false;
  tensor_view<T, D> input_, head_act_, head_mean_, head_rstd_, head_conv_out_,
      output_;
  tensor_view<const T, D> emb_act_, head_in_;
  std::vector<tensor_view<T, D>> d_skip_;
  tensor_view<T, D> d_emb_act_, grad_a_, grad_b_;
  backward_scratch<T, D> scratch_;
};

}  // namespace ambiseg::nn
