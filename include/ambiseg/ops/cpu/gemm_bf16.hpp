// ambiseg/ops/cpu/gemm_bf16.hpp — row-major GEMM with bfloat16 operands and float
// accumulation on CPUs with AVX512-BF16 (Zen 4, Sapphire Rapids and later).
//
//   C[M,N] = alpha · bf16(op(A))[M,K] · bf16(op(B))[K,N] + beta · C      (float in and out)
//
// A and B are float in memory; packing rounds them to bfloat16 (round to nearest even), so
// this is the arithmetic of a mixed-precision ("autocast") product: every product of two
// bf16 values is exact in float, and the sums are float sums. vdpbf16ps multiplies pairs
// along K, so both packed operands hold (k, k+1) pairs in one 32-bit lane:
//   B panel, NR = 32 columns: bp[k2][c] = (B[2·k2][c], B[2·k2+1][c])     two zmm per k2
//   A block, MR = 12 rows:    ap[r][k2] = (A[r][2·k2], A[r][2·k2+1])     broadcast per row
// and the micro-kernel keeps a 12×32 tile of C in 24 registers. Blocking as in BLIS:
// NC columns of B, KC of K, MC rows of A per packed block (sizes below, for a 1 MB L2).
//
// Why: one vdpbf16ps does 32 multiply-adds where an fp32 FMA does 16. Measured on this
// Zen 4 (one thread, packed operands in cache): the micro-kernel 222 GFLOP/s against
// OpenBLAS sgemm's 90 on the same shape. The kernels are compiled for AVX512-BF16 by
// function attribute and chosen at run time (cpu_has_avx512_bf16), so a build for another
// x86 CPU still compiles and never runs them.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "ambiseg/core/low_precision.hpp"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AMBISEG_HAVE_BF16_KERNELS 1
#else
#define AMBISEG_HAVE_BF16_KERNELS 0
#endif

namespace ambiseg::ops::cpu_kernels {

inline bool cpu_has_avx512_bf16() {
#if AMBISEG_HAVE_BF16_KERNELS
  static const bool has = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
  return has;
#else
  return false;
#endif
}

// Rounding to bfloat16 is core/low_precision.hpp's, shared with the CUDA kernels.
using ::ambiseg::bf16_bits;
inline float bf16_round(float f) { return bf16_float(bf16_bits(f)); }
inline std::uint32_t bf16_pair(float lo, float hi) {
  return std::uint32_t(bf16_bits(lo)) | (std::uint32_t(bf16_bits(hi)) << 16);
}

namespace bf16_detail {

constexpr std::int64_t mr = 12, nr = 32;
constexpr std::int64_t kc = 256, mc = 96, nc = 2048;  // kc even

// op(X)[r][k] of a row-major X with leading dimension ld (transposed: X[k][r]).
struct operand {
  const float* p;
  std::int64_t ld;
  bool transposed;
  float at(std::int64_t r, std::int64_t k) const { return transposed ? p[k * ld + r] : p[r * ld + k]; }
};

// A rows [i0, i0+m) × K [k0, k0+k) into ceil(m/mr) micro-panels of mr rows × kc2 = ceil(k/2)
// pairs (row by row, so the untransposed case converts unit-stride runs), zero-padded past
// m and k.
inline void pack_a(const operand& a, std::int64_t i0, std::int64_t m, std::int64_t k0, std::int64_t k,
                   std::uint32_t* ap) {
  const std::int64_t k2n = (k + 1) / 2, full = k / 2;
  for (std::int64_t ib = 0; ib < m; ib += mr) {
    std::uint32_t* panel = ap + (ib / mr) * k2n * mr;
    for (std::int64_t r = 0; r < mr; ++r) {
      std::uint32_t* dst = panel + r * k2n;
      const std::int64_t i = ib + r;
      if (i >= m) {
        std::fill_n(dst, k2n, 0u);
        continue;
      }
      if (!a.transposed) {
        const float* row = a.p + (i0 + i) * a.ld + k0;
#pragma omp simd
        for (std::int64_t k2 = 0; k2 < full; ++k2) dst[k2] = bf16_pair(row[2 * k2], row[2 * k2 + 1]);
        if (k % 2) dst[k2n - 1] = bf16_pair(row[k - 1], 0.f);
      } else {
        const float* col = a.p + k0 * a.ld + i0 + i;  // op(A)[i][kk] = A[kk][i]
        for (std::int64_t k2 = 0; k2 < full; ++k2) dst[k2] = bf16_pair(col[2 * k2 * a.ld], col[(2 * k2 + 1) * a.ld]);
        if (k % 2) dst[k2n - 1] = bf16_pair(col[(k - 1) * a.ld], 0.f);
      }
    }
  }
}

// op(B) rows (K) [k0, k0+k) × columns [j0, j0+n) into ceil(n/nr) micro-panels of kc2 pairs
// × nr, zero-padded past n and k.
inline void pack_b(const operand& b, std::int64_t j0, std::int64_t n, std::int64_t k0, std::int64_t k,
                   std::uint32_t* bp) {
  const std::int64_t k2n = (k + 1) / 2;
  for (std::int64_t jb = 0; jb < n; jb += nr) {
    std::uint32_t* dst = bp + (jb / nr) * k2n * nr;
    const std::int64_t w = std::min(nr, n - jb);
    for (std::int64_t k2 = 0; k2 < k2n; ++k2) {
      const std::int64_t kk = k0 + 2 * k2;
      const bool odd_tail = 2 * k2 + 1 >= k;
      std::uint32_t* out = dst + k2 * nr;
      if (!b.transposed) {  // op(B) = B row-major [K, N]: two rows, unit stride in j
        const float* r0 = b.p + kk * b.ld + j0 + jb;
        const float* r1 = odd_tail ? nullptr : r0 + b.ld;
        if (r1) {
#pragma omp simd
          for (std::int64_t c = 0; c < w; ++c) out[c] = bf16_pair(r0[c], r1[c]);
        } else {
          for (std::int64_t c = 0; c < w; ++c) out[c] = bf16_pair(r0[c], 0.f);
        }
      } else {  // op(B) = Bᵀ, B row-major [N, K]: each column's pair is adjacent in memory
        for (std::int64_t c = 0; c < w; ++c) {
          const float* col = b.p + (j0 + jb + c) * b.ld + kk;
          out[c] = bf16_pair(col[0], odd_tail ? 0.f : col[1]);
        }
      }
      for (std::int64_t c = w; c < nr; ++c) out[c] = 0;
    }
  }
}

#if AMBISEG_HAVE_BF16_KERNELS
// tile[mr][nr] = Σ_k2 ap[r][k2] · bp[k2][c] (bf16 pairs, float sums); B's rows of pairs are
// ldb apart (nr in a packed panel; benchmarks/winograd_bf16_probe reads unpacked rows).
// (noinline: inlined into the blocked loops it lost registers and reloaded B from the stack)
__attribute__((target("avx512f,avx512bf16"), noinline)) inline void micro_kernel(std::int64_t k2n, const std::uint32_t* ap,
                                                                      const std::uint32_t* bp, std::int64_t ldb,
                                                                      float* tile) {
  __m512 acc[mr][2];
#pragma GCC unroll 12
  for (int r = 0; r < mr; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (std::int64_t k2 = 0; k2 < k2n; ++k2) {
    const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp + k2 * ldb);
    const __m512bh b1 = (__m512bh)_mm512_loadu_si512(bp + k2 * ldb + 16);
#pragma GCC unroll 12
    for (int r = 0; r < mr; ++r) {
      const __m512bh a = (__m512bh)_mm512_set1_epi32(static_cast<int>(ap[r * k2n + k2]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], a, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], a, b1);
    }
  }
#pragma GCC unroll 12
  for (int r = 0; r < mr; ++r) {
    _mm512_storeu_ps(tile + r * nr, acc[r][0]);
    _mm512_storeu_ps(tile + r * nr + 16, acc[r][1]);
  }
}
#endif

// C[rows, cols] (ldc) = first ? alpha·tile + beta·C : C + alpha·tile; beta 0 never reads C.
inline void store_tile(const float* tile, std::int64_t rows, std::int64_t cols, float alpha, float beta,
                       bool first, float* c, std::int64_t ldc) {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* cr = c + r * ldc;
    const float* t = tile + r * nr;
    if (!first) {
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) cr[j] += alpha * t[j];
    } else if (beta == 0.f) {
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) cr[j] = alpha * t[j];
    } else {
#pragma omp simd
      for (std::int64_t j = 0; j < cols; ++j) cr[j] = alpha * t[j] + beta * cr[j];
    }
  }
}

}  // namespace bf16_detail

// The product above. Needs cpu_has_avx512_bf16() (callers check; see ops/cpu/gemm.hpp).
// Outside a parallel region it splits the column panels' tiles over the OpenMP threads.
inline void gemm_bf16(bool trans_a, bool trans_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
                      const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float beta, float* c,
                      std::int64_t ldc) {
#if AMBISEG_HAVE_BF16_KERNELS
  using namespace bf16_detail;
  if (m == 0 || n == 0) return;
  if (k == 0) {  // BLAS's meaning: C scaled by beta
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == 0.f ? 0.f : beta * c[i * ldc + j];
    return;
  }
  const operand A{a, lda, trans_a}, B{b, ldb, trans_b};
  const std::int64_t k2cap = (std::min(kc, k) + 1) / 2;
  const std::int64_t ncap = std::min(nc, (n + nr - 1) / nr * nr), mcap = std::min(mc, (m + mr - 1) / mr * mr);
  // Packed blocks live per thread and grow once (no allocation in the steady state).
  thread_local std::vector<std::uint32_t> bpack;
  bpack.resize(std::max(bpack.size(), static_cast<std::size_t>(k2cap * ncap)));
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  for (std::int64_t j0 = 0; j0 < n; j0 += nc) {
    const std::int64_t nb = std::min(nc, n - j0);
    for (std::int64_t k0 = 0; k0 < k; k0 += kc) {
      const std::int64_t kb = std::min(kc, k - k0), k2n = (kb + 1) / 2;
      const bool first = k0 == 0;
      pack_b(B, j0, nb, k0, kb, bpack.data());
      const std::uint32_t* bp = bpack.data();
      for (std::int64_t i0 = 0; i0 < m; i0 += mc) {
        const std::int64_t mb = std::min(mc, m - i0);
        // Each thread packs its own copy of the A block: small (mc·kc), and no barrier.
        const std::int64_t tiles_i = (mb + mr - 1) / mr, tiles_j = (nb + nr - 1) / nr;
        auto block = [&](int team, int member) {
          thread_local std::vector<std::uint32_t> ap_local;
          ap_local.resize(std::max(ap_local.size(), static_cast<std::size_t>(mcap * k2cap)));
          pack_a(A, i0, mb, k0, kb, ap_local.data());
          alignas(64) float tile[mr * nr];
          for (std::int64_t t = member; t < tiles_i * tiles_j; t += team) {
            const std::int64_t tj = t / tiles_i, ti = t % tiles_i;
            micro_kernel(k2n, ap_local.data() + ti * k2n * mr, bp + tj * k2n * nr, nr, tile);
            const std::int64_t rows = std::min(mr, mb - ti * mr), cols = std::min(nr, nb - tj * nr);
            store_tile(tile, rows, cols, alpha, beta, first, c + (i0 + ti * mr) * ldc + j0 + tj * nr, ldc);
          }
        };
        if (threads > 1 && tiles_i * tiles_j >= 4 * threads) {
#pragma omp parallel num_threads(threads)
          block(omp_get_num_threads(), omp_get_thread_num());
        } else {
          block(1, 0);  // (an OpenMP region costs about a microsecond: as much as a small product)
        }
      }
    }
  }
#else
  (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb,
      (void)beta, (void)c, (void)ldc;
#endif
}

}  // namespace ambiseg::ops::cpu_kernels
