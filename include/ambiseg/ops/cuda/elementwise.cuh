// ambiseg/ops/cuda/elementwise.cuh — SiLU, tanh, ReLU, add, channel bias, spatial mean,
// nearest upsample, concat, time embedding and row softmax on the GPU.
//
//   h [N,C,S] (S = H·W)  e [N,C]   x [N,C,H,W] -> y [N,C,2H,2W]   rows [R, L] for softmax
// Elementwise kernels are grid-stride loops over 64-bit indices. Reductions (channel-bias
// backward, spatial mean, softmax) use one block per row with the fixed-tree block
// reductions of core/cuda/reductions.cuh: deterministic.
#pragma once

#include <cmath>

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

template <class T>
__global__ void silu_forward_kernel(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = x[i] * sigmoid(x[i]);
}
template <class T>
__global__ void silu_backward_kernel(const T* x, const T* dy, T* dx, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const T s = sigmoid(x[i]);
    dx[i] = dy[i] * (s * (T(1) + x[i] * (T(1) - s)));
  }
}
template <class T>
__global__ void tanh_forward_kernel(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = tanh(x[i]);
}
template <class T>
__global__ void tanh_backward_kernel(const T* y, const T* dy, T* dx, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) dx[i] = dy[i] * (T(1) - y[i] * y[i]);
}
// x < 0 ? 0 : x lets a NaN through, as the CPU kernel and torch.relu.
template <class T>
__global__ void relu_forward_kernel(const T* x, T* y, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    y[i] = x[i] < T(0) ? T(0) : x[i];
}
template <class T>
__global__ void relu_backward_kernel(const T* y, const T* dy, T* dx, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    dx[i] = y[i] > T(0) ? dy[i] : T(0);
}
template <class T>
__global__ void add_kernel(const T* a, const T* b, T* y, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) y[i] = a[i] + b[i];
}
// h[p, s] += e[p % period] for p = flat (n, c) row of length s. The conv bias uses
// period = C (b [C] broadcast over N), the time injection period = N·C (e [N,C]).
template <class T>
__global__ void row_bias_kernel(T* h, const T* e, std::int64_t rows, std::int64_t s,
                                std::int64_t period) {
  const std::int64_t n = rows * s;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) h[i] += e[(i / s) % period];
}
// de[p] = Σ_s dh[p, s], one block per row p.
template <class T>
__global__ void row_sum_kernel(const T* dh, T* de, std::int64_t s) {
  const T* row = dh + static_cast<std::int64_t>(blockIdx.x) * s;
  T sum = T(0);
  for (std::int64_t j = threadIdx.x; j < s; j += blockDim.x) sum += row[j];
  sum = block_sum(sum);
  if (threadIdx.x == 0) de[blockIdx.x] = sum;
}
// y[p] = Σ_s x[p, s] / S in double (as the CPU kernel), one block per row p.
template <class T>
__global__ void spatial_mean_kernel(const T* x, T* y, std::int64_t s) {
  const T* row = x + static_cast<std::int64_t>(blockIdx.x) * s;
  double sum = 0.0;
  for (std::int64_t j = threadIdx.x; j < s; j += blockDim.x) sum += static_cast<double>(row[j]);
  sum = block_sum(sum);
  if (threadIdx.x == 0) y[blockIdx.x] = static_cast<T>(sum / static_cast<double>(s));
}
template <class T>
__global__ void spatial_mean_backward_kernel(const T* dy, T* dx, std::int64_t rows,
                                             std::int64_t s) {
  const std::int64_t n = rows * s;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    dx[i] = static_cast<T>(static_cast<double>(dy[i / s]) / static_cast<double>(s));
}
template <class T>
__global__ void upsample2x_forward_kernel(const T* x, T* y, std::int64_t nc, std::int64_t h,
                                          std::int64_t w) {
  const std::int64_t w2 = 2 * w, h2 = 2 * h, n = nc * h2 * w2;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t col = i % w2, row = (i / w2) % h2, p = i / (w2 * h2);
    y[i] = x[(p * h + row / 2) * w + col / 2];
  }
}
template <class T>
__global__ void upsample2x_backward_kernel(const T* dy, T* dx, std::int64_t nc, std::int64_t h,
                                           std::int64_t w) {
  const std::int64_t n = nc * h * w;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const std::int64_t col = i % w, row = (i / w) % h, p = i / (w * h);
    const T* s0 = dy + (p * 2 * h + 2 * row) * 2 * w + 2 * col;
    const T* s1 = s0 + 2 * w;
    dx[i] = (s0[0] + s0[1]) + (s1[0] + s1[1]);  // the CPU kernel's summation order
  }
}
template <class T>
__global__ void timestep_embedding_kernel(const T* t, std::int64_t n, std::int64_t dim,
                                          double log_max_period, T* emb) {
  const std::int64_t half = dim / 2, count = n * dim;
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t row = i / dim, k = i % dim;
    if (k >= 2 * half) {
      emb[i] = T(0);  // the zero column of an odd dim
      continue;
    }
    const std::int64_t j = k < half ? k : k - half;
    // Double, like the CPU kernel: t·f reaches ~1 and the float rounding of f would show.
    const double f = exp(-log_max_period * static_cast<double>(j) / static_cast<double>(half));
    const double arg = static_cast<double>(t[row]) * f;
    emb[i] = static_cast<T>(k < half ? cos(arg) : sin(arg));
  }
}
// y = softmax(x) per row of length l, one block per row (x and y may alias).
template <class T>
__global__ void softmax_rows_kernel(const T* x, T* y, std::int64_t l) {
  const std::int64_t off = static_cast<std::int64_t>(blockIdx.x) * l;
  T mx = T(-INFINITY);
  for (std::int64_t j = threadIdx.x; j < l; j += blockDim.x) mx = fmax(mx, x[off + j]);
  mx = block_max(mx);
  T sum = T(0);
  for (std::int64_t j = threadIdx.x; j < l; j += blockDim.x) {
    const T e = exp(x[off + j] - mx);
    y[off + j] = e;
    sum += e;
  }
  const T inv = T(1) / block_sum(sum);
  for (std::int64_t j = threadIdx.x; j < l; j += blockDim.x) y[off + j] *= inv;
}
// dx = y ⊙ (dy − Σ dy ⊙ y) per row (dx and dy may alias).
template <class T>
__global__ void softmax_rows_backward_kernel(const T* y, const T* dy, T* dx, std::int64_t l) {
  const std::int64_t off = static_cast<std::int64_t>(blockIdx.x) * l;
  T dot = T(0);
  for (std::int64_t j = threadIdx.x; j < l; j += blockDim.x) dot += dy[off + j] * y[off + j];
  dot = block_sum(dot);
  for (std::int64_t j = threadIdx.x; j < l; j += blockDim.x)
    dx[off + j] = y[off + j] * (dy[off + j] - dot);
}

template <class T>
void launch_softmax_rows(cudaStream_t stream, const T* x, T* y, std::int64_t rows, std::int64_t l) {
  if (rows == 0 || l == 0) return;
  AMBISEG_LAUNCH(row_grid("softmax_rows", rows), block_threads, 0, stream, softmax_rows_kernel<T>)(
      x, y, l);
  check_launch("softmax_rows_kernel");
}
template <class T>
void launch_softmax_rows_backward(cudaStream_t stream, const T* y, const T* dy, T* dx,
                                  std::int64_t rows, std::int64_t l) {
  if (rows == 0 || l == 0) return;
  AMBISEG_LAUNCH(row_grid("softmax_rows_backward", rows), block_threads, 0, stream,
                 softmax_rows_backward_kernel<T>)(
      y, dy, dx, l);
  check_launch("softmax_rows_backward_kernel");
}
template <class T>
void launch_row_bias(cudaStream_t stream, T* h, const T* e, std::int64_t rows, std::int64_t s,
                     std::int64_t period) {
  if (rows * s == 0) return;
  AMBISEG_LAUNCH(grid_for(rows * s), block_threads, 0, stream, row_bias_kernel<T>)(
      h, e, rows, s, period);
  check_launch("row_bias_kernel");
}

}  // namespace detail

template <cuda_scalar T>
void silu_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  expect_shape("silu_forward", "y", y, x.shape());
  if (x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::silu_forward_kernel<T>)(
      x.data(), y.data(), x.numel());
  detail::check_launch("silu_forward_kernel");
}

template <cuda_scalar T>
void silu_backward(in_view<T, cuda> x, in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  expect_shape("silu_backward", "dy", dy, x.shape());
  expect_shape("silu_backward", "dx", dx, x.shape());
  if (x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::silu_backward_kernel<T>)(
      x.data(), dy.data(), dx.data(), x.numel());
  detail::check_launch("silu_backward_kernel");
}

template <cuda_scalar T>
void tanh_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  expect_shape("tanh_forward", "y", y, x.shape());
  if (x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::tanh_forward_kernel<T>)(
      x.data(), y.data(), x.numel());
  detail::check_launch("tanh_forward_kernel");
}

template <cuda_scalar T>
void tanh_backward(in_view<T, cuda> y, in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  expect_shape("tanh_backward", "dy", dy, y.shape());
  expect_shape("tanh_backward", "dx", dx, y.shape());
  if (y.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(y.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::tanh_backward_kernel<T>)(
      y.data(), dy.data(), dx.data(), y.numel());
  detail::check_launch("tanh_backward_kernel");
}

template <cuda_scalar T>
void relu_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  expect_shape("relu_forward", "y", y, x.shape());
  if (x.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(x.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::relu_forward_kernel<T>)(
      x.data(), y.data(), x.numel());
  detail::check_launch("relu_forward_kernel");
}

template <cuda_scalar T>
void relu_backward(in_view<T, cuda> y, in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  expect_shape("relu_backward", "dy", dy, y.shape());
  expect_shape("relu_backward", "dx", dx, y.shape());
  if (y.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(y.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::relu_backward_kernel<T>)(
      y.data(), dy.data(), dx.data(), y.numel());
  detail::check_launch("relu_backward_kernel");
}

template <cuda_scalar T>
void add_forward(in_view<T, cuda> a, in_view<T, cuda> b, tensor_view<T, cuda> y) {
  expect_shape("add_forward", "b", b, a.shape());
  expect_shape("add_forward", "y", y, a.shape());
  if (a.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(a.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::add_kernel<T>)(
      a.data(), b.data(), y.data(), a.numel());
  detail::check_launch("add_kernel");
}

namespace detail {
template <class H, class E>
void channel_bias_check(const char* op, const H& h, const E& e) {
  throw_if<shape_error>(h.rank() < 2, op, ": h must have rank 2 to 4 [N, C, ...], got ",
                        h.shape());
  expect_shape(op, "e", e, shape{h.size(0), h.size(1)});
}
}  // namespace detail

template <cuda_scalar T>
void add_channel_bias_forward(tensor_view<T, cuda> h, in_view<T, cuda> e) {
  detail::channel_bias_check("add_channel_bias_forward", h, e);
  const std::int64_t nc = h.size(0) * h.size(1);
  if (nc == 0) return;
  detail::launch_row_bias(current_cuda_context().stream(), h.data(), e.data(), nc, h.numel() / nc, nc);
}

template <cuda_scalar T>
void add_channel_bias_backward(in_view<T, cuda> dh, tensor_view<T, cuda> de) {
  detail::channel_bias_check("add_channel_bias_backward", dh, de);
  const std::int64_t nc = dh.size(0) * dh.size(1);
  if (nc == 0) return;
  AMBISEG_LAUNCH(detail::row_grid("add_channel_bias_backward", nc), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::row_sum_kernel<T>)(
      dh.data(), de.data(), dh.numel() / nc);
  detail::check_launch("row_sum_kernel");
}

template <cuda_scalar T>
void spatial_mean_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  const char* op = "spatial_mean_forward";
  detail::spatial_mean_check(op, "x", x);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1)});
  const std::int64_t nc = x.size(0) * x.size(1);
  if (nc == 0) return;
  AMBISEG_LAUNCH(detail::row_grid(op, nc), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::spatial_mean_kernel<T>)(
      x.data(), y.data(), x.size(2) * x.size(3));
  detail::check_launch("spatial_mean_kernel");
}

template <cuda_scalar T>
void spatial_mean_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  const char* op = "spatial_mean_backward";
  detail::spatial_mean_check(op, "dx", dx);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1)});
  if (dx.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(dx.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::spatial_mean_backward_kernel<T>)(
      dy.data(), dx.data(), dx.size(0) * dx.size(1), dx.size(2) * dx.size(3));
  detail::check_launch("spatial_mean_backward_kernel");
}

template <cuda_scalar T>
void upsample_nearest2x_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  const char* op = "upsample_nearest2x_forward";
  expect_rank(op, "x", x, 4);
  expect_shape(op, "y", y, shape{x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3)});
  if (y.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(y.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::upsample2x_forward_kernel<T>)(
      x.data(), y.data(), x.size(0) * x.size(1), x.size(2), x.size(3));
  detail::check_launch("upsample2x_forward_kernel");
}

template <cuda_scalar T>
void upsample_nearest2x_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  const char* op = "upsample_nearest2x_backward";
  expect_rank(op, "dx", dx, 4);
  expect_shape(op, "dy", dy, shape{dx.size(0), dx.size(1), 2 * dx.size(2), 2 * dx.size(3)});
  if (dx.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(dx.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::upsample2x_backward_kernel<T>)(
      dy.data(), dx.data(), dx.size(0) * dx.size(1), dx.size(2), dx.size(3));
  detail::check_launch("upsample2x_backward_kernel");
}

namespace detail {
// Copies `height` rows of `width` elements between pitched buffers: one strided DMA
// instead of a kernel (per image, a's planes and b's planes are contiguous runs).
template <class T>
void copy_rows(cudaStream_t stream, T* dst, std::int64_t dst_pitch, const T* src,
               std::int64_t src_pitch, std::int64_t width, std::int64_t height) {
  if (width == 0 || height == 0) return;
  cuda_check(cudaMemcpy2DAsync(dst, sizeof(T) * dst_pitch, src, sizeof(T) * src_pitch,
                               sizeof(T) * width, static_cast<std::size_t>(height),
                               cudaMemcpyDeviceToDevice, stream),
             "concat: cudaMemcpy2DAsync");
}
}  // namespace detail

template <cuda_scalar T>
void concat_channels_forward(in_view<T, cuda> a, in_view<T, cuda> b, tensor_view<T, cuda> y) {
  const char* op = "concat_channels_forward";
  detail::concat_check(op, "a", a.shape(), "b", b.shape());
  expect_shape(op, "y", y, shape{a.size(0), a.size(1) + b.size(1), a.size(2), a.size(3)});
  const std::int64_t n = a.size(0);
  if (n == 0) return;
  const std::int64_t a_len = a.numel() / n, b_len = b.numel() / n, y_len = a_len + b_len;
  const cudaStream_t stream = current_cuda_context().stream();
  detail::copy_rows(stream, y.data(), y_len, a.data(), a_len, a_len, n);
  detail::copy_rows(stream, y.data() + a_len, y_len, b.data(), b_len, b_len, n);
}

template <cuda_scalar T>
void concat_channels_backward(in_view<T, cuda> dy, tensor_view<T, cuda> da, out_view<T, cuda> db) {
  const char* op = "concat_channels_backward";
  expect_rank(op, "dy", dy, 4);
  const bool has_a = detail::present(da), has_b = detail::present(db);
  if (!has_a && !has_b) return;
  std::int64_t ca = 0, cb = 0;
  if (has_a) {
    detail::concat_check(op, "dy", dy.shape(), "da", da.shape());
    ca = da.size(1);
  }
  if (has_b) {
    detail::concat_check(op, "dy", dy.shape(), "db", db.shape());
    cb = db.size(1);
  }
  if (!has_a) ca = dy.size(1) - cb;
  if (!has_b) cb = dy.size(1) - ca;
  throw_if<shape_error>(ca < 0 || cb < 0 || ca + cb != dy.size(1), op, ": da ", da.shape(),
                        " and db ", db.shape(), " do not split dy ", dy.shape());
  const std::int64_t n = dy.size(0), s = dy.size(2) * dy.size(3);
  const std::int64_t a_len = ca * s, b_len = cb * s, y_len = a_len + b_len;
  const cudaStream_t stream = current_cuda_context().stream();
  if (has_a) detail::copy_rows(stream, da.data(), a_len, dy.data(), y_len, a_len, n);
  if (has_b) detail::copy_rows(stream, db.data(), b_len, dy.data() + a_len, y_len, b_len, n);
}

template <cuda_scalar T>
void timestep_embedding(in_view<T, cuda> t, int dim, double max_period, tensor_view<T, cuda> emb) {
  const char* op = "timestep_embedding";
  expect_rank(op, "t", t, 1);
  throw_if<value_error>(dim < 1, op, ": dim must be positive, got ", dim);
  throw_if<value_error>(!(max_period > 0), op, ": max_period must be positive, got ", max_period);
  expect_shape(op, "emb", emb, shape{t.size(0), dim});
  if (emb.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(emb.numel()), detail::block_threads, 0,
                 current_cuda_context().stream(), detail::timestep_embedding_kernel<T>)(
      t.data(), t.size(0), dim, std::log(max_period), emb.data());
  detail::check_launch("timestep_embedding_kernel");
}

template <cuda_scalar T>
void softmax_rows_forward(in_view<T, cuda> x, tensor_view<T, cuda> y) {
  expect_rank("softmax_rows_forward", "x", x, 2);
  expect_shape("softmax_rows_forward", "y", y, x.shape());
  detail::launch_softmax_rows(current_cuda_context().stream(), x.data(), y.data(), x.size(0),
                              x.size(1));
}

template <cuda_scalar T>
void softmax_rows_backward(in_view<T, cuda> y, in_view<T, cuda> dy, tensor_view<T, cuda> dx) {
  expect_rank("softmax_rows_backward", "y", y, 2);
  expect_shape("softmax_rows_backward", "dy", dy, y.shape());
  expect_shape("softmax_rows_backward", "dx", dx, y.shape());
  detail::launch_softmax_rows_backward(current_cuda_context().stream(), y.data(), dy.data(),
                                       dx.data(), y.size(0), y.size(1));
}

}  // namespace ambiseg::ops::cuda_kernels
