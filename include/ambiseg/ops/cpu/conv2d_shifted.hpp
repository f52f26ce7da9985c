// ambiseg/ops/cpu/conv2d_shifted.hpp — "same" stride-1 convolution as K² shifted GEMMs.
//
//   x [Ci,H,W] one image, padded once into xpad [Ci, Hp, Wp] (Hp = H+2p, Wp = W+2p)
//   An output pixel (h, w) sits at q = h·Wp + w of a "padded-width" row-major plane; the
//   tap (kh, kw) reads xpad at q + kh·Wp + kw for every channel. So per tap
//       Y'[Co, band] += W_k[Co, Ci] · xpad[:, band + kh·Wp + kw]       (B: ld = Hp·Wp)
//   with W_k = w[:, :, kh, kw] (permuted once into wk [K², Co, Ci]). The columns w ≥ W of
//   Y' are junk and dropped when Y' is copied into y (with the bias).
//   Filter gradient: dW_k[Co, Ci] += dY'[Co, band] · xpad[:, band + kh·Wp + kw]ᵀ, with dY'
//   in the padded-width layout and its junk columns zero, split into blocks of input
//   channels: OpenBLAS runs a Co×16 block with K ≈ 1000 through its unpacked small-matrix
//   kernel (for M·N ≤ 1200 and M·N·K ≤ 10⁶), which at Co = 32 was 30% faster than the packed
//   path for Co×32 or Co×64 (one thread: 64→32 at 128² 71 → 90, 32→32 at 64² 67 → 91 GFLOP/s).
//
// Why: im2col writes K²·Ci·H·W values (19 MB per 32-ch 128² image) that the GEMM then
// packs again; here the GEMM packs straight from xpad. Measured on this 2-core CPU (one
// thread, 32→32 ch at 128²): 88 GFLOP/s against 70 for im2col bands; no gain at 32² and
// below, where im2col's single GEMM with K = 9·Ci wins — hence shifted_min_width.
// Junk columns read up to K−1 values past a channel's plane: the next channel's data
// (finite, only in junk columns) or, after the last channel, K−1 zeros.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ambiseg/ops/cpu/conv2d_geometry.hpp"
#include "ambiseg/ops/cpu/gemm.hpp"

namespace ambiseg::ops::cpu_kernels {

struct shifted_layout {
  std::int64_t wp = 0, hp = 0, cstride = 0;  // padded width/height, channel stride of xpad
  std::int64_t xpad_elems = 0;               // Ci·Hp·Wp + K − 1
  std::int64_t fwd_rows = 0, dw_rows = 0;    // output rows per band (forward, dW)
  std::int64_t dw_ci_block = 1;              // input channels per dW GEMM
};

inline shifted_layout make_shifted_layout(const conv_geometry& g, std::int64_t fwd_cols,
                                          std::int64_t dw_cols, std::int64_t dw_ci_block = 1 << 30) {
  shifted_layout s;
  s.wp = g.w + 2 * g.pad;
  s.hp = g.h + 2 * g.pad;
  s.cstride = s.hp * s.wp;
  s.xpad_elems = g.ci * s.cstride + g.k - 1;
  s.fwd_rows = std::clamp<std::int64_t>(fwd_cols / s.wp, 1, std::max<std::int64_t>(g.ho, 1));
  s.dw_rows = std::clamp<std::int64_t>(dw_cols / s.wp, 1, std::max<std::int64_t>(g.ho, 1));
  s.dw_ci_block = std::max<std::int64_t>(dw_ci_block, 1);
  return s;
}

template <class T>
void pad_image(const T* x, const conv_geometry& g, const shifted_layout& s, T* xpad) {
  const std::int64_t p = g.pad;
  for (std::int64_t c = 0; c < g.ci; ++c) {
    T* plane = xpad + c * s.cstride;
    std::memset(plane, 0, sizeof(T) * p * s.wp);
    std::memset(plane + (p + g.h) * s.wp, 0, sizeof(T) * p * s.wp);
    for (std::int64_t h = 0; h < g.h; ++h) {
      T* row = plane + (p + h) * s.wp;
      std::fill_n(row, p, T(0));
      std::memcpy(row + p, x + (c * g.h + h) * g.w, sizeof(T) * g.w);
      std::fill_n(row + p + g.w, p, T(0));
    }
  }
  std::fill_n(xpad + g.ci * s.cstride, g.k - 1, T(0));
}

// wk[kk][co][ci] = w[co][ci][kk], or with flip (the transposed convolution of the dx pass,
// whose output channels are w's input channels): wk[kk][ci][co] = w[co][ci][K²−1−kk].
template <class T>
void permute_weights(const T* w, std::int64_t co, std::int64_t ci, std::int64_t kk, bool flip,
                     T* wk) {
  for (std::int64_t o = 0; o < co; ++o)
    for (std::int64_t i = 0; i < ci; ++i)
      for (std::int64_t k = 0; k < kk; ++k) {
        const T v = w[(o * ci + i) * kk + k];
        if (flip)
          wk[((kk - 1 - k) * ci + i) * co + o] = v;
        else
          wk[(k * co + o) * ci + i] = v;
      }
}

// One image: y [Co,H,W] = conv(x) + b. scratch: xpad_elems + Co·fwd_rows·Wp elements.
template <class T>
void shifted_forward_image(const T* x, const T* wk, const T* b, T* y, const conv_geometry& g,
                           const shifted_layout& s, T* scratch) {
  T* xpad = scratch;
  T* ybuf = scratch + s.xpad_elems;
  pad_image(x, g, s, xpad);
  const std::int64_t P = g.ho * g.wo;
  for (std::int64_t r0 = 0; r0 < g.ho; r0 += s.fwd_rows) {
    const std::int64_t r1 = std::min(g.ho, r0 + s.fwd_rows), ncols = (r1 - r0) * s.wp;
    for (std::int64_t kh = 0; kh < g.k; ++kh)
      for (std::int64_t kw = 0; kw < g.k; ++kw) {
        const std::int64_t tap = kh * g.k + kw;
        gemm(trans::no, trans::no, g.co, ncols, g.ci, T(1), wk + tap * g.co * g.ci, g.ci,
             xpad + (r0 + kh) * s.wp + kw, s.cstride, tap ? T(1) : T(0), ybuf, ncols);
      }
    for (std::int64_t o = 0; o < g.co; ++o) {
      const T bias = b ? b[o] : T(0);
      for (std::int64_t h = r0; h < r1; ++h) {
        const T* src = ybuf + o * ncols + (h - r0) * s.wp;
        T* dst = y + o * P + h * g.wo;
#pragma omp simd
        for (std::int64_t j = 0; j < g.wo; ++j) dst[j] = src[j] + bias;
      }
    }
  }
}

// One image: acc [K², Co, Ci] += per-tap filter gradient. scratch: xpad_elems + Co·dw_rows·Wp.
template <class T>
void shifted_filter_grad_image(const T* x, const T* dy, T* acc, const conv_geometry& g,
                               const shifted_layout& s, T* scratch) {
  T* xpad = scratch;
  T* dyb = scratch + s.xpad_elems;
  pad_image(x, g, s, xpad);
  const std::int64_t P = g.ho * g.wo;
  for (std::int64_t r0 = 0; r0 < g.ho; r0 += s.dw_rows) {
    const std::int64_t r1 = std::min(g.ho, r0 + s.dw_rows), ncols = (r1 - r0) * s.wp;
    for (std::int64_t o = 0; o < g.co; ++o)
      for (std::int64_t h = r0; h < r1; ++h) {
        T* dst = dyb + o * ncols + (h - r0) * s.wp;
        std::memcpy(dst, dy + o * P + h * g.wo, sizeof(T) * g.wo);
        std::fill_n(dst + g.wo, s.wp - g.wo, T(0));  // junk columns contribute nothing
      }
    for (std::int64_t kh = 0; kh < g.k; ++kh)
      for (std::int64_t kw = 0; kw < g.k; ++kw) {
        const std::int64_t tap = kh * g.k + kw;
        for (std::int64_t c0 = 0; c0 < g.ci; c0 += s.dw_ci_block) {
          const std::int64_t nc = std::min(s.dw_ci_block, g.ci - c0);
          gemm(trans::no, trans::yes, g.co, nc, ncols, T(1), dyb, ncols,
               xpad + c0 * s.cstride + (r0 + kh) * s.wp + kw, s.cstride, T(1),
               acc + tap * g.co * g.ci + c0, g.ci);
        }
      }
  }
}

}  // namespace ambiseg::ops::cpu_kernels
