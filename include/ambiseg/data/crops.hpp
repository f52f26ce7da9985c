// ambiseg/data/crops.hpp — the crops of SPEC §9: the same window for the image and every mask.
//
//   central_window(H, W, s)         the s × s window in the middle (the whole 128 × 128
//                                   slice when s = H = W: "central crop, as is")
//   random_window(H, W, s, rng)     top-left uniform over the (H − s + 1)(W − s + 1) places
//   evaluation_window(H, W, s, seed, i)  random_window with a stream derived from (seed, i),
//                                   so every run sees the same test crops
//   crop(src [C, H, W], window, dst [C, s, s]),  crop_case(case, window) → case_data
#pragma once

#include <cstdint>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/random.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/data/dataset.hpp"

namespace ambiseg::data {

struct crop_window {
  std::int64_t top = 0, left = 0, height = 0, width = 0;
  friend bool operator==(const crop_window&, const crop_window&) = default;
};

namespace crop_detail {
inline void check(std::int64_t h, std::int64_t w, std::int64_t size, const char* op) {
  throw_if<shape_error>(size <= 0 || size > h || size > w, op, ": crop size ", size,
                        " does not fit a ", h, "x", w, " image");
}
}  // namespace crop_detail

inline crop_window central_window(std::int64_t h, std::int64_t w, std::int64_t size) {
  crop_detail::check(h, w, size, "central_window");
  return {(h - size) / 2, (w - size) / 2, size, size};
}

inline crop_window random_window(std::int64_t h, std::int64_t w, std::int64_t size, rng& g) {
  crop_detail::check(h, w, size, "random_window");
  const auto top = static_cast<std::int64_t>(g.below(static_cast<std::uint64_t>(h - size + 1)));
  const auto left = static_cast<std::int64_t>(g.below(static_cast<std::uint64_t>(w - size + 1)));
  return {top, left, size, size};
}

inline crop_window evaluation_window(std::int64_t h, std::int64_t w, std::int64_t size,
                                     std::uint64_t seed, std::uint64_t case_index) {
  rng g = rng::derive(seed, case_index);
  return random_window(h, w, size, g);
}

// src [C, H, W] → dst [C, window.height, window.width].
template <class T>
void crop(tensor_view<const T> src, const crop_window& win, tensor_view<T> dst) {
  throw_if<shape_error>(src.rank() != 3, "crop: source ", src.shape().to_string(),
                        " must be [C, H, W]");
  const std::int64_t c = src.size(0), h = src.size(1), w = src.size(2);
  throw_if<shape_error>(win.top < 0 || win.left < 0 || win.height <= 0 || win.width <= 0 ||
                            win.top + win.height > h || win.left + win.width > w,
                        "crop: window (", win.top, ", ", win.left, ") ", win.height, "x",
                        win.width, " outside a ", h, "x", w, " image");
  expect_shape("crop", "dst", dst, shape{c, win.height, win.width});
  for (std::int64_t ch = 0; ch < c; ++ch)
    for (std::int64_t y = 0; y < win.height; ++y) {
      const T* row = src.data() + (ch * h + win.top + y) * w + win.left;
      T* out = dst.data() + (ch * win.height + y) * win.width;
      for (std::int64_t x = 0; x < win.width; ++x) out[x] = row[x];
    }
}

// The image and all masks of a case through one window.
inline case_data crop_case(const case_ref& c, const crop_window& win) {
  case_data out{std::string(c.id), tensor<float>(shape{c.image.size(0), win.height, win.width}),
                tensor<std::uint8_t>(shape{c.masks.size(0), win.height, win.width})};
  crop(c.image, win, out.image.view());
  crop(c.masks, win, out.masks.view());
  return out;
}

}  // namespace ambiseg::data
