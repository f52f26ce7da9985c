// Tests of io/pickle.hpp: the fixtures of tools/make_pickle_fixtures.py in protocols 2–5,
// the real QUBIQ pickle, and hostile inputs that must end in format_error.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "ambiseg/io/pickle.hpp"

namespace pk = ambiseg::io::pickle;
using namespace std::string_literals;
using ambiseg::format_error;

namespace {
std::string fixture(const std::string& name) {
  return std::string(AMBISEG_FIXTURE_DIR) + "/pickle/" + name;
}
pk::document parse(std::initializer_list<int> bytes) {
  std::vector<std::uint8_t> v;
  for (int b : bytes) v.push_back(static_cast<std::uint8_t>(b));
  return pk::loads(std::move(v));
}
pk::document parse(const std::string& bytes) {
  return pk::loads(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
}
}  // namespace

TEST_CASE("pickle: every supported kind, protocols 2 to 5", "[data][pickle]") {
  // Expected values: the closed forms in tools/make_pickle_fixtures.py::values().
  const int protocol = GENERATE(2, 3, 4, 5);
  INFO("protocol " << protocol);
  const auto doc = pk::load_file(fixture("values_p" + std::to_string(protocol) + ".pkl"));
  const pk::value& root = doc.root();
  REQUIRE(root.is(pk::kind::dict));
  CHECK(root.as_dict().size() == 16);

  const auto& u8 = root.at("u8").as_array();
  CHECK(u8.dtype == ambiseg::io::dtype::U8);
  CHECK(u8.shape == std::vector<std::int64_t>{2, 3});
  CHECK(u8.to_vector<int>() == std::vector<int>{0, 40, 80, 120, 160, 200});

  const auto& f32 = root.at("f32").as_array();
  CHECK(f32.dtype == ambiseg::io::dtype::F32);
  CHECK(f32.shape == std::vector<std::int64_t>{3, 4});
  const auto f32v = f32.to_vector<float>();
  for (int i = 0; i < 12; ++i) CHECK(f32v[i] == static_cast<float>(i) / 8 - 0.5f);

  const auto& f64 = root.at("f64").as_array();
  CHECK(f64.shape == std::vector<std::int64_t>{2, 3, 4});
  const auto f64v = f64.to_vector<double>();
  for (int i = 0; i < 24; ++i) CHECK(f64v[i] == Approx(-1.0 + 2.0 * i / 23).margin(1e-15));

  const auto& boolean = root.at("bool").as_array();
  CHECK(boolean.dtype == ambiseg::io::dtype::BOOL);
  const auto bv = boolean.to_vector<int>();
  for (int i = 0; i < 10; ++i) CHECK(bv[i] == (i % 3 == 0));

  // Big-endian payload is converted to host order.
  CHECK(root.at("i4_big_endian").as_array().to_vector<int>() ==
        std::vector<int>{0, -7, -14, -21, -28});
  // Fortran payload comes back in C order.
  const auto& fortran = root.at("i2_fortran").as_array();
  CHECK(fortran.fortran_order);
  CHECK(fortran.shape == std::vector<std::int64_t>{2, 3});
  CHECK(fortran.to_vector<int>() == std::vector<int>{0, 1, 2, 3, 4, 5});

  const auto& masks = root.at("masks").items();
  REQUIRE(masks.size() == 2);
  CHECK(masks[0]->as_array().to_vector<int>() == std::vector<int>{1, 0, 0, 0, 1, 0, 0, 0, 1});
  CHECK(masks[1]->as_array().to_vector<int>() == std::vector<int>(9, 1));

  const auto& ints = root.at("ints");
  REQUIRE(ints.is(pk::kind::tuple));
  std::vector<std::int64_t> iv;
  for (const auto* v : ints.items()) iv.push_back(v->as_int());
  CHECK(iv == std::vector<std::int64_t>{0, 255, 300, 70000, -5, std::int64_t{1} << 40,
                                        -(std::int64_t{1} << 62)});
  CHECK(root.at("float").as_float() == 1.5);
  CHECK(root.at("none").is_none());
  CHECK(root.at("flags").items()[0]->as_bool());
  CHECK_FALSE(root.at("flags").items()[1]->as_bool());
  const auto bytes = root.at("bytes").as_bytes();
  CHECK(std::vector<std::uint8_t>(bytes.begin(), bytes.end()) ==
        std::vector<std::uint8_t>{0x00, 0x01, 0xff});
  CHECK(root.at("text").as_str() == "gr\xc3\xbcn \xe2\x9c\x93");
  CHECK(root.at("scalar_f64").as_float() == 2.25);
  CHECK(root.at("scalar_i64").as_int() == -3);
  const auto& empty = root.at("empty").as_array();
  CHECK(empty.shape == std::vector<std::int64_t>{0, 4});
  CHECK(empty.numel() == 0);
  CHECK(root.find("absent") == nullptr);
  CHECK_THROWS_AS(root.at("absent"), format_error);
  CHECK_THROWS_AS(root.at("u8").as_str(), format_error);  // wrong kind: an error, not UB
}

TEST_CASE("pickle: the real QUBIQ brain-growth pickle", "[data][pickle]") {
  // Reference values:
  //   /usr/bin/python3 -c "import pickle; d=pickle.load(open('brain_growth_alpha.pkl','rb'));
  //     c=d['case01']; print(len(d), c['image'][64,64], c['image'].sum(),
  //     [int(m.sum()) for m in c['masks']], c['series_uid'])"
  const std::string path = std::string(AMBISEG_SHARED_DIR) + "/data/qubiq-brain-growth/brain_growth_alpha.pkl";
  if (!std::filesystem::exists(path)) {
    WARN("skipped: " << path << " is absent (the project's shared/ folder)");
    return;
  }
  const auto doc = pk::load_file(path);
  const auto& root = doc.root();
  REQUIRE(root.as_dict().size() == 39);
  const auto& c1 = root.at("case01");
  CHECK(c1.at("series_uid").as_str() == "case01");
  const auto& image = c1.at("image").as_array();
  CHECK(image.dtype == ambiseg::io::dtype::U8);
  CHECK(image.shape == std::vector<std::int64_t>{128, 128});
  const auto pixels = image.to_vector<std::int64_t>();
  CHECK(pixels[64 * 128 + 64] == 59);
  std::int64_t sum = 0;
  for (auto p : pixels) sum += p;
  CHECK(sum == 719996);
  const auto& masks = c1.at("masks").items();
  REQUIRE(masks.size() == 7);
  const std::vector<std::int64_t> areas{2593, 2527, 2440, 2188, 2517, 2622, 2608};
  for (std::size_t r = 0; r < 7; ++r) {
    std::int64_t area = 0;
    for (auto m : masks[r]->as_array().to_vector<std::int64_t>()) area += m;
    CHECK(area == areas[r]);
  }
}

TEST_CASE("pickle: refuses every global outside NumPy's reduce protocol", "[data][pickle]") {
  // tools/make_pickle_fixtures.py: an object whose __reduce__ is (os.system, ("echo pwned",)).
  try {
    pk::load_file(fixture("refuse_os_system.pkl"));
    FAIL("os.system was not refused");
  } catch (const format_error& e) {
    // Python 3 pickles os.system as posix.system.
    CHECK_THAT(e.what(), Catch::Contains("posix.system") || Catch::Contains("os.system"));
  }
  // Protocol-2 GLOBAL opcode naming builtins.eval.
  CHECK_THROWS_WITH(parse(std::string("\x80\x02" "cbuiltins\neval\n", 17)),
                    Catch::Contains("builtins.eval"));
  // STACK_GLOBAL of subprocess.Popen.
  CHECK_THROWS_WITH(parse(std::string("\x80\x04\x8c\x0asubprocess\x8c\x05Popen\x93.", 23)),
                    Catch::Contains("subprocess.Popen"));
}

TEST_CASE("pickle: hostile and corrupt streams are format errors", "[data][pickle]") {
  SECTION("empty and truncated") {
    CHECK_THROWS_AS(parse(std::string()), format_error);
    CHECK_THROWS_AS(parse({0x80, 0x04}), format_error);       // no STOP
    CHECK_THROWS_AS(parse({0x80, 0x04, 'J', 1, 2}), format_error);  // BININT cut short
    // Every prefix of a real pickle fails cleanly.
    const auto doc = pk::load_file(fixture("values_p4.pkl"));
    const auto full = doc.input();
    for (std::size_t n = 0; n < full.size(); ++n)
      CHECK_THROWS_AS(pk::loads(full.first(n)), format_error);
    CHECK_NOTHROW(pk::loads(full));
  }
  SECTION("stack underflow and missing marks") {
    CHECK_THROWS_AS(parse({'.'}), format_error);
    CHECK_THROWS_AS(parse({0x86, '.'}), format_error);          // TUPLE2 on an empty stack
    CHECK_THROWS_AS(parse({'N', 't', '.'}), format_error);      // TUPLE without MARK
    CHECK_THROWS_AS(parse({'N', '(', 'a', '.'}), format_error); // APPEND may not cross a MARK
    CHECK_THROWS_AS(parse({'N', 'R', '.'}), format_error);      // REDUCE needs two items
  }
  SECTION("memo") {
    CHECK_THROWS_WITH(parse({'h', 7, '.'}), Catch::Contains("memo index 7"));
    CHECK_THROWS_AS(parse({'N', 0x94, 'j', 0xff, 0xff, 0xff, 0xff, '.'}), format_error);
    CHECK_THROWS_AS(parse({0x94, '.'}), format_error);  // MEMOIZE of nothing
  }
  SECTION("absurd lengths") {
    // BINBYTES8 / BINUNICODE8 / FRAME claiming 2^62 bytes: refused before allocating.
    CHECK_THROWS_WITH(parse({0x8e, 0, 0, 0, 0, 0, 0, 0, 0x40, '.'}), Catch::Contains("truncated"));
    CHECK_THROWS_AS(parse({0x8d, 0, 0, 0, 0, 0, 0, 0, 0x40, '.'}), format_error);
    CHECK_THROWS_AS(parse({0x95, 0, 0, 0, 0, 0, 0, 0, 0x40, 'N', '.'}), format_error);
    CHECK_THROWS_AS(parse({'X', 0xff, 0xff, 0xff, 0xff, 'a', '.'}), format_error);
    CHECK_THROWS_AS(parse({'T', 0xff, 0xff, 0xff, 0xff, '.'}), format_error);  // negative
    // LONG1 of 9 significant bytes does not fit int64.
    CHECK_THROWS_AS(parse({0x8a, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, '.'}), format_error);
  }
  SECTION("type confusion") {
    CHECK_THROWS_AS(parse({']', 'N', 'N', 's', '.'}), format_error);  // SETITEM on a list
    CHECK_THROWS_AS(parse({'}', 'N', 'a', '.'}), format_error);       // APPEND on a dict
    CHECK_THROWS_AS(parse({'N', 'N', 'b', '.'}), format_error);       // BUILD on None
    CHECK_THROWS_AS(parse({0xff, '.'}), format_error);                // unknown opcode
    CHECK_THROWS_AS(parse({0x80, 9, 'N', '.'}), format_error);        // protocol 9
    CHECK_THROWS_AS(parse({0x97, '.'}), format_error);                // out-of-band buffer
  }
  SECTION("deep nesting") {
    std::string deep = "N";
    for (int i = 0; i < 100000; ++i) deep += '\x85';  // TUPLE1, 100k times
    deep += '.';
    CHECK_THROWS_WITH(parse(deep), Catch::Contains("nesting deeper"));
    std::string ok = "N";
    for (int i = 0; i < 200; ++i) ok += '\x85';
    ok += '.';
    CHECK_NOTHROW(parse(ok));
  }
}

namespace {
// A protocol-4 pickle of numpy's reduce protocol for a uint8 array with the given shape
// state and payload: _reconstruct(ndarray, (0,), b'b') then BUILD (1, shape, dtype, False, data).
std::string ndarray_pickle(const std::string& shape_ops, const std::string& payload,
                           const std::string& module = "numpy.core.multiarray") {
  std::string s = "\x80\x04"s;
  s += "\x8c"s + std::string(1, static_cast<char>(module.size())) + module;
  s += "\x8c\x0c_reconstruct\x93"s;
  s += "\x8c\x05numpy\x8c\x07ndarray\x93"s;
  s += "K\x00\x85"s "C\x01"s "b"s "\x87R"s;
  s += "(K\x01"s + shape_ops;
  s += "\x8c\x05numpy\x8c\x05"s "dtype\x93\x8c\x02u1\x89\x88\x87R"s;
  s += "(K\x03\x8c\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"s;
  s += "\x89"s;
  s += "C"s + std::string(1, static_cast<char>(payload.size())) + payload;
  s += "tb."s;
  return s;
}
}  // namespace

TEST_CASE("pickle: array payload must match shape x itemsize", "[data][pickle]") {
  const std::string six("\x01\x02\x03\x04\x05\x06", 6);
  const auto doc = parse(ndarray_pickle("K\x02K\x03\x86", six));  // shape (2, 3)
  CHECK(doc.root().as_array().to_vector<int>() == std::vector<int>{1, 2, 3, 4, 5, 6});
  CHECK_THROWS_WITH(parse(ndarray_pickle("K\x02K\x04\x86", six)), Catch::Contains("6 bytes"));
  // Shape (2^31, 2^31, 2^31): the element count overflows; refused, nothing allocated.
  CHECK_THROWS_AS(parse(ndarray_pickle(
                      "J\x00\x00\x00\x80J\x00\x00\x00\x80J\x00\x00\x00\x80\x87"s, six)),
                  format_error);
  CHECK_THROWS_AS(parse(ndarray_pickle("J\xff\xff\xff\xff\x85", six)), format_error);  // -1
  // NumPy 2 pickles name the module numpy._core.
  const auto numpy2 = parse(ndarray_pickle("K\x03K\x02\x86", six, "numpy._core.multiarray"));
  CHECK(numpy2.root().as_array().shape == std::vector<std::int64_t>{3, 2});
  CHECK_THROWS_WITH(parse(ndarray_pickle("K\x06\x85", six, "numpy.lib.format")),
                    Catch::Contains("numpy.lib.format._reconstruct"));
}

TEST_CASE("pickle: memo, stack and text opcodes", "[data][pickle]") {
  // Hand-assembled streams; the expected values follow from the opcode definitions in
  // CPython's Lib/pickletools.py.
  // MARK, BININT1 7, PUT 0 (text), POP, GET 0 (text) twice, LIST → [7, 7]
  const auto text_memo = parse("(K\x07p0\n0g0\ng0\nl."s);
  REQUIRE(text_memo.root().items().size() == 2);
  CHECK(text_memo.root().items()[1]->as_int() == 7);
  // LONG_BINPUT 5, LONG_BINGET 5, TUPLE2 → (300, 300)
  const auto long_memo = parse("M\x2c\x01r\x05\x00\x00\x00j\x05\x00\x00\x00\x86."s);
  CHECK(long_memo.root().items()[0]->as_int() == 300);
  CHECK(long_memo.root().items()[1]->as_int() == 300);
  // DUP → (9, 9); POP_MARK discards back to the mark → 1; DICT from a mark → {1: 2}
  CHECK(parse("K\x09" "2\x86."s).root().items()[1]->as_int() == 9);
  CHECK(parse("K\x01(K\x02K\x03" "1."s).root().as_int() == 1);
  const auto dict = parse("(K\x01K\x02" "d."s);
  REQUIRE(dict.root().as_dict().size() == 1);
  CHECK(dict.root().as_dict()[0].second->as_int() == 2);
  // BINFLOAT is big-endian: 0x3FF8000000000000 = 1.5. LONG4 of the 2 bytes 7f ff is the
  // little-endian two's complement 0xff7f = -129; LONG1 of 0 bytes is 0.
  CHECK(parse("G\x3f\xf8\x00\x00\x00\x00\x00\x00."s).root().as_float() == 1.5);
  CHECK(parse("\x8b\x02\x00\x00\x00\x7f\xff."s).root().as_int() == -129);
  CHECK(parse("\x8a\x00."s).root().as_int() == 0);
  // A repeated dict key keeps the last value, as in Python.
  const auto repeated = parse("}(\x8c\x01kK\x01\x8c\x01kK\x02u."s);
  CHECK(repeated.root().as_dict().size() == 1);
  CHECK(repeated.root().at("k").as_int() == 2);
  // A list that contains itself (memo cycle) is representable and freed without recursion.
  const auto cycle = parse("]\x94h\x00" "a."s);
  CHECK(cycle.root().items()[0] == &cycle.root());
}
