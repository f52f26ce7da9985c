// ambiseg/ops/cuda/api.hpp — the CUDA op layer, as host functions (no device code here).
//
// The signatures are those of docs/ops.md with tensor_view<·, ambiseg::cuda>, so that each
// front end in ops/<op>.hpp dispatches `if constexpr (std::same_as<D, cuda>)` to the
// function of the same name here (docs/cuda.md lists the exact calls). The definitions
// are compiled once by nvcc into the ambiseg_cuda_kernels library (src/cuda/ops.cu);
// this header is plain C++ and may be included by any translation unit that links
// ambiseg::cuda.
//
// Every function validates its shapes (shape_error / value_error, naming the op), enqueues
// its kernels or library calls on the stream of current_cuda_context() and returns without
// synchronising. T is float or double; cuDNN convolutions are float only.
//
//   Shape legend: N batch, C channels (Ci in, Co out), H×W spatial, S = H·W, G groups,
//   K kernel size, B·heads attention batches, T tokens; B latent batch, Z latent size.
#pragma once

#include "ambiseg/core/cuda/scalar.hpp"
#include "ambiseg/core/cuda_context.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"
#include "ambiseg/ops/kernel_math.hpp"

namespace ambiseg::ops::cuda_kernels {

// T is deduced from the one plain tensor_view<T, cuda>; in_view/out_view (core/tensor.hpp)
// are non-deduced.

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
void group_norm_forward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> beta,
                        int groups, double eps, tensor_view<T, cuda> y, out_view<T, cuda> mean,
                        out_view<T, cuda> rstd);
template <cuda_scalar T>
void group_norm_backward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> mean,
                         in_view<T, cuda> rstd, in_view<T, cuda> dy, int groups,
                         tensor_view<T, cuda> dx, out_view<T, cuda> dgamma,
                         out_view<T, cuda> dbeta);
// Fused y = SiLU(group_norm(x)) (ops/group_norm.hpp): the forward never stores the
// normalised values; the backward recomputes them from x, mean, rstd and beta, keeps
// dz = dy·SiLU'(z) in dx between its passes (so dx is required and must not alias dy or x),
// and continues as group_norm_backward.
template <cuda_scalar T>
void group_norm_silu_forward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> beta,
                             int groups, double eps, tensor_view<T, cuda> y, out_view<T, cuda> mean,
                             out_view<T, cuda> rstd);
template <cuda_scalar T>
void group_norm_silu_backward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> beta,
                              in_view<T, cuda> mean, in_view<T, cuda> rstd, in_view<T, cuda> dy,
                              int groups, tensor_view<T, cuda> dx, out_view<T, cuda> dgamma,
                              out_view<T, cuda> dbeta);

// ---- batch norm (PyTorch's BatchNorm2d; double sums, one block per channel) -------------
// x [N,C,H,W] or [N,C]; gamma, beta, saved_mean, saved_rstd, running stats [C]. Training
// refuses N·H·W < 2 and y aliasing x; running stats may both be empty (not tracked).
template <cuda_scalar T>
void batch_norm_forward_training(in_view<T, cuda> x, in_view<T, cuda> gamma,
                                 in_view<T, cuda> beta, double eps, double momentum,
                                 tensor_view<T, cuda> y, out_view<T, cuda> saved_mean,
                                 out_view<T, cuda> saved_rstd, out_view<T, cuda> running_mean,
                                 out_view<T, cuda> running_var);
template <cuda_scalar T>
void batch_norm_forward_inference(in_view<T, cuda> x, in_view<T, cuda> gamma,
                                  in_view<T, cuda> beta, in_view<T, cuda> running_mean,
                                  in_view<T, cuda> running_var, double eps,
                                  tensor_view<T, cuda> y);
// dx assigned (optional, may alias dy), dgamma/dbeta += (optional).
template <cuda_scalar T>
void batch_norm_backward(in_view<T, cuda> x, in_view<T, cuda> gamma, in_view<T, cuda> saved_mean,
                         in_view<T, cuda> saved_rstd, in_view<T, cuda> dy,
                         tensor_view<T, cuda> dx, out_view<T, cuda> dgamma,
                         out_view<T, cuda> dbeta);

// ---- elementwise ------------------------------------------------------------------------
template <cuda_scalar T>
void silu_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void silu_backward(in_view<T, cuda> x, in_view<T, cuda> dy, tensor_view<T, cuda> dx);
template <cuda_scalar T>
void tanh_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void tanh_backward(in_view<T, cuda> y, in_view<T, cuda> dy, tensor_view<T, cuda> dx);
template <cuda_scalar T>
void add_forward(in_view<T, cuda> a, in_view<T, cuda> b, tensor_view<T, cuda> y);
template <cuda_scalar T>
void add_channel_bias_forward(tensor_view<T, cuda> h, in_view<T, cuda> e);
template <cuda_scalar T>
void add_channel_bias_backward(in_view<T, cuda> dh, tensor_view<T, cuda> de);
template <cuda_scalar T>
void upsample_nearest2x_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void upsample_nearest2x_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx);
template <cuda_scalar T>
void concat_channels_forward(in_view<T, cuda> a, in_view<T, cuda> b, tensor_view<T, cuda> y);
template <cuda_scalar T>
void concat_channels_backward(in_view<T, cuda> dy, tensor_view<T, cuda> da, out_view<T, cuda> db);
template <cuda_scalar T>
void timestep_embedding(in_view<T, cuda> t, int dim, double max_period, tensor_view<T, cuda> emb);
template <cuda_scalar T>
void relu_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void relu_backward(in_view<T, cuda> y, in_view<T, cuda> dy, tensor_view<T, cuda> dx);
// x [N,C,H,W] -> y [N,C]: sums in double, one block per (n, c); dx = dy/(H·W) broadcast.
template <cuda_scalar T>
void spatial_mean_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void spatial_mean_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx);

// ---- resampling (resample.cuh) -----------------------------------------------------------
// 2×2 mean, stride 2, even H and W: x [N,C,H,W] -> y [N,C,H/2,W/2].
template <cuda_scalar T>
void avg_pool2x2_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void avg_pool2x2_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx);
// bilinear ×2 in any bilinear_mode (ops/upsample.hpp); the backward gathers (no atomics).
template <cuda_scalar T>
void upsample_bilinear2x_forward(in_view<T, cuda> x, tensor_view<T, cuda> y, bilinear_mode mode);
template <cuda_scalar T>
void upsample_bilinear2x_backward(in_view<T, cuda> dy, tensor_view<T, cuda> dx,
                                  bilinear_mode mode);

// ---- Probabilistic U-Net losses (losses.cuh); per-case results in double -----------------
// logits, targets [N, ...]  per_case [N]  dlogits [N, ...] (assigned, optional); one block
// per case (ops/sigmoid_cross_entropy.hpp).
template <cuda_scalar T>
void sigmoid_cross_entropy_forward_backward(in_view<T, cuda> logits, in_view<T, cuda> targets,
                                            double scale, out_view<double, cuda> per_case,
                                            tensor_view<T, cuda> dlogits);
// mu, log_sigma, eps, z [B, Z]; the gradients accumulate (+=) and are optional
// (ops/gaussian_latent.hpp).
template <cuda_scalar T>
void diag_gaussian_rsample_forward(in_view<T, cuda> mu, in_view<T, cuda> log_sigma,
                                   in_view<T, cuda> eps, tensor_view<T, cuda> z);
template <cuda_scalar T>
void diag_gaussian_rsample_backward(in_view<T, cuda> log_sigma, in_view<T, cuda> eps,
                                    in_view<T, cuda> dz, tensor_view<T, cuda> dmu,
                                    out_view<T, cuda> dlog_sigma);
template <cuda_scalar T>
void diag_gaussian_kl_forward_backward(in_view<T, cuda> mu_q, in_view<T, cuda> log_sigma_q,
                                       in_view<T, cuda> mu_p, in_view<T, cuda> log_sigma_p,
                                       double scale, out_view<double, cuda> kl,
                                       tensor_view<T, cuda> dmu_q, out_view<T, cuda> dlog_sigma_q,
                                       out_view<T, cuda> dmu_p, out_view<T, cuda> dlog_sigma_p);

// ---- full-covariance and mixture latents (latent_fc.cuh; ops/gaussian_fc.hpp) -----------
// log_sigma, mu, eps, z [B, K, D]; tril_raw, L [B, K, D, D]; the KL's rows are [B, 1, D(, D)]
// with D ≤ 64. Gradients accumulate (+=) and are optional; only lower triangles of dL move.
template <cuda_scalar T>
void fc_scale_tril_forward(in_view<T, cuda> log_sigma, in_view<T, cuda> tril_raw,
                           tensor_view<T, cuda> L);
template <cuda_scalar T>
void fc_scale_tril_backward(in_view<T, cuda> log_sigma, in_view<T, cuda> dL,
                            tensor_view<T, cuda> dlog_sigma, out_view<T, cuda> dtril_raw);
template <cuda_scalar T>
void fc_gaussian_rsample_forward(in_view<T, cuda> mu, in_view<T, cuda> L, in_view<T, cuda> eps,
                                 tensor_view<T, cuda> z);
template <cuda_scalar T>
void fc_gaussian_rsample_backward(in_view<T, cuda> eps, in_view<T, cuda> dz,
                                  tensor_view<T, cuda> dmu, out_view<T, cuda> dL);
template <cuda_scalar T>
void fc_gaussian_kl_forward_backward(in_view<T, cuda> mu_q, in_view<T, cuda> L_q,
                                     in_view<T, cuda> mu_p, in_view<T, cuda> L_p, double scale,
                                     out_view<double, cuda> kl, tensor_view<T, cuda> dmu_q,
                                     out_view<T, cuda> dL_q, out_view<T, cuda> dmu_p,
                                     out_view<T, cuda> dL_p);

// Mixtures: z [B, D], logits [B, K] (K ≤ 32), mu [B, K, D], L [B, K, D, D] or log_sigma
// [B, K, D], log_prob [B]; the straight-through choice: samples [B, K, D], relaxed [B, K],
// choice [B].
template <cuda_scalar T>
void mixture_log_prob_forward_backward(in_view<T, cuda> z, in_view<T, cuda> logits,
                                       in_view<T, cuda> mu, in_view<T, cuda> L, double scale,
                                       out_view<double, cuda> log_prob, tensor_view<T, cuda> dz,
                                       out_view<T, cuda> dlogits, out_view<T, cuda> dmu,
                                       out_view<T, cuda> dL);
template <cuda_scalar T>
void diag_mixture_log_prob_forward_backward(in_view<T, cuda> z, in_view<T, cuda> logits,
                                            in_view<T, cuda> mu, in_view<T, cuda> log_sigma,
                                            double scale, out_view<double, cuda> log_prob,
                                            tensor_view<T, cuda> dz, out_view<T, cuda> dlogits,
                                            out_view<T, cuda> dmu, out_view<T, cuda> dlog_sigma);
template <cuda_scalar T>
void straight_through_mixture_sample_forward(in_view<T, cuda> logits, in_view<T, cuda> gumbel,
                                             double tau, in_view<T, cuda> samples,
                                             tensor_view<T, cuda> z, out_view<T, cuda> relaxed,
                                             out_view<std::int32_t, cuda> choice);
template <cuda_scalar T>
void straight_through_mixture_sample_backward(in_view<T, cuda> samples, in_view<T, cuda> relaxed,
                                              in_view<std::int32_t, cuda> choice, double tau,
                                              in_view<T, cuda> dz, tensor_view<T, cuda> dlogits,
                                              out_view<T, cuda> dsamples);

// ---- cuBLAS products ---------------------------------------------------------------------
// x [N,In]  w [Out,In]  b [Out] or empty  y [N,Out] = x·wᵀ + b
template <cuda_scalar T>
void linear_forward(in_view<T, cuda> x, in_view<T, cuda> w, in_view<T, cuda> b,
                    tensor_view<T, cuda> y);
template <cuda_scalar T>
void linear_backward(in_view<T, cuda> x, in_view<T, cuda> w, in_view<T, cuda> dy,
                     out_view<T, cuda> dx, tensor_view<T, cuda> dw, out_view<T, cuda> db);
// The reference's QKVAttentionLegacy (see ops/attention.hpp); ws holds dP in the backward.
template <cuda_scalar T>
void attention_forward(in_view<T, cuda> qkv, int heads, tensor_view<T, cuda> y,
                       out_view<T, cuda> probs, workspace<cuda>& ws);
template <cuda_scalar T>
void attention_backward(in_view<T, cuda> qkv, in_view<T, cuda> probs, in_view<T, cuda> dy,
                        int heads, tensor_view<T, cuda> dqkv, workspace<cuda>& ws);
// Row-wise softmax of x [R, L] and its backward dx = y ⊙ (dy − rowsum(dy ⊙ y)); both may
// work in place (y = x, dx = dy).
template <cuda_scalar T>
void softmax_rows_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void softmax_rows_backward(in_view<T, cuda> y, in_view<T, cuda> dy, tensor_view<T, cuda> dx);

// ---- affine map and two-term loss report (ops/affine.hpp) --------------------------------
template <cuda_scalar T>
void affine_forward(in_view<T, cuda> x, double a, double b, tensor_view<T, cuda> y);
void combine_case_losses(in_view<double, cuda> first, in_view<double, cuda> second, double weight,
                         tensor_view<double, cuda> report);

// ---- copies of a batch and the sum back (ops/tile.hpp) -----------------------------------
template <cuda_scalar T>
void tile_rows_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void tile_rows_backward(in_view<T, cuda> dy, double scale, tensor_view<T, cuda> dx);

// ---- softplus and the σ-parametrised Gaussian latents (ops/softplus.hpp, ops/gaussian_sigma.hpp)
template <cuda_scalar T>
void softplus_forward(in_view<T, cuda> x, tensor_view<T, cuda> y);
template <cuda_scalar T>
void sigma_gaussian_rsample_forward(in_view<T, cuda> mu, in_view<T, cuda> sigma, in_view<T, cuda> eps,
                                    tensor_view<T, cuda> z);
template <cuda_scalar T>
void sigma_gaussian_rsample_backward(in_view<T, cuda> eps, in_view<T, cuda> dz, tensor_view<T, cuda> dmu,
                                     out_view<T, cuda> dsigma);
template <cuda_scalar T>
void softplus_backward(in_view<T, cuda> x, in_view<T, cuda> dy, tensor_view<T, cuda> dx);
template <cuda_scalar T>
void gaussian_kl_sigma_forward_backward(in_view<T, cuda> mu_q, in_view<T, cuda> sigma_q, in_view<T, cuda> mu_p,
                                        in_view<T, cuda> sigma_p, double floor, double scale,
                                        out_view<double, cuda> kl, tensor_view<T, cuda> dmu_q,
                                        out_view<T, cuda> dsigma_q, out_view<T, cuda> dmu_p,
                                        out_view<T, cuda> dsigma_p);

}  // namespace ambiseg::ops::cuda_kernels
