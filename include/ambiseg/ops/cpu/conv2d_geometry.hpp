// ambiseg/ops/cpu/conv2d_geometry.hpp — the extents of one 2-D convolution.
#pragma once

#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

struct conv_geometry {
  std::int64_t n, ci, h, w, co, k, stride, pad, ho, wo;
  std::int64_t in_plane() const { return h * w; }
  std::int64_t out_plane() const { return ho * wo; }
  std::int64_t ckk() const { return ci * k * k; }
  bool pointwise() const { return k == 1 && stride == 1 && pad == 0; }
  // dx by the flipped filter needs the transposed convolution to be a plain convolution.
  bool transposable() const { return stride == 1 && 2 * pad == k - 1; }
  conv_geometry transposed() const { return {n, co, ho, wo, ci, k, 1, pad, h, w}; }
};

}  // namespace ambiseg::ops::cpu_kernels
