// ambiseg/ops/cpu/conv2d_winograd.hpp — 3×3 "same" stride-1 convolution by Winograd's
// minimal filtering, F(m×m, 3×3) (Lavin & Gray 2016), for the forward, the flipped-filter
// dx and the filter gradient.
//
//   x [N,Ci,H,W]  w [Co,Ci,3,3]  y, dy [N,Co,H,W]      α = m + 2, ξ = (i, j) ∈ α × α
//   Output tiles of m×m pixels; tile t reads the α×α input patch d_t around it (zero outside).
//     U[ξ][co][ci] = (G w[co][ci] Gᵀ)[ξ]           filter transform, once per call
//     V[ξ][ci][t]  = (Bᵀ d_t[ci] B)[ξ]              input transform
//     M[ξ]         = U[ξ] · V[ξ]        [Co,Ci]·[Ci,T]: α² GEMMs per chunk of T tiles
//     y_t[co]      = Aᵀ M[·][co][t] A              output transform (+ bias)
//   Filter gradient, the adjoint of the same algebra:
//     dM[ξ][co][t] = (A dy_t[co] Aᵀ)[ξ]
//     dU[ξ]       += dM[ξ] · V[ξ]ᵀ     [Co,T]·[T,Ci]: long K, efficient
//     dw[co][ci]  += Gᵀ dU[·][co][ci] G
//
// Why: a direct (GEMM-lowered) 3×3 convolution does 9 multiply-adds per output and input
// channel; F(2×2,3×3) does 16/4 = 4 (2.25× fewer), F(4×4,3×3) 36/16 = 2.25 (4× fewer). The
// GEMM-lowered paths already run at ≥ 90% of this core's sgemm peak (docs/benchmarks.md),
// so fewer multiplications is the way past that bound. The transforms are O(α²·C·T), not
// O(α²·Co·Ci·T), and run vectorised across tiles. Error: F(2×2) uses coefficients 0, ±1,
// ±½ and is within a few ulps of the direct sum; F(4×4)'s larger coefficients cost about
// 10× more rounding (measured in tests/ops/test_conv_winograd.cpp).
//
// Work is split into chunks of whole tile rows over all images (a chunk may span images),
// so threads divide the work without needing N ≥ threads; each thread owns its scratch,
// and its GEMMs run single-threaded inside the parallel region.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "ambiseg/ops/cpu/conv2d_geometry.hpp"
#include "ambiseg/ops/cpu/gemm.hpp"

// The sanitizer build compiles at -O0 (CMakeLists.txt: instrumented optimised code builds
// several times slower), where these small fixed loops, unrolled and constant-folded
// otherwise, run some 60× slower and made the sanitizer suite twice as long. They are
// optimised there all the same; the sanitizers instrument optimised code just as well.
#if !defined(__OPTIMIZE__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("O2")
#define AMBISEG_WINOGRAD_OPTIMIZE_PUSHED 1
#endif

namespace ambiseg::ops::cpu_kernels {

// F(2×2, 3×3): Bᵀ, G, Aᵀ of Lavin & Gray, correlation form (y[i] = Σ_k g[k]·d[i+k]).
struct winograd_f2 {
  static constexpr int m = 2, alpha = 4;
  static constexpr double bt[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double g[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr double at[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
};

// F(4×4, 3×3), interpolation points 0, ±1, ±2, ∞.
struct winograd_f4 {
  static constexpr int m = 4, alpha = 6;
  static constexpr double bt[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0},
                                      {0, 4, -4, -1, 1, 0}, {0, -2, -1, 2, 1, 0},
                                      {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double g[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  static constexpr double at[4][6] = {
      {1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
};

enum class winograd_tile { off, f2, f4 };

// Whether g is a convolution the Winograd kernels compute.
inline bool winograd_applies(const conv_geometry& g) {
  return g.k == 3 && g.stride == 1 && g.pad == 1 && g.ho == g.h && g.wo == g.w;
}

// How one call splits its tiles: tw tiles per tile row, th tile rows per image, chunks of
// rows_per_chunk tile rows over the n·th rows of all images.
struct winograd_layout {
  std::int64_t tw = 0, th = 0, rows = 0, rows_per_chunk = 1, chunks = 0;
  std::int64_t max_tiles = 0;  // tiles in a full chunk
  std::int64_t wt = 0;         // width of a row-transform buffer: tw·m + 2 (zero borders)
  std::int64_t v_elems = 0, m_elems = 0, tmp_elems = 0;  // per-thread scratch pieces
  std::int64_t per_thread() const { return v_elems + m_elems + tmp_elems; }
};

// Elements from one ξ plane of U, V, M or dU to the next: rows·tiles plus one cache line, so that
// the α² planes, which the transforms read or write together, do not all fall on the same
// cache sets (at 32 channels × 32 tiles the planes were exactly 4 KiB apart).
inline std::int64_t winograd_plane(std::int64_t rows, std::int64_t tiles) { return rows * tiles + 16; }

// chunk_bytes: the target size of one chunk's V and M together (they are streamed through
// by the transforms and read α² times by the GEMMs; the last-level cache holds them).
// With several threads the chunk count is rounded up to a multiple of them, so that none
// waits on another's extra chunk (the 16² level has only 32 tile rows at batch 8).
template <class F>
winograd_layout make_winograd_layout(const conv_geometry& g, std::int64_t chunk_bytes,
                                     std::size_t elem_bytes, int threads = 1) {
  winograd_layout l;
  constexpr std::int64_t a = F::alpha, m = F::m;
  l.tw = (g.wo + m - 1) / m;
  l.th = (g.ho + m - 1) / m;
  l.rows = g.n * l.th;
  const std::int64_t per_tile = a * a * (g.ci + g.co) * static_cast<std::int64_t>(elem_bytes);
  const std::int64_t tiles = std::max<std::int64_t>(chunk_bytes / std::max<std::int64_t>(per_tile, 1), 1);
  l.rows_per_chunk = std::clamp<std::int64_t>(tiles / std::max<std::int64_t>(l.tw, 1), 1,
                                              std::max<std::int64_t>(l.rows, 1));
  l.chunks = (l.rows + l.rows_per_chunk - 1) / l.rows_per_chunk;
  if (threads > 1 && l.chunks % threads != 0 && l.rows >= threads) {
    const std::int64_t even = (l.chunks + threads - 1) / threads * threads;
    l.rows_per_chunk = (l.rows + even - 1) / even;
    l.chunks = (l.rows + l.rows_per_chunk - 1) / l.rows_per_chunk;
  }
  l.max_tiles = l.rows_per_chunk * l.tw;
  l.wt = l.tw * m + 2;
  l.v_elems = a * a * winograd_plane(g.ci, l.max_tiles);
  l.m_elems = a * a * winograd_plane(g.co, l.max_tiles);
  // row transforms; output rows; dy rows, or a zero row and m phase rows
  l.tmp_elems = a * l.wt + m * l.tw * m + std::max(m * l.wt, g.w + m * (l.tw + 1));
  return l;
}

// U[ξ][o][i] = (G f Gᵀ)[ξ] (planes winograd_plane(co, ci) apart) for every filter f = w[o][i] ([co, ci, 3, 3]); with flip, the
// filter of the transposed convolution: f[kh][kw] = w[i][o][2−kh][2−kw] (w is [ci, co, 3, 3],
// o runs over its input channels), which is first written out as such a [co, ci, 3, 3]
// array into flipped (co·ci·9 elements). co, ci: U's own extents. Vectorised across i: at
// 128 channels this runs twice per layer and step, and a scalar version cost 2–5 ms.
template <class F, class T>
void winograd_filter_transform(const T* w, std::int64_t co, std::int64_t ci, bool flip, T* u,
                               T* flipped) {
  if (flip) {
    for (std::int64_t i = 0; i < ci; ++i)
      for (std::int64_t o = 0; o < co; ++o)
        for (int k = 0; k < 9; ++k) flipped[(o * ci + i) * 9 + 8 - k] = w[(i * co + o) * 9 + k];
    w = flipped;
  }
  constexpr int a = F::alpha;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && co * ci >= 4096)
  for (std::int64_t o = 0; o < co; ++o) {
#pragma omp simd
    for (std::int64_t i = 0; i < ci; ++i) {
      T f[9];
#pragma GCC unroll 9
      for (int k = 0; k < 9; ++k) f[k] = w[(o * ci + i) * 9 + k];
      T gf[a][3];  // G f
#pragma GCC unroll 8
      for (int r = 0; r < a; ++r)
#pragma GCC unroll 3
        for (int c = 0; c < 3; ++c) {
          T sum = T(0);
#pragma GCC unroll 3
          for (int k = 0; k < 3; ++k)
            if (F::g[r][k] != 0) sum += static_cast<T>(F::g[r][k]) * f[k * 3 + c];
          gf[r][c] = sum;
        }
#pragma GCC unroll 8
      for (int r = 0; r < a; ++r)
#pragma GCC unroll 8
        for (int s2 = 0; s2 < a; ++s2) {
          T sum = T(0);
#pragma GCC unroll 3
          for (int c = 0; c < 3; ++c)
            if (F::g[s2][c] != 0) sum += gf[r][c] * static_cast<T>(F::g[s2][c]);
          u[(r * a + s2) * winograd_plane(co, ci) + o * ci + i] = sum;
        }
    }
  }
}

// dw[o][i] += Gᵀ dU[·][o][i] G, dU summed over `parts` partial blocks of α² planes.
template <class F, class T>
void winograd_filter_grad_finish(const T* du, int parts, std::int64_t co, std::int64_t ci, T* dw) {
  constexpr int a = F::alpha;
  const std::int64_t block = a * a * winograd_plane(co, ci);
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && co * ci >= 4096)
  for (std::int64_t o = 0; o < co; ++o) {
#pragma omp simd
    for (std::int64_t i = 0; i < ci; ++i) {
      T gd[3][a];  // Gᵀ d, d = Σ_parts dU[·][o][i]
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 8
        for (int s2 = 0; s2 < a; ++s2) gd[kh][s2] = T(0);
#pragma GCC unroll 8
      for (int r = 0; r < a; ++r)
#pragma GCC unroll 8
        for (int s2 = 0; s2 < a; ++s2) {
          T d = T(0);
          for (int p = 0; p < parts; ++p) d += du[p * block + (r * a + s2) * winograd_plane(co, ci) + o * ci + i];
#pragma GCC unroll 3
          for (int kh = 0; kh < 3; ++kh)
            if (F::g[r][kh] != 0) gd[kh][s2] += static_cast<T>(F::g[r][kh]) * d;
        }
#pragma GCC unroll 3
      for (int kh = 0; kh < 3; ++kh)
#pragma GCC unroll 3
        for (int kw = 0; kw < 3; ++kw) {
          T sum = T(0);
#pragma GCC unroll 8
          for (int s2 = 0; s2 < a; ++s2)
            if (F::g[s2][kw] != 0) sum += gd[kh][s2] * static_cast<T>(F::g[s2][kw]);
          dw[(o * ci + i) * 9 + kh * 3 + kw] += sum;
        }
    }
  }
}

namespace winograd_detail {

// out[i][x] = Σ_k c[i][k]·in_k[x] for x < n: the vertical half of a tile transform, across a
// whole row of tiles at once (unit stride). Zero coefficients fold away at compile time.
template <int Rows, int Ins, class T, class C>
inline void combine_rows(const C& c, const T* const* in, std::int64_t n, T* out, std::int64_t ld) {
#pragma omp simd
  for (std::int64_t x = 0; x < n; ++x) {
    T v[Ins];
#pragma GCC unroll 8
    for (int k = 0; k < Ins; ++k) v[k] = in[k][x];
#pragma GCC unroll 8
    for (int i = 0; i < Rows; ++i) {
      T s = T(0);
#pragma GCC unroll 8
      for (int k = 0; k < Ins; ++k)
        if (c[i][k] != 0) s += static_cast<T>(c[i][k]) * v[k];
      out[i * ld + x] = s;
    }
  }
}

}  // namespace winograd_detail

// One chunk's input transform: V[ξ][ci][t] for the tile rows [r0, r1) of all images.
template <class F, class T>
void winograd_input_chunk(const T* x, const conv_geometry& g, const winograd_layout& l,
                          std::int64_t r0, std::int64_t r1, T* v, T* tmp) {
  constexpr int a = F::alpha, m = F::m;
  const std::int64_t T_ = (r1 - r0) * l.tw;
  // tmp rows: a rows of width wt; column c holds input column c − 1 (zeros at the borders).
  for (int i = 0; i < a; ++i) {
    tmp[i * l.wt] = T(0);
    std::fill(tmp + i * l.wt + 1 + g.w, tmp + (i + 1) * l.wt, T(0));
  }
  T* zeros = tmp + a * l.wt + m * l.tw * m;  // a zero row of width ≥ W (the dy-row area)
  std::fill_n(zeros, g.w, T(0));
  const std::int64_t phw = l.tw + 1;
  T* ph = zeros + g.w;  // m phase rows of tw + 1 (in the dy-row area too)
  for (std::int64_t ci = 0; ci < g.ci; ++ci)
    for (std::int64_t gr = r0; gr < r1; ++gr) {
      const std::int64_t n = gr / l.th, R = gr % l.th;
      const T* plane = x + (n * g.ci + ci) * g.h * g.w;
      if (ci + 1 < g.ci) {
        // The next channel's rows for this tile row, a plane away: without the hint each
        // channel's short run of rows started with a stall on memory (large images).
        const std::int64_t h0 = std::max<std::int64_t>(R * m - 1, 0), h1 = std::min<std::int64_t>(R * m + m + 1, g.h);
        const char* p0 = reinterpret_cast<const char*>(plane + g.h * g.w + h0 * g.w);
        const char* p1 = reinterpret_cast<const char*>(plane + g.h * g.w + h1 * g.w);
        for (const char* q = p0; q < p1; q += 64) __builtin_prefetch(q);
      }
      const T* rows[a];
      for (int k = 0; k < a; ++k) {
        const std::int64_t h = R * m - 1 + k;
        rows[k] = h >= 0 && h < g.h ? plane + h * g.w : zeros;
      }
      winograd_detail::combine_rows<a, a>(F::bt, rows, g.w, tmp + 1, l.wt);
      T* vt = v + ci * T_ + (gr - r0) * l.tw;
      for (int i = 0; i < a; ++i) {
        // The row's columns split by phase, ph[p][c] = row[c·m + p], so that the tile
        // loop below reads unit-stride vectors (strided reads there did not vectorise well).
        const T* src = tmp + i * l.wt;
#pragma omp simd
        for (std::int64_t c = 0; c < l.tw; ++c)
#pragma GCC unroll 8
          for (int p = 0; p < m; ++p) ph[p * phw + c] = src[c * m + p];
        ph[l.tw] = src[l.tw * m];
        ph[phw + l.tw] = src[l.tw * m + 1];
#pragma omp simd
        for (std::int64_t c = 0; c < l.tw; ++c) {
          T d[a];
#pragma GCC unroll 8
          for (int k = 0; k < a; ++k) d[k] = ph[(k % m) * phw + c + k / m];
#pragma GCC unroll 8
          for (int j = 0; j < a; ++j) {
            T s = T(0);
#pragma GCC unroll 8
            for (int k = 0; k < a; ++k)
              if (F::bt[j][k] != 0) s += static_cast<T>(F::bt[j][k]) * d[k];
            vt[(i * a + j) * winograd_plane(g.ci, T_) + c] = s;
          }
        }
      }
    }
}

// One chunk's output transform: y (+ bias) for the tile rows [r0, r1) from M[ξ][co][t].
template <class F, class T>
void winograd_output_chunk(const T* mm, const T* b, T* y, const conv_geometry& g,
                           const winograd_layout& l, std::int64_t r0, std::int64_t r1, T* tmp) {
  constexpr int a = F::alpha, m = F::m;
  const std::int64_t T_ = (r1 - r0) * l.tw, row_w = l.tw * m;
  T* out = tmp + a * l.wt;  // m rows of width tw·m
  for (std::int64_t co = 0; co < g.co; ++co) {
    const T bias = b ? b[co] : T(0);
    for (std::int64_t gr = r0; gr < r1; ++gr) {
      const std::int64_t n = gr / l.th, R = gr % l.th;
      const T* mt = mm + co * T_ + (gr - r0) * l.tw;
#pragma omp simd
      for (std::int64_t c = 0; c < l.tw; ++c) {
        T s[a][m];  // (M Aᵀ-side) row sums: s[i][cc] = Σ_j Aᵀ[cc][j]·M[i][j]
#pragma GCC unroll 8
        for (int i = 0; i < a; ++i) {
          T mv[a];
#pragma GCC unroll 8
          for (int j = 0; j < a; ++j) mv[j] = mt[(i * a + j) * winograd_plane(g.co, T_) + c];
#pragma GCC unroll 8
          for (int cc = 0; cc < m; ++cc) {
            T acc = T(0);
#pragma GCC unroll 8
            for (int j = 0; j < a; ++j)
              if (F::at[cc][j] != 0) acc += static_cast<T>(F::at[cc][j]) * mv[j];
            s[i][cc] = acc;
          }
        }
#pragma GCC unroll 8
        for (int r = 0; r < m; ++r)
#pragma GCC unroll 8
          for (int cc = 0; cc < m; ++cc) {
            T acc = bias;
#pragma GCC unroll 8
            for (int i = 0; i < a; ++i)
              if (F::at[r][i] != 0) acc += static_cast<T>(F::at[r][i]) * s[i][cc];
            out[r * row_w + c * m + cc] = acc;
          }
      }
      for (int r = 0; r < m; ++r) {
        const std::int64_t h = R * m + r;
        if (h >= g.ho) break;
        std::memcpy(y + ((n * g.co + co) * g.ho + h) * g.wo, out + r * row_w, sizeof(T) * g.wo);
      }
    }
  }
}

// One chunk's gradient transform: dM[ξ][co][t] = (A dy_t Aᵀ)[ξ] for the tile rows [r0, r1).
template <class F, class T>
void winograd_grad_chunk(const T* dy, const conv_geometry& g, const winograd_layout& l,
                         std::int64_t r0, std::int64_t r1, T* dm, T* tmp) {
  constexpr int a = F::alpha, m = F::m;
  const std::int64_t T_ = (r1 - r0) * l.tw, row_w = l.tw * m;
  // A as rows: A.v[i][r] = Aᵀ[r][i]
  struct transposed {
    double v[a][m];
    constexpr transposed() : v{} {
      for (int i = 0; i < a; ++i)
        for (int r = 0; r < m; ++r) v[i][r] = F::at[r][i];
    }
  };
  static constexpr transposed A{};
  T* u = tmp;                         // a rows of width wt ≥ tw·m
  T* rows_buf = tmp + a * l.wt + m * l.tw * m;  // m dy rows of width wt, zero past W
  for (std::int64_t co = 0; co < g.co; ++co)
    for (std::int64_t gr = r0; gr < r1; ++gr) {
      const std::int64_t n = gr / l.th, R = gr % l.th;
      const T* rows[m];
      for (int r = 0; r < m; ++r) {
        T* dst = rows_buf + r * l.wt;
        const std::int64_t h = R * m + r;
        if (h < g.ho)
          std::memcpy(dst, dy + ((n * g.co + co) * g.ho + h) * g.wo, sizeof(T) * g.wo);
        else
          std::fill_n(dst, g.wo, T(0));
        std::fill(dst + g.wo, dst + row_w, T(0));
        rows[r] = dst;
      }
      winograd_detail::combine_rows<a, m>(A.v, rows, row_w, u, l.wt);
      T* dt = dm + co * T_ + (gr - r0) * l.tw;
      for (int i = 0; i < a; ++i) {
        const T* src = u + i * l.wt;
#pragma omp simd
        for (std::int64_t c = 0; c < l.tw; ++c) {
          T d[m];
#pragma GCC unroll 8
          for (int k = 0; k < m; ++k) d[k] = src[c * m + k];
#pragma GCC unroll 8
          for (int j = 0; j < a; ++j) {
            T s = T(0);
#pragma GCC unroll 8
            for (int k = 0; k < m; ++k)
              if (A.v[j][k] != 0) s += static_cast<T>(A.v[j][k]) * d[k];
            dt[(i * a + j) * winograd_plane(g.co, T_) + c] = s;
          }
        }
      }
    }
}

// y = conv(x, f) + b where u holds the transformed filters f (winograd_filter_transform).
// scratch: threads · l.per_thread() elements.
template <class F, class T>
void winograd_forward(const T* x, const T* u, const T* b, T* y, const conv_geometry& g,
                      const winograd_layout& l, int threads, T* scratch) {
  constexpr int a = F::alpha;
#pragma omp parallel num_threads(threads)
  {
    T* v = scratch + omp_get_thread_num() * l.per_thread();
    T* mm = v + l.v_elems;
    T* tmp = mm + l.m_elems;
#pragma omp for schedule(static)
    for (std::int64_t chunk = 0; chunk < l.chunks; ++chunk) {
      const std::int64_t r0 = chunk * l.rows_per_chunk, r1 = std::min(l.rows, r0 + l.rows_per_chunk);
      const std::int64_t T_ = (r1 - r0) * l.tw;
      winograd_input_chunk<F>(x, g, l, r0, r1, v, tmp);
      for (int xi = 0; xi < a * a; ++xi)
        gemm(trans::no, trans::no, g.co, T_, g.ci, T(1), u + xi * winograd_plane(g.co, g.ci), g.ci,
             v + xi * winograd_plane(g.ci, T_), T_, T(0), mm + xi * winograd_plane(g.co, T_), T_);
      winograd_output_chunk<F>(mm, b, y, g, l, r0, r1, tmp);
    }
  }
}

// du [threads][α² planes of Co×Ci] = the per-thread sums of dM[ξ]·V[ξ]ᵀ over all chunks (zeroed
// here); finish with winograd_filter_grad_finish. scratch: threads · l.per_thread().
template <class F, class T>
void winograd_filter_grad(const T* x, const T* dy, const conv_geometry& g,
                          const winograd_layout& l, int threads, T* du, T* scratch) {
  constexpr int a = F::alpha;
  const std::int64_t block = a * a * winograd_plane(g.co, g.ci);
#pragma omp parallel num_threads(threads)
  {
    const int t_id = omp_get_thread_num();
    T* v = scratch + t_id * l.per_thread();
    T* dm = v + l.v_elems;
    T* tmp = dm + l.m_elems;
    T* acc = du + t_id * block;
    std::fill_n(acc, block, T(0));
#pragma omp for schedule(static)
    for (std::int64_t chunk = 0; chunk < l.chunks; ++chunk) {
      const std::int64_t r0 = chunk * l.rows_per_chunk, r1 = std::min(l.rows, r0 + l.rows_per_chunk);
      const std::int64_t T_ = (r1 - r0) * l.tw;
      winograd_input_chunk<F>(x, g, l, r0, r1, v, tmp);
      winograd_grad_chunk<F>(dy, g, l, r0, r1, dm, tmp);
      for (int xi = 0; xi < a * a; ++xi)
        gemm(trans::no, trans::yes, g.co, g.ci, T_, T(1), dm + xi * winograd_plane(g.co, T_), T_,
             v + xi * winograd_plane(g.ci, T_), T_, T(1), acc + xi * winograd_plane(g.co, g.ci), g.ci);
    }
  }
}

}  // namespace ambiseg::ops::cpu_kernels

#if defined(AMBISEG_WINOGRAD_OPTIMIZE_PUSHED)
#pragma GCC pop_options
#undef AMBISEG_WINOGRAD_OPTIMIZE_PUSHED
#endif
