// ambiseg/ops/shape_checks.hpp — argument checks shared by the op front ends and the CUDA
// backend's entry points (which can be called directly), so both give the same message.
// Depends only on core/, so nvcc translation units include it too.
#pragma once

#include <cstdint>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/shape.hpp"

namespace ambiseg::ops::detail {

// An optional gradient argument is "not needed" when its view is empty.
template <class V>
inline bool present(const V& v) { return v.data() != nullptr; }

// b must match a in every extent but the channels.
inline void concat_check(const char* op, const char* a_name, const shape& a, const char* b_name,
                         const shape& b) {
  throw_if<shape_error>(a.rank() != 4 || b.rank() != 4 || a[0] != b[0] || a[2] != b[2] ||
                            a[3] != b[3],
                        op, ": ", a_name, " ", a, " and ", b_name, " ", b,
                        " must be [N,C,H,W] with equal N, H, W");
}

inline void group_norm_check(const char* op, const shape& x, int groups) {
  throw_if<shape_error>(x.rank() < 2, op, ": x must have rank 2 to 4 [N, C, ...], got ", x);
  throw_if<value_error>(groups < 1 || x[1] % groups != 0, op, ": ", x[1],
                        " channels cannot be split into ", groups, " groups (x ", x, ")");
}
inline std::int64_t spatial_extent(const shape& x) {
  std::int64_t s = 1;
  for (int a = 2; a < x.rank(); ++a) s *= x[a];
  return s;
}

inline void linear_check(const char* op, const shape& x, const shape& w) {
  throw_if<shape_error>(x.rank() != 2, op, ": x must have rank 2 [N, In], got ", x);
  throw_if<shape_error>(w.rank() != 2 || w[1] != x[1], op, ": w has shape ", w,
                        ", expected [Out, ", x[1], "] for x ", x);
}

struct attention_dims {
  std::int64_t b, c, t, bh, ch;
};
inline attention_dims attention_check(const char* op, const shape& qkv, int heads) {
  throw_if<shape_error>(qkv.rank() != 3, op, ": qkv must have rank 3 [B, 3C, T], got ", qkv);
  throw_if<value_error>(heads < 1, op, ": heads must be positive, got ", heads);
  throw_if<shape_error>(qkv[1] % (3 * heads) != 0, op, ": qkv ", qkv, " has ", qkv[1],
                        " rows, not divisible by 3·heads = ", 3 * heads);
  const std::int64_t c = qkv[1] / 3;
  return {qkv[0], c, qkv[2], qkv[0] * heads, c / heads};
}

}  // namespace ambiseg::ops::detail
