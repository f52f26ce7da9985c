// ambiseg/nn/arena.hpp — the network's activation memory, planned once per (batch, H, W).
//
// A network lays out its buffers by calling take() in a fixed order, twice: a measuring
// pass (views are empty, sizes are recorded), then one allocation, then a binding pass that
// repeats the same calls and receives real views. The order is the code itself, so the
// two passes cannot disagree. Two kinds of buffer:
//   persistent  lives for the whole step (skips, activations that backward reads);
//   scratch     lives inside a scratch_scope; sibling scopes reuse the same bytes, so
//               an inference forward needs only the largest module's temporaries.
// The storage only grows: re-planning for a smaller batch allocates nothing.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ambiseg/core/shape.hpp"
#include "ambiseg/core/tensor.hpp"

namespace ambiseg::nn {

template <class T, class D>
class activation_arena {
 public:
  // Starts a measuring pass: take() returns empty views and records sizes.
  void begin_measure() {
    binding_ = false;
    persistent_ = scratch_cursor_ = scratch_high_ = largest_ = 0;
  }
  // Allocates what the measuring pass asked for (only when it grew) and starts the
  // binding pass, which must repeat the same take() calls in the same order.
  void begin_bind() {
    measured_persistent_ = persistent_;
    const std::int64_t total = persistent_ + scratch_high_;
    if (total > storage_.capacity()) ++allocations_;
    storage_.resize(shape{std::max<std::int64_t>(total, 1)});
    binding_ = true;
    persistent_ = scratch_cursor_ = 0;
  }

  tensor_view<T, D> take(const shape& s) { return in_scratch_ ? take_scratch(s) : take_persistent(s); }
  tensor_view<T, D> take_persistent(const shape& s) {
    const std::int64_t at = persistent_;
    persistent_ += padded(s.numel());
    largest_ = std::max(largest_, s.numel());
    return binding_ ? tensor_view<T, D>(storage_.data() + at, s) : tensor_view<T, D>(nullptr, s);
  }
  tensor_view<T, D> take_scratch(const shape& s) {
    const std::int64_t at = scratch_cursor_;
    scratch_cursor_ += padded(s.numel());
    scratch_high_ = std::max(scratch_high_, scratch_cursor_);
    largest_ = std::max(largest_, s.numel());
    return binding_ ? tensor_view<T, D>(storage_.data() + measured_persistent_ + at, s)
                    : tensor_view<T, D>(nullptr, s);
  }

  // While a scope is open (and `active`), take() hands out scratch; closing it frees them.
  class scratch_scope {
   public:
    scratch_scope(activation_arena& a, bool active) : arena_(a), saved_cursor_(a.scratch_cursor_),
                                                      saved_flag_(a.in_scratch_) {
      if (active) arena_.in_scratch_ = true;
    }
    ~scratch_scope() {
      arena_.scratch_cursor_ = saved_cursor_;
      arena_.in_scratch_ = saved_flag_;
    }
    scratch_scope(const scratch_scope&) = delete;
    scratch_scope& operator=(const scratch_scope&) = delete;

   private:
    activation_arena& arena_;
    std::int64_t saved_cursor_;
    bool saved_flag_;
  };

  std::int64_t largest_buffer() const { return largest_; }  // in elements
  std::int64_t bytes() const { return storage_.capacity() * static_cast<std::int64_t>(sizeof(T)); }
  std::size_t allocations() const { return allocations_; }

 private:
  // 64-byte alignment for every buffer (SIMD loads, no false sharing between threads).
  static std::int64_t padded(std::int64_t n) {
    constexpr std::int64_t align = 64 / static_cast<std::int64_t>(sizeof(T));
    return (n + align - 1) / align * align;
  }

  tensor<T, D> storage_;
  bool binding_ = false;
  bool in_scratch_ = false;
  std::int64_t persistent_ = 0, measured_persistent_ = 0;
  std::int64_t scratch_cursor_ = 0, scratch_high_ = 0;
  std::int64_t largest_ = 0;
  std::size_t allocations_ = 0;
};

// The first s.numel() elements of a flat scratch buffer, viewed with shape s.
template <class T, class D>
tensor_view<T, D> carve(tensor_view<T, D> flat, const shape& s) {
  throw_if(s.numel() > flat.numel(), "nn::carve: ", s.to_string(), " does not fit a scratch buffer of ",
           flat.numel(), " elements");
  return tensor_view<T, D>(flat.data(), s);
}

// Backward's scratch: three flat buffers as large as the largest activation, and one
// [N, E] row for the time-embedding gradient of a single ResBlock.
template <class T, class D>
struct backward_scratch {
  tensor_view<T, D> a, b, c;
  tensor_view<T, D> emb;
};

}  // namespace ambiseg::nn
