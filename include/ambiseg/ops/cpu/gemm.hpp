// ambiseg/ops/cpu/gemm.hpp — row-major GEMM over OpenBLAS's cblas_sgemm/cblas_dgemm.
//
//   C[M,N] = alpha · op(A)[M,K] · op(B)[K,N] + beta · C      (row-major, leading dims)
//
// OpenBLAS is the OpenMP build: called outside a parallel region it uses the OpenMP pool,
// inside one it runs single-threaded on the calling thread — which is how ops run images
// in parallel with single-threaded GEMMs.
//
// The one switch between float and bfloat16 products on the CPU: with the matmul
// precision set to bf16, every float GEMM of the ops (convolutions in all their paths,
// attention, linear layers) rounds its operands to bf16 and accumulates in float
// (gemm_bf16.hpp), the arithmetic of mixed-precision training; everything else (the
// tensors, GroupNorm's and softmax's statistics, the optimiser) stays float.
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "ambiseg/ops/cpu/gemm_bf16.hpp"

namespace ambiseg::ops::cpu_kernels {

enum class trans : bool { no = false, yes = true };

enum class matmul_precision { fp32, bf16 };

namespace gemm_detail {
inline matmul_precision& precision_setting() {
  static matmul_precision p = matmul_precision::fp32;
  return p;
}
}  // namespace gemm_detail

inline matmul_precision cpu_matmul_precision() { return gemm_detail::precision_setting(); }

// Throws std::runtime_error for bf16 on a CPU without AVX512-BF16 (the caller decides
// whether to fall back to fp32 and says so).
inline void set_cpu_matmul_precision(matmul_precision p) {
  if (p == matmul_precision::bf16 && !cpu_has_avx512_bf16())
    throw std::runtime_error(
        "bf16 matrix products need a CPU with AVX512-BF16 (AMD Zen 4, Intel Cooper Lake / Sapphire Rapids or "
        "later); this CPU lacks it");
  gemm_detail::precision_setting() = p;
}

template <class T>
inline void gemm(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k, T alpha,
                 const T* a, std::int64_t lda, const T* b, std::int64_t ldb, T beta, T* c,
                 std::int64_t ldc) {
  if (m == 0 || n == 0) return;
  const auto cta = ta == trans::yes ? CblasTrans : CblasNoTrans;
  const auto ctb = tb == trans::yes ? CblasTrans : CblasNoTrans;
  if (k == 0) {  // BLAS would still scale C; keep that meaning without touching A or B.
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) c[i * ldc + j] = beta == T(0) ? T(0) : beta * c[i * ldc + j];
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (cpu_matmul_precision() == matmul_precision::bf16) {
      gemm_bf16(ta == trans::yes, tb == trans::yes, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
      return;
    }
    cblas_sgemm(CblasRowMajor, cta, ctb, static_cast<blasint>(m), static_cast<blasint>(n),
                static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
                static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  } else {
    cblas_dgemm(CblasRowMajor, cta, ctb, static_cast<blasint>(m), static_cast<blasint>(n),
                static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
                static_cast<blasint>(ldb), beta, c, static_cast<blasint>(ldc));
  }
}

// The same product with C's columns split into pieces of at most max_mnk / (M·K) columns
// (a multiple of 16). OpenBLAS multiplies matrices with M·N·K ≤ 10⁶ by an unpacked
// small-matrix kernel; for thin products (K or M of 32) that skips packing costs larger
// than the product's own (see attention.hpp for the measured gain).
template <class T>
inline void gemm_column_pieces(trans ta, trans tb, std::int64_t m, std::int64_t n, std::int64_t k,
                               T alpha, const T* a, std::int64_t lda, const T* b,
                               std::int64_t ldb, T beta, T* c, std::int64_t ldc,
                               std::int64_t max_mnk) {
  std::int64_t piece = max_mnk / std::max<std::int64_t>(m * k, 1);
  piece = piece >= 16 ? piece / 16 * 16 : std::max<std::int64_t>(piece, 1);
  for (std::int64_t c0 = 0; c0 < n; c0 += piece)
    gemm(ta, tb, m, std::min(piece, n - c0), k, alpha, a, lda,
         tb == trans::no ? b + c0 : b + c0 * ldb, ldb, beta, c + c0, ldc);
}

}  // namespace ambiseg::ops::cpu_kernels
