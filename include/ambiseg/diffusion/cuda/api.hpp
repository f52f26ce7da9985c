// ambiseg/diffusion/cuda/api.hpp — the diffusion maths with per-sample coefficients on the
// GPU, as host functions (no device code here): what diffusion_kernels<cuda>
// (diffusion/kernels.hpp) calls. Compiled once by nvcc into ambiseg_cuda_kernels
// (src/cuda/diffusion.cu); plain C++, for any translation unit that links ambiseg::cuda.
//
// Every function validates its shapes (shape_error / value_error, naming the function),
// enqueues its kernel on the stream of current_cuda_context() and returns without
// synchronising. T is float or double.
#pragma once

#include <cstdint>

#include "ambiseg/core/cuda/scalar.hpp"
#include "ambiseg/core/device.hpp"
#include "ambiseg/core/tensor.hpp"

namespace ambiseg::diffusion::cuda_kernels {

// The argument types of core/tensor.hpp, not any namesake in ambiseg::diffusion.
using ::ambiseg::in_view;
using ::ambiseg::out_view;

// Coefficient vectors [N] live on the device, one value per sample.
// x_t = α x0 + σ ε (diffusion::noised); x0, eps, x_t [N, ...], alpha/sigma [N].
template <cuda_scalar T>
void diffusion_noise(in_view<T, cuda> x0, in_view<T, cuda> eps, in_view<T, cuda> alpha,
                     in_view<T, cuda> sigma, tensor_view<T, cuda> x_t);
// x̂0 = c_xt·x_t + c_f·f (diffusion::predicted_x0), optionally clipped to [−1, 1].
template <cuda_scalar T>
void diffusion_predicted_x0(in_view<T, cuda> x_t, in_view<T, cuda> f, in_view<T, cuda> c_xt,
                            in_view<T, cuda> c_f, bool clip, tensor_view<T, cuda> x0_hat);
// x_s = c_xt·x_t + c_x0·x̂0 + c_noise·z (diffusion::reverse_step); z may be empty (no noise).
template <cuda_scalar T>
void diffusion_reverse_step(in_view<T, cuda> x_t, in_view<T, cuda> x0_hat, in_view<T, cuda> z,
                            in_view<T, cuda> c_xt, in_view<T, cuda> c_x0, in_view<T, cuda> c_noise,
                            tensor_view<T, cuda> x_s);

// The regression target f* = c_x0·x0 + c_eps·ε (diffusion::regression_target).
template <cuda_scalar T>
void diffusion_target(in_view<T, cuda> x0, in_view<T, cuda> eps, in_view<T, cuda> c_x0,
                      in_view<T, cuda> c_eps, tensor_view<T, cuda> out);
// ε̂ = (x_t − α·x̂0)/σ with x̂0 = c_xt·x_t + c_f·f (diffusion::predicted_eps); inv_sigma = 1/σ.
template <cuda_scalar T>
void diffusion_predicted_eps(in_view<T, cuda> x_t, in_view<T, cuda> f, in_view<T, cuda> c_xt,
                             in_view<T, cuda> c_f, in_view<T, cuda> alpha,
                             in_view<T, cuda> inv_sigma, tensor_view<T, cuda> eps_hat);
// The x-space loss's per-sample part: squared_sums[n] = Σ_p (x̂0 − x0)² (double, one block
// per sample, deterministic) with x̂0 = c_xt·x_t + c_f·f evaluated in double, and, when
// grad_f is given, grad_f = grad_coeff·(x̂0 − x0) (grad_coeff = 2·w·c_f/(B·P) per sample).
// Coefficients are double [N] so that the loss agrees with the CPU to rounding of
// the sum only; the caller weights and averages the N sums on the host.
template <cuda_scalar T>
void diffusion_x0_loss(in_view<T, cuda> x0, in_view<T, cuda> x_t, in_view<T, cuda> f,
                       tensor_view<const double, cuda> c_xt, tensor_view<const double, cuda> c_f,
                       tensor_view<const double, cuda> grad_coeff, tensor_view<T, cuda> grad_f,
                       tensor_view<double, cuda> squared_sums);
// The loss from diffusion_x0_loss's sums without a read-back: report [N + 1] receives
// report[i] = weights[i]·squared_sums[i]/per (the per-sample losses) and report[N] =
// (Σ_i report[i])/N, summed in i order in double by one thread — the CPU's
// arithmetic, so the device loss equals the host one bit for bit.
void diffusion_loss_report(tensor_view<const double, cuda> squared_sums,
                           tensor_view<const double, cuda> weights, double per,
                           tensor_view<double, cuda> report);
// dst [B·n, ...] row b·n + j = src [B, ...] row b (conditioning repeated per chain).
template <cuda_scalar T>
void repeat_rows(in_view<T, cuda> src, std::int64_t repeats, tensor_view<T, cuda> dst);

}  // namespace ambiseg::diffusion::cuda_kernels
