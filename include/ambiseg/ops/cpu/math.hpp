// ambiseg/ops/cpu/math.hpp — element functions that vectorise.
//
// glibc's expf is a call the compiler cannot vectorise without -ffast-math, and SiLU and
// the attention softmax evaluate millions of exponentials per step. fast_exp(float) is a
// Cephes-style exp (range reduction by ln 2, degree-6 polynomial, 2^n built from bits):
// branch-free, inlined, relative error ~2 ulp (checked against std::exp in the tests). Double uses std::exp (reference path).
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

namespace ambiseg::ops::cpu_kernels {

inline float fast_exp(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  // Round to nearest by adding and removing 1.5·2^23 (std::floor blocks vectorisation in
  // GCC 12; without -ffast-math the compiler keeps the two additions).
  const float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;       // ln 2 split in a high part exact in float ...
  r = r - n * -2.12194440e-4f;          // ... and the low remainder
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const std::int32_t e = (static_cast<std::int32_t>(n) + 127) << 23;
  return p * std::bit_cast<float>(e);
}
inline double fast_exp(double x) { return std::exp(x); }

template <class T>
inline T sigmoid(T x) { return T(1) / (T(1) + fast_exp(-x)); }

}  // namespace ambiseg::ops::cpu_kernels
