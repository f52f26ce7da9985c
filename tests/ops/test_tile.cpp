// tile_rows_forward / tile_rows_backward against values written out by hand, a
// finite-difference check in double, and the refusals.
#include <catch2/catch.hpp>

#include "ambiseg/ops/tile.hpp"

using namespace ambiseg;

TEST_CASE("tile_rows_forward stacks copies of the batch; the backward sums them, scaled", "[ops][tile]") {
  tensor<float> x(shape{2, 3});
  for (int i = 0; i < 6; ++i) x[i] = float(i + 1);
  tensor<float> y(shape{6, 3});
  ops::tile_rows_forward(x.cview(), y.view());
  for (int s = 0; s < 3; ++s)
    for (int i = 0; i < 6; ++i) CHECK(y[s * 6 + i] == float(i + 1));

  tensor<float> dy(shape{6, 3});
  for (int i = 0; i < 18; ++i) dy[i] = float(i);
  tensor<float> dx(shape{2, 3});
  dx.fill(1.0f);
  ops::tile_rows_backward(dy.cview(), 0.5, dx.view());  // dx[i] = 1 + ½(i + (i + 6) + (i + 12))
  for (int i = 0; i < 6; ++i) CHECK(dx[i] == 1.0f + 0.5f * float(3 * i + 18));
}

TEST_CASE("tile_rows_backward is the gradient of tile_rows_forward (finite differences, double)", "[ops][tile]") {
  // L = Σ w ⊙ tile(x): dL/dx by central differences against the backward with scale 1.
  tensor<double> x(shape{3, 2, 2}), w(shape{12, 2, 2});
  for (std::int64_t i = 0; i < x.numel(); ++i) x[i] = 0.3 * double(i) - 1.0;
  for (std::int64_t i = 0; i < w.numel(); ++i) w[i] = std::sin(double(i));
  auto loss = [&](const tensor<double>& at) {
    tensor<double> y(shape{12, 2, 2});
    ops::tile_rows_forward(at.cview(), y.view());
    double l = 0;
    for (std::int64_t i = 0; i < y.numel(); ++i) l += w[i] * y[i];
    return l;
  };
  auto dx = tensor<double>::zeros(x.shape());
  ops::tile_rows_backward(w.cview(), 1.0, dx.view());
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    const double h = 1e-6;
    tensor<double> up = x.clone(), down = x.clone();
    up[i] += h;
    down[i] -= h;
    CHECK(dx[i] == Approx((loss(up) - loss(down)) / (2 * h)).margin(1e-8));
  }
}

TEST_CASE("tile_rows refuses shapes that are not copies of the batch", "[ops][tile]") {
  tensor<float> x(shape{2, 3}), bad_rows(shape{5, 3}), bad_cols(shape{4, 2}), bad_rank(shape{4, 3, 1});
  CHECK_THROWS_AS(ops::tile_rows_forward(x.cview(), bad_rows.view()), shape_error);
  CHECK_THROWS_AS(ops::tile_rows_forward(x.cview(), bad_cols.view()), shape_error);
  CHECK_THROWS_AS(ops::tile_rows_forward(x.cview(), bad_rank.view()), shape_error);
  CHECK_THROWS_AS(ops::tile_rows_backward(bad_rows.cview(), 1.0, x.view()), shape_error);
}
