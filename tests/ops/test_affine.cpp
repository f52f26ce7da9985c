// affine_forward and combine_case_losses against values computed by hand.
#include <catch2/catch.hpp>

#include "ambiseg/ops/affine.hpp"

using namespace ambiseg;

TEST_CASE("affine_forward maps masks {−1, +1} to {0, 1}, in place too", "[ops][affine]") {
  tensor<float> x(shape{2, 3});
  const float in[] = {-1, 1, 1, -1, 0.5f, -0.25f};
  std::copy(in, in + 6, x.data());
  tensor<float> y(shape{2, 3});
  ops::affine_forward(x.cview(), 0.5, 0.5, y.view());
  const float expected[] = {0, 1, 1, 0, 0.75f, 0.375f};
  for (int i = 0; i < 6; ++i) CHECK(y[i] == expected[i]);
  ops::affine_forward(x.cview(), -2.0, 1.0, x.view());
  CHECK(x[0] == 3.0f);
  CHECK(x[4] == 0.0f);
  tensor<float> wrong(shape{3, 2});
  CHECK_THROWS_AS(ops::affine_forward(x.cview(), 1.0, 0.0, wrong.view()), shape_error);
}

TEST_CASE("combine_case_losses: per-case first + w·second, then their mean", "[ops][affine]") {
  tensor<double> a(shape{3}), b(shape{3}), report(shape{4});
  a[0] = 1; a[1] = 2; a[2] = 3;
  b[0] = 0.5; b[1] = 0; b[2] = -1;
  ops::combine_case_losses<cpu>(a.cview(), b.cview(), 10.0, report.view());
  CHECK(report[0] == 6.0);
  CHECK(report[1] == 2.0);
  CHECK(report[2] == -7.0);
  CHECK(report[3] == Approx(1.0 / 3.0).epsilon(1e-15));
  tensor<double> short_report(shape{3});
  CHECK_THROWS_AS(ops::combine_case_losses<cpu>(a.cview(), b.cview(), 1.0, short_report.view()), shape_error);
}
