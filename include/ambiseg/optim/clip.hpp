// ambiseg/optim/clip.hpp — global L2 gradient-norm clipping (torch.nn.utils.clip_grad_norm_).
//
//   norm  = √(Σ g²) over every gradient of the model (accumulated in double)
//   scale = min(1, max_norm / (norm + 1e-6)),  g ← g · scale
// Exactly PyTorch's rule, which also scales (by a factor within 1e-6 of 1) when norm lies in
// (max_norm − 1e-6, max_norm]. Returns the norm before clipping.
//
// The sum is taken over a fixed split of the buffer into chunks, so the norm, and hence a
// training run, is bit-for-bit the same for any number of threads.
// A NaN or infinite norm throws value_error by default (PyTorch 1.13 would silently fill
// the gradients with NaN); with nonfinite_policy::report the gradients are left untouched
// and the non-finite norm is returned, so the caller can skip the step.
//
// On ambiseg::cuda (a build with -DAMBISEG_CUDA=ON) the same functions run the kernels of
// optim/cuda/api.hpp: a fixed 512-chunk reduction in double (deterministic, but not the CPU's
// 256-chunk order, so the norms agree to rounding, not bit for bit); they wait for the
// context's stream because they return the norm to the host. A loop that wants no round
// trip calls clip_grad_norm_async, which writes the norm into a double on the gradients'
// device (where AdamW's guard can read it) and clips there; it never throws for a
// non-finite norm (it leaves the gradients untouched): the caller reads the norm later.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/parameters.hpp"
#include "ambiseg/core/tensor.hpp"

#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/optim/cuda/api.hpp"
#endif

namespace ambiseg::optim {

enum class nonfinite_policy { throw_error, report };

template <class T>
double global_grad_norm(tensor_view<const T, cpu> grads) {
  constexpr std::int64_t chunks = 256;
  const std::int64_t n = grads.numel();
  const std::int64_t chunk = (n + chunks - 1) / chunks;
  const T* g = grads.data();
  std::array<double, chunks> partial{};
#pragma omp parallel for schedule(static) if (n >= (1 << 15))
  for (std::int64_t c = 0; c < chunks; ++c) {
    const std::int64_t first = c * chunk, last = std::min(n, first + chunk);
    double sum = 0.0;
#pragma omp simd reduction(+ : sum)
    for (std::int64_t i = first; i < last; ++i) sum += static_cast<double>(g[i]) * static_cast<double>(g[i]);
    partial[c] = sum;
  }
  double total = 0.0;
  for (double p : partial) total += p;
  return std::sqrt(total);
}

template <class T>
double clip_grad_norm(tensor_view<T, cpu> grads, double max_norm,
                      nonfinite_policy on_nonfinite = nonfinite_policy::throw_error) {
  throw_if<value_error>(!(max_norm >= 0.0), "clip_grad_norm: max_norm must be >= 0, got ", max_norm);
  const double norm = global_grad_norm<T>(grads);
  if (!std::isfinite(norm)) {
    throw_if<value_error>(on_nonfinite == nonfinite_policy::throw_error,
                          "clip_grad_norm: the total gradient norm is ", norm,
                          " (a gradient holds NaN or infinity)");
    return norm;
  }
  const double scale = std::min(1.0, max_norm / (norm + 1e-6));
  if (scale < 1.0) {
    const T s = static_cast<T>(scale);
    T* g = grads.data();
    const std::int64_t n = grads.numel();
#pragma omp parallel for simd schedule(static) if (n >= (1 << 15))
    for (std::int64_t i = 0; i < n; ++i) g[i] *= s;
  }
  return norm;
}

template <class T>
double clip_grad_norm(parameter_store<T, cpu>& params, double max_norm,
                      nonfinite_policy on_nonfinite = nonfinite_policy::throw_error) {
  return clip_grad_norm<T>(params.flat_grads(), max_norm, on_nonfinite);
}

template <class T>
void clip_grad_norm_async(tensor_view<T, cpu> grads, double max_norm, tensor_view<double, cpu> norm_out) {
  throw_if<shape_error>(norm_out.numel() != 1 || norm_out.data() == nullptr,
                        "clip_grad_norm_async: norm_out must hold one double, got ", norm_out.shape());
  norm_out.data()[0] = clip_grad_norm<T>(grads, max_norm, nonfinite_policy::report);
}

namespace detail {
template <class D>
constexpr void clip_needs_cuda_backend() {
  static_assert(dependent_false<D>,
                "optim::global_grad_norm / clip_grad_norm on ambiseg::cuda: the CUDA backend is "
                "not built in; configure with -DAMBISEG_CUDA=ON and link the target ambiseg::cuda");
}
}  // namespace detail

template <class T>
double global_grad_norm(tensor_view<const T, cuda> grads) {
#if defined(AMBISEG_WITH_CUDA)
  return cuda_kernels::global_grad_norm<T>(grads);
#else
  detail::clip_needs_cuda_backend<T>();
  return 0.0;
#endif
}

template <class T>
double clip_grad_norm(tensor_view<T, cuda> grads, double max_norm,
                      nonfinite_policy on_nonfinite = nonfinite_policy::throw_error) {
#if defined(AMBISEG_WITH_CUDA)
  return cuda_kernels::clip_grad_norm<T>(grads, max_norm,
                                               on_nonfinite == nonfinite_policy::report);
#else
  detail::clip_needs_cuda_backend<T>();
  return 0.0;
#endif
}

template <class T>
double clip_grad_norm(parameter_store<T, cuda>& params, double max_norm,
                      nonfinite_policy on_nonfinite = nonfinite_policy::throw_error) {
  return clip_grad_norm<T>(params.flat_grads(), max_norm, on_nonfinite);
}

template <class T>
void clip_grad_norm_async(tensor_view<T, cuda> grads, double max_norm, tensor_view<double, cuda> norm_out) {
#if defined(AMBISEG_WITH_CUDA)
  cuda_kernels::clip_grad_norm_async<T>(grads, max_norm, norm_out);
#else
  detail::clip_needs_cuda_backend<T>();
#endif
}

template <class T, class D>
void clip_grad_norm_async(parameter_store<T, D>& params, double max_norm, tensor_view<double, D> norm_out) {
  clip_grad_norm_async<T>(params.flat_grads(), max_norm, norm_out);
}

}  // namespace ambiseg::optim
