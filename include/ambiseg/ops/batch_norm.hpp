// ambiseg/ops/batch_norm.hpp — batch normalisation, PyTorch's nn.BatchNorm2d (and
// BatchNorm1d on [N, C]).
//
//   x [N, C, H, W] or [N, C] (S = H·W, or 1)   gamma/beta [C]   y like x
//   saved_mean/saved_rstd [C] (batch statistics kept for the backward; rstd = 1/sqrt(var + eps))
//   running_mean/running_var [C] (the module's buffers, updated in place when training)
// Training normalises each channel with its statistics over the m = N·S values of the batch
// (biased variance) and updates running = (1 − momentum)·running + momentum·batch, with the
// unbiased variance (factor m/(m − 1)) for running_var, as PyTorch does; inference uses the
// running statistics. The Generalized Probabilistic U-Net uses eps 1e-5, momentum 0.1;
// PHiSeg eps 1e-3, momentum 0.01. Statistics accumulate in double on cpu
// (ops/cpu/batch_norm.hpp) and on cuda (one block per channel, ops/cuda/batch_norm.cuh).
#pragma once

#include "ambiseg/ops/common.hpp"
#include "ambiseg/ops/cpu/batch_norm.hpp"

namespace ambiseg::ops {

// y must not alias x (the backward reads x). running_mean and running_var may both be empty
// (PyTorch's track_running_stats=False). Refuses m = N·H·W < 2, as PyTorch does.
template <op_scalar T, class D>
void batch_norm_forward_training(in_view<T, D> x, in_view<T, D> gamma, in_view<T, D> beta,
                                 double eps, double momentum, tensor_view<T, D> y,
                                 out_view<T, D> saved_mean, out_view<T, D> saved_rstd,
                                 out_view<T, D> running_mean, out_view<T, D> running_var) {
  detail::batch_norm_training_check("batch_norm_forward_training", x, gamma, beta, eps,
                                    momentum, y, saved_mean, saved_rstd, running_mean,
                                    running_var);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::batch_norm_forward_training(
        x.data(), gamma.data(), beta.data(), x.size(0), x.size(1),
        detail::spatial_extent(x.shape()), eps, momentum, y.data(), saved_mean.data(),
        saved_rstd.data(), running_mean.data(), running_var.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::batch_norm_forward_training<T>(x, gamma, beta, eps, momentum, y, saved_mean,
                                                 saved_rstd, running_mean, running_var);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// y = (x − running_mean)/sqrt(running_var + eps)·gamma + beta; y may alias x.
template <op_scalar T, class D>
void batch_norm_forward_inference(in_view<T, D> x, in_view<T, D> gamma, in_view<T, D> beta,
                                  in_view<T, D> running_mean, in_view<T, D> running_var,
                                  double eps, tensor_view<T, D> y) {
  detail::batch_norm_inference_check("batch_norm_forward_inference", x, gamma, beta,
                                     running_mean, running_var, eps, y);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::batch_norm_forward_inference(x.data(), gamma.data(), beta.data(),
                                              running_mean.data(), running_var.data(), x.size(0),
                                              x.size(1), detail::spatial_extent(x.shape()), eps,
                                              y.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::batch_norm_forward_inference<T>(x, gamma, beta, running_mean, running_var, eps,
                                                  y);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

// The backward of batch_norm_forward_training (batch statistics, so dx includes their
// gradient). dx assigned (may alias dy); dgamma/dbeta accumulated; any of the three may be
// empty when not needed (pass tensor_view<T, D>{} for dx).
template <op_scalar T, class D>
void batch_norm_backward(in_view<T, D> x, in_view<T, D> gamma, in_view<T, D> saved_mean,
                         in_view<T, D> saved_rstd, in_view<T, D> dy, tensor_view<T, D> dx,
                         out_view<T, D> dgamma, out_view<T, D> dbeta) {
  detail::batch_norm_backward_check("batch_norm_backward", x, gamma, saved_mean, saved_rstd, dy,
                                    dx, dgamma, dbeta);
  if constexpr (std::same_as<D, cpu>) {
    cpu_kernels::batch_norm_backward(x.data(), gamma.data(), saved_mean.data(),
                                     saved_rstd.data(), dy.data(), x.size(0), x.size(1),
                                     detail::spatial_extent(x.shape()), dx.data(), dgamma.data(),
                                     dbeta.data());
  } else if constexpr (std::same_as<D, cuda>) {
#if defined(AMBISEG_WITH_CUDA)
    cuda_kernels::batch_norm_backward<T>(x, gamma, saved_mean, saved_rstd, dy, dx, dgamma,
                                         dbeta);
#else
    cuda_backend_missing<D>();
#endif
  } else {
    unsupported_device<D>();
  }
}

}  // namespace ambiseg::ops
