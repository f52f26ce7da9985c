// ambiseg/diffusion/cuda.hpp — the diffusion facade on the GPU: the cuda forms of
// diffusion/device.hpp (cuda_diffusion, cuda_training_batch, forward_denoiser on cuda),
// with ops/cuda/diffusion.cuh as kernels. Requires the CUDA backend.
//
//   gaussian_diffusion<S, P, W> host(schedule);          // the host facade, unchanged
//   cuda_diffusion<decltype(host)> gpu(host);            // the same policies on the GPU
//   gpu.training_loss(net, x0, cond, batch);             // tensor<float, cuda> in and out
#pragma once

#if !defined(AMBISEG_WITH_CUDA)
#error "ambiseg/diffusion/cuda.hpp needs the CUDA backend: configure with -DAMBISEG_CUDA=ON and link ambiseg::cuda"
#endif

#include "ambiseg/diffusion/device.hpp"

namespace ambiseg::diffusion {

template <class Diffusion, class T = float>
using cuda_diffusion = device_diffusion<Diffusion, T, cuda>;
template <class T>
using cuda_training_batch = device_training_batch<T, cuda>;
template <class F, class T>
concept cuda_denoiser = device_denoiser<F, T, cuda>;

}  // namespace ambiseg::diffusion
