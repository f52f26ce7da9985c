// ambiseg/optim/cuda/kernels.cuh — AdamW update, global gradient norm and weight averaging
// on the GPU: the definitions of optim/cuda/api.hpp. Device code (src/cuda/optim.cu).
//
//   values, grads, exp_avg, exp_avg_sq: the flat parameter buffers [P]
//
// AdamW: one launch over the whole flat buffer; each element runs
// adamw_update_element, the very function the CPU optimiser uses, with the step
// scalars computed on the host in double (adamw_step_scalars::make).
//
// Gradient norm, deterministic by construction: pass 1 splits [0, P) into
// norm_blocks fixed contiguous chunks (a constant, not the GPU's SM count), each block sums
// g² of its chunk in double with a fixed tree; pass 2 (one block) sums the partials in a
// fixed tree and writes √Σ. The same buffer gives the same bits on any GPU.
// Clipping reads that norm on the device: scale = min(1, max_norm/(norm + 1e-6)), and a
// non-finite norm leaves the gradients untouched — no host round trip in a training step.
#pragma once

#include <cmath>

#include "ambiseg/core/cuda/launch.cuh"
#include "ambiseg/core/cuda/reductions.cuh"
#include "ambiseg/core/cuda_context.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/optim/adamw_update.hpp"
#include "ambiseg/optim/cuda/api.hpp"

namespace ambiseg::optim::cuda_kernels {

namespace detail {

using namespace ::ambiseg::gpu;

constexpr int norm_blocks = 512;  // pass-2 block size as well: a power of two ≤ 1024

template <class T>
__global__ void adamw_kernel(T* p, const T* g, T* m, T* v, std::int64_t n,
                             adamw_step_scalars<T> s, const double* guard,
                             std::int64_t guard_count) {
  if (!guard_allows(guard, guard_count)) return;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    adamw_update_element(p[i], g[i], m[i], v[i], s);
}

template <class T>
__global__ void sum_squares_kernel(const T* g, std::int64_t n, double* partial) {
  const std::int64_t chunk = (n + gridDim.x - 1) / gridDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * chunk;
  const std::int64_t last = first + chunk < n ? first + chunk : n;
  double sum = 0.0;
  for (std::int64_t i = first + threadIdx.x; i < last; i += blockDim.x) {
    const double x = static_cast<double>(g[i]);
    sum += x * x;
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

__global__ void finish_norm_kernel(const double* partial, int count, double* norm) {
  double v = static_cast<int>(threadIdx.x) < count ? partial[threadIdx.x] : 0.0;
  v = block_sum(v);
  if (threadIdx.x == 0) norm[0] = sqrt(v);
}

template <class T>
__global__ void clip_kernel(T* g, std::int64_t n, double max_norm, const double* norm) {
  const double total = norm[0];
  if (!isfinite(total)) return;
  const double scale = fmin(1.0, max_norm / (total + 1e-6));
  if (!(scale < 1.0)) return;
  const T s = static_cast<T>(scale);
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) g[i] *= s;
}

template <class T>
void launch_grad_norm(cuda_context& ctx, const T* g, std::int64_t n, double* partial, double* norm) {
  AMBISEG_LAUNCH(norm_blocks, block_threads, 0, ctx.stream(), sum_squares_kernel<T>)(g, n, partial);
  check_launch("sum_squares_kernel");
  AMBISEG_LAUNCH(1, norm_blocks, 0, ctx.stream(), finish_norm_kernel)(partial, norm_blocks, norm);
  check_launch("finish_norm_kernel");
}

template <class T>
__global__ void ema_kernel(T* shadow, const T* values, std::int64_t n, T keep, T take,
                           const double* guard, std::int64_t guard_count) {
  if (!guard_allows(guard, guard_count)) return;
  for (std::int64_t i = global_thread(); i < n; i += grid_stride())
    shadow[i] = shadow[i] * keep + take * values[i];
}

template <class T>
__global__ void swap_kernel(T* a, T* b, std::int64_t n) {
  for (std::int64_t i = global_thread(); i < n; i += grid_stride()) {
    const T t = a[i];
    a[i] = b[i];
    b[i] = t;
  }
}

// A guard without data (a default view, whose empty shape counts one element) is no guard.
inline std::int64_t guard_count(const tensor_view<const double, cuda>& guard) {
  return guard.data() ? guard.numel() : 0;
}

inline void expect_norm_slot(const char* op, const tensor_view<double, cuda>& norm_out) {
  throw_if<shape_error>(norm_out.numel() != 1 || norm_out.data() == nullptr, op,
                        ": norm_out must hold one double, got ", norm_out.shape());
}

}  // namespace detail

template <cuda_scalar T>
void adamw_step(tensor_view<T, cuda> values, in_view<T, cuda> grads, out_view<T, cuda> exp_avg,
                out_view<T, cuda> exp_avg_sq, const adamw_step_scalars<T>& s,
                tensor_view<const double, cuda> guard) {
  const std::int64_t n = values.numel();
  throw_if<shape_error>(grads.numel() != n || exp_avg.numel() != n || exp_avg_sq.numel() != n,
                        "adamw_step: values (", n, "), grads (", grads.numel(), "), exp_avg (",
                        exp_avg.numel(), ") and exp_avg_sq (", exp_avg_sq.numel(),
                        ") must have the same number of elements");
  if (n == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(n), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::adamw_kernel<T>)(
      values.data(), grads.data(), exp_avg.data(), exp_avg_sq.data(), n, s, guard.data(),
      detail::guard_count(guard));
  detail::check_launch("adamw_kernel");
}

template <cuda_scalar T>
void global_grad_norm_async(in_view<T, cuda> grads, tensor_view<double, cuda> norm_out) {
  detail::expect_norm_slot("global_grad_norm_async", norm_out);
  cuda_context& ctx = current_cuda_context();
  cuda_buffer partial = ctx.scratch(sizeof(double) * detail::norm_blocks);
  detail::launch_grad_norm(ctx, grads.data(), grads.numel(), partial.as<double>(), norm_out.data());
}

template <cuda_scalar T>
void clip_grad_norm_async(tensor_view<T, cuda> grads, double max_norm,
                          tensor_view<double, cuda> norm_out) {
  const char* op = "clip_grad_norm_async";
  throw_if<value_error>(!(max_norm >= 0.0), op, ": max_norm must be >= 0, got ", max_norm);
  detail::expect_norm_slot(op, norm_out);
  cuda_context& ctx = current_cuda_context();
  cuda_buffer partial = ctx.scratch(sizeof(double) * detail::norm_blocks);
  detail::launch_grad_norm(ctx, grads.data(), grads.numel(), partial.as<double>(), norm_out.data());
  if (grads.numel() == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(grads.numel()), detail::block_threads, 0, ctx.stream(),
                 detail::clip_kernel<T>)(
      grads.data(), grads.numel(), max_norm, norm_out.data());
  detail::check_launch("clip_kernel");
}

template <cuda_scalar T>
double global_grad_norm(in_view<T, cuda> grads) {
  cuda_context& ctx = current_cuda_context();
  cuda_buffer slot = ctx.scratch(sizeof(double));
  global_grad_norm_async<T>(grads, tensor_view<double, cuda>(slot.as<double>(), shape{1}));
  double norm = 0.0;
  ctx.download(&norm, slot.data(), sizeof(double));  // the host needs the value: waits
  return norm;
}

template <cuda_scalar T>
double clip_grad_norm(tensor_view<T, cuda> grads, double max_norm, bool report_nonfinite) {
  cuda_context& ctx = current_cuda_context();
  cuda_buffer slot = ctx.scratch(sizeof(double));
  clip_grad_norm_async<T>(grads, max_norm, tensor_view<double, cuda>(slot.as<double>(), shape{1}));
  double norm = 0.0;
  ctx.download(&norm, slot.data(), sizeof(double));
  throw_if<value_error>(!std::isfinite(norm) && !report_nonfinite,
                        "clip_grad_norm: the total gradient norm is ", norm,
                        " (a gradient holds NaN or infinity)");
  return norm;
}

template <cuda_scalar T>
void ema_update(tensor_view<T, cuda> shadow, in_view<T, cuda> values, double decay,
                tensor_view<const double, cuda> guard) {
  const char* op = "ema_update";
  throw_if<value_error>(!(decay >= 0.0 && decay <= 1.0), op, ": decay must lie in [0, 1], got ",
                        decay);
  throw_if<shape_error>(values.numel() != shadow.numel(), op, ": values have ", values.numel(),
                        " elements, the average ", shadow.numel());
  const std::int64_t n = shadow.numel();
  if (n == 0) return;
  AMBISEG_LAUNCH(detail::grid_for(n), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::ema_kernel<T>)(
      shadow.data(), values.data(), n, static_cast<T>(decay), static_cast<T>(1.0 - decay),
      guard.data(), detail::guard_count(guard));
  detail::check_launch("ema_kernel");
}

template <cuda_scalar T>
void swap_contents(tensor_view<T, cuda> a, out_view<T, cuda> b) {
  throw_if<shape_error>(a.numel() != b.numel(), "swap_contents: ", a.numel(), " and ", b.numel(),
                        " elements");
  const std::int64_t n = a.numel();
  if (n == 0 || a.data() == b.data()) return;
  AMBISEG_LAUNCH(detail::grid_for(n), detail::block_threads, 0, current_cuda_context().stream(),
                 detail::swap_kernel<T>)(
      a.data(), b.data(), n);
  detail::check_launch("swap_kernel");
}

}  // namespace ambiseg::optim::cuda_kernels
