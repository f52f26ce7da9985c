// src/cuda/diffusion.cu — the diffusion kernels (diffusion/cuda/kernels.cuh) compiled by
// nvcc into ambiseg_cuda_kernels, every function of diffusion/cuda/api.hpp instantiated for
// float and double.
#include "ambiseg/diffusion/cuda/api.hpp"
#include "ambiseg/diffusion/cuda/kernels.cuh"

namespace ambiseg::diffusion::cuda_kernels {

#define AMBISEG_INSTANTIATE_DIFFUSION_KERNELS(T)                                                   \
  template void diffusion_noise<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,           \
                                   in_view<T, cuda>, tensor_view<T, cuda>);                        \
  template void diffusion_predicted_x0<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,    \
                                          in_view<T, cuda>, bool, tensor_view<T, cuda>);           \
  template void diffusion_reverse_step<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,    \
                                          in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,    \
                                          tensor_view<T, cuda>);                                   \
  template void diffusion_target<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,          \
                                    in_view<T, cuda>, tensor_view<T, cuda>);                       \
  template void diffusion_predicted_eps<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,   \
                                           in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,   \
                                           tensor_view<T, cuda>);                                  \
  template void diffusion_x0_loss<T>(                                                              \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, tensor_view<const double, cuda>,       \
      tensor_view<const double, cuda>, tensor_view<const double, cuda>, tensor_view<T, cuda>,      \
      tensor_view<double, cuda>);                                                                  \
  template void repeat_rows<T>(in_view<T, cuda>, std::int64_t, tensor_view<T, cuda>);

AMBISEG_INSTANTIATE_DIFFUSION_KERNELS(float)
AMBISEG_INSTANTIATE_DIFFUSION_KERNELS(double)

#undef AMBISEG_INSTANTIATE_DIFFUSION_KERNELS

}  // namespace ambiseg::diffusion::cuda_kernels
