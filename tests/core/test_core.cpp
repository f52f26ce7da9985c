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
