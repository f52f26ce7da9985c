// Tests of io/dtype.hpp: the one dtype model the npy, safetensors and pickle readers share.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "ambiseg/io/dtype.hpp"

using namespace ambiseg;
using io::dtype;

TEST_CASE("dtype: safetensors names and NumPy codes map onto one enum", "[io][dtype]") {
  for (int i = 0; i <= static_cast<int>(dtype::U64); ++i) {
    const auto t = static_cast<dtype>(i);
    dtype back{};
    REQUIRE(io::parse_dtype(io::dtype_name(t), back));
    CHECK(back == t);
    const auto code = io::numpy_type_code(t);
    if (code.empty()) continue;  // BF16 and FP8 have no NumPy code
    REQUIRE(io::parse_numpy_type_code(code, back));
    CHECK(back == t);
    CHECK(static_cast<std::size_t>(code[1] - '0') == io::dtype_size(t));
  }
  dtype t{};
  CHECK_FALSE(io::parse_dtype("F128", t));
  CHECK_FALSE(io::parse_numpy_type_code("c8", t));
  CHECK_FALSE(io::parse_numpy_type_code("", t));
  CHECK(io::numpy_descr(dtype::F32, std::endian::big) == ">f4");
  CHECK(io::numpy_descr(dtype::U8, std::endian::big) == "|u1");
  std::endian order{};
  CHECK(io::parse_numpy_byte_order('>', order));
  CHECK(order == std::endian::big);
  CHECK_FALSE(io::parse_numpy_byte_order('|', order));
  CHECK(io::dtype_of<float>() == dtype::F32);
  CHECK(io::dtype_of<bool>() == dtype::BOOL);
  CHECK(io::dtype_of<std::int16_t>() == dtype::I16);
  CHECK(io::is_floating(dtype::BF16));
  CHECK_FALSE(io::is_floating(dtype::I64));
}

TEST_CASE("dtype: stored bytes in either byte order reach host order", "[io][dtype]") {
  const unsigned char big_i32[4] = {0xff, 0xff, 0xff, 0xf9};  // -7
  const unsigned char little_i32[4] = {0xf9, 0xff, 0xff, 0xff};
  CHECK(io::load_scalar<std::int32_t>(big_i32, std::endian::big) == -7);
  CHECK(io::load_scalar<std::int32_t>(little_i32, std::endian::little) == -7);
  CHECK(io::load_element<double>(dtype::I32, big_i32, std::endian::big) == -7.0);

  unsigned char halves[4] = {0x3c, 0x00, 0xc0, 0x00};  // big-endian F16 1.0, -2.0
  io::convert_byte_order(halves, 2, 2, std::endian::big);
  float out[2];
  io::convert_elements(dtype::F16, halves, 2, std::endian::native, out);
  CHECK(out[0] == 1.0f);
  CHECK(out[1] == -2.0f);
  const unsigned char bf16[2] = {0x80, 0x3f};  // little-endian BF16 1.0
  CHECK(io::load_element<float>(dtype::BF16, bf16, std::endian::little) == 1.0f);
  const unsigned char flag = 2;
  CHECK(io::load_element<int>(dtype::BOOL, &flag, std::endian::little) == 1);
  CHECK_THROWS_AS(io::load_element<float>(dtype::F8_E4M3, &flag, std::endian::little), value_error);
}
