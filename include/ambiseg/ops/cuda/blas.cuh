// ambiseg/ops/cuda/blas.cuh — linear layer and legacy QKV attention through cuBLAS.
//
// Row-major vs column-major. Our tensors are row-major; cuBLAS is column-major. A row-major
// matrix X [R, C] with leading dimension ld is, read column-major, Xᵀ [C, R] with the same
// ld. So the row-major product C = op(A)·op(B) [M, N] is computed as the column-major
//   Cᵀ = op(B)ᵀ·op(A)ᵀ  [N, M]:  cublasGemm(opB, opA, N, M, K, B, ldb, A, lda, C, ldc)
// i.e. swap the operands and the M/N extents and keep each operand's own transpose flag.
// gemm_rm below is the only place that knows this; every caller writes row-major maths.
//
//   linear:    x [N,In]  w [Out,In]  y [N,Out] = x·wᵀ (+ b);  dx = dy·w;  dw += dyᵀ·x
//   attention: per head h (B·heads of them, one strided-batched GEMM each):
//     q, k, v [ch, T] at qkv + h·3ch·T + {0, ch·T, 2ch·T}; s² = 1/√ch
//     P = softmax_rows(s²·QᵀK) [T,T];  Y = V·Pᵀ [ch,T]
//     dV = dY·P;  dP = dYᵀ·V;  dS = P ⊙ (dP − rowsum(dP ⊙ P));  dQ = s²·K·dSᵀ;  dK = s²·Q·dS
//
// Compute types: float uses CUBLAS_COMPUTE_32F (cuda_precision::fp32) or
// CUBLAS_COMPUTE_32F_FAST_TF32 (tf32); on a bf16/fp16 context A and B are rounded to 16
// bits in scratch (ops/cuda/mixed.cuh) and multiplied on tensor cores with CUBLAS_COMPUTE_32F,
// C stays float. double uses CUBLAS_COMPUTE_64F on every context.
#pragma once

#include <cublas_v2.h>

#include <climits>
#include <cmath>

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"
#include "ambiseg/ops/cuda/elementwise.cuh"
#include "ambiseg/ops/cuda/mixed.cuh"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

inline int blas_int(const char* what, std::int64_t v) {
  throw_if<shape_error>(v < 0 || v > INT_MAX, "cuBLAS: ", what, " = ", v,
                        " does not fit the 32-bit GEMM interface");
  return static_cast<int>(v);
}

// The elements a row-major operand spans: `rows` rows of `cols` (leading dimension ld),
// `batch` of them `stride` apart (stride 0: one matrix shared by the batch).
inline std::int64_t operand_span(std::int64_t rows, std::int64_t cols, std::int64_t ld,
                                 std::int64_t stride, std::int64_t batch) {
  if (rows == 0 || cols == 0 || batch == 0) return 0;
  return (rows - 1) * ld + cols + (batch - 1) * stride;
}

// Row-major C[M,N] (ldc, stride sc) = alpha·op(A)·op(B) + beta·C for `batch` matrices.
template <class T>
void gemm_rm(cuda_context& ctx, bool trans_a, bool trans_b, std::int64_t m, std::int64_t n,
             std::int64_t k, T alpha, const T* a, std::int64_t lda, std::int64_t stride_a,
             const T* b, std::int64_t ldb, std::int64_t stride_b, T beta, T* c, std::int64_t ldc,
             std::int64_t stride_c, std::int64_t batch = 1) {
  if (m == 0 || n == 0 || batch == 0) return;
  constexpr cudaDataType_t type = std::same_as<T, float> ? CUDA_R_32F : CUDA_R_64F;
  const cuda_precision precision = ctx.options().precision;
  const bool narrowed = std::same_as<T, float> && sixteen_bit(precision) && k > 0;
  const cublasComputeType_t compute =
      std::same_as<T, double> ? CUBLAS_COMPUTE_64F
      : precision == cuda_precision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                          : CUBLAS_COMPUTE_32F;
  const void* a_operand = a;
  const void* b_operand = b;
  cudaDataType_t operand_type = type;
  cuda_buffer a16, b16;  // returned to the stream's cache after the GEMM is enqueued
  if (narrowed) {
    const half_format f = format_of(precision);
    operand_type = f == half_format::bf16 ? CUDA_R_16BF : CUDA_R_16F;
    const std::int64_t span_a = operand_span(trans_a ? k : m, trans_a ? m : k, lda, stride_a, batch);
    const std::int64_t span_b = operand_span(trans_b ? n : k, trans_b ? k : n, ldb, stride_b, batch);
    a16 = ctx.scratch(sizeof(std::uint16_t) * static_cast<std::size_t>(span_a));
    b16 = ctx.scratch(sizeof(std::uint16_t) * static_cast<std::size_t>(span_b));
    narrow(ctx.stream(), f, reinterpret_cast<const float*>(a), static_cast<std::uint16_t*>(a16.data()), span_a);
    narrow(ctx.stream(), f, reinterpret_cast<const float*>(b), static_cast<std::uint16_t*>(b16.data()), span_b);
    a_operand = a16.data();
    b_operand = b16.data();
  }
  // k == 0 is a valid product (C = beta·C); cuBLAS needs lda/ldb ≥ 1 regardless.
  cublas_check(cublasGemmStridedBatchedEx(
                   ctx.cublas(), trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                   trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, blas_int("n", n), blas_int("m", m),
                   blas_int("k", k), &alpha, b_operand, operand_type,
                   blas_int("ldb", std::max<std::int64_t>(ldb, 1)), stride_b, a_operand,
                   operand_type, blas_int("lda", std::max<std::int64_t>(lda, 1)), stride_a,
                   &beta, c, type, blas_int("ldc", ldc), stride_c, blas_int("batch", batch),
                   compute, CUBLAS_GEMM_DEFAULT),
               "cublasGemmStridedBatchedEx");
}

// db[o] += Σ_i dy[i, o]: one thread per column, rows in order (deterministic).
template <class T>
__global__ void column_sum_accumulate_kernel(const T* dy, std::int64_t rows, std::int64_t cols,
                                             T* db) {
  for (std::int64_t o = global_thread(); o < cols; o += grid_stride()) {
    T sum = T(0);
    for (std::int64_t i = 0; i < rows; ++i) sum += dy[i * cols + o];
    db[o] += sum;
  }
}

// y[i, o] += b[o] over a row-major [rows, cols] matrix.
template <class T>
__global__ void column_bias_kernel(T* y, const T* b, std::int64_t count, std::int64_t cols) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) y[i] += b[i % cols];
}

}  // namespace detail

template <cuda_scalar T>
void linear_forward(in_view<T, cuda> x, in_view<T, cuda> w, in_view<T, cuda> b,
                    tensor_view<T, cuda> y) {
  const char* op = "linear_forward";
  detail::linear_check(op, x.shape(), w.shape());
  const std::int64_t n = x.size(0), in = x.size(1), out = w.size(0);
  const bool has_b = detail::present(b);
  if (has_b) expect_shape(op, "b", b, shape{out});
  expect_shape(op, "y", y, shape{n, out});
  cuda_context& ctx = current_cuda_context();
  detail::gemm_rm<T>(ctx, false, true, n, out, in, T(1), x.data(), in, 0, w.data(), in, 0, T(0),
                     y.data(), out, 0);
  if (has_b && y.numel() > 0) {
    AMBISEG_LAUNCH(detail::grid_for(y.numel()), detail::block_threads, 0, ctx.stream(),
                   detail::column_bias_kernel<T>)(
        y.data(), b.data(), y.numel(), out);
    detail::check_launch("column_bias_kernel");
  }
}

template <cuda_scalar T>
void linear_backward(in_view<T, cuda> x, in_view<T, cuda> w, in_view<T, cuda> dy,
                     out_view<T, cuda> dx, tensor_view<T, cuda> dw, out_view<T, cuda> db) {
  const char* op = "linear_backward";
  detail::linear_check(op, x.shape(), w.shape());
  const std::int64_t n = x.size(0), in = x.size(1), out = w.size(0);
  expect_shape(op, "dy", dy, shape{n, out});
  const bool has_dx = detail::present(dx), has_dw = detail::present(dw),
             has_db = detail::present(db);
  if (has_dx) expect_shape(op, "dx", dx, x.shape());
  if (has_dw) expect_shape(op, "dw", dw, w.shape());
  if (has_db) expect_shape(op, "db", db, shape{out});
  cuda_context& ctx = current_cuda_context();
  if (has_dx)  // dx [N,In] = dy [N,Out] · w [Out,In]
    detail::gemm_rm<T>(ctx, false, false, n, in, out, T(1), dy.data(), out, 0, w.data(), in, 0,
                       T(0), dx.data(), in, 0);
  if (has_dw)  // dw [Out,In] += dyᵀ · x
    detail::gemm_rm<T>(ctx, true, false, out, in, n, T(1), dy.data(), out, 0, x.data(), in, 0,
                       T(1), dw.data(), in, 0);
  if (has_db && out > 0) {
    AMBISEG_LAUNCH(detail::grid_for(out), detail::block_threads, 0, ctx.stream(),
                   detail::column_sum_accumulate_kernel<T>)(
        dy.data(), n, out, db.data());
    detail::check_launch("column_sum_accumulate_kernel");
  }
}

template <cuda_scalar T>
void attention_forward(in_view<T, cuda> qkv, int heads, tensor_view<T, cuda> y,
                       out_view<T, cuda> probs,
                       workspace<cuda>& /*ws: the forward's scratch is probs itself*/) {
  const char* op = "attention_forward";
  const auto d = detail::attention_check(op, qkv.shape(), heads);
  expect_shape(op, "y", y, shape{d.b, d.c, d.t});
  expect_shape(op, "probs", probs, shape{d.bh, d.t, d.t});
  if (d.bh == 0 || d.t == 0) return;
  cuda_context& ctx = current_cuda_context();
  const T s2 = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d.ch)));
  const std::int64_t t = d.t, ch = d.ch, head = 3 * ch * t;
  const T* q = qkv.data();
  const T* k = q + ch * t;
  const T* v = k + ch * t;
  // P [T,T] = s²·Qᵀ·K, then softmax over keys (rows).
  detail::gemm_rm<T>(ctx, true, false, t, t, ch, s2, q, t, head, k, t, head, T(0), probs.data(),
                     t, t * t, d.bh);
  detail::launch_softmax_rows(ctx.stream(), probs.data(), probs.data(), d.bh * t, t);
  // Y [ch,T] = V·Pᵀ
  detail::gemm_rm<T>(ctx, false, true, ch, t, t, T(1), v, t, head, probs.data(), t, t * t, T(0),
                     y.data(), t, ch * t, d.bh);
}

template <cuda_scalar T>
void attention_backward(in_view<T, cuda> qkv, in_view<T, cuda> probs, in_view<T, cuda> dy,
                        int heads, tensor_view<T, cuda> dqkv, workspace<cuda>& ws) {
  const char* op = "attention_backward";
  const auto d = detail::attention_check(op, qkv.shape(), heads);
  expect_shape(op, "probs", probs, shape{d.bh, d.t, d.t});
  expect_shape(op, "dy", dy, shape{d.b, d.c, d.t});
  expect_shape(op, "dqkv", dqkv, qkv.shape());
  if (d.bh == 0 || d.t == 0) return;
  cuda_context& ctx = current_cuda_context();
  const T s2 = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d.ch)));
  const std::int64_t t = d.t, ch = d.ch, head = 3 * ch * t, tt = t * t;
  const T* q = qkv.data();
  const T* k = q + ch * t;
  const T* v = k + ch * t;
  T* dq = dqkv.data();
  T* dk = dq + ch * t;
  T* dv = dk + ch * t;
  T* ds = ws.get<T>(static_cast<std::size_t>(d.bh * tt));
  const T* p = probs.data();
  // dV [ch,T] = dY·P
  detail::gemm_rm<T>(ctx, false, false, ch, t, t, T(1), dy.data(), t, ch * t, p, t, tt, T(0), dv,
                     t, head, d.bh);
  // dP [T,T] = dYᵀ·V, then dS = P ⊙ (dP − rowsum(dP ⊙ P)) in place
  detail::gemm_rm<T>(ctx, true, false, t, t, ch, T(1), dy.data(), t, ch * t, v, t, head, T(0), ds,
                     t, tt, d.bh);
  detail::launch_softmax_rows_backward(ctx.stream(), p, ds, ds, d.bh * t, t);
  // dQ [ch,T] = s²·K·dSᵀ;  dK [ch,T] = s²·Q·dS
  detail::gemm_rm<T>(ctx, false, true, ch, t, t, s2, k, t, head, ds, t, tt, T(0), dq, t, head, d.bh);
  detail::gemm_rm<T>(ctx, false, false, ch, t, t, s2, q, t, head, ds, t, tt, T(0), dk, t, head, d.bh);
}

}  // namespace ambiseg::ops::cuda_kernels
