// ambiseg/ops/cpu/conv2d.hpp — 2-D convolution on the CPU through GEMM.
//
//   x [N,Ci,H,W]  w [Co,Ci,K,K]  b [Co]  y [N,Co,Ho,Wo]     CKK = Ci·K·K, P = Ho·Wo
//
// Per image, Y[Co, P] = W[Co, CKK] · col[CKK, P] (+ b), where col is im2col of the image.
// col is built a band of output rows at a time so that it stays in cache between im2col
// and the GEMM's packing (a full col at 32 ch, 128² is 19 MB). A 1×1 stride-1 convolution
// needs no col: the image itself is the B matrix.
//
// Backward:
//   dW[Co, CKK] += dY[Co, P] · colᵀ        (per band; long K = band length: efficient)
//   dx, stride 1 and "same" padding: the convolution of dY with the flipped, transposed
//       filter (W'[ci,co,kh,kw] = W[co,ci,K-1-kh,K-1-kw]) — the forward path again, with
//       Co·K·K as the GEMM's K, instead of a thin dcol = Wᵀ·dY GEMM plus a col2im scatter.
//   dx, otherwise (the stride-2 downsample): dcol = Wᵀ · dY, then col2im (accumulate).
// Wide "same" stride-1 convolutions (≥ 64 columns: the 128² and 64² levels) skip im2col
// altogether: K² shifted GEMMs over a padded copy of the image (conv2d_shifted.hpp), for
// the forward, the flipped-filter dx and dW.
//
// Threading (one pool, OpenMP): with at least as many images as threads, images run in
// parallel, each thread with its own col band and single-threaded GEMMs (OpenBLAS runs
// single-threaded inside a parallel region); dW is accumulated per thread and reduced.
// Otherwise images run one after another with multithreaded GEMMs. (Measured on the
// shared 2-core machine: per-image parallelism was 10× and more faster than multithreaded
// GEMMs per band, whose many barriers stall whenever the other core is busy.)
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ambiseg/core/workspace.hpp"
#include "ambiseg/ops/cpu/conv2d_geometry.hpp"
#include "ambiseg/ops/cpu/conv2d_rowshift.hpp"
#include "ambiseg/ops/cpu/conv2d_shifted.hpp"
#include "ambiseg/ops/cpu/conv2d_winograd.hpp"
#include "ambiseg/ops/cpu/gemm.hpp"

namespace ambiseg::ops::cpu_kernels {

enum class conv_threading { automatic, images, gemm };

// Tuning knobs (benchmarks flip them; the defaults are the measured best on 2 cores).
struct conv_tuning {
  conv_threading threading = conv_threading::automatic;
  // Winograd (conv2d_winograd.hpp) for 3×3 "same" stride-1 convolutions whose input and
  // output channels both number at least winograd_min_channels (below that its GEMMs'
  // K or M is too thin: the 4-channel stem, the 1-channel head); forward, dx and dW.
  // winograd_chunk_bytes: one chunk's transformed input and output together.
  winograd_tile winograd = winograd_tile::f4;
  std::int64_t winograd_min_channels = 16;
  std::int64_t winograd_chunk_bytes = 1024 * 1024;
  // One im2col band: about band_bytes (it must stay in L2/L3 between im2col and the
  // GEMM; a whole 32-ch 128² col of 19 MB ran at half speed), but at least min_band_cols
  // output pixels so that the GEMM's N is not too thin (96 columns cost 10% at 128 ch 16²).
  std::int64_t band_bytes = 1024 * 1024;
  std::int64_t min_band_cols = 256;
  // The shifted-GEMM path (conv2d_shifted.hpp) for "same" stride-1 convolutions at least
  // this wide (0: never); its band widths in padded-width columns for forward and dW.
  std::int64_t shifted_min_width = 64;
  std::int64_t shifted_fwd_cols = 320;
  // Per tap the forward GEMM's K is Ci: below this (the 4-channel stem; the dx of the
  // 1-channel head) im2col's K = 9·Ci is faster. dW has no such limit (its K is the band).
  std::int64_t shifted_min_ci_forward = 8;
  std::int64_t shifted_dw_cols = 1024;
  // Other "same" stride-1 K×K convolutions: im2col along the width only
  // (conv2d_rowshift.hpp) instead of full im2col; bands of about band_bytes.
  bool rowshift = true;
  // Filter gradients with few output channels (Co ≤ dw_small_co: the 32-channel levels),
  // shifted and 1×1: GEMMs of Co × dw_ci_block input channels, and for 1×1 bands of at
  // most dw_small_cols pixels, which OpenBLAS runs through its unpacked small-matrix
  // kernel (M·N ≤ 1200, M·N·K ≤ 10⁶). Measured on one thread: shifted 64→32 at 128²
  // 71 → 90 and 32→32 at 64² 67 → 91 GFLOP/s; 1×1 64→32 at 128² 33 → 68, at 64² 46 → 81.
  // At Co = 64 the split was slower (1×1 128→64 at 32²: 67 → 58), hence the limit.
  std::int64_t dw_small_co = 32;
  std::int64_t dw_ci_block = 16;
  std::int64_t dw_small_cols = 1900;
  std::int64_t dw_ci_block_for(std::int64_t co) const {
    return co <= dw_small_co ? dw_ci_block : std::int64_t{1} << 40;
  }
};
inline conv_tuning& conv_settings() {
  static conv_tuning t;
  return t;
}

struct conv_plan {
  bool images_parallel = false;
  int threads = 1;
  winograd_tile winograd = winograd_tile::off;  // when on, the other paths are not used
  int winograd_threads = 1;                     // it splits tile rows, not images
  std::int64_t band_rows = 0;  // output rows per im2col band
  std::int64_t col_elems = 0;  // elements of one band buffer (0: no im2col)
  bool shifted = false;        // K² shifted GEMMs instead of im2col (needs images in parallel
                               // or one thread: its GEMMs are too small to split)
  bool rowshift = false;       // width-only im2col ("same" stride 1, when not shifted)
  std::int64_t rowshift_rows = 0, rowshift_col_elems = 0;  // its band and band buffer
};

inline conv_plan make_conv_plan(const conv_geometry& g, std::size_t elem_bytes) {
  conv_plan p;
  p.threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  const int max_threads = p.threads;
  const auto mode = conv_settings().threading;
  p.images_parallel = p.threads > 1 && (mode == conv_threading::images ||
                                        (mode == conv_threading::automatic && g.n >= p.threads));
  if (!p.images_parallel) p.threads = 1;
  const auto& t = conv_settings();
  if (t.winograd != winograd_tile::off && winograd_applies(g) &&
      std::min(g.ci, g.co) >= t.winograd_min_channels) {
    p.winograd = t.winograd;
    p.winograd_threads = max_threads;
  }
  p.shifted = g.k > 1 && g.transposable() && t.shifted_min_width > 0 &&
              g.wo >= t.shifted_min_width && (p.images_parallel || max_threads == 1);
  // (With images one after another its GEMMs, K = K·Ci, run multithreaded.)
  p.rowshift = !p.shifted && g.k > 1 && g.transposable() && t.rowshift;
  if (p.rowshift) {
    p.rowshift_rows = rowshift_band_rows(g, t.band_bytes, elem_bytes);
    p.rowshift_col_elems = cpu_kernels::rowshift_col_elems(g, p.rowshift_rows);
  }
  if (g.pointwise()) {
    p.band_rows = g.ho;
    p.col_elems = 0;
  } else {
    const std::int64_t row_bytes = g.ckk() * g.wo * static_cast<std::int64_t>(elem_bytes);
    const std::int64_t by_bytes = t.band_bytes / std::max<std::int64_t>(row_bytes, 1);
    const std::int64_t by_cols = (t.min_band_cols + g.wo - 1) / std::max<std::int64_t>(g.wo, 1);
    p.band_rows = std::clamp<std::int64_t>(std::max(by_bytes, by_cols), 1,
                                           std::max<std::int64_t>(g.ho, 1));
    p.col_elems = g.ckk() * p.band_rows * g.wo;
  }
  return p;
}

// Valid output columns [lo, hi) for kernel column kw: 0 <= wo·s − p + kw < W.
inline void valid_columns(const conv_geometry& g, std::int64_t kw, std::int64_t& lo,
                          std::int64_t& hi) {
  const std::int64_t shift = g.pad - kw;  // wi = wo·s − shift
  lo = shift <= 0 ? 0 : (shift + g.stride - 1) / g.stride;
  const std::int64_t last = g.w - 1 + shift;  // wo·s <= last
  hi = last < 0 ? 0 : std::min(g.wo, last / g.stride + 1);
  lo = std::min(lo, hi);
}

// col[(ci,kh,kw), (ho−r0)·Wo + wo] = x[ci, ho·s − p + kh, wo·s − p + kw] (0 outside) for
// channels [c0, c1) and output rows [r0, r1). x is one image [Ci,H,W].
template <class T>
void im2col_band(const T* x, const conv_geometry& g, std::int64_t r0, std::int64_t r1,
                 std::int64_t c0, std::int64_t c1, T* col) {
  const std::int64_t ncols = (r1 - r0) * g.wo;
  for (std::int64_t ci = c0; ci < c1; ++ci)
    for (std::int64_t kh = 0; kh < g.k; ++kh)
      for (std::int64_t kw = 0; kw < g.k; ++kw) {
        T* dst = col + ((ci * g.k + kh) * g.k + kw) * ncols;
        std::int64_t lo, hi;
        valid_columns(g, kw, lo, hi);
        const std::int64_t off = kw - g.pad;
        for (std::int64_t ho = r0; ho < r1; ++ho, dst += g.wo) {
          const std::int64_t hi_row = ho * g.stride - g.pad + kh;
          if (hi_row < 0 || hi_row >= g.h) {
            std::memset(dst, 0, sizeof(T) * g.wo);
            continue;
          }
          const T* src = x + (ci * g.h + hi_row) * g.w + off;
          for (std::int64_t j = 0; j < lo; ++j) dst[j] = T(0);
          if (g.stride == 1) {
            std::memcpy(dst + lo, src + lo, sizeof(T) * (hi - lo));
          } else {
            const std::int64_t s = g.stride;
            for (std::int64_t j = lo; j < hi; ++j) dst[j] = src[j * s];
          }
          for (std::int64_t j = hi; j < g.wo; ++j) dst[j] = T(0);
        }
      }
}

// The transpose of im2col_band: dx[ci, hi, wi] += col[...] for one image.
template <class T>
void col2im_band_add(const T* col, const conv_geometry& g, std::int64_t r0, std::int64_t r1,
                     T* dx) {
  const std::int64_t ncols = (r1 - r0) * g.wo;
  for (std::int64_t ci = 0; ci < g.ci; ++ci)
    for (std::int64_t kh = 0; kh < g.k; ++kh)
      for (std::int64_t kw = 0; kw < g.k; ++kw) {
        const T* src = col + ((ci * g.k + kh) * g.k + kw) * ncols;
        std::int64_t lo, hi;
        valid_columns(g, kw, lo, hi);
        const std::int64_t off = kw - g.pad;
        for (std::int64_t ho = r0; ho < r1; ++ho, src += g.wo) {
          const std::int64_t hi_row = ho * g.stride - g.pad + kh;
          if (hi_row < 0 || hi_row >= g.h) continue;
          T* dst = dx + (ci * g.h + hi_row) * g.w + off;
          const std::int64_t s = g.stride;
#pragma omp simd
          for (std::int64_t j = lo; j < hi; ++j) dst[j * s] += src[j];
        }
      }
}

// y = conv(x, w) + b for all images, following plan p; cols holds p.threads band buffers.
template <class T>
void conv_forward_planned(const T* x, const T* w, const T* b, T* y, const conv_geometry& g,
                          const conv_plan& p, T* cols) {
  const std::int64_t P = g.out_plane(), ckk = g.ckk();
  auto image = [&](std::int64_t n, T* col, bool parallel_im2col) {
    const T* xn = x + n * g.ci * g.in_plane();
    T* yn = y + n * g.co * P;
    for (std::int64_t r0 = 0; r0 < g.ho; r0 += p.band_rows) {
      const std::int64_t r1 = std::min(g.ho, r0 + p.band_rows), ncols = (r1 - r0) * g.wo;
      const T* bmat = xn + r0 * g.wo;
      std::int64_t ldb = P;
      if (!g.pointwise()) {
        if (parallel_im2col) {
#pragma omp parallel for schedule(static)
          for (std::int64_t ci = 0; ci < g.ci; ++ci) im2col_band(xn, g, r0, r1, ci, ci + 1, col);
        } else {
          im2col_band(xn, g, r0, r1, std::int64_t{0}, g.ci, col);
        }
        bmat = col;
        ldb = ncols;
      }
      T* yt = yn + r0 * g.wo;
      T beta = T(0);
      if (b) {  // bias fused as GEMM's C input
        for (std::int64_t co = 0; co < g.co; ++co) std::fill_n(yt + co * P, ncols, b[co]);
        beta = T(1);
      }
      gemm(trans::no, trans::no, g.co, ncols, ckk, T(1), w, ckk, bmat, ldb, beta, yt, P);
    }
  };
  if (p.images_parallel) {
#pragma omp parallel num_threads(p.threads)
    {
      T* col = cols ? cols + omp_get_thread_num() * p.col_elems : nullptr;
#pragma omp for schedule(static)
      for (std::int64_t n = 0; n < g.n; ++n) image(n, col, false);
    }
  } else {
    for (std::int64_t n = 0; n < g.n; ++n) image(n, cols, true);
  }
}

// Runs images in parallel (one scratch block per thread) or one after another.
template <class F>
void for_each_image(const conv_plan& p, std::int64_t n, F&& body /*(image, thread)*/) {
  if (p.images_parallel) {
#pragma omp parallel num_threads(p.threads)
    {
      const int t = omp_get_thread_num();
#pragma omp for schedule(static)
      for (std::int64_t i = 0; i < n; ++i) body(i, t);
    }
  } else {
    for (std::int64_t i = 0; i < n; ++i) body(i, 0);
  }
}

// y = conv(x, w) + b for the convolution g. With flip, w is the filter of the convolution
// whose dx this is: g is its transposed geometry, and the filter used is w flipped and
// transposed (W'[ci,co,kh,kw] = w[co,ci,K−1−kh,K−1−kw]).
template <class F, class T>
void winograd_forward_run(const T* x, const T* w, bool flip, const T* b, T* y,
                          const conv_geometry& g, const conv_plan& p, workspace<cpu>& ws) {
  const auto l = make_winograd_layout<F>(g, conv_settings().winograd_chunk_bytes, sizeof(T),
                                         p.winograd_threads);
  T* buf[3];
  ws.get_many<T, 3>({static_cast<std::size_t>(F::alpha * F::alpha * winograd_plane(g.co, g.ci)),
                     static_cast<std::size_t>(l.per_thread() * p.winograd_threads),
                     static_cast<std::size_t>(flip ? 9 * g.co * g.ci : 0)},
                    buf);
  winograd_filter_transform<F>(w, g.co, g.ci, flip, buf[0], buf[2]);
  winograd_forward<F>(x, buf[0], b, y, g, l, p.winograd_threads, buf[1]);
}

template <class F, class T>
void winograd_filter_grad_run(const T* x, const T* dy, T* dw, const conv_geometry& g,
                              const conv_plan& p, workspace<cpu>& ws) {
  const auto l = make_winograd_layout<F>(g, conv_settings().winograd_chunk_bytes, sizeof(T),
                                         p.winograd_threads);
  const std::int64_t block = F::alpha * F::alpha * winograd_plane(g.co, g.ci);
  T* buf[2];
  ws.get_many<T, 2>({static_cast<std::size_t>(block * p.winograd_threads),
                     static_cast<std::size_t>(l.per_thread() * p.winograd_threads)},
                    buf);
  winograd_filter_grad<F>(x, dy, g, l, p.winograd_threads, buf[0], buf[1]);
  winograd_filter_grad_finish<F>(buf[0], p.winograd_threads, g.co, g.ci, dw);
}

template <class T>
void conv_forward_run(const T* x, const T* w, bool flip, const T* b, T* y,
                      const conv_geometry& g, const conv_plan& p, workspace<cpu>& ws) {
  const std::int64_t kk = g.k * g.k;
  if (p.winograd == winograd_tile::f2) return winograd_forward_run<winograd_f2>(x, w, flip, b, y, g, p, ws);
  if (p.winograd == winograd_tile::f4) return winograd_forward_run<winograd_f4>(x, w, flip, b, y, g, p, ws);
  if (p.shifted && g.ci >= conv_settings().shifted_min_ci_forward) {
    const auto& t = conv_settings();
    const shifted_layout s = make_shifted_layout(g, t.shifted_fwd_cols, t.shifted_dw_cols,
                                                 t.dw_ci_block_for(g.co));
    const std::int64_t per_thread = s.xpad_elems + g.co * s.fwd_rows * s.wp;
    T* buf[2];
    ws.get_many<T, 2>({static_cast<std::size_t>(kk * g.co * g.ci),
                       static_cast<std::size_t>(per_thread * p.threads)},
                      buf);
    if (flip)
      permute_weights(w, g.ci, g.co, kk, true, buf[0]);
    else
      permute_weights(w, g.co, g.ci, kk, false, buf[0]);
    for_each_image(p, g.n, [&](std::int64_t i, int t_id) {
      shifted_forward_image(x + i * g.ci * g.in_plane(), buf[0], b, y + i * g.co * g.out_plane(),
                            g, s, buf[1] + t_id * per_thread);
    });
    return;
  }
  if (p.rowshift && g.ci >= conv_settings().shifted_min_ci_forward) {
    T* buf[2];
    ws.get_many<T, 2>({static_cast<std::size_t>(kk * g.co * g.ci),
                       static_cast<std::size_t>(p.rowshift_col_elems * p.threads)},
                      buf);
    if (flip)  // w is [g.ci, g.co, K, K] here (the convolution whose dx this is)
      rowshift_weights(w, g.ci, g.co, g.k, true, buf[0]);
    else
      rowshift_weights(w, g.co, g.ci, g.k, false, buf[0]);
    for_each_image(p, g.n, [&](std::int64_t i, int t_id) {
      rowshift_forward_image(x + i * g.ci * g.in_plane(), buf[0], b, y + i * g.co * g.out_plane(),
                             g, p.rowshift_rows, buf[1] + t_id * p.rowshift_col_elems);
    });
    return;
  }
  if (!flip) {
    T* cols = p.col_elems ? ws.get<T>(static_cast<std::size_t>(p.col_elems * p.threads)) : nullptr;
    conv_forward_planned(x, w, b, y, g, p, cols);
    return;
  }
  T* buf[2];
  ws.get_many<T, 2>({static_cast<std::size_t>(kk * g.co * g.ci),
                     static_cast<std::size_t>(p.col_elems * p.threads)},
                    buf);
  // g.co is w's input channel count, g.ci its output channel count
  for (std::int64_t o = 0; o < g.ci; ++o)
    for (std::int64_t i = 0; i < g.co; ++i)
      for (std::int64_t k = 0; k < kk; ++k)
        buf[0][(i * g.ci + o) * kk + (kk - 1 - k)] = w[(o * g.co + i) * kk + k];
  conv_forward_planned<T>(x, buf[0], b, y, g, p, buf[1]);
}

template <class T>
void conv2d_forward(const T* x, const T* w, const T* b, T* y, const conv_geometry& g,
                    workspace<cpu>& ws) {
  conv_forward_run(x, w, false, b, y, g, make_conv_plan(g, sizeof(T)), ws);
}

// Each phase (db, dW, dx) takes its scratch from ws in turn; the block grows to the
// largest phase once, after which no call allocates.
template <class T>
void conv2d_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, T* db,
                     const conv_geometry& g, workspace<cpu>& ws) {
  const std::int64_t P = g.out_plane(), ckk = g.ckk(), HW = g.in_plane(), kk = g.k * g.k;
  const conv_plan pw = make_conv_plan(g, sizeof(T));  // plan for the dW pass (reads x)

  if (db) {
#pragma omp parallel for schedule(static)
    for (std::int64_t co = 0; co < g.co; ++co) {
      double s = 0;
      for (std::int64_t n = 0; n < g.n; ++n) {
        const T* d = dy + (n * g.co + co) * P;
#pragma omp simd reduction(+ : s)
        for (std::int64_t i = 0; i < P; ++i) s += d[i];
      }
      db[co] += static_cast<T>(s);
    }
  }

  if (dw && pw.winograd == winograd_tile::f2) {
    winograd_filter_grad_run<winograd_f2>(x, dy, dw, g, pw, ws);
  } else if (dw && pw.winograd == winograd_tile::f4) {
    winograd_filter_grad_run<winograd_f4>(x, dy, dw, g, pw, ws);
  } else if (dw && pw.shifted) {
    const auto& t = conv_settings();
    const shifted_layout s = make_shifted_layout(g, t.shifted_fwd_cols, t.shifted_dw_cols,
                                                 t.dw_ci_block_for(g.co));
    const std::int64_t per_thread = s.xpad_elems + g.co * s.dw_rows * s.wp;
    const std::int64_t wsize = kk * g.co * g.ci;
    T* buf[2];
    ws.get_many<T, 2>({static_cast<std::size_t>(per_thread * pw.threads),
                       static_cast<std::size_t>(wsize * pw.threads)},
                      buf);
    std::fill_n(buf[1], wsize * pw.threads, T(0));
    for_each_image(pw, g.n, [&](std::int64_t i, int t_id) {
      shifted_filter_grad_image(x + i * g.ci * HW, dy + i * g.co * P, buf[1] + t_id * wsize, g, s,
                                buf[0] + t_id * per_thread);
    });
#pragma omp parallel for schedule(static)
    for (std::int64_t o = 0; o < g.co; ++o)
      for (std::int64_t i = 0; i < g.ci; ++i)
        for (std::int64_t k = 0; k < kk; ++k) {
          T sum = T(0);
          for (int th = 0; th < pw.threads; ++th) sum += buf[1][th * wsize + (k * g.co + o) * g.ci + i];
          dw[(o * g.ci + i) * kk + k] += sum;
        }
  } else if (dw && pw.rowshift) {
    const std::int64_t wsize = kk * g.co * g.ci, kc = g.k * g.ci;
    T* buf[2];
    ws.get_many<T, 2>({static_cast<std::size_t>(pw.rowshift_col_elems * pw.threads),
                       static_cast<std::size_t>(wsize * pw.threads)},
                      buf);
    std::fill_n(buf[1], wsize * pw.threads, T(0));
    for_each_image(pw, g.n, [&](std::int64_t i, int t_id) {
      rowshift_filter_grad_image(x + i * g.ci * HW, dy + i * g.co * P, buf[1] + t_id * wsize, g,
                                 pw.rowshift_rows, buf[0] + t_id * pw.rowshift_col_elems);
    });
#pragma omp parallel for schedule(static)
    for (std::int64_t o = 0; o < g.co; ++o)
      for (std::int64_t i = 0; i < g.ci; ++i)
        for (std::int64_t kh = 0; kh < g.k; ++kh)
          for (std::int64_t kw = 0; kw < g.k; ++kw) {
            T sum = T(0);
            for (int th = 0; th < pw.threads; ++th)
              sum += buf[1][th * wsize + (kh * g.co + o) * kc + kw * g.ci + i];
            dw[((o * g.ci + i) * g.k + kh) * g.k + kw] += sum;
          }
  } else if (dw) {
    const std::int64_t partial_elems = pw.images_parallel ? g.co * ckk * pw.threads : 0;
    T* buf[2];
    ws.get_many<T, 2>({static_cast<std::size_t>(pw.col_elems * pw.threads),
                       static_cast<std::size_t>(partial_elems)},
                      buf);
    T* cols = buf[0];
    T* partials = buf[1];
    // 1×1 with few output channels: small GEMMs (see conv_tuning::dw_small_co).
    const auto& t = conv_settings();
    const bool small = g.pointwise() && g.co <= t.dw_small_co;
    const std::int64_t band_rows =
        small ? std::clamp<std::int64_t>(t.dw_small_cols / std::max<std::int64_t>(g.wo, 1), 1,
                                         std::max<std::int64_t>(g.ho, 1))
              : pw.band_rows;
    const std::int64_t dw_block = small ? std::max<std::int64_t>(t.dw_ci_block, 1) : ckk;
    // acc: where this image's dW lands (a thread's partial, or dw itself when serial).
    auto image = [&](std::int64_t n, T* col, T* acc, bool parallel_im2col) {
      const T* xn = x + n * g.ci * HW;
      const T* dyn = dy + n * g.co * P;
      for (std::int64_t r0 = 0; r0 < g.ho; r0 += band_rows) {
        const std::int64_t r1 = std::min(g.ho, r0 + band_rows), ncols = (r1 - r0) * g.wo;
        const T* bmat = xn + r0 * g.wo;
        std::int64_t ldb = HW;
        if (!g.pointwise()) {
          if (parallel_im2col) {
#pragma omp parallel for schedule(static)
            for (std::int64_t ci = 0; ci < g.ci; ++ci) im2col_band(xn, g, r0, r1, ci, ci + 1, col);
          } else {
            im2col_band(xn, g, r0, r1, std::int64_t{0}, g.ci, col);
          }
          bmat = col;
          ldb = ncols;
        }
        for (std::int64_t c0 = 0; c0 < ckk; c0 += dw_block)
          gemm(trans::no, trans::yes, g.co, std::min(dw_block, ckk - c0), ncols, T(1), dyn + r0 * g.wo, P,
               bmat + c0 * ldb, ldb, T(1), acc + c0, ckk);
      }
    };
    if (pw.images_parallel) {
      const std::int64_t wsize = g.co * ckk;
#pragma omp parallel num_threads(pw.threads)
      {
        const int t = omp_get_thread_num();
        T* acc = partials + t * wsize;
        std::fill_n(acc, wsize, T(0));
        T* col = cols ? cols + t * pw.col_elems : nullptr;
#pragma omp for schedule(static)
        for (std::int64_t n = 0; n < g.n; ++n) image(n, col, acc, false);
        // implicit barrier: every partial is complete before the reduction
#pragma omp for schedule(static)
        for (std::int64_t i = 0; i < wsize; ++i) {
          T s = T(0);
          for (int k = 0; k < pw.threads; ++k) s += partials[k * wsize + i];
          dw[i] += s;
        }
      }
    } else {
      for (std::int64_t n = 0; n < g.n; ++n) image(n, cols, dw, true);
    }
  }

  if (!dx) return;
  if (g.pointwise()) {  // dx_n[Ci, HW] = Wᵀ[Ci, Co] · dy_n[Co, HW]
    for_each_image(pw, g.n, [&](std::int64_t n, int) {
      gemm(trans::yes, trans::no, g.ci, HW, g.co, T(1), w, g.ci, dy + n * g.co * P, P, T(0),
           dx + n * g.ci * HW, HW);
    });
    return;
  }
  if (g.transposable()) {
    const conv_geometry gt = g.transposed();
    conv_forward_run<T>(dy, w, true, nullptr, dx, gt, make_conv_plan(gt, sizeof(T)), ws);
    return;
  }
  // General (strided) case: dcol = Wᵀ · dY per band, scattered back by col2im.
  T* cols = ws.get<T>(static_cast<std::size_t>(pw.col_elems * pw.threads));
  for_each_image(pw, g.n, [&](std::int64_t n, int t_id) {
    T* col = cols + t_id * pw.col_elems;
    T* dxn = dx + n * g.ci * HW;
    std::fill_n(dxn, g.ci * HW, T(0));
    const T* dyn = dy + n * g.co * P;
    for (std::int64_t r0 = 0; r0 < g.ho; r0 += pw.band_rows) {
      const std::int64_t r1 = std::min(g.ho, r0 + pw.band_rows), ncols = (r1 - r0) * g.wo;
      gemm(trans::yes, trans::no, ckk, ncols, g.co, T(1), w, ckk, dyn + r0 * g.wo, P, T(0), col,
           ncols);
      col2im_band_add(col, g, r0, r1, dxn);
    }
  });
}

}  // namespace ambiseg::ops::cpu_kernels
