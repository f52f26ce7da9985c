// Tests of io/npy.hpp: numpy-written fixtures (tools/make_npy_fixtures.py), round trips,
// and hostile files that must be refused with format_error.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "ambiseg/io/npy.hpp"

namespace fs = std::filesystem;
using namespace ambiseg;
using namespace ambiseg::io;

namespace {

fs::path fixture(const std::string& name) { return fs::path(AMBISEG_FIXTURE_DIR) / "npy" / name; }

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("ambiseg_test_npy_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// A v1.0 file with the given dict text (padded like numpy) and data bytes.
std::string make_npy(const std::string& dict, const std::string& data, int major = 1) {
  std::string header = dict;
  const std::size_t prefix = major == 1 ? 10 : 12;
  while ((prefix + header.size() + 1) % 64) header += ' ';
  header += '\n';
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  const std::size_t n = header.size();
  out += static_cast<char>(n & 0xff);
  out += static_cast<char>((n >> 8) & 0xff);
  if (major != 1) { out += static_cast<char>((n >> 16) & 0xff); out += static_cast<char>(n >> 24); }
  return out + header + data;
}

template <class F>
std::string format_error_message(F&& f) {
  try {
    f();
  } catch (const format_error& e) {
    return e.what();
  }
  FAIL("no format_error was thrown");
  return {};
}

}  // namespace

TEMPLATE_TEST_CASE("npy: numpy fixtures of every dtype read as arange(6) in shape (2,3)", "[io][npy]",
                   std::uint8_t, std::int32_t, std::int64_t, float, double) {
  const std::vector<std::string> codes = {"u1", "i1", "i2", "i4", "i8", "u2", "u4", "u8", "f4",
                                          "f8", "be_f8", "be_i4", "v2_f4", "v3_f4"};
  for (const auto& code : codes) {
    INFO(code);
    const auto a = read_npy<TestType>(fixture("arange_2x3_" + code + ".npy"));
    REQUIRE(a.shape == std::vector<std::int64_t>{2, 3});
    REQUIRE(a.data == std::vector<TestType>{0, 1, 2, 3, 4, 5});
  }
  const auto b = read_npy<TestType>(fixture("arange_2x3_b1.npy"));
  CHECK(b.stored_dtype == npy_dtype::bool_);
  CHECK(b.data == std::vector<TestType>{0, 1, 0, 1, 0, 1});
}

TEST_CASE("npy: header fields of numpy fixtures", "[io][npy]") {
  auto h = read_npy_header(fixture("arange_2x3_be_f8.npy"));
  CHECK(h.dtype == npy_dtype::float64);
  CHECK(h.big_endian);
  CHECK_FALSE(h.fortran_order);
  CHECK(h.data_offset == 128);
  h = read_npy_header(fixture("arange_2x3_v3_f4.npy"));
  CHECK(h.major == 3);
  CHECK(h.numel == 6);
  h = read_npy_header(fixture("arange_2x3x4_fortran_f4.npy"));
  CHECK(h.fortran_order);
  CHECK(h.shape == std::vector<std::int64_t>{2, 3, 4});
}

TEST_CASE("npy: fortran_order True is transposed to C order", "[io][npy]") {
  const auto a = read_npy<float>(fixture("arange_2x3x4_fortran_f4.npy"));
  REQUIRE(a.shape == std::vector<std::int64_t>{2, 3, 4});
  for (int i = 0; i < 24; ++i) CHECK(a.data[i] == float(i));
  // The raw bytes really are column-major: element (1,0,0) = 12 comes second.
  const std::string raw = slurp(fixture("arange_2x3x4_fortran_f4.npy"));
  float second;
  std::memcpy(&second, raw.data() + 128 + 4, 4);
  CHECK(second == 12.0f);
}

TEST_CASE("npy: special values, scalars and empty arrays", "[io][npy]") {
  const auto s = read_npy<double>(fixture("special_f8.npy"));
  REQUIRE(s.data.size() == 4);
  CHECK(s.data[0] == -1.5);
  CHECK(s.data[1] == 0.25);
  CHECK(std::isinf(s.data[2]));
  CHECK(std::signbit(s.data[3]));
  const auto sc = read_npy<double>(fixture("scalar_f8.npy"));
  CHECK(sc.shape.empty());
  REQUIRE(sc.data.size() == 1);
  CHECK(sc.data[0] == 2.5);
  const auto e = read_npy<float>(fixture("empty_0x3_f4.npy"));
  CHECK(e.shape == std::vector<std::int64_t>{0, 3});
  CHECK(e.data.empty());
  const auto n = read_npy<std::int16_t>(fixture("negative_i8.npy"));
  CHECK(n.data == std::vector<std::int16_t>{-3, 0, 300});
}

TEST_CASE("npy: conversions that lose information are refused", "[io][npy]") {
  CHECK_THROWS_AS(read_npy<std::uint8_t>(fixture("negative_i8.npy")), value_error);  // -3, 300
  CHECK_THROWS_AS(read_npy<std::int32_t>(fixture("special_f8.npy")), value_error);   // -1.5
  CHECK_THROWS_AS(read_npy<std::int32_t>(fixture("nan_f4.npy")), value_error);
  // A custom converter sees the stored type.
  const auto t = read_npy_with<std::uint8_t>(fixture("special_f8.npy"),
                                             [](auto v) -> std::uint8_t { return v > 0.5; });
  CHECK(t.data == std::vector<std::uint8_t>{0, 0, 1, 0});
}

TEST_CASE("npy: unsupported dtypes are refused by name", "[io][npy]") {
  CHECK_THAT(format_error_message([] { (void)read_npy<float>(fixture("complex_c8.npy")); }),
             Catch::Contains("complex_c8.npy") && Catch::Contains("'<c8'"));
  CHECK_THAT(format_error_message([] { (void)read_npy<float>(fixture("half_f2.npy")); }),
             Catch::Contains("'<f2'"));
  CHECK_THAT(format_error_message([] { (void)read_npy<float>(fixture("structured.npy")); }),
             Catch::Contains("structured"));
}

TEST_CASE("npy: the writer produces numpy's exact bytes", "[io][npy]") {
  const std::vector<float> f = {0, 1, 2, 3, 4, 5};
  const std::vector<std::int64_t> shape = {2, 3};
  CHECK(encode_npy<float>(f, shape) == slurp(fixture("arange_2x3_f4.npy")));
  const std::vector<std::uint8_t> u = {0, 1, 2, 3, 4, 5};
  CHECK(encode_npy<std::uint8_t>(u, shape) == slurp(fixture("arange_2x3_u1.npy")));
  const bool b[6] = {false, true, false, true, false, true};
  CHECK(encode_npy<bool>(std::span<const bool>(b, 6), shape) == slurp(fixture("arange_2x3_b1.npy")));
  const std::vector<double> sc = {2.5};
  CHECK(encode_npy<double>(sc, std::vector<std::int64_t>{}) == slurp(fixture("scalar_f8.npy")));
}

TEMPLATE_TEST_CASE("npy: write/read round trip", "[io][npy]", std::uint8_t, std::int8_t, std::int16_t,
                   std::int32_t, std::int64_t, std::uint16_t, std::uint32_t, std::uint64_t, float,
                   double) {
  const fs::path dir = temp_dir();
  const fs::path p = dir / "roundtrip.npy";
  std::vector<TestType> v;
  for (int i = 0; i < 2 * 3 * 5; ++i) v.push_back(static_cast<TestType>((i * 37) % 101));
  v[3] = std::numeric_limits<TestType>::max();
  v[4] = std::numeric_limits<TestType>::lowest();
  write_npy<TestType>(p, v, {2, 3, 5});
  const auto a = read_npy<TestType>(p);
  CHECK(a.shape == std::vector<std::int64_t>{2, 3, 5});
  CHECK(a.data == v);
  CHECK(a.stored_dtype == npy_dtype_of<TestType>::value);
  fs::remove_all(dir);
}

TEST_CASE("npy: bool and xtensor round trips", "[io][npy]") {
  const fs::path dir = temp_dir();
  xt::xarray<bool> b = {{true, false, true}, {false, false, true}};
  write_npy(dir / "b.npy", b);
  const auto rb = read_npy<std::uint8_t>(dir / "b.npy");
  CHECK(rb.stored_dtype == npy_dtype::bool_);
  CHECK(rb.data == std::vector<std::uint8_t>{1, 0, 1, 0, 0, 1});
  xt::xtensor<double, 2> d = {{1.5, -2.0}, {3.25, 0.0}};
  write_npy(dir / "d.npy", d);
  const xt::xarray<double> rd = to_xarray(read_npy<double>(dir / "d.npy"));
  CHECK(rd == d);
  // A high-rank shape survives (rank 5, one element per axis but the last).
  write_npy<float>(dir / "r5.npy", std::vector<float>{1, 2}, {1, 1, 1, 1, 2});
  CHECK(read_npy<float>(dir / "r5.npy").shape == std::vector<std::int64_t>{1, 1, 1, 1, 2});
  CHECK_THROWS_AS(write_npy<float>(dir / "bad.npy", std::vector<float>{1, 2, 3}, {2, 2}), shape_error);
  CHECK_FALSE(fs::exists(dir / "bad.npy"));
  fs::remove_all(dir);
}

TEST_CASE("npy: hand-made headers in the accepted syntax", "[io][npy]") {
  const std::string two_f8("\0\0\0\0\0\0\xf0\x3f\0\0\0\0\0\0\0\x40", 16);  // 1.0, 2.0
  // Key order, double quotes, no trailing comma, Python 2 longs.
  auto a = parse_npy<double>(make_npy("{\"shape\": (2L,), 'fortran_order': False, 'descr': '<f8'}", two_f8), "mem");
  CHECK(a.data == std::vector<double>{1.0, 2.0});
  a = parse_npy<double>(make_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (1, 2)}", two_f8, 2), "mem");
  CHECK(a.shape == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("npy: hostile files give format_error naming the file and the problem", "[io][npy]") {
  const std::string ok_dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
  const std::string eight(8, '\0');
  auto msg = [](const std::string& bytes) {
    return format_error_message([&] { (void)parse_npy<float>(bytes, "hostile.npy"); });
  };
  REQUIRE_NOTHROW(parse_npy<float>(make_npy(ok_dict, eight), "ok.npy"));

  CHECK_THAT(msg(""), Catch::Contains("hostile.npy") && Catch::Contains("too short"));
  CHECK_THAT(msg("\x93NUMPZ\x01\x00\x10\x00" + std::string(16, ' ')), Catch::Contains("bad magic"));
  CHECK_THAT(msg("\x93NUMPY\x04\x00\x10\x00" + std::string(16, ' ')), Catch::Contains("version"));
  // header length past EOF (v1 and v2)
  CHECK_THAT(msg(std::string("\x93NUMPY\x01\x00\xff\xff{}", 12)), Catch::Contains("past the end"));
  CHECK_THAT(msg(std::string("\x93NUMPY\x02\x00\xff\xff\xff\x7f{}", 14)), Catch::Contains("exceeds the limit"));
  CHECK_THAT(msg(std::string("\x93NUMPY\x02\x00\x00\x01\x00\x00{}", 12)), Catch::Contains("past the end"));
  // truncated data, and trailing garbage
  CHECK_THAT(msg(make_npy(ok_dict, std::string(7, '\0'))), Catch::Contains("truncated"));
  CHECK_THAT(msg(make_npy(ok_dict, std::string(9, '\0'))), Catch::Contains("unexpected bytes"));
  // a truncated real file
  const std::string real = slurp(fixture("arange_2x3_f8.npy"));
  for (std::size_t cut : {std::size_t(0), std::size_t(5), std::size_t(11), std::size_t(60), std::size_t(127),
                          std::size_t(128), real.size() - 1})
    CHECK_THROWS_AS(parse_npy<double>(real.substr(0, cut), "cut.npy"), format_error);
  // shapes
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", eight)),
             Catch::Contains("negative"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", eight)),
             Catch::Contains("overflows"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", eight)),
             Catch::Contains("overflows"));
  CHECK_THAT(msg(make_npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1152921504606846976,), }", eight)),
             Catch::Contains("overflows"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }", eight)),
             Catch::Contains("truncated"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", eight)),
             Catch::Contains("not a tuple"));
  std::string deep = "{'descr': '<f4', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 40; ++i) deep += "1, ";
  CHECK_THAT(msg(make_npy(deep + "2), }", eight)), Catch::Contains("rank"));
  // keys and values
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'shape': (2,), }", eight)), Catch::Contains("fortran_order"));
  CHECK_THAT(msg(make_npy("{'fortran_order': False, 'shape': (2,), }", eight)), Catch::Contains("'descr'"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False}", eight)), Catch::Contains("'shape'"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", eight)),
             Catch::Contains("duplicate"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", eight)),
             Catch::Contains("True or False"));
  CHECK_THAT(msg(make_npy("{'descr': '<x4', 'fortran_order': False, 'shape': (2,)}", eight)),
             Catch::Contains("unsupported dtype"));
  CHECK_THAT(msg(make_npy("{'descr': '|f4', 'fortran_order': False, 'shape': (2,)}", eight)),
             Catch::Contains("byte order"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", eight)),
             Catch::Contains("unexpected key"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk", eight)),
             Catch::Contains("after the header"));
  CHECK_THAT(msg(make_npy("{'descr' '<f4', 'fortran_order': False, 'shape': (2,)}", eight)),
             Catch::Contains("expected ':'"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4, 'fortran_order': False, 'shape': (2,)}", eight)),
             Catch::Contains("unsupported dtype"));
  CHECK_THAT(msg(make_npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,", eight)),
             Catch::Contains("expected"));
  CHECK_THAT(msg(make_npy("{'descr': '\\x', 'fortran_order': False, 'shape': (2,)}", eight)),
             Catch::Contains("escape"));
  CHECK_THAT(msg(make_npy("{'descr': '|b1', 'fortran_order': False, 'shape': (2,)}", std::string("\x01\x07", 2))),
             Catch::Contains("not 0 or 1"));
  // Flipping any single header byte never crashes: it is either still valid or refused.
  const std::string good = make_npy("{'descr': '<f8', 'fortran_order': True, 'shape': (2, 1), }",
                                    std::string(16, '\0'));
  for (std::size_t i = 0; i < 64; ++i)
    for (int bit = 0; bit < 8; ++bit) {
      std::string b = good;
      b[i] = static_cast<char>(b[i] ^ (1 << bit));
      try {
        (void)parse_npy<double>(b, "flip.npy");
      } catch (const format_error&) {
      }
    }
}

TEST_CASE("npy: file errors", "[io][npy]") {
  const fs::path dir = temp_dir();
  CHECK_THROWS_AS(read_npy<float>(dir / "missing.npy"), io_error);
  CHECK_THROWS_AS(read_npy<float>(dir), io_error);
  {
    std::ofstream(dir / "garbage.npy", std::ios::binary) << "this is not numpy";
  }
  CHECK_THAT(format_error_message([&] { (void)read_npy<float>(dir / "garbage.npy"); }),
             Catch::Contains("garbage.npy") && Catch::Contains("bad magic"));
  fs::remove_all(dir);
}
