// Core: shapes, tensors, views, the random number generator.
#include <catch2/catch.hpp>

#include <ambiseg/ambiseg.hpp>

#include <cmath>

using namespace ambiseg;

TEST_CASE("shape reports extents and rejects bad ones", "[core]") {
  shape s{2, 3, 4, 5};
  CHECK(s.rank() == 4);
  CHECK(s.numel() == 120);
  CHECK(s.c() == 3);
  CHECK(s.to_string() == "[2, 3, 4, 5]");
  CHECK_THROWS_AS((shape{1, 2, 3, 4, 5}), shape_error);
  CHECK_THROWS_AS((shape{2, -1}), shape_error);
  CHECK_THROWS_WITH(s[4], Catch::Contains("axis 4"));
}

TEST_CASE("tensor owns, views alias, nothing copies implicitly", "[core]") {
  auto t = tensor<float>::from({2, 3}, {1, 2, 3, 4, 5, 6});
  tensor_view<float> v = t;
  v[0] = 10;
  CHECK(t[0] == 10);
  auto r = v.reshaped({3, 2});
  CHECK(r.shape() == shape{3, 2});
  CHECK_THROWS_AS(v.reshaped({4, 2}), shape_error);
  auto s = v.slice0(1, 1);
  CHECK(s[0] == 4);
  CHECK_THROWS_AS(v.slice0(1, 2), shape_error);
  auto c = t.clone();
  c[1] = 99;
  CHECK(t[1] == 2);
  tensor<float> moved = std::move(c);
  CHECK(moved[1] == 99);
  STATIC_REQUIRE(!std::is_copy_constructible_v<tensor<float>>);
}

TEST_CASE("resize reuses capacity", "[core]") {
  tensor<double> t(shape{4, 8});
  const double* p = t.data();
  t.resize({2, 8});
  CHECK(t.data() == p);
  CHECK(t.numel() == 16);
  t.resize({4, 8});
  CHECK(t.data() == p);
}

TEST_CASE("expect_shape and expect_finite name the problem", "[core]") {
  auto t = tensor<float>::from({2}, {1.0f, NAN});
  CHECK_THROWS_WITH(expect_shape("conv2d", "weight", t, shape{3}),
                    Catch::Contains("conv2d") && Catch::Contains("weight") && Catch::Contains("[2]"));
  CHECK_THROWS_AS(expect_finite<float>("input", t.cview()), value_error);
}

TEST_CASE("rng is reproducible and has the right moments", "[core]") {
  rng a(42), b(42);
  for (int i = 0; i < 100; ++i) REQUIRE(a() == b());
  rng g(7);
  double sum = 0, sum2 = 0, usum = 0;
  const int n = 200000;
  for (int i = 0; i < n; ++i) {
    const double z = g.normal();
    sum += z;
    sum2 += z * z;
    usum += g.uniform();
  }
  CHECK(std::abs(sum / n) < 0.01);
  CHECK(std::abs(sum2 / n - 1.0) < 0.015);
  CHECK(std::abs(usum / n - 0.5) < 0.005);
  auto st = g.state();
  const double x = g.normal();
  g.set_state(st);
  CHECK(g.normal() == x);
  for (int i = 0; i < 1000; ++i) REQUIRE(g.below(3) < 3);
}

#include <ambiseg/io/atomic_file.hpp>

#include <filesystem>
#include <fstream>

TEST_CASE("parameter_store lays parameters out in one aligned flat buffer", "[core]") {
  parameter_store<float> store;
  store.add("a.weight", {3, 2});
  store.add("a.bias", {3});
  CHECK_THROWS_WITH(store.add("a.bias", {1}), Catch::Contains("duplicate") && Catch::Contains("a.bias"));
  CHECK_THROWS_WITH(store.value(0), Catch::Contains("before allocate"));
  store.allocate();
  CHECK(store.count() == 9);
  CHECK(store.value("a.weight").shape() == shape{3, 2});
  CHECK(reinterpret_cast<std::uintptr_t>(store.value(1).data()) % 64 == 0);
  store.value("a.bias")[2] = 5.0f;
  store.grad("a.weight")[0] = 1.0f;
  const auto flat = store.flat_values();
  CHECK(flat[store.info(1).offset + 2] == 5.0f);
  store.zero_grad();
  CHECK(store.grad("a.weight")[0] == 0.0f);
  CHECK_THROWS_WITH(store.index_of("nope"), Catch::Contains("nope"));
}

TEST_CASE("atomic writes publish whole files or nothing", "[core][io]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::temp_directory_path() / "ambiseg_atomic_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path target = dir / "out.txt";
  io::write_file_atomically(target, "first");
  {
    io::atomic_file_writer w(target);
    w.write("second, never committed");
  }  // abandoned: the old content survives and no temporary file is left
  std::ifstream in(target);
  std::string content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(content == "first");
  CHECK(std::distance(fs::directory_iterator(dir), fs::directory_iterator()) == 1);
  CHECK_THROWS_AS(io::write_file_atomically(dir / "missing_dir" / "x", "y"), io_error);
  fs::remove_all(dir);
}

#include <ambiseg/core/profile.hpp>
#include <ambiseg/ops/conv2d.hpp>

TEST_CASE("profile: off records nothing; on, an op's calls, shape key and arithmetic", "[core][profile]") {
  profile::enable(false);
  profile::reset();
  tensor<float> x(shape{2, 3, 5, 5}), w(shape{4, 3, 3, 3}), b(shape{4}), y(shape{2, 4, 5, 5});
  x.fill(1.f);
  w.fill(0.5f);
  b.fill(0.f);
  workspace<cpu> ws;
  ops::conv2d_forward<float, cpu>(x.cview(), w.cview(), b.cview(), y.view(), {}, ws);
  CHECK(profile::entries().empty());

  profile::enable(true);
  for (int i = 0; i < 3; ++i) ops::conv2d_forward<float, cpu>(x.cview(), w.cview(), b.cview(), y.view(), {}, ws);
  profile::enable(false);
  ops::conv2d_forward<float, cpu>(x.cview(), w.cview(), b.cview(), y.view(), {}, ws);
  const auto e = profile::entries();
  REQUIRE(e.size() == 1);
  CHECK(e[0].op == "conv2d_forward");
  CHECK(e[0].dims == std::vector<std::int64_t>{2, 3, 5, 5, 4, 3, 1});  // N, Ci, H, W, Co, K, stride
  CHECK(e[0].calls == 3);
  CHECK(e[0].flop == 3.0 * 2 * (2 * 4 * 5 * 5) * (3 * 3 * 3));  // multiply-add = 2 per output term
  CHECK(e[0].seconds >= 0);
  profile::reset();
  CHECK(profile::entries().empty());
}
