// ambiseg/ops/cpu/conv2d_rowshift.hpp — "same" stride-1 K×K convolution with im2col along
// the width only.
//
//   x [Ci,H,W] one image   y [Co,H,W]   p = (K−1)/2   band: output rows [r0, r1), R = r1 − r0
//   col3 [(kw, ci), (R+K−1)·W]: row j of the band holds input row r0 − p + j, shifted by
//       kw − p columns (zero outside the image):  col3[(kw,ci), j·W + w] = x[ci, r0−p+j, w+kw−p]
//   Then the kernel row kh is a plain offset of kh·W into col3, and
//       Y[Co, r0·W ..] += Wr_kh[Co, (kw,ci)] · col3[:, kh·W ..]        (K GEMMs, K_gemm = K·Ci)
//   written straight into y (ldc = H·W). Filter gradient, likewise:
//       dWr_kh[Co, (kw,ci)] += dY[Co, band] · col3[:, kh·W ..]ᵀ         (K_gemm = R·W)
//
// Why: full im2col writes K²·Ci·H·W values per image (at 128 channels, 16², 1.2 MB of short
// row copies); this writes K·Ci·(R+K−1)·W, with whole-plane copies for kw = p, and the
// GEMMs keep a long K (K·Ci) with no junk output columns, no staging copy of y and no copy
// of dY (unlike the padded-width shifted GEMMs of conv2d_shifted.hpp).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ambiseg/ops/cpu/conv2d_geometry.hpp"
#include "ambiseg/ops/cpu/gemm.hpp"

namespace ambiseg::ops::cpu_kernels {

// Output rows per band so that one col3 band is about band_bytes (at least 1 row).
inline std::int64_t rowshift_band_rows(const conv_geometry& g, std::int64_t band_bytes,
                                       std::size_t elem_bytes) {
  const std::int64_t row_bytes = g.k * g.ci * g.w * static_cast<std::int64_t>(elem_bytes);
  const std::int64_t rows = band_bytes / std::max<std::int64_t>(row_bytes, 1) - (g.k - 1);
  return std::clamp<std::int64_t>(rows, 1, std::max<std::int64_t>(g.ho, 1));
}
inline std::int64_t rowshift_col_elems(const conv_geometry& g, std::int64_t band_rows) {
  return g.k * g.ci * (band_rows + g.k - 1) * g.w;
}

// col3 for output rows [r0, r1) of one image x [Ci,H,W].
template <class T>
void rowshift_band(const T* x, const conv_geometry& g, std::int64_t r0, std::int64_t r1, T* col) {
  const std::int64_t rows = r1 - r0 + g.k - 1, W = g.w, ld = rows * W;
  for (std::int64_t kw = 0; kw < g.k; ++kw) {
    const std::int64_t shift = kw - g.pad;  // reads column w + shift
    const std::int64_t lo = std::max<std::int64_t>(0, -shift);
    const std::int64_t hi = std::min<std::int64_t>(W, W - shift);
    for (std::int64_t ci = 0; ci < g.ci; ++ci) {
      T* dst = col + (kw * g.ci + ci) * ld;
      const T* plane = x + ci * g.h * W;
      for (std::int64_t j = 0; j < rows; ++j, dst += W) {
        const std::int64_t hrow = r0 - g.pad + j;
        if (hrow < 0 || hrow >= g.h) {
          std::fill_n(dst, W, T(0));
          continue;
        }
        const T* src = plane + hrow * W + shift;
        if (shift == 0) {  // the rest of the band's rows are contiguous in x
          const std::int64_t last = std::min(rows, g.h - r0 + g.pad);
          std::memcpy(dst, plane + hrow * W, sizeof(T) * W * (last - j));
          dst += W * (last - j - 1);
          j = last - 1;
          continue;
        }
        for (std::int64_t w = 0; w < lo; ++w) dst[w] = T(0);
        std::memcpy(dst + lo, src + lo, sizeof(T) * (hi - lo));
        for (std::int64_t w = hi; w < W; ++w) dst[w] = T(0);
      }
    }
  }
}

// wr[kh][o][(kw, i)] from w [Co, Ci, K, K]; with flip (the dx pass: the transposed
// convolution, output channels = w's inputs), wr[kh][i][(kw, o)] = w[o][i][K−1−kh][K−1−kw].
template <class T>
void rowshift_weights(const T* w, std::int64_t co, std::int64_t ci, std::int64_t k, bool flip,
                      T* wr) {
  for (std::int64_t o = 0; o < co; ++o)
    for (std::int64_t i = 0; i < ci; ++i)
      for (std::int64_t kh = 0; kh < k; ++kh)
        for (std::int64_t kw = 0; kw < k; ++kw) {
          const T v = w[((o * ci + i) * k + kh) * k + kw];
          if (flip)
            wr[((k - 1 - kh) * ci + i) * (k * co) + (k - 1 - kw) * co + o] = v;
          else
            wr[(kh * co + o) * (k * ci) + kw * ci + i] = v;
        }
}

// One image: y [Co,H,W] = conv(x) + b, wr from rowshift_weights. col: rowshift_col_elems.
template <class T>
void rowshift_forward_image(const T* x, const T* wr, const T* b, T* y, const conv_geometry& g,
                            std::int64_t band_rows, T* col) {
  const std::int64_t P = g.ho * g.wo, kc = g.k * g.ci;
  for (std::int64_t r0 = 0; r0 < g.ho; r0 += band_rows) {
    const std::int64_t r1 = std::min(g.ho, r0 + band_rows), ncols = (r1 - r0) * g.wo;
    const std::int64_t ld = (r1 - r0 + g.k - 1) * g.w;
    rowshift_band(x, g, r0, r1, col);
    T* yt = y + r0 * g.wo;
    T beta = T(0);
    if (b) {
      for (std::int64_t o = 0; o < g.co; ++o) std::fill_n(yt + o * P, ncols, b[o]);
      beta = T(1);
    }
    for (std::int64_t kh = 0; kh < g.k; ++kh)
      gemm(trans::no, trans::no, g.co, ncols, kc, T(1), wr + kh * g.co * kc, kc, col + kh * g.w,
           ld, kh ? T(1) : beta, yt, P);
  }
}

// One image: acc [K, Co, K·Ci] += the filter gradient in rowshift_weights' layout.
template <class T>
void rowshift_filter_grad_image(const T* x, const T* dy, T* acc, const conv_geometry& g,
                                std::int64_t band_rows, T* col) {
  const std::int64_t P = g.ho * g.wo, kc = g.k * g.ci;
  for (std::int64_t r0 = 0; r0 < g.ho; r0 += band_rows) {
    const std::int64_t r1 = std::min(g.ho, r0 + band_rows), ncols = (r1 - r0) * g.wo;
    const std::int64_t ld = (r1 - r0 + g.k - 1) * g.w;
    rowshift_band(x, g, r0, r1, col);
    for (std::int64_t kh = 0; kh < g.k; ++kh)
      gemm(trans::no, trans::yes, g.co, kc, ncols, T(1), dy + r0 * g.wo, P, col + kh * g.w, ld,
           T(1), acc + kh * g.co * kc, kc);
  }
}

}  // namespace ambiseg::ops::cpu_kernels
