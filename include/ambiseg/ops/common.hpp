// ambiseg/ops/common.hpp — what every op front end shares.
//
// Argument types: the deduced parameter of an op is one of its outputs, a plain
// tensor_view<T, D>; every other argument is an in_view/out_view, a non-deduced context,
// so callers may pass a tensor<T>, a tensor_view<T> or a tensor_view<const T> where an
// `in` is expected, and `{}` (an empty view) for an optional gradient.
#pragma once

#include <concepts>
#include <type_traits>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"
#include "ambiseg/core/workspace.hpp"

namespace ambiseg::ops {

template <class T, class D>
using in_view = std::type_identity_t<tensor_view<const T, D>>;
template <class T, class D>
using out_view = std::type_identity_t<tensor_view<T, D>>;

template <class T>
concept op_scalar = std::same_as<T, float> || std::same_as<T, double>;

// An op's CUDA branch: a compile error that says what is missing (the backend comes later).
template <class D>
constexpr void unsupported_device() {
  static_assert(dependent_false<D>,
                "ambiseg::ops: this op has no kernel for this device yet (the CUDA backend "
                "is not implemented); use ambiseg::cpu");
}

namespace detail {
template <class V>
inline bool present(const V& v) { return v.data() != nullptr; }
}  // namespace detail

}  // namespace ambiseg::ops
