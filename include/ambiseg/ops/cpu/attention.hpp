// ambiseg/ops/cpu/attention.hpp — the reference's legacy QKV attention.
//
//   qkv [B·heads, 3·ch, T] (rows: q | k | v of this head)  probs [B·heads, T, T]
//   y [B·heads, ch, T]   s² = 1/√ch   (q·s)ᵀ(k·s) = s²·qᵀk
//
// Per head, with GEMMs (each head is independent; heads run in parallel with
// single-threaded GEMMs):
//   S = s²·QᵀK [T,T];  P = softmax_rows(S);  A = V·Pᵀ [ch,T]
//   dV = dA·P;  dP = dAᵀ·V;  dS = P ⊙ (dP − rowsum(dP ⊙ P));  dQ = s²·K·dSᵀ;  dK = s²·Q·dS
#pragma once

#include <omp.h>

#include <cmath>
#include <cstdint>

#include "ambiseg/core/workspace.hpp"
#include "ambiseg/ops/cpu/gemm.hpp"
#include "ambiseg/ops/cpu/math.hpp"

namespace ambiseg::ops::cpu_kernels {

// Every attention GEMM has a side of ch = 32 at the reference's 128 channels and 4 heads
// (K for QᵀK and dAᵀV, M for the rest), so OpenBLAS's packing costs as much as the
// product. Split into pieces of M·N·K ≤ this, they run through its unpacked small-matrix
// kernel: forward+backward at [8,128,256], 4 heads, one thread, loaded machine: 13.1 ms →
// 10.0 ms (10⁶: 12.3 ms, 3·10⁵: 10.8 ms).
inline constexpr std::int64_t attention_gemm_max_mnk = 150000;

template <class T>
void softmax_rows(T* p, std::int64_t rows, std::int64_t cols) {
  for (std::int64_t r = 0; r < rows; ++r) {
    T* row = p + r * cols;
    T mx = row[0];
#pragma omp simd reduction(max : mx)
    for (std::int64_t j = 1; j < cols; ++j) mx = row[j] > mx ? row[j] : mx;
    T sum = T(0);
#pragma omp simd reduction(+ : sum)
    for (std::int64_t j = 0; j < cols; ++j) {
      const T e = fast_exp(row[j] - mx);
      row[j] = e;
      sum += e;
    }
    const T inv = T(1) / sum;
#pragma omp simd
    for (std::int64_t j = 0; j < cols; ++j) row[j] *= inv;
  }
}

template <class T>
void attention_forward(const T* qkv, std::int64_t bh, std::int64_t ch, std::int64_t t, T* y,
                       T* probs) {
  const T s2 = static_cast<T>(1.0 / std::sqrt(static_cast<double>(ch)));
#pragma omp parallel for schedule(static)
  for (std::int64_t h = 0; h < bh; ++h) {
    const T* q = qkv + h * 3 * ch * t;
    const T* k = q + ch * t;
    const T* v = k + ch * t;
    T* p = probs + h * t * t;
    gemm_column_pieces(trans::yes, trans::no, t, t, ch, s2, q, t, k, t, T(0), p, t, attention_gemm_max_mnk);
    softmax_rows(p, t, t);
    gemm_column_pieces(trans::no, trans::yes, ch, t, t, T(1), v, t, p, t, T(0), y + h * ch * t, t, attention_gemm_max_mnk);
  }
}

// scratch: threads × T·T elements.
template <class T>
void attention_backward(const T* qkv, const T* probs, const T* dy, std::int64_t bh,
                        std::int64_t ch, std::int64_t t, T* dqkv, workspace<cpu>& ws) {
  const T s2 = static_cast<T>(1.0 / std::sqrt(static_cast<double>(ch)));
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  T* scratch = ws.get<T>(static_cast<std::size_t>(threads * t * t));
#pragma omp parallel num_threads(threads)
  {
    T* ds = scratch + omp_get_thread_num() * t * t;
#pragma omp for schedule(static)
    for (std::int64_t h = 0; h < bh; ++h) {
      const T* q = qkv + h * 3 * ch * t;
      const T* k = q + ch * t;
      const T* v = k + ch * t;
      const T* p = probs + h * t * t;
      const T* da = dy + h * ch * t;
      T* dq = dqkv + h * 3 * ch * t;
      T* dk = dq + ch * t;
      T* dv = dk + ch * t;
      gemm_column_pieces(trans::no, trans::no, ch, t, t, T(1), da, t, p, t, T(0), dv, t, attention_gemm_max_mnk);
      gemm_column_pieces(trans::yes, trans::no, t, t, ch, T(1), da, t, v, t, T(0), ds, t, attention_gemm_max_mnk);
      for (std::int64_t r = 0; r < t; ++r) {
        T* dr = ds + r * t;
        const T* pr = p + r * t;
        T dot = T(0);
#pragma omp simd reduction(+ : dot)
        for (std::int64_t j = 0; j < t; ++j) dot += dr[j] * pr[j];
#pragma omp simd
        for (std::int64_t j = 0; j < t; ++j) dr[j] = pr[j] * (dr[j] - dot);
      }
      gemm_column_pieces(trans::no, trans::yes, ch, t, t, s2, k, t, ds, t, T(0), dq, t, attention_gemm_max_mnk);
      gemm_column_pieces(trans::no, trans::no, ch, t, t, s2, q, t, ds, t, T(0), dk, t, attention_gemm_max_mnk);
    }
  }
}

}  // namespace ambiseg::ops::cpu_kernels
