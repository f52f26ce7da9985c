// ambiseg/core/cuda/scalar.hpp — the element types the compiled CUDA kernels are
// instantiated for (src/cuda/*.cu); host code, shared by every module's cuda/api.hpp.
#pragma once

#include <concepts>

namespace ambiseg {

template <class T>
concept cuda_scalar = std::same_as<T, float> || std::same_as<T, double>;

}  // namespace ambiseg
