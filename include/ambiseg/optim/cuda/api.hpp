// ambiseg/optim/cuda/api.hpp — the optimisers' updates on the GPU, as host functions (no
// device code here): what adamw<T, cuda>, ema<T, cuda> and clip_grad_norm on cuda call.
// Compiled once by nvcc into ambiseg_cuda_kernels (src/cuda/optim.cu); plain C++, for any
// translation unit that links ambiseg::cuda.
//
//   values, grads, exp_avg, exp_avg_sq, shadow: the flat parameter buffers [P]
#pragma once

#include "ambiseg/core/cuda/scalar.hpp"
#include "ambiseg/core/device.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/optim/adamw_update.hpp"

namespace ambiseg::optim::cuda_kernels {

// One AdamW step over flat buffers in one launch, element update = adamw_update_element
// with s = adamw_step_scalars<T>::make(options, t). With a guard (device doubles) the
// kernel changes nothing unless every guard value is finite (guard_allows).
template <cuda_scalar T>
void adamw_step(tensor_view<T, cuda> values, in_view<T, cuda> grads, out_view<T, cuda> exp_avg,
                out_view<T, cuda> exp_avg_sq, const adamw_step_scalars<T>& s,
                tensor_view<const double, cuda> guard = {});
// √(Σ g²) accumulated in double, deterministic (a fixed two-pass reduction that does not
// depend on the GPU), written to norm_out [1] (double, device). No synchronisation.
template <cuda_scalar T>
void global_grad_norm_async(in_view<T, cuda> grads, tensor_view<double, cuda> norm_out);
// g ← g·min(1, max_norm/(norm + 1e-6)) with the norm read on the device, so clipping needs
// no round trip to the host; a non-finite norm leaves g untouched (the caller reads norm_out
// when it wants to know). norm_out [1] receives the norm.
template <cuda_scalar T>
void clip_grad_norm_async(tensor_view<T, cuda> grads, double max_norm,
                          tensor_view<double, cuda> norm_out);
// The synchronous forms, with the semantics of global_grad_norm / clip_grad_norm
// (a non-finite norm throws value_error unless report_nonfinite). They wait for the stream.
template <cuda_scalar T>
double global_grad_norm(in_view<T, cuda> grads);
template <cuda_scalar T>
double clip_grad_norm(tensor_view<T, cuda> grads, double max_norm, bool report_nonfinite = false);

// Weight averaging (ema): shadow ← keep·shadow + take·values, with keep = decay and
// take = 1 − decay rounded to T on the host, as the CPU loop does.
// A guard works as for adamw_step.
template <cuda_scalar T>
void ema_update(tensor_view<T, cuda> shadow, in_view<T, cuda> values, double decay,
                tensor_view<const double, cuda> guard = {});
// Exchanges the contents of two equally sized buffers (swapping averaged weights in).
template <cuda_scalar T>
void swap_contents(tensor_view<T, cuda> a, out_view<T, cuda> b);

}  // namespace ambiseg::optim::cuda_kernels
