// ambiseg/io/dtype.hpp — element types of stored arrays, their byte order, 16-bit floats.
//
// One model for the three array readers. safetensors names a dtype ("F32", "BF16"); NumPy
// (.npy headers, pickled numpy.dtype objects) spells it as a kind and a size ("f4", "u1")
// behind a byte-order character ('<' little, '>' big, '=' native, '|' not applicable).
// Both spellings map onto io::dtype; stored bytes reach host order through load_scalar,
// convert_byte_order or load_element, and F16/BF16 become float exactly.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>

#include "ambiseg/core/config.hpp"
#include "ambiseg/core/error.hpp"

namespace ambiseg::io {

enum class dtype { BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64 };

inline constexpr std::string_view dtype_name(dtype t) {
  switch (t) {
    case dtype::BOOL: return "BOOL";
    case dtype::U8: return "U8";
    case dtype::I8: return "I8";
    case dtype::F8_E5M2: return "F8_E5M2";
    case dtype::F8_E4M3: return "F8_E4M3";
    case dtype::I16: return "I16";
    case dtype::U16: return "U16";
    case dtype::F16: return "F16";
    case dtype::BF16: return "BF16";
    case dtype::I32: return "I32";
    case dtype::U32: return "U32";
    case dtype::F32: return "F32";
    case dtype::F64: return "F64";
    case dtype::I64: return "I64";
    case dtype::U64: return "U64";
  }
  return "?";
}

inline constexpr std::size_t dtype_size(dtype t) {
  switch (t) {
    case dtype::BOOL: case dtype::U8: case dtype::I8: case dtype::F8_E5M2: case dtype::F8_E4M3:
      return 1;
    case dtype::I16: case dtype::U16: case dtype::F16: case dtype::BF16: return 2;
    case dtype::I32: case dtype::U32: case dtype::F32: return 4;
    case dtype::F64: case dtype::I64: case dtype::U64: return 8;
  }
  return 0;
}

// By safetensors name ("F32"); false for names this reader does not know.
inline bool parse_dtype(std::string_view name, dtype& out) {
  for (int i = 0; i <= static_cast<int>(dtype::U64); ++i) {
    if (dtype_name(static_cast<dtype>(i)) == name) {
      out = static_cast<dtype>(i);
      return true;
    }
  }
  return false;
}

inline constexpr bool is_floating(dtype t) {
  return t == dtype::F8_E5M2 || t == dtype::F8_E4M3 || t == dtype::F16 || t == dtype::BF16 ||
         t == dtype::F32 || t == dtype::F64;
}

// The types load_element converts to float exactly (F64 rounds to nearest).
inline constexpr bool has_float_conversion(dtype t) {
  return t == dtype::F16 || t == dtype::BF16 || t == dtype::F32 || t == dtype::F64;
}

// --- C++ types ----------------------------------------------------------------------------

template <class T>
inline constexpr bool has_dtype =
    std::is_same_v<T, bool> || std::is_same_v<T, std::uint8_t> || std::is_same_v<T, std::int8_t> ||
    std::is_same_v<T, std::int16_t> || std::is_same_v<T, std::uint16_t> ||
    std::is_same_v<T, std::int32_t> || std::is_same_v<T, std::uint32_t> ||
    std::is_same_v<T, std::int64_t> || std::is_same_v<T, std::uint64_t> || std::is_same_v<T, float> ||
    std::is_same_v<T, double>;

template <class T>
inline constexpr dtype dtype_of() {
  if constexpr (std::is_same_v<T, bool>) return dtype::BOOL;
  else if constexpr (std::is_same_v<T, std::uint8_t>) return dtype::U8;
  else if constexpr (std::is_same_v<T, std::int8_t>) return dtype::I8;
  else if constexpr (std::is_same_v<T, std::int16_t>) return dtype::I16;
  else if constexpr (std::is_same_v<T, std::uint16_t>) return dtype::U16;
  else if constexpr (std::is_same_v<T, std::int32_t>) return dtype::I32;
  else if constexpr (std::is_same_v<T, std::uint32_t>) return dtype::U32;
  else if constexpr (std::is_same_v<T, std::int64_t>) return dtype::I64;
  else if constexpr (std::is_same_v<T, std::uint64_t>) return dtype::U64;
  else if constexpr (std::is_same_v<T, float>) return dtype::F32;
  else if constexpr (std::is_same_v<T, double>) return dtype::F64;
  else static_assert(dependent_false<T>, "io: no stored dtype for this C++ type");
}

// --- NumPy spellings -----------------------------------------------------------------------

// The type code without its byte-order character ("b1", "u1", "f4"); empty for the types
// NumPy has no code for (BF16, FP8).
inline constexpr std::string_view numpy_type_code(dtype t) {
  switch (t) {
    case dtype::BOOL: return "b1";
    case dtype::U8: return "u1";
    case dtype::I8: return "i1";
    case dtype::I16: return "i2";
    case dtype::U16: return "u2";
    case dtype::F16: return "f2";
    case dtype::I32: return "i4";
    case dtype::U32: return "u4";
    case dtype::F32: return "f4";
    case dtype::F64: return "f8";
    case dtype::I64: return "i8";
    case dtype::U64: return "u8";
    case dtype::BF16: case dtype::F8_E5M2: case dtype::F8_E4M3: return "";
  }
  return "";
}

// "f4" → F32; false for anything that is not a numeric bool/int/uint/float code.
inline bool parse_numpy_type_code(std::string_view code, dtype& out) {
  if (code.empty()) return false;
  for (int i = 0; i <= static_cast<int>(dtype::U64); ++i) {
    if (numpy_type_code(static_cast<dtype>(i)) == code) {
      out = static_cast<dtype>(i);
      return true;
    }
  }
  return false;
}

// '<' '>' '=' → the byte order; false for '|' and anything else.
inline bool parse_numpy_byte_order(char c, std::endian& out) {
  switch (c) {
    case '<': out = std::endian::little; return true;
    case '>': out = std::endian::big; return true;
    case '=': out = std::endian::native; return true;
    default: return false;
  }
}

// "<f4", "|u1" ('|' for one-byte types, as NumPy prints them).
inline std::string numpy_descr(dtype t, std::endian order) {
  const char byte_order = dtype_size(t) == 1 ? '|' : (order == std::endian::little ? '<' : '>');
  return std::string(1, byte_order) + std::string(numpy_type_code(t));
}

// --- byte order ---------------------------------------------------------------------------

// A T stored at p in byte order `stored`, in host order.
template <class T>
inline T load_scalar(const void* p, std::endian stored) {
  static_assert(std::is_trivially_copyable_v<T> && (sizeof(T) == 1 || sizeof(T) == 2 ||
                                                    sizeof(T) == 4 || sizeof(T) == 8));
  if constexpr (sizeof(T) == 1) {
    T v;
    std::memcpy(&v, p, 1);
    return v;
  } else {
    using bits_t = std::conditional_t<sizeof(T) == 2, std::uint16_t,
                                      std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>>;
    bits_t b;
    std::memcpy(&b, p, sizeof(T));
    if (stored != std::endian::native) {
      if constexpr (sizeof(T) == 2) b = __builtin_bswap16(b);
      else if constexpr (sizeof(T) == 4) b = __builtin_bswap32(b);
      else b = __builtin_bswap64(b);
    }
    return std::bit_cast<T>(b);
  }
}

// Converts `count` elements of `width` bytes in place between byte order `stored` and host
// order (the swap is its own inverse, so the one call serves reading and writing).
inline void convert_byte_order(void* data, std::size_t count, std::size_t width, std::endian stored) {
  if (stored == std::endian::native || width < 2) return;
  auto* p = static_cast<unsigned char*>(data);
  for (std::size_t i = 0; i < count; ++i, p += width)
    for (std::size_t a = 0, b = width - 1; a < b; ++a, --b) std::swap(p[a], p[b]);
}

// --- 16-bit floats ------------------------------------------------------------------------

// IEEE binary16 → binary32, exact for every input (subnormals normalised, inf kept, NaN
// payload kept in the top mantissa bits so a NaN stays a NaN).
AMBISEG_HD constexpr float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1Fu;
  std::uint32_t mantissa = h & 0x3FFu;
  std::uint32_t bits = 0;
  if (exponent == 0x1F) {
    bits = sign | 0x7F800000u | (mantissa << 13);
  } else if (exponent != 0) {
    bits = sign | ((exponent + (127 - 15)) << 23) | (mantissa << 13);
  } else if (mantissa == 0) {
    bits = sign;
  } else {  // subnormal: value = mantissa · 2^-24; shift until the implicit bit appears
    std::uint32_t e = 127 - 15 + 1;
    while ((mantissa & 0x400u) == 0) {
      mantissa <<= 1;
      --e;
    }
    bits = sign | (e << 23) | ((mantissa & 0x3FFu) << 13);
  }
  return std::bit_cast<float>(bits);
}

// bfloat16 is the top half of a binary32, so the conversion is a shift.
AMBISEG_HD constexpr float bfloat16_to_float(std::uint16_t b) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16);
}

// --- conversion ---------------------------------------------------------------------------

// The element of type t stored at p in byte order `stored`, converted to T by static_cast
// (bool: nonzero is true). FP8 has no conversion: value_error.
template <class T>
inline T load_element(dtype t, const unsigned char* p, std::endian stored) {
  switch (t) {
    case dtype::BOOL: return static_cast<T>(*p != 0);
    case dtype::U8: return static_cast<T>(*p);
    case dtype::I8: return static_cast<T>(static_cast<std::int8_t>(*p));
    case dtype::I16: return static_cast<T>(load_scalar<std::int16_t>(p, stored));
    case dtype::U16: return static_cast<T>(load_scalar<std::uint16_t>(p, stored));
    case dtype::I32: return static_cast<T>(load_scalar<std::int32_t>(p, stored));
    case dtype::U32: return static_cast<T>(load_scalar<std::uint32_t>(p, stored));
    case dtype::I64: return static_cast<T>(load_scalar<std::int64_t>(p, stored));
    case dtype::U64: return static_cast<T>(load_scalar<std::uint64_t>(p, stored));
    case dtype::F16: return static_cast<T>(half_to_float(load_scalar<std::uint16_t>(p, stored)));
    case dtype::BF16: return static_cast<T>(bfloat16_to_float(load_scalar<std::uint16_t>(p, stored)));
    case dtype::F32: return static_cast<T>(load_scalar<float>(p, stored));
    case dtype::F64: return static_cast<T>(load_scalar<double>(p, stored));
    case dtype::F8_E5M2: case dtype::F8_E4M3: break;
  }
  throw value_error(detail::concat("io: no conversion from ", dtype_name(t)));
}

// n consecutive elements of type t from src to dst (the type dispatch once, not per element).
template <class T>
inline void convert_elements(dtype t, const unsigned char* src, std::size_t n, std::endian stored,
                             T* dst) {
  auto each = [&](auto load) {
    const std::size_t width = dtype_size(t);
    for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<T>(load(src + i * width));
  };
  switch (t) {
    case dtype::F16:
      each([&](const unsigned char* p) { return half_to_float(load_scalar<std::uint16_t>(p, stored)); });
      return;
    case dtype::BF16:
      each([&](const unsigned char* p) { return bfloat16_to_float(load_scalar<std::uint16_t>(p, stored)); });
      return;
    case dtype::F32: each([&](const unsigned char* p) { return load_scalar<float>(p, stored); }); return;
    case dtype::F64: each([&](const unsigned char* p) { return load_scalar<double>(p, stored); }); return;
    default: each([&](const unsigned char* p) { return load_element<T>(t, p, stored); }); return;
  }
}

}  // namespace ambiseg::io
