// cuda_emulator/convolution.cpp — the arithmetic of the emulated cuDNN engines: direct 2-D
// convolution (cross-correlation or true convolution), forward, backward data and backward
// filter, on tensors of any strides, with pre/post padding, stride and dilation, and
// y = α·conv + β·y (β = 0: y is not read, it may hold NaN).
//
// Every output is a float sum over its terms in a fixed order: (channel, kernel row, kernel
// column) for forward and backward data, (image, output row, output column) for the filter
// gradient. Engine 1 visits the channels (forward, backward data) or images (filter) in
// reverse, as a split reduction would; engine 0 rounds the multiplied operands to TF32.
#include <algorithm>
#include <cstring>
#include <vector>

#include "ambiseg/core/low_precision.hpp"
#include "cuda_emulator/cudnn_model.hpp"

namespace ambiseg_emu {
namespace {

float to_tf32(float x) {
  std::uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7f800000u) != 0x7f800000u) {
    bits += 0x0fffu + ((bits >> 13) & 1u);
    bits &= 0xffffe000u;
  }
  std::memcpy(&x, &bits, 4);
  return x;
}

struct view4 {
  float* p;
  std::int64_t d[4], s[4];
  view4(void* data, const tensor_info& t) : p(static_cast<float*>(data)) {
    for (int i = 0; i < 4; ++i) {
      d[i] = t.dims[static_cast<std::size_t>(i)];
      s[i] = t.strides[static_cast<std::size_t>(i)];
    }
  }
  float& at(std::int64_t a, std::int64_t b, std::int64_t c, std::int64_t e) const {
    return p[a * s[0] + b * s[1] + c * s[2] + e * s[3]];
  }
};

struct geometry {
  std::int64_t stride[2], pad[2], dilation[2];
  bool flip;  // CUDNN_CONVOLUTION: the kernel is mirrored
  std::int64_t kr, ks;
  // Input row/column of output p (q) under kernel tap r (s).
  std::int64_t in(int axis, std::int64_t out, std::int64_t tap) const {
    return out * stride[axis] - pad[axis] + tap * dilation[axis];
  }
  std::int64_t tap_r(std::int64_t r) const { return flip ? kr - 1 - r : r; }
  std::int64_t tap_s(std::int64_t s) const { return flip ? ks - 1 - s : s; }
};

void store(float& out, float acc, double alpha, double beta) {
  const float a = static_cast<float>(alpha), b = static_cast<float>(beta);
  out = b == 0.0f ? a * acc : a * acc + b * out;
}

// The elements a tensor spans (its last element's offset + 1).
std::size_t span(const tensor_info& t) {
  std::int64_t last = 0;
  for (std::size_t k = 0; k < t.dims.size(); ++k) last += (t.dims[k] - 1) * t.strides[k];
  return static_cast<std::size_t>(last + 1);
}

std::vector<float> widened(const void* p, const tensor_info& t) {
  std::vector<float> out(span(t));
  const auto* h = static_cast<const std::uint16_t*>(p);
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = t.type == CUDNN_DATA_BFLOAT16 ? ambiseg::bf16_float(h[i]) : ambiseg::half_float(h[i]);
  return out;
}

}  // namespace

static void run_float_convolution(const op_info& op, std::int64_t engine, void* xp, void* wp, void* yp) {
  const view4 x(xp, op.x), w(wp, op.w), y(yp, op.y);
  const conv_info& c = op.conv;
  const geometry g{{c.stride[0], c.stride[1]},
                   {c.pre[0], c.pre[1]},
                   {c.dilation[0], c.dilation[1]},
                   c.mode == CUDNN_CONVOLUTION,
                   w.d[2],
                   w.d[3]};
  const std::int64_t n_img = x.d[0], ci = x.d[1], h = x.d[2], wd = x.d[3];
  const std::int64_t co = w.d[0], ho = y.d[2], wo = y.d[3];
  const bool tf32 = engine == 0, reverse = engine == 1;
  auto operand = [tf32](float v) { return tf32 ? to_tf32(v) : v; };

  switch (op.kind) {
    case conv_kind::forward: {
      std::vector<float> acc(static_cast<std::size_t>(ho * wo));
      for (std::int64_t n = 0; n < n_img; ++n)
        for (std::int64_t k = 0; k < co; ++k) {
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (std::int64_t cc = 0; cc < ci; ++cc) {
            const std::int64_t ch = reverse ? ci - 1 - cc : cc;
            for (std::int64_t r = 0; r < g.kr; ++r)
              for (std::int64_t s = 0; s < g.ks; ++s) {
                const float wv = operand(w.at(k, ch, g.tap_r(r), g.tap_s(s)));
                for (std::int64_t p = 0; p < ho; ++p) {
                  const std::int64_t hi = g.in(0, p, r);
                  if (hi < 0 || hi >= h) continue;
                  float* row = acc.data() + p * wo;
                  for (std::int64_t q = 0; q < wo; ++q) {
                    const std::int64_t wi = g.in(1, q, s);
                    if (wi >= 0 && wi < wd) row[q] += wv * operand(x.at(n, ch, hi, wi));
                  }
                }
              }
          }
          for (std::int64_t p = 0; p < ho; ++p)
            for (std::int64_t q = 0; q < wo; ++q) store(y.at(n, k, p, q), acc[p * wo + q], op.alpha, op.beta);
        }
      break;
    }
    case conv_kind::backward_data: {  // dx = x-shaped, dy = y-shaped
      std::vector<float> acc(static_cast<std::size_t>(h * wd));
      for (std::int64_t n = 0; n < n_img; ++n)
        for (std::int64_t ch = 0; ch < ci; ++ch) {
          std::fill(acc.begin(), acc.end(), 0.0f);
          for (std::int64_t kk = 0; kk < co; ++kk) {
            const std::int64_t k = reverse ? co - 1 - kk : kk;
            for (std::int64_t r = 0; r < g.kr; ++r)
              for (std::int64_t s = 0; s < g.ks; ++s) {
                const float wv = operand(w.at(k, ch, g.tap_r(r), g.tap_s(s)));
                for (std::int64_t p = 0; p < ho; ++p) {
                  const std::int64_t hi = g.in(0, p, r);
                  if (hi < 0 || hi >= h) continue;
                  float* row = acc.data() + hi * wd;
                  for (std::int64_t q = 0; q < wo; ++q) {
                    const std::int64_t wi = g.in(1, q, s);
                    if (wi >= 0 && wi < wd) row[wi] += wv * operand(y.at(n, k, p, q));
                  }
                }
              }
          }
          for (std::int64_t i = 0; i < h; ++i)
            for (std::int64_t j = 0; j < wd; ++j) store(x.at(n, ch, i, j), acc[i * wd + j], op.alpha, op.beta);
        }
      break;
    }
    case conv_kind::backward_filter: {  // dw = w-shaped
      for (std::int64_t k = 0; k < co; ++k)
        for (std::int64_t ch = 0; ch < ci; ++ch)
          for (std::int64_t r = 0; r < g.kr; ++r)
            for (std::int64_t s = 0; s < g.ks; ++s) {
              float sum = 0.0f;
              for (std::int64_t nn = 0; nn < n_img; ++nn) {
                const std::int64_t n = reverse ? n_img - 1 - nn : nn;
                for (std::int64_t p = 0; p < ho; ++p) {
                  const std::int64_t hi = g.in(0, p, r);
                  if (hi < 0 || hi >= h) continue;
                  for (std::int64_t q = 0; q < wo; ++q) {
                    const std::int64_t wi = g.in(1, q, s);
                    if (wi >= 0 && wi < wd) sum += operand(y.at(n, k, p, q)) * operand(x.at(n, ch, hi, wi));
                  }
                }
              }
              store(w.at(k, ch, g.tap_r(r), g.tap_s(s)), sum, op.alpha, op.beta);
            }
      break;
    }
  }
}

// 16-bit tensors: the engines read them as float (exact), sum in float as for float
// tensors, and round the output to the tensor's type (to nearest even).
void run_convolution(const op_info& op, std::int64_t engine, void* xp, void* wp, void* yp) {
  if (op.x.type == CUDNN_DATA_FLOAT) return run_float_convolution(op, engine, xp, wp, yp);
  std::vector<float> x = widened(xp, op.x), w = widened(wp, op.w), y = widened(yp, op.y);
  run_float_convolution(op, engine, x.data(), w.data(), y.data());
  const bool bf16 = op.x.type == CUDNN_DATA_BFLOAT16;
  auto write_back = [bf16](const std::vector<float>& from, void* to) {
    auto* h = static_cast<std::uint16_t*>(to);
    for (std::size_t i = 0; i < from.size(); ++i)
      h[i] = bf16 ? ambiseg::bf16_bits(from[i]) : ambiseg::half_bits(from[i]);
  };
  switch (op.kind) {
    case conv_kind::forward: write_back(y, yp); break;
    case conv_kind::backward_data: write_back(x, xp); break;
    case conv_kind::backward_filter: write_back(w, wp); break;
  }
}

}  // namespace ambiseg_emu
