// ambiseg/ops/cuda/api.hpp — the CUDA op layer, as host functions (no device code here).
//
// The signatures are those of docs/ops.md with tensor_view<·, ambiseg::cuda>, so that each
// front end in ops/<op>.hpp dispatches `if constexpr (std::same_as<D, cuda>)` to the
// function of the same name here (docs/cuda.md lists the exact calls). The definitions
// are compiled once by nvcc into the ambiseg_cuda_kernels library (ops/cuda/kernels.cu);
// this header is plain C++ and may be included by any translation unit that links
// ambiseg::cuda.
//
// Every function validates its shapes (shape_error / value_error, naming the op), enqueues
// its kernels or library calls on the stream of current_cuda_context() and returns without
// synchronising. T is float or double; cuDNN convolutions are float only.
//
//   Shape legend: N batch, C channels (Ci in, Co out), H×W spatial, S = H·W, G groups,
//   K kernel size, B·heads attention batches, T tokens.
#pragma once

#include <concepts>
#include <cstdint>
#include <type_traits>

#include "ambiseg/core/cuda_context.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/optim/adamw_update.hpp"

namespace ambiseg::ops::cuda_kernels {

template <class T>
concept cuda_scalar = std::same_as<T, float> || std::same_as<T, double>;

// Non-deduced argument types (T is deduced from the one plain tensor_view<T, cuda>).
template <class T>
using dev_in = std::type_identity_t<tensor_view<const T, cuda>>;
template <class T>
using dev_out = std::type_identity_t<tensor_view<T, cuda>>;

// ---- convolution (cuDNN 9 graph API; float) -------------------------------------------
// x [N,Ci,H,W]  w [Co,Ci,K,K]  b [Co] or empty  y [N,Co,Ho,Wo]; padding −1 means K/2.
// The cuDNN workspace comes from `ws`; the execution plan is built once per shape.
void conv2d_forward(tensor_view<const float, cuda> x, tensor_view<const float, cuda> w,
                    tensor_view<const float, cuda> b, tensor_view<float, cuda> y, int stride,
                    int padding, workspace<cuda>& ws);
// dx assigned (optional), dw += (optional), db += (optional).
void conv2d_backward(tensor_view<const float, cuda> x, tensor_view<const float, cuda> w,
                     tensor_view<const float, cuda> dy, tensor_view<float, cuda> dx,
                     tensor_view<float, cuda> dw, tensor_view<float, cuda> db, int stride,
                     int padding, workspace<cuda>& ws);

// ---- group norm (fp32 statistics for float, one block per (n, group)) ------------------
template <cuda_scalar T>
void group_norm_forward(dev_in<T> x, dev_in<T> gamma, dev_in<T> beta, int groups, double eps,
                        tensor_view<T, cuda> y, dev_out<T> mean, dev_out<T> rstd);
template <cuda_scalar T>
void group_norm_backward(dev_in<T> x, dev_in<T> gamma, dev_in<T> mean, dev_in<T> rstd, dev_in<T> dy, int groups,
                         tensor_view<T, cuda> dx, dev_out<T> dgamma, dev_out<T> dbeta);
// Fused y = SiLU(group_norm(x)) (ops/group_norm.hpp): the forward never stores the
// normalised values; the backward recomputes them from x, mean, rstd and beta, keeps
// dz = dy·SiLU'(z) in dx between its passes (so dx is required and must not alias dy or x),
// and continues as group_norm_backward.
template <cuda_scalar T>
void group_norm_silu_forward(dev_in<T> x, dev_in<T> gamma, dev_in<T> beta, int groups,
                             double eps, tensor_view<T, cuda> y, dev_out<T> mean,
                             dev_out<T> rstd);
template <cuda_scalar T>
void group_norm_silu_backward(dev_in<T> x, dev_in<T> gamma, dev_in<T> beta, dev_in<T> mean,
                              dev_in<T> rstd, dev_in<T> dy, int groups, tensor_view<T, cuda> dx,
                              dev_out<T> dgamma, dev_out<T> dbeta);

// ---- elementwise ------------------------------------------------------------------------
template <cuda_scalar T>
void silu_forward(dev_in<T> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void silu_backward(dev_in<T> x, dev_in<T> dy, tensor_view<T, cuda> dx);
template <cuda_scalar T>
void tanh_forward(dev_in<T> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void tanh_backward(dev_in<T> y, dev_in<T> dy, tensor_view<T, cuda> dx);
template <cuda_scalar T>
void add_forward(dev_in<T> a, dev_in<T> b, tensor_view<T, cuda> y);
template <cuda_scalar T>
void add_channel_bias_forward(tensor_view<T, cuda> h, dev_in<T> e);
template <cuda_scalar T>
void add_channel_bias_backward(dev_in<T> dh, tensor_view<T, cuda> de);
template <cuda_scalar T>
void upsample_nearest2x_forward(dev_in<T> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void upsample_nearest2x_backward(dev_in<T> dy, tensor_view<T, cuda> dx);
template <cuda_scalar T>
void concat_channels_forward(dev_in<T> a, dev_in<T> b, tensor_view<T, cuda> y);
template <cuda_scalar T>
void concat_channels_backward(dev_in<T> dy, tensor_view<T, cuda> da, dev_out<T> db);
template <cuda_scalar T>
void timestep_embedding(dev_in<T> t, int dim, double max_period, tensor_view<T, cuda> emb);

// ---- cuBLAS products ---------------------------------------------------------------------
// x [N,In]  w [Out,In]  b [Out] or empty  y [N,Out] = x·wᵀ + b
template <cuda_scalar T>
void linear_forward(dev_in<T> x, dev_in<T> w, dev_in<T> b, tensor_view<T, cuda> y);
template <cuda_scalar T>
void linear_backward(dev_in<T> x, dev_in<T> w, dev_in<T> dy, dev_out<T> dx, tensor_view<T, cuda> dw,
                     dev_out<T> db);
// The reference's QKVAttentionLegacy (see ops/attention.hpp); ws holds dP in the backward.
template <cuda_scalar T>
void attention_forward(dev_in<T> qkv, int heads, tensor_view<T, cuda> y, dev_out<T> probs,
                       workspace<cuda>& ws);
template <cuda_scalar T>
void attention_backward(dev_in<T> qkv, dev_in<T> probs, dev_in<T> dy, int heads, tensor_view<T, cuda> dqkv,
                        workspace<cuda>& ws);
// Row-wise softmax of x [R, L] and its backward dx = y ⊙ (dy − rowsum(dy ⊙ y)); both may
// work in place (y = x, dx = dy).
template <cuda_scalar T>
void softmax_rows_forward(dev_in<T> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void softmax_rows_backward(dev_in<T> y, dev_in<T> dy, tensor_view<T, cuda> dx);

// ---- optimiser ---------------------------------------------------------------------------
// One AdamW step over flat buffers in one launch, element update = optim::adamw_update_element
// with s = optim::adamw_step_scalars<T>::make(options, t). With a guard (device doubles) the
// kernel changes nothing unless every guard value is finite (optim::guard_allows).
template <cuda_scalar T>
void adamw_step(tensor_view<T, cuda> values, dev_in<T> grads, dev_out<T> exp_avg, dev_out<T> exp_avg_sq,
                const optim::adamw_step_scalars<T>& s, tensor_view<const double, cuda> guard = {});
// √(Σ g²) accumulated in double, deterministic (a fixed two-pass reduction that does not
// depend on the GPU), written to norm_out [1] (double, device). No synchronisation.
template <cuda_scalar T>
void global_grad_norm_async(dev_in<T> grads, tensor_view<double, cuda> norm_out);
// g ← g·min(1, max_norm/(norm + 1e-6)) with the norm read on the device, so clipping needs
// no round trip to the host; a non-finite norm leaves g untouched (the caller reads norm_out
// when it wants to know). norm_out [1] receives the norm.
template <cuda_scalar T>
void clip_grad_norm_async(tensor_view<T, cuda> grads, double max_norm,
                          tensor_view<double, cuda> norm_out);
// The synchronous forms, with the semantics of optim::global_grad_norm / clip_grad_norm
// (a non-finite norm throws value_error unless report_nonfinite). They wait for the stream.
template <cuda_scalar T>
double global_grad_norm(dev_in<T> grads);
template <cuda_scalar T>
double clip_grad_norm(tensor_view<T, cuda> grads, double max_norm, bool report_nonfinite = false);

// Weight averaging (optim::ema): shadow ← keep·shadow + take·values, with keep = decay and
// take = 1 − decay rounded to T on the host, as the CPU loop does.
// A guard works as for adamw_step.
template <cuda_scalar T>
void ema_update(tensor_view<T, cuda> shadow, dev_in<T> values, double decay,
                tensor_view<const double, cuda> guard = {});
// Exchanges the contents of two equally sized buffers (swapping averaged weights in).
template <cuda_scalar T>
void swap_contents(tensor_view<T, cuda> a, dev_out<T> b);

// ---- diffusion elementwise maths (per-sample coefficients [N] on the device) -----------
// x_t = α x0 + σ ε (diffusion::noised); x0, eps, x_t [N, ...], alpha/sigma [N].
template <cuda_scalar T>
void diffusion_noise(dev_in<T> x0, dev_in<T> eps, dev_in<T> alpha, dev_in<T> sigma, tensor_view<T, cuda> x_t);
// x̂0 = c_xt·x_t + c_f·f (diffusion::predicted_x0), optionally clipped to [−1, 1].
template <cuda_scalar T>
void diffusion_predicted_x0(dev_in<T> x_t, dev_in<T> f, dev_in<T> c_xt, dev_in<T> c_f, bool clip,
                            tensor_view<T, cuda> x0_hat);
// x_s = c_xt·x_t + c_x0·x̂0 + c_noise·z (diffusion::reverse_step); z may be empty (no noise).
template <cuda_scalar T>
void diffusion_reverse_step(dev_in<T> x_t, dev_in<T> x0_hat, dev_in<T> z, dev_in<T> c_xt, dev_in<T> c_x0,
                            dev_in<T> c_noise, tensor_view<T, cuda> x_s);

// The regression target f* = c_x0·x0 + c_eps·ε (diffusion::regression_target).
template <cuda_scalar T>
void diffusion_target(dev_in<T> x0, dev_in<T> eps, dev_in<T> c_x0, dev_in<T> c_eps,
                      tensor_view<T, cuda> out);
// ε̂ = (x_t − α·x̂0)/σ with x̂0 = c_xt·x_t + c_f·f (diffusion::predicted_eps); inv_sigma = 1/σ.
template <cuda_scalar T>
void diffusion_predicted_eps(dev_in<T> x_t, dev_in<T> f, dev_in<T> c_xt, dev_in<T> c_f,
                             dev_in<T> alpha, dev_in<T> inv_sigma, tensor_view<T, cuda> eps_hat);
// The x-space loss's per-sample part: squared_sums[n] = Σ_p (x̂0 − x0)² (double, one block
// per sample, deterministic) with x̂0 = c_xt·x_t + c_f·f evaluated in double, and, when
// grad_f is given, grad_f = grad_coeff·(x̂0 − x0) (grad_coeff = 2·w·c_f/(B·P) per sample).
// Coefficients are double [N] so that the loss agrees with the host facade to rounding of
// the sum only; the caller weights and averages the N sums on the host.
template <cuda_scalar T>
void diffusion_x0_loss(dev_in<T> x0, dev_in<T> x_t, dev_in<T> f,
                       tensor_view<const double, cuda> c_xt, tensor_view<const double, cuda> c_f,
                       tensor_view<const double, cuda> grad_coeff, tensor_view<T, cuda> grad_f,
                       tensor_view<double, cuda> squared_sums);
// The loss from diffusion_x0_loss's sums without a read-back: report [N + 1] receives
// report[i] = weights[i]·squared_sums[i]/per (the per-sample losses) and report[N] =
// (Σ_i report[i])/N, summed in i order in double by one thread — the host facade's
// arithmetic, so the device loss equals the host one bit for bit.
void diffusion_loss_report(tensor_view<const double, cuda> squared_sums,
                           tensor_view<const double, cuda> weights, double per,
                           tensor_view<double, cuda> report);
// dst [B·n, ...] row b·n + j = src [B, ...] row b (conditioning repeated per chain).
template <cuda_scalar T>
void repeat_rows(dev_in<T> src, std::int64_t repeats, tensor_view<T, cuda> dst);

}  // namespace ambiseg::ops::cuda_kernels
