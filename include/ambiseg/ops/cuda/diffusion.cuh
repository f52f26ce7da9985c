// ambiseg/ops/cuda/diffusion.cuh — the diffusion elementwise maths on the GPU.
//
//   x0, eps, x_t, f, x̂0, z, x_s [N, ...] (E = elements per sample)   coefficients [N]
//
// The per-element functions are diffusion::noised, predicted_x0, clip_unit and
// reverse_step (AMBISEG_HD in diffusion/predictions.hpp and samplers.hpp), so the GPU runs
// the same expressions as the CPU facade; only the per-sample scalars (computed on the host
// in double by the schedule, prediction and sampler policies) come in as device arrays.
#pragma once

#include "ambiseg/diffusion/predictions.hpp"
#include "ambiseg/diffusion/samplers.hpp"
#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

template <class T>
__global__ void noise_kernel(const T* x0, const T* eps, const T* alpha, const T* sigma,
                             std::int64_t count, std::int64_t per_sample, T* x_t) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    x_t[i] = diffusion::noised(alpha[n], sigma[n], x0[i], eps[i]);
  }
}

template <class T>
__global__ void predicted_x0_kernel(const T* x_t, const T* f, const T* c_xt, const T* c_f,
                                    bool clip, std::int64_t count, std::int64_t per_sample,
                                    T* x0_hat) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    const T v = diffusion::predicted_x0(c_xt[n], c_f[n], x_t[i], f[i]);
    x0_hat[i] = clip ? diffusion::clip_unit(v) : v;
  }
}

// z == nullptr: a deterministic step (the noise term is absent, not multiplied by zero,
// so an infinite coefficient with no noise cannot turn into NaN).
template <class T>
__global__ void reverse_step_kernel(const T* x_t, const T* x0_hat, const T* z, const T* c_xt,
                                    const T* c_x0, const T* c_noise, std::int64_t count,
                                    std::int64_t per_sample, T* x_s) {
  for (std::int64_t i = global_thread(); i < count; i += grid_stride()) {
    const std::int64_t n = i / per_sample;
    x_s[i] = z ? diffusion::reverse_step(c_xt[n], c_x0[n], c_noise[n], x_t[i], x0_hat[i], z[i])
               : diffusion::reverse_step(c_xt[n], c_x0[n], T(0), x_t[i], x0_hat[i], T(0));
  }
}

// A batch [N, ...] and its per-sample coefficient vectors [N]; returns E.
template <class V>
std::int64_t per_sample_check(const char* op, const V& batch, std::initializer_list<const char*> names,
                              std::initializer_list<shape> coeff_shapes) {
  throw_if<shape_error>(batch.rank() < 1, op, ": the batch must have rank >= 1, got ",
                        batch.shape());
  const std::int64_t n = batch.size(0);
  auto name = names.begin();
  for (const shape& s : coeff_shapes) {
    throw_if<shape_error>(!(s == shape{n}), op, ": ", *name, " has shape ", s, ", expected [", n,
                          "] (one coefficient per sample)");
    ++name;
  }
  return n ? batch.numel() / n : 0;
}

}  // namespace detail

template <cuda_scalar T>
void diffusion_noise(dev_in<T> x0, dev_in<T> eps, dev_in<T> alpha, dev_in<T> sigma,
                     tensor_view<T, cuda> x_t) {
  const char* op = "diffusion_noise";
  expect_shape(op, "eps", eps, x0.shape());
  expect_shape(op, "x_t", x_t, x0.shape());
  const std::int64_t e = detail::per_sample_check(op, x0, {"alpha", "sigma"},
                                                  {alpha.shape(), sigma.shape()});
  if (x0.numel() == 0) return;
  detail::noise_kernel<T><<<detail::grid_for(x0.numel()), detail::block_threads, 0,
                            current_cuda_context().stream()>>>(
      x0.data(), eps.data(), alpha.data(), sigma.data(), x0.numel(), e, x_t.data());
  detail::check_launch("noise_kernel");
}

template <cuda_scalar T>
void diffusion_predicted_x0(dev_in<T> x_t, dev_in<T> f, dev_in<T> c_xt, dev_in<T> c_f, bool clip,
                            tensor_view<T, cuda> x0_hat) {
  const char* op = "diffusion_predicted_x0";
  expect_shape(op, "f", f, x_t.shape());
  expect_shape(op, "x0_hat", x0_hat, x_t.shape());
  const std::int64_t e =
      detail::per_sample_check(op, x_t, {"c_xt", "c_f"}, {c_xt.shape(), c_f.shape()});
  if (x_t.numel() == 0) return;
  detail::predicted_x0_kernel<T><<<detail::grid_for(x_t.numel()), detail::block_threads, 0,
                                   current_cuda_context().stream()>>>(
      x_t.data(), f.data(), c_xt.data(), c_f.data(), clip, x_t.numel(), e, x0_hat.data());
  detail::check_launch("predicted_x0_kernel");
}

template <cuda_scalar T>
void diffusion_reverse_step(dev_in<T> x_t, dev_in<T> x0_hat, dev_in<T> z, dev_in<T> c_xt,
                            dev_in<T> c_x0, dev_in<T> c_noise, tensor_view<T, cuda> x_s) {
  const char* op = "diffusion_reverse_step";
  expect_shape(op, "x0_hat", x0_hat, x_t.shape());
  const bool has_z = detail::present(z);
  if (has_z) expect_shape(op, "z", z, x_t.shape());
  expect_shape(op, "x_s", x_s, x_t.shape());
  const std::int64_t e = detail::per_sample_check(op, x_t, {"c_xt", "c_x0", "c_noise"},
                                                  {c_xt.shape(), c_x0.shape(), c_noise.shape()});
  if (x_t.numel() == 0) return;
  detail::reverse_step_kernel<T><<<detail::grid_for(x_t.numel()), detail::block_threads, 0,
                                   current_cuda_context().stream()>>>(
      x_t.data(), x0_hat.data(), has_z ? z.data() : nullptr, c_xt.data(), c_x0.data(),
      c_noise.data(), x_t.numel(), e, x_s.data());
  detail::check_launch("reverse_step_kernel");
}

}  // namespace ambiseg::ops::cuda_kernels
