// ambiseg/ops/cuda/kernels.cu — the one nvcc translation unit of the CUDA backend.
//
// Compiled into the static library ambiseg_cuda_kernels (cmake/ambisegCUDA.cmake), which
// ambiseg::cuda links. It defines every function declared in ops/cuda/api.hpp: the
// templates are instantiated explicitly below for float and double, so host translation
// units compiled by the C++ compiler link against them without seeing any device code.
// Keep Eigen, xtensor and OpenMP out of this file (nvcc compiles it).
#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/blas.cuh"
#include "ambiseg/ops/cuda/conv2d.cuh"
#include "ambiseg/ops/cuda/diffusion.cuh"
#include "ambiseg/ops/cuda/elementwise.cuh"
#include "ambiseg/ops/cuda/group_norm.cuh"
#include "ambiseg/ops/cuda/optim.cuh"

namespace ambiseg::ops::cuda_kernels {

#define AMBISEG_CUDA_INSTANTIATE(T)                                                              \
  template void group_norm_forward<T>(dev_in<T>, dev_in<T>, dev_in<T>, int, double,               \
                                      tensor_view<T, cuda>, dev_out<T>, dev_out<T>);              \
  template void group_norm_backward<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, int, \
                                       tensor_view<T, cuda>, dev_out<T>, dev_out<T>);             \
  template void group_norm_silu_forward<T>(dev_in<T>, dev_in<T>, dev_in<T>, int, double,          \
                                           tensor_view<T, cuda>, dev_out<T>, dev_out<T>);         \
  template void group_norm_silu_backward<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, \
                                            dev_in<T>, int, tensor_view<T, cuda>, dev_out<T>,     \
                                            dev_out<T>);                                          \
  template void silu_forward<T>(dev_in<T>, tensor_view<T, cuda>);                                 \
  template void silu_backward<T>(dev_in<T>, dev_in<T>, tensor_view<T, cuda>);                     \
  template void tanh_forward<T>(dev_in<T>, tensor_view<T, cuda>);                                 \
  template void tanh_backward<T>(dev_in<T>, dev_in<T>, tensor_view<T, cuda>);                     \
  template void add_forward<T>(dev_in<T>, dev_in<T>, tensor_view<T, cuda>);                       \
  template void add_channel_bias_forward<T>(tensor_view<T, cuda>, dev_in<T>);                     \
  template void add_channel_bias_backward<T>(dev_in<T>, tensor_view<T, cuda>);                    \
  template void upsample_nearest2x_forward<T>(dev_in<T>, tensor_view<T, cuda>);                   \
  template void upsample_nearest2x_backward<T>(dev_in<T>, tensor_view<T, cuda>);                  \
  template void concat_channels_forward<T>(dev_in<T>, dev_in<T>, tensor_view<T, cuda>);           \
  template void concat_channels_backward<T>(dev_in<T>, tensor_view<T, cuda>, dev_out<T>);         \
  template void timestep_embedding<T>(dev_in<T>, int, double, tensor_view<T, cuda>);              \
  template void linear_forward<T>(dev_in<T>, dev_in<T>, dev_in<T>, tensor_view<T, cuda>);         \
  template void linear_backward<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_out<T>,                   \
                                   tensor_view<T, cuda>, dev_out<T>);                             \
  template void attention_forward<T>(dev_in<T>, int, tensor_view<T, cuda>, dev_out<T>,            \
                                     workspace<cuda>&);                                           \
  template void attention_backward<T>(dev_in<T>, dev_in<T>, dev_in<T>, int, tensor_view<T, cuda>, \
                                      workspace<cuda>&);                                          \
  template void softmax_rows_forward<T>(dev_in<T>, tensor_view<T, cuda>);                         \
  template void softmax_rows_backward<T>(dev_in<T>, dev_in<T>, tensor_view<T, cuda>);             \
  template void adamw_step<T>(tensor_view<T, cuda>, dev_in<T>, dev_out<T>, dev_out<T>,            \
                              const optim::adamw_step_scalars<T>&,                                \
                              tensor_view<const double, cuda>);                                   \
  template void global_grad_norm_async<T>(dev_in<T>, tensor_view<double, cuda>);                  \
  template void clip_grad_norm_async<T>(tensor_view<T, cuda>, double, tensor_view<double, cuda>); \
  template double global_grad_norm<T>(dev_in<T>);                                                 \
  template double clip_grad_norm<T>(tensor_view<T, cuda>, double, bool);                          \
  template void ema_update<T>(tensor_view<T, cuda>, dev_in<T>, double,                           \
                              tensor_view<const double, cuda>);                                   \
  template void swap_contents<T>(tensor_view<T, cuda>, dev_out<T>);                               \
  template void diffusion_noise<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>,                    \
                                   tensor_view<T, cuda>);                                         \
  template void diffusion_predicted_x0<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, bool,       \
                                          tensor_view<T, cuda>);                                  \
  template void diffusion_reverse_step<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>,  \
                                          dev_in<T>, tensor_view<T, cuda>);                       \
  template void diffusion_target<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>,                   \
                                    tensor_view<T, cuda>);                                        \
  template void diffusion_predicted_eps<T>(dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, dev_in<T>, \
                                           dev_in<T>, tensor_view<T, cuda>);                      \
  template void diffusion_x0_loss<T>(dev_in<T>, dev_in<T>, dev_in<T>,                             \
                                     tensor_view<const double, cuda>,                             \
                                     tensor_view<const double, cuda>,                             \
                                     tensor_view<const double, cuda>, tensor_view<T, cuda>,       \
                                     tensor_view<double, cuda>);                                  \
  template void repeat_rows<T>(dev_in<T>, std::int64_t, tensor_view<T, cuda>);

AMBISEG_CUDA_INSTANTIATE(float)
AMBISEG_CUDA_INSTANTIATE(double)

#undef AMBISEG_CUDA_INSTANTIATE

}  // namespace ambiseg::ops::cuda_kernels
