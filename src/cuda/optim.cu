// src/cuda/optim.cu — the optimiser kernels (optim/cuda/kernels.cuh) compiled by nvcc into
// ambiseg_cuda_kernels, every function of optim/cuda/api.hpp instantiated for float and
// double.
#include "ambiseg/optim/cuda/api.hpp"
#include "ambiseg/optim/cuda/kernels.cuh"

namespace ambiseg::optim::cuda_kernels {

#define AMBISEG_INSTANTIATE_OPTIM_KERNELS(T)                                                       \
  template void adamw_step<T>(tensor_view<T, cuda>, in_view<T, cuda>, out_view<T, cuda>,           \
                              out_view<T, cuda>, const adamw_step_scalars<T>&,                     \
                              tensor_view<const double, cuda>);                                    \
  template void global_grad_norm_async<T>(in_view<T, cuda>, tensor_view<double, cuda>);            \
  template void clip_grad_norm_async<T>(tensor_view<T, cuda>, double, tensor_view<double, cuda>);  \
  template double global_grad_norm<T>(in_view<T, cuda>);                                           \
  template double clip_grad_norm<T>(tensor_view<T, cuda>, double, bool);                           \
  template void ema_update<T>(tensor_view<T, cuda>, in_view<T, cuda>, double,                      \
                              tensor_view<const double, cuda>);                                    \
  template void swap_contents<T>(tensor_view<T, cuda>, out_view<T, cuda>);

AMBISEG_INSTANTIATE_OPTIM_KERNELS(float)
AMBISEG_INSTANTIATE_OPTIM_KERNELS(double)

#undef AMBISEG_INSTANTIATE_OPTIM_KERNELS

}  // namespace ambiseg::optim::cuda_kernels
