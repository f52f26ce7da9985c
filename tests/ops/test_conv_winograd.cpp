// The Winograd path of the 3×3 "same" convolution (ops/cpu/conv2d_winograd.hpp), F(2×2,3×3)
// and F(4×4,3×3): forward, flipped-filter dx and filter gradient against the direct loops in
// double (exact up to rounding), through partial edge tiles, chunks that span images and a
// partial last chunk, on one and two threads; central differences; and the rounding error
// in float against the direct path's, on the network's shapes.
//
//   x [N,Ci,H,W]  w [Co,Ci,3,3]  b [Co]  y, dy [N,Co,H,W]
#include "conv_reference.hpp"

#include <omp.h>

#include <cstdio>
#include <vector>

using namespace ambiseg;
using namespace ops_test;

namespace {

constexpr double tight = 1e-11;

const char* tile_name(ck::winograd_tile t) { return t == ck::winograd_tile::f2 ? "F(2x2,3x3)" : "F(4x4,3x3)"; }
std::int64_t tile_m(ck::winograd_tile t) { return t == ck::winograd_tile::f2 ? 2 : 4; }

// Settings that send every 3×3 "same" convolution of these sizes through Winograd with
// chunks of `rows` tile rows (the chunk size is set in bytes: α²·(Ci+Co) per tile).
void use_winograd(ck::winograd_tile tile, const ck::conv_geometry& g, std::int64_t rows) {
  auto& t = ck::conv_settings();
  t = ck::conv_tuning{};
  t.winograd = tile;
  t.winograd_min_channels = 1;
  const std::int64_t a = tile_m(tile) + 2, m = tile_m(tile);
  const std::int64_t tw = (g.w + m - 1) / m;
  t.winograd_chunk_bytes = rows * tw * a * a * (g.ci + g.co) * std::int64_t{sizeof(double)};
}

}  // namespace

TEST_CASE("conv2d winograd: forward, dx and dW equal the direct convolution", "[ops][conv][conv2d][winograd]") {
  rng r(907);
  conv_settings_guard guard;
  const int saved_threads = omp_get_max_threads();
  struct c_t { std::int64_t n, ci, h, w, co, rows; };
  // sizes that are not multiples of the tile (partial edge tiles), one-pixel images,
  // chunks of 1–3 tile rows that run across image boundaries, and a partial last chunk
  const std::vector<c_t> cases = {{2, 3, 7, 5, 4, 2}, {3, 5, 8, 8, 3, 3}, {1, 2, 1, 1, 2, 1},
                                  {2, 4, 6, 9, 5, 1}, {2, 6, 13, 11, 7, 4}};
  for (auto tile : {ck::winograd_tile::f2, ck::winograd_tile::f4})
    for (int threads : {1, 2})
      for (const auto& c : cases) {
        INFO(tile_name(tile) << " threads " << threads << " N=" << c.n << " Ci=" << c.ci << " "
                             << c.h << "x" << c.w << " Co=" << c.co << " rows/chunk " << c.rows);
        omp_set_num_threads(threads);
        auto x = randn({c.n, c.ci, c.h, c.w}, r);
        auto w = randn({c.co, c.ci, 3, 3}, r);
        auto b = randn({c.co}, r);
        const auto g = geometry(x.shape(), w.shape(), 1, 1);
        use_winograd(tile, g, c.rows);
        const auto plan = ck::make_conv_plan(g, sizeof(double));
        REQUIRE(plan.winograd == tile);
        REQUIRE(ck::make_conv_plan(g.transposed(), sizeof(double)).winograd == tile);
        const auto layout = tile == ck::winograd_tile::f2
                                ? ck::make_winograd_layout<ck::winograd_f2>(g, ck::conv_settings().winograd_chunk_bytes, sizeof(double))
                                : ck::make_winograd_layout<ck::winograd_f4>(g, ck::conv_settings().winograd_chunk_bytes, sizeof(double));
        REQUIRE(layout.rows_per_chunk == std::min(c.rows, layout.rows));

        auto dy = randn({c.n, c.co, c.h, c.w}, r);
        const auto got = run_conv(x, w, b, dy, 1, 1, r);
        // (without bias: every pixel of every chunk overwritten)
        const auto expected_y = check_conv_against_direct(x, w, b, dy, got, 1, 1, tight).y;

        // The comparison reaches the last image's last row and column (the last chunk,
        // the partial edge tiles): an expectation with them zeroed differs.
        auto wrong_y = expected_y.clone();
        for (std::int64_t o = 0; o < c.co; ++o) {
          for (std::int64_t j = 0; j < c.w; ++j) wrong_y.at(c.n - 1, o, c.h - 1, j) = 0;
          for (std::int64_t i = 0; i < c.h; ++i) wrong_y.at(c.n - 1, o, i, c.w - 1) = 0;
        }
        CHECK(max_abs_diff(got.y, wrong_y) > 0.1);
      }
  omp_set_num_threads(saved_threads);
}

TEST_CASE("conv2d winograd: finite differences", "[ops][conv][conv2d][winograd]") {
  rng r(911);
  conv_settings_guard guard;
  for (auto tile : {ck::winograd_tile::f2, ck::winograd_tile::f4}) {
    INFO(tile_name(tile));
    auto x = randn({2, 3, 5, 6}, r);
    auto w = randn({2, 3, 3, 3}, r);
    auto b = randn({2}, r);
    use_winograd(tile, geometry(x.shape(), w.shape(), 1, 1), 1);
    REQUIRE(ck::make_conv_plan(geometry(x.shape(), w.shape(), 1, 1), sizeof(double)).winograd == tile);
    auto dy = randn({2, 2, 5, 6}, r);
    const auto got = run_conv(x, w, b, dy, 1, 1, r);
    check_conv_finite_differences(x, w, b, dy, got, 1, 1);
  }
}

// Rounding in float. Reference: the direct path in double. Measured against the
// direct float path (GEMM-lowered, winograd off) on the network's channel counts, with
// inputs and weights at the scale of a trained layer (unit activations, He-scaled weights).
TEST_CASE("conv2d winograd: float error against the direct float path", "[ops][conv][conv2d][winograd]") {
  rng r(919);
  conv_settings_guard guard;
  struct c_t { std::int64_t ci, hw, co; };
  for (const c_t c : {c_t{32, 32, 32}, c_t{128, 16, 128}, c_t{64, 20, 32}}) {
    auto xd = randn({2, c.ci, c.hw, c.hw}, r);
    auto wd = randn({c.co, c.ci, 3, 3}, r, std::sqrt(2.0 / (9.0 * c.ci)));
    auto bd = randn({c.co}, r, 0.1);
    auto dyd = randn({2, c.co, c.hw, c.hw}, r);
    // The reference in double: the direct path (whose own agreement with the loops of
    // conv_reference.hpp is tested elsewhere; its 1e-16 rounding is far below float's).
    tensor<double> y_ref(dyd.shape());
    conv_grads g_ref{tensor<double>(xd.shape()), tensor<double>::zeros(wd.shape()), tensor<double>::zeros({c.co})};
    {
      ck::conv_settings().winograd = ck::winograd_tile::off;
      workspace<cpu> ws;
      ops::conv2d_forward(xd, wd, bd, y_ref.view(), ops::conv2d_params{1, 1}, ws);
      ops::conv2d_backward(xd, wd, dyd, g_ref.dx, g_ref.dw.view(), g_ref.db, ops::conv2d_params{1, 1}, ws);
    }
    auto to_float = [](const tensor<double>& t) {
      tensor<float> f(t.shape());
      for (std::int64_t i = 0; i < t.numel(); ++i) f[i] = static_cast<float>(t[i]);
      return f;
    };
    const auto x = to_float(xd), w = to_float(wd), b = to_float(bd), dy = to_float(dyd);
    struct errors { double y, dx, dw; };
    auto run = [&](ck::winograd_tile tile) {
      auto& t = ck::conv_settings();
      t = ck::conv_tuning{};
      t.winograd = tile;
      tensor<float> y(y_ref.shape()), dx(x.shape());
      auto dw = tensor<float>::zeros(w.shape());
      auto db = tensor<float>::zeros(b.shape());
      workspace<cpu> ws;
      ops::conv2d_forward(x, w, b, y.view(), ops::conv2d_params{1, 1}, ws);
      ops::conv2d_backward(x, w, dy, dx, dw.view(), db, ops::conv2d_params{1, 1}, ws);
      return errors{max_abs_diff(y, y_ref) / max_abs(y_ref), max_abs_diff(dx, g_ref.dx) / max_abs(g_ref.dx),
                    max_abs_diff(dw, g_ref.dw) / max_abs(g_ref.dw)};
    };
    const auto direct = run(ck::winograd_tile::off);
    const auto f2 = run(ck::winograd_tile::f2);
    const auto f4 = run(ck::winograd_tile::f4);
    std::printf("winograd float error, %lld->%lld ch at %lld^2 (max abs error / max abs value): "
                "y direct %.2e F2 %.2e F4 %.2e | dx %.2e %.2e %.2e | dW %.2e %.2e %.2e\n",
                static_cast<long long>(c.ci), static_cast<long long>(c.co), static_cast<long long>(c.hw),
                direct.y, f2.y, f4.y, direct.dx, f2.dx, f4.dx, direct.dw, f2.dw, f4.dw);
    INFO(c.ci << "->" << c.co << " at " << c.hw);
    // F(2×2): within a small factor of the direct float result; F(4×4): within 1e-4.
    CHECK(f2.y < 4 * direct.y + 1e-7);
    CHECK(f2.dx < 4 * direct.dx + 1e-7);
    CHECK(f2.dw < 4 * direct.dw + 1e-7);
    CHECK(f4.y < 1e-4);
    CHECK(f4.dx < 1e-4);
    CHECK(f4.dw < 1e-4);
  }
}

TEST_CASE("conv2d winograd: which convolutions take it by default", "[ops][conv][conv2d][winograd]") {
  conv_settings_guard guard;
  ck::conv_settings() = ck::conv_tuning{};
  auto plan = [](std::int64_t ci, std::int64_t co, std::int64_t k, std::int64_t stride, std::int64_t pad) {
    const std::int64_t ho = (9 + 2 * pad - k) / stride + 1;
    return ck::make_conv_plan(ck::conv_geometry{2, ci, 9, 9, co, k, stride, pad, ho, ho}, sizeof(float)).winograd;
  };
  CHECK(plan(16, 16, 3, 1, 1) == ck::winograd_tile::f4);
  CHECK(plan(256, 128, 3, 1, 1) == ck::winograd_tile::f4);
  CHECK(plan(15, 64, 3, 1, 1) == ck::winograd_tile::off);  // too few input channels (the stem)
  CHECK(plan(64, 1, 3, 1, 1) == ck::winograd_tile::off);   // too few outputs (the head)
  CHECK(plan(32, 32, 3, 2, 1) == ck::winograd_tile::off);  // strided (the downsampling)
  CHECK(plan(32, 32, 3, 1, 0) == ck::winograd_tile::off);  // "valid", not "same"
  CHECK(plan(32, 32, 5, 1, 2) == ck::winograd_tile::off);  // 5×5
  CHECK(plan(32, 32, 1, 1, 0) == ck::winograd_tile::off);  // 1×1
  ck::conv_settings().winograd = ck::winograd_tile::off;
  CHECK(plan(32, 32, 3, 1, 1) == ck::winograd_tile::off);
  ck::conv_settings().winograd = ck::winograd_tile::f2;
  CHECK(plan(32, 32, 3, 1, 1) == ck::winograd_tile::f2);
}
