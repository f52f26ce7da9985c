// core/low_precision.hpp: float ↔ bfloat16 / IEEE half. Checked against the definition
// rather than against values: every 16-bit pattern widens exactly and rounds back to
// itself, and at every midpoint between two neighbouring 16-bit values (exact in float),
// and one float step either side of it, the rounding is to nearest with ties to even —
// through the subnormals, the subnormal/normal border, zero and overflow to infinity.
#include <catch2/catch.hpp>

#include <ambiseg/core/low_precision.hpp>

#include <cmath>
#include <cstdint>
#include <limits>

using namespace ambiseg;

namespace {

struct format {
  const char* name;
  std::uint16_t (*round)(float);
  float (*widen)(std::uint16_t);
  std::uint16_t infinity;  // +inf's bits
};
const format formats[] = {{"bfloat16", bf16_bits, bf16_float, 0x7f80},
                          {"half", half_bits, half_float, 0x7c00}};

}  // namespace

TEST_CASE("16-bit formats: every value widens exactly and rounds back to itself", "[core]") {
  for (const format& f : formats) {
    INFO(f.name);
    int mismatches = 0;
    for (std::uint32_t h = 0; h <= 0xffff; ++h) {
      const float v = f.widen(static_cast<std::uint16_t>(h));
      if (std::isnan(v)) {
        mismatches += !std::isnan(f.widen(f.round(v)));
        continue;
      }
      mismatches += f.round(v) != h;
    }
    CHECK(mismatches == 0);
  }
  CHECK(half_float(0x3c00) == 1.0f);
  CHECK(half_float(0x7bff) == 65504.0f);
  CHECK(half_float(0x0001) == std::ldexp(1.0f, -24));
  CHECK(half_float(0x0400) == std::ldexp(1.0f, -14));
  CHECK(half_float(0xc000) == -2.0f);
  CHECK(bf16_float(0x3f80) == 1.0f);
  CHECK(bf16_float(0x4049) == 3.140625f);
}

TEST_CASE("16-bit formats round to nearest, ties to even, at every midpoint", "[core]") {
  for (const format& f : formats) {
    INFO(f.name);
    int mismatches = 0;
    // Positive finite values h and their successor h + 1 (the last successor is +inf),
    // and their negatives through the sign bit.
    for (std::uint32_t h = 0; h < f.infinity; ++h) {
      const auto lo = static_cast<std::uint16_t>(h), hi = static_cast<std::uint16_t>(h + 1);
      const double a = f.widen(lo);
      // The midpoint of the last finite value and infinity: where the next exponent's
      // first value would be, less half its step (IEEE's overflow threshold).
      const double b = hi == f.infinity ? a + (a - f.widen(static_cast<std::uint16_t>(h - 1))) : f.widen(hi);
      const float mid = static_cast<float>((a + b) / 2);
      REQUIRE(double(mid) == (a + b) / 2);  // exact in float
      const std::uint16_t even = (lo & 1u) ? hi : lo;
      for (const float sign : {1.0f, -1.0f}) {
        const std::uint16_t s = sign < 0 ? 0x8000 : 0;
        mismatches += f.round(sign * mid) != (even | s);
        mismatches += f.round(sign * std::nextafter(mid, 0.0f)) != (lo | s);
        mismatches += f.round(sign * std::nextafter(mid, INFINITY)) != (hi | s);
      }
    }
    CHECK(mismatches == 0);
    CHECK(f.round(std::numeric_limits<float>::infinity()) == f.infinity);
    CHECK(f.round(-std::numeric_limits<float>::infinity()) == (f.infinity | 0x8000));
    CHECK(f.round(std::numeric_limits<float>::max()) == f.infinity);
    CHECK(std::isnan(f.widen(f.round(std::numeric_limits<float>::quiet_NaN()))));
    CHECK(std::isnan(f.widen(f.round(-std::numeric_limits<float>::quiet_NaN()))));
    CHECK(f.round(std::numeric_limits<float>::denorm_min()) == 0);
    CHECK(f.round(-0.0f) == 0x8000);
  }
  CHECK(half_bits(65519.99f) == 0x7bff);  // below IEEE's overflow threshold 65520
  CHECK(half_bits(65520.0f) == 0x7c00);
  CHECK(half_bits(0.1f) == 0x2e66);
}
