// src/cuda/ops.cu — the op kernels (include/ambiseg/ops/cuda/*.cuh) compiled by nvcc into
// ambiseg_cuda_kernels, every function of ops/cuda/api.hpp instantiated for float and
// double, so host code compiled by the C++ compiler links them without seeing device code.
// Keep xtensor and OpenMP out of this file (nvcc compiles it).
#include "ambiseg/ops/cuda/affine.cuh"
#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/batch_norm.cuh"
#include "ambiseg/ops/cuda/blas.cuh"
#include "ambiseg/ops/cuda/conv2d.cuh"
#include "ambiseg/ops/cuda/elementwise.cuh"
#include "ambiseg/ops/cuda/group_norm.cuh"
#include "ambiseg/ops/cuda/latent_fc.cuh"
#include "ambiseg/ops/cuda/losses.cuh"
#include "ambiseg/ops/cuda/resample.cuh"
#include "ambiseg/ops/cuda/sigma_latent.cuh"
#include "ambiseg/ops/cuda/tile.cuh"

namespace ambiseg::ops::cuda_kernels {

#define AMBISEG_INSTANTIATE_OP_KERNELS(T)                                                          \
  template void group_norm_forward<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, int,   \
                                      double, tensor_view<T, cuda>, out_view<T, cuda>,             \
                                      out_view<T, cuda>);                                          \
  template void group_norm_backward<T>(                                                            \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,    \
      int, tensor_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>);                            \
  template void group_norm_silu_forward<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,   \
                                           int, double, tensor_view<T, cuda>, out_view<T, cuda>,   \
                                           out_view<T, cuda>);                                     \
  template void group_norm_silu_backward<T>(                                                       \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,    \
      in_view<T, cuda>, int, tensor_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>);          \
  template void silu_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                           \
  template void silu_backward<T>(in_view<T, cuda>, in_view<T, cuda>, tensor_view<T, cuda>);        \
  template void tanh_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                           \
  template void tanh_backward<T>(in_view<T, cuda>, in_view<T, cuda>, tensor_view<T, cuda>);        \
  template void add_forward<T>(in_view<T, cuda>, in_view<T, cuda>, tensor_view<T, cuda>);          \
  template void add_channel_bias_forward<T>(tensor_view<T, cuda>, in_view<T, cuda>);               \
  template void add_channel_bias_backward<T>(in_view<T, cuda>, tensor_view<T, cuda>);              \
  template void upsample_nearest2x_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);             \
  template void upsample_nearest2x_backward<T>(in_view<T, cuda>, tensor_view<T, cuda>);            \
  template void concat_channels_forward<T>(in_view<T, cuda>, in_view<T, cuda>,                     \
                                           tensor_view<T, cuda>);                                  \
  template void concat_channels_backward<T>(in_view<T, cuda>, tensor_view<T, cuda>,                \
                                            out_view<T, cuda>);                                    \
  template void timestep_embedding<T>(in_view<T, cuda>, int, double, tensor_view<T, cuda>);        \
  template void linear_forward<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,            \
                                  tensor_view<T, cuda>);                                           \
  template void linear_backward<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,           \
                                   out_view<T, cuda>, tensor_view<T, cuda>, out_view<T, cuda>);    \
  template void attention_forward<T>(in_view<T, cuda>, int, tensor_view<T, cuda>,                  \
                                     out_view<T, cuda>, workspace<cuda>&);                         \
  template void attention_backward<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, int,   \
                                      tensor_view<T, cuda>, workspace<cuda>&);                     \
  template void softmax_rows_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                   \
  template void softmax_rows_backward<T>(in_view<T, cuda>, in_view<T, cuda>,                      \
                                         tensor_view<T, cuda>);                                    \
  template void relu_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                           \
  template void relu_backward<T>(in_view<T, cuda>, in_view<T, cuda>, tensor_view<T, cuda>);        \
  template void spatial_mean_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                   \
  template void spatial_mean_backward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                  \
  template void avg_pool2x2_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                    \
  template void avg_pool2x2_backward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                   \
  template void upsample_bilinear2x_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>, bilinear_mode);\
  template void upsample_bilinear2x_backward<T>(in_view<T, cuda>, tensor_view<T, cuda>, bilinear_mode);\
  template void sigmoid_cross_entropy_forward_backward<T>(                                         \
      in_view<T, cuda>, in_view<T, cuda>, double, out_view<double, cuda>, tensor_view<T, cuda>);   \
  template void diag_gaussian_rsample_forward<T>(in_view<T, cuda>, in_view<T, cuda>,               \
                                                 in_view<T, cuda>, tensor_view<T, cuda>);          \
  template void diag_gaussian_rsample_backward<T>(in_view<T, cuda>, in_view<T, cuda>,              \
                                                  in_view<T, cuda>, tensor_view<T, cuda>,          \
                                                  out_view<T, cuda>);                              \
  template void diag_gaussian_kl_forward_backward<T>(                                              \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, double,              \
      out_view<double, cuda>, tensor_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>,          \
      out_view<T, cuda>);

AMBISEG_INSTANTIATE_OP_KERNELS(float)
template void affine_forward<float>(in_view<float, cuda>, double, double, tensor_view<float, cuda>);
template void affine_forward<double>(in_view<double, cuda>, double, double, tensor_view<double, cuda>);
template void tile_rows_forward<float>(in_view<float, cuda>, tensor_view<float, cuda>);
template void tile_rows_forward<double>(in_view<double, cuda>, tensor_view<double, cuda>);
template void tile_rows_backward<float>(in_view<float, cuda>, double, tensor_view<float, cuda>);
template void tile_rows_backward<double>(in_view<double, cuda>, double, tensor_view<double, cuda>);
AMBISEG_INSTANTIATE_OP_KERNELS(double)

#undef AMBISEG_INSTANTIATE_OP_KERNELS

#define AMBISEG_INSTANTIATE_LATENT_FC(T)                                                           \
  template void fc_scale_tril_forward<T>(in_view<T, cuda>, in_view<T, cuda>,                       \
                                         tensor_view<T, cuda>);                                    \
  template void fc_scale_tril_backward<T>(in_view<T, cuda>, in_view<T, cuda>,                      \
                                          tensor_view<T, cuda>, out_view<T, cuda>);                \
  template void fc_gaussian_rsample_forward<T>(in_view<T, cuda>, in_view<T, cuda>,                 \
                                               in_view<T, cuda>, tensor_view<T, cuda>);            \
  template void fc_gaussian_rsample_backward<T>(in_view<T, cuda>, in_view<T, cuda>,                \
                                                tensor_view<T, cuda>, out_view<T, cuda>);          \
  template void fc_gaussian_kl_forward_backward<T>(                                                \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, double,              \
      out_view<double, cuda>, tensor_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>,          \
      out_view<T, cuda>);                                                                          \
  template void mixture_log_prob_forward_backward<T>(                                              \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, double,              \
      out_view<double, cuda>, tensor_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>,          \
      out_view<T, cuda>);                                                                          \
  template void diag_mixture_log_prob_forward_backward<T>(                                         \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, double,              \
      out_view<double, cuda>, tensor_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>,          \
      out_view<T, cuda>);                                                                          \
  template void straight_through_mixture_sample_forward<T>(                                        \
      in_view<T, cuda>, in_view<T, cuda>, double, in_view<T, cuda>, tensor_view<T, cuda>,          \
      out_view<T, cuda>, out_view<std::int32_t, cuda>);                                            \
  template void straight_through_mixture_sample_backward<T>(                                       \
      in_view<T, cuda>, in_view<T, cuda>, in_view<std::int32_t, cuda>, double, in_view<T, cuda>,   \
      tensor_view<T, cuda>, out_view<T, cuda>);

AMBISEG_INSTANTIATE_LATENT_FC(float)
AMBISEG_INSTANTIATE_LATENT_FC(double)

#undef AMBISEG_INSTANTIATE_LATENT_FC

#define AMBISEG_INSTANTIATE_BATCH_NORM(T)                                                          \
  template void batch_norm_forward_training<T>(                                                    \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, double, double, tensor_view<T, cuda>,  \
      out_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>);                 \
  template void batch_norm_forward_inference<T>(in_view<T, cuda>, in_view<T, cuda>,                \
                                                in_view<T, cuda>, in_view<T, cuda>,                \
                                                in_view<T, cuda>, double, tensor_view<T, cuda>);   \
  template void batch_norm_backward<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>,       \
                                       in_view<T, cuda>, in_view<T, cuda>, tensor_view<T, cuda>,   \
                                       out_view<T, cuda>, out_view<T, cuda>);

AMBISEG_INSTANTIATE_BATCH_NORM(float)
AMBISEG_INSTANTIATE_BATCH_NORM(double)

#undef AMBISEG_INSTANTIATE_BATCH_NORM

#define AMBISEG_INSTANTIATE_SIGMA_LATENT(T)                                                        \
  template void softplus_forward<T>(in_view<T, cuda>, tensor_view<T, cuda>);                        \
  template void softplus_backward<T>(in_view<T, cuda>, in_view<T, cuda>, tensor_view<T, cuda>);     \
  template void sigma_gaussian_rsample_forward<T>(in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, \
                                                  tensor_view<T, cuda>);                           \
  template void sigma_gaussian_rsample_backward<T>(in_view<T, cuda>, in_view<T, cuda>, tensor_view<T, cuda>, \
                                                   out_view<T, cuda>);                             \
  template void gaussian_kl_sigma_forward_backward<T>(                                             \
      in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, in_view<T, cuda>, double, double,      \
      out_view<double, cuda>, tensor_view<T, cuda>, out_view<T, cuda>, out_view<T, cuda>,          \
      out_view<T, cuda>);
AMBISEG_INSTANTIATE_SIGMA_LATENT(float)
AMBISEG_INSTANTIATE_SIGMA_LATENT(double)
#undef AMBISEG_INSTANTIATE_SIGMA_LATENT

}  // namespace ambiseg::ops::cuda_kernels
