// ambiseg/core/low_precision.hpp — the 16-bit floating-point formats the tensor-core and
// AVX512-BF16 paths feed their multipliers, as bit patterns (uint16), written once
// (AMBISEG_HD) for the CPU GEMM (ops/cpu/gemm_bf16.hpp) and the CUDA kernels
// (ops/cuda/mixed.cuh).
//
//   bfloat16  1 sign, 8 exponent, 7 mantissa bits: float's range, 3 significant digits
//   half      1 sign, 5 exponent, 10 mantissa bits (IEEE binary16): ±65504, subnormals
//             from 2^-24, 3.3 significant digits
//
// float → 16 bits rounds to nearest, ties to even (what cuDNN, cuBLAS and vcvtneps2bf16
// do); a NaN stays a quiet NaN; values beyond the largest finite one round to ±inf as
// IEEE rounding says (half: from 65520 up). 16 bits → float is exact.
#pragma once

#include <cstdint>
#include <cstring>

#include "ambiseg/core/config.hpp"

namespace ambiseg {

AMBISEG_HD std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
AMBISEG_HD float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

AMBISEG_HD std::uint16_t bf16_bits(float f) {
  const std::uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  return static_cast<std::uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
AMBISEG_HD float bf16_float(std::uint16_t h) { return bits_float(std::uint32_t(h) << 16); }

AMBISEG_HD std::uint16_t half_bits(float f) {
  const std::uint32_t u = float_bits(f);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t mag = u & 0x7fffffffu;
  if (mag > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u | ((mag >> 13) & 0x3ffu));
  if (mag >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // ≥ 65520: inf
  if (mag >= 0x38800000u) {  // a normal half: rebias the exponent, round 13 bits away
    const std::uint32_t r = mag - 0x38000000u;
    return static_cast<std::uint16_t>(sign | ((r + 0x0fffu + ((r >> 13) & 1u)) >> 13));
  }
  if (mag < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below 2^-25: ±0
  // Subnormal half: the value in units of 2^-24, rounded to nearest even; 1024 units
  // round up into the smallest normal, whose bits follow on.
  const std::uint32_t exponent = mag >> 23;             // 102 … 112
  const std::uint32_t mantissa = (mag & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126u - exponent;          // 14 … 24
  const std::uint32_t units = mantissa >> shift;
  const std::uint32_t rest = mantissa & ((1u << shift) - 1u), halfway = 1u << (shift - 1u);
  const std::uint32_t rounded = units + ((rest > halfway || (rest == halfway && (units & 1u))) ? 1u : 0u);
  return static_cast<std::uint16_t>(sign | rounded);
}
AMBISEG_HD float half_float(std::uint16_t h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // ±0 or subnormal: mantissa · 2^-24, exact in float
  const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-08f;
  return sign ? -magnitude : magnitude;
}

}  // namespace ambiseg
