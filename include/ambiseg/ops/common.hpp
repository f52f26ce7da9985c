// ambiseg/ops/common.hpp — what every op front end shares.
//
// Argument types: the deduced parameter of an op is one of its outputs, a plain
// tensor_view<T, D>; every other argument is an in_view/out_view (core/tensor.hpp), a
// non-deduced context, so callers may pass a tensor<T>, a tensor_view<T> or a tensor_view<const T> where an
// `in` is expected, and `{}` (an empty view) for an optional gradient.
#pragma once

#include <concepts>

#include "ambiseg/ops/shape_checks.hpp"

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/profile.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"

// The CUDA kernels (ops/cuda/api.hpp, host declarations) are visible only to translation
// units built against ambiseg::cuda, which defines AMBISEG_WITH_CUDA and links them.
#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/ops/cuda/api.hpp"
#endif

namespace ambiseg::ops {

template <class T>
concept op_scalar = std::same_as<T, float> || std::same_as<T, double>;

// A device with no kernels at all: a compile error that names the supported ones.
template <class D>
constexpr void unsupported_device() {
  static_assert(dependent_false<D>,
                "ambiseg::ops: no kernels for this device; use ambiseg::cpu or ambiseg::cuda");
}

// The CUDA branch of a front end in a build without the CUDA backend.
template <class D>
constexpr void cuda_backend_missing() {
  static_assert(dependent_false<D>,
                "ambiseg::ops: ambiseg::cuda tensors need the CUDA backend: configure with "
                "-DAMBISEG_CUDA=ON and link the target ambiseg::cuda (it defines "
                "AMBISEG_WITH_CUDA and links the kernels)");
}

}  // namespace ambiseg::ops
