// safetensors: round trips, dtype conversion against numpy/torch, hostile files, atomicity.
#include <catch2/catch.hpp>

#include <ambiseg/io/safetensors.hpp>

#include <cmath>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <sys/resource.h>
#include <unistd.h>

#include "scratch_dir.hpp"

using namespace ambiseg;
namespace fs = std::filesystem;
using ambiseg_test::scratch_dir;

namespace {

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream f(p, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}
std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}
std::string le64(std::uint64_t n) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i) s[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return s;
}
// A file with the given header text and `data_bytes` zero bytes of data.
std::string file_with(const std::string& header, std::size_t data_bytes) {
  return le64(header.size()) + header + std::string(data_bytes, '\0');
}

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

const fs::path fixture = fs::path(AMBISEG_FIXTURE_DIR) / "safetensors" / "mixed_dtypes.safetensors";

}  // namespace

TEST_CASE("safetensors round trip F32 and F64 with metadata", "[io][safetensors]") {
  scratch_dir dir("roundtrip");
  auto a = tensor<float>::from({2, 3}, {1.5f, -0.0f, 3e-40f, std::numeric_limits<float>::infinity(),
                                        -7.25f, 1e30f});
  auto b = tensor<double>::from({4}, {M_PI, -1e-310, 2.0, std::numeric_limits<double>::quiet_NaN()});
  auto scalar = tensor<float>::from({}, {42.0f});
  const std::map<std::string, std::string> meta{{"config", R"({"C": 32})"}, {"step", "17"}};
  const auto path = dir / "rt.safetensors";
  io::save_safetensors(path,
                       {io::tensor_to_save::from<float>("a.weight", a.cview()),
                        io::tensor_to_save::from<double>("b", b.cview()),
                        io::tensor_to_save::from<float>("scalar", scalar.cview())},
                       meta);

  // The header length is a multiple of 8 so the data starts aligned.
  const std::string raw = read_bytes(path);
  std::uint64_t header_len = 0;
  std::memcpy(&header_len, raw.data(), 8);
  CHECK(header_len % 8 == 0);
  CHECK(raw.size() == 8 + header_len + 6 * 4 + 4 * 8 + 4);

  auto f = io::safetensors_file::open(path);
  CHECK(f.names() == std::vector<std::string>{"a.weight", "b", "scalar"});
  CHECK(f.metadata() == meta);
  CHECK(f.info("a.weight").dtype == io::dtype::F32);
  CHECK(f.info("a.weight").shape == std::vector<std::int64_t>{2, 3});
  CHECK(f.info("b").dtype == io::dtype::F64);
  CHECK(f.info("scalar").shape.empty());
  CHECK(f.info("scalar").numel == 1);

  tensor<float> a2 = f.read_tensor<float>("a.weight");
  REQUIRE(a2.shape() == a.shape());
  for (int i = 0; i < 6; ++i) CHECK(same_bits(a2[i], a[i]));
  auto b2 = f.read<double>("b");
  REQUIRE(b2.size() == 4);
  CHECK(std::memcmp(b2.data(), b.data(), 3 * sizeof(double)) == 0);
  CHECK(std::isnan(b2[3]));
  CHECK(f.read<float>("scalar") == std::vector<float>{42.0f});
  // F64 → float rounds to nearest; F32 → double is exact.
  CHECK(f.read<float>("b")[0] == static_cast<float>(M_PI));
  CHECK(f.read<double>("a.weight")[2] == static_cast<double>(3e-40f));

  // Wrong destination shape, unknown name.
  tensor<float> wrong({3, 2});
  CHECK_THROWS_AS(f.read_into<float>("a.weight", wrong.view()), shape_error);
  CHECK_THROWS_WITH(f.read<float>("nope"), Catch::Contains("no tensor named 'nope'"));
}

TEST_CASE("safetensors writer rejects bad entries before touching the disk", "[io][safetensors]") {
  scratch_dir dir("badwrite");
  auto a = tensor<float>::from({2}, {1, 2});
  const auto path = dir / "x.safetensors";
  using io::tensor_to_save;
  CHECK_THROWS_AS(io::save_safetensors(path, {tensor_to_save::from<float>("a", a.cview()),
                                              tensor_to_save::from<float>("a", a.cview())}),
                  value_error);
  CHECK_THROWS_AS(io::save_safetensors(path, {tensor_to_save::from<float>("__metadata__", a.cview())}),
                  value_error);
  CHECK_THROWS_AS(io::save_safetensors(path, {{"i", io::dtype::I64, {2}, a.data()}}), value_error);
  CHECK_THROWS_AS(io::save_safetensors(path, {{"n", io::dtype::F32, {2, -1}, a.data()}}), value_error);
  CHECK_THROWS_AS(io::save_safetensors(path, {{"z", io::dtype::F32, {2}, nullptr}}), value_error);
  CHECK(dir.file_count() == 0);
  CHECK_THROWS_AS(io::save_safetensors(dir / "no/such/dir/x.safetensors", {}), io_error);
}

TEST_CASE("half and bfloat16 conversion is exact for all 65536 bit patterns", "[io][safetensors]") {
  // Closed form of binary16: (-1)^s · 2^(e-15) · (1 + m/1024), subnormal (-1)^s · 2^-14 · m/1024.
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    const int sign = (bits >> 15) ? -1 : 1;
    const int e = (bits >> 10) & 31;
    const int m = bits & 1023;
    const float got = io::half_to_float(static_cast<std::uint16_t>(bits));
    if (e == 31) {
      if (m == 0) REQUIRE(got == sign * std::numeric_limits<float>::infinity());
      else REQUIRE(std::isnan(got));
      continue;
    }
    const double expected = e == 0 ? sign * std::ldexp(m, -24) : sign * std::ldexp(1024 + m, e - 25);
    REQUIRE(static_cast<double>(got) == expected);
    REQUIRE(std::signbit(got) == (sign < 0));
    // bfloat16: (-1)^s · 2^(e-127) · (1 + m/128), subnormal (-1)^s · 2^-126 · m/128.
    const int be = (bits >> 7) & 255;
    const int bm = bits & 127;
    const float bgot = io::bfloat16_to_float(static_cast<std::uint16_t>(bits));
    if (be == 255) {
      REQUIRE((bm == 0 ? std::isinf(bgot) : std::isnan(bgot)));
    } else {
      const double bexp = be == 0 ? sign * std::ldexp(bm, -133) : sign * std::ldexp(128 + bm, be - 134);
      REQUIRE(static_cast<double>(bgot) == bexp);
    }
  }
}

// Fixture written by tools/make_safetensors_fixtures.py (numpy float16, torch bfloat16):
//   /usr/bin/python3 tools/make_safetensors_fixtures.py
TEST_CASE("safetensors reads F16, BF16, F64 files written by numpy/torch", "[io][safetensors]") {
  auto f = io::safetensors_file::open(fixture);
  CHECK(f.metadata().at("made_by") == "tools/make_safetensors_fixtures.py");
  // Storage order, not header order.
  CHECK(f.names() == std::vector<std::string>{"i64_values", "bf16_values", "half_expected",
                                              "half_matrix", "u8_mask", "half_values", "bf16_expected",
                                              "f64_values", "rank5", "empty", "flags"});
  CHECK(f.info("half_values").dtype == io::dtype::F16);
  CHECK(f.info("bf16_values").dtype == io::dtype::BF16);

  for (const std::string stem : {"half", "bf16"}) {
    INFO(stem);
    const auto got = f.read<float>(stem + "_values");
    const auto expected = f.read<float>(stem + "_expected");
    REQUIRE(got.size() == expected.size());
    REQUIRE(got.size() > 60);
    for (std::size_t i = 0; i < got.size(); ++i) {
      INFO("index " << i << " got " << got[i] << " expected " << expected[i]);
      if (std::isnan(expected[i])) CHECK(std::isnan(got[i]));
      else CHECK(same_bits(got[i], expected[i]));
    }
    const auto as_double = f.read<double>(stem + "_values");
    for (std::size_t i = 0; i < got.size(); ++i)
      if (!std::isnan(got[i])) CHECK(as_double[i] == static_cast<double>(got[i]));
  }

  auto m = f.read_tensor<double>("half_matrix");
  CHECK(m.shape() == shape{2, 3});
  CHECK(m[0] == 1.0);
  CHECK(m[2] == 0.5);
  CHECK(m[3] == 65504.0);
  CHECK(m[4] == std::ldexp(1.0, -24));
  CHECK(std::signbit(m[5]));

  auto d = f.read<double>("f64_values");
  CHECK(d[1] == 1e-300);
  CHECK(d[3] == M_PI);
  auto df = f.read<float>("f64_values");
  CHECK(df[1] == 0.0f);  // underflows in float
  CHECK(std::isinf(df[4]));

  // Rank 5 reads flat but has no ambiseg::shape.
  CHECK(f.read<float>("rank5") == std::vector<float>{1, 2, 3, 4});
  CHECK_THROWS_AS(f.read_tensor<float>("rank5"), shape_error);
  CHECK(f.read<float>("empty").empty());

  // Integer and bool dtypes are listed by name but not converted.
  for (const char* name : {"i64_values", "u8_mask", "flags"}) {
    INFO(name);
    CHECK_THROWS_AS(f.read<float>(name), format_error);
  }
  CHECK(io::dtype_name(f.info("i64_values").dtype) == "I64");
  CHECK(io::dtype_name(f.info("flags").dtype) == "BOOL");
  CHECK_THROWS_WITH(f.read<double>("i64_values"),
                    Catch::Contains("i64_values") && Catch::Contains("I64") &&
                        Catch::Contains("mixed_dtypes.safetensors"));
}

TEST_CASE("hostile safetensors files give format_error naming file and tensor", "[io][safetensors]") {
  scratch_dir dir("hostile");
  const auto path = dir / "bad.safetensors";
  auto expect_error = [&](const std::string& bytes, const std::string& fragment) {
    write_bytes(path, bytes);
    INFO("expecting: " << fragment);
    try {
      auto f = io::safetensors_file::open(path);
      FAIL("opened a hostile file");
    } catch (const format_error& e) {
      const std::string msg = e.what();
      INFO(msg);
      CHECK(msg.find("bad.safetensors") != std::string::npos);
      CHECK(msg.find(fragment) != std::string::npos);
    }
  };
  const std::string ok_entry = R"("w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})";

  expect_error("", "truncated");
  expect_error(std::string("\x10\0\0", 3), "truncated");
  expect_error(le64(200'000'000) + "{}", "exceeds the limit");
  expect_error(le64(1000) + "{}", "runs past the end");
  expect_error(le64(~std::uint64_t{0}) + "{}", "exceeds the limit");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]})", 16),
               "not valid JSON");
  expect_error(file_with("[1, 2]", 0), "does not start with '{'");
  expect_error(file_with("{\"w\xff\": 1}", 0), "not valid JSON");  // invalid UTF-8
  expect_error(file_with(R"({"w": {"dtype": "F12", "shape": [2], "data_offsets": [0, 4]}})", 4),
               "unknown dtype 'F12'");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}})", 12),
               "'w': data_offsets span 12 bytes but F32 [2, 2] needs 16");
  expect_error(file_with("{" + ok_entry + R"(, "v": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 16),
               "overlaps");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}})", 16),
               "'w': data_offsets [8, 24] run past the data section");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}})", 16), "hole");
  expect_error(file_with("{" + ok_entry + "}", 20), "4 trailing bytes");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [0], "data_offsets": [8, 0]}})", 8), "reversed");
  expect_error(file_with("{" + ok_entry + ", " + ok_entry + "}", 16), "duplicate key 'w'");
  expect_error(file_with(R"({"w": {"dtype": "F32", "dtype": "F64", "shape": [1], "data_offsets": [0, 4]}})", 4),
               "duplicate key 'dtype'");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [-2, 2], "data_offsets": [0, 16]}})", 16),
               "'w': negative extent -2");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 0]}})", 0),
               "overflows");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [2.5], "data_offsets": [0, 8]}})", 8),
               "not an integer");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8.0]}})", 8),
               "not a non-negative integer");
  expect_error(file_with(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}})", 8), "two integers");
  expect_error(file_with(R"({"w": {"shape": [2], "data_offsets": [0, 8]}})", 8), "\"dtype\"");
  expect_error(file_with(R"({"w": [1, 2]})", 0), "'w': entry is not an object");
  expect_error(file_with(R"({"__metadata__": {"a": 3}})", 0), "not a string");
  expect_error(file_with(R"({"__metadata__": [1]})", 0), "__metadata__ is not an object");

  // A directory is not a file.
  CHECK_THROWS_AS(io::safetensors_file::open(dir.path), format_error);
  CHECK_THROWS_AS(io::safetensors_file::open(dir / "missing.safetensors"), io_error);
}

TEST_CASE("mutated safetensors files never crash the reader", "[io][safetensors]") {
  scratch_dir dir("fuzz");
  const std::string original = read_bytes(fixture);
  const auto path = dir / "m.safetensors";
  std::mt19937 gen(1234);
  int opened = 0, rejected = 0;
  for (int trial = 0; trial < 1500; ++trial) {
    std::string bytes = original;
    if (trial % 3 == 0) {
      bytes.resize(gen() % bytes.size());  // truncation
    } else {
      const int flips = 1 + static_cast<int>(gen() % 4);
      for (int k = 0; k < flips; ++k) {
        // Mostly the length field and the header, where structure lives.
        const std::size_t at = gen() % std::min<std::size_t>(bytes.size(), 8 + 900);
        bytes[at] = static_cast<char>(gen() & 0xFF);
      }
    }
    write_bytes(path, bytes);
    try {
      auto f = io::safetensors_file::open(path);
      for (const auto& name : f.names()) {
        try {
          (void)f.read<double>(name);
        } catch (const format_error&) {  // a non-convertible dtype
        }
      }
      ++opened;
    } catch (const format_error&) {
      ++rejected;
    }
  }
  CHECK(rejected > 500);
  CHECK(opened > 0);
}

TEST_CASE("a failed safetensors write leaves the old file and no temporary", "[io][safetensors]") {
  scratch_dir dir("atomic");
  const auto path = dir / "ckpt.safetensors";
  auto small = tensor<float>::from({3}, {1, 2, 3});
  io::save_safetensors(path, {io::tensor_to_save::from<float>("x", small.cview())}, {{"v", "old"}});
  const std::string before = read_bytes(path);

  // Rejected entries: nothing written.
  CHECK_THROWS(io::save_safetensors(path, {io::tensor_to_save::from<float>("x", small.cview()),
                                           io::tensor_to_save::from<float>("x", small.cview())}));
  CHECK(read_bytes(path) == before);
  CHECK(dir.file_count() == 1);

  // An I/O failure mid-write: a file-size limit makes the kernel refuse bytes past 64 KiB.
  tensor<float> big = tensor<float>::zeros({1 << 20});
  struct rlimit saved{};
  REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto* old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 64 * 1024;
  REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
  bool threw_io_error = false;
  try {
    io::save_safetensors(path, {io::tensor_to_save::from<float>("x", big.cview())}, {{"v", "new"}});
  } catch (const io_error&) {
    threw_io_error = true;
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  CHECK(threw_io_error);
  CHECK(read_bytes(path) == before);
  CHECK(dir.file_count() == 1);
  CHECK(io::safetensors_file::open(path).metadata().at("v") == "old");

  // And a successful write replaces it.
  io::save_safetensors(path, {io::tensor_to_save::from<float>("x", big.cview())}, {{"v", "new"}});
  CHECK(io::safetensors_file::open(path).metadata().at("v") == "new");
  CHECK(dir.file_count() == 1);
}
