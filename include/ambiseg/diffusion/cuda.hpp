// ambiseg/diffusion/cuda.hpp — the cuda forms of diffusion_runner (runner.hpp). Requires
// the CUDA backend.
//
//   gaussian_diffusion<S, P, W> policies(schedule);
//   cuda_diffusion<decltype(policies)> gpu(policies);   // the same loop on the GPU
//   gpu.training_loss(net, x0, cond, batch);            // tensor<float, cuda> in and out
#pragma once

#if !defined(AMBISEG_WITH_CUDA)
#error "ambiseg/diffusion/cuda.hpp needs the CUDA backend: configure with -DAMBISEG_CUDA=ON and link ambiseg::cuda"
#endif

#include "ambiseg/diffusion/runner.hpp"

namespace ambiseg::diffusion {

template <class Diffusion, class T = float>
using cuda_diffusion = diffusion_runner<Diffusion, T, cuda>;
template <class T>
using cuda_training_batch = training_batch<T, cuda>;
template <class F, class T>
concept cuda_denoiser = denoiser<F, T, cuda>;

}  // namespace ambiseg::diffusion
