// Convolution code paths that the cases of test_ops_forward/test_ops_gradients never reach:
//   - the width-only (rowshift) forward, and its flipped-filter dx, split into several row
//     bands (the other tests give it Ci < shifted_min_ci_forward or one band);
//   - the blocked filter gradients: shifted per-tap GEMMs in blocks of dw_ci_block input
//     channels (Co ≤ dw_small_co), and the 1×1 small-Co dW in bands of dw_small_cols pixels;
//   - gemm_column_pieces with more than one piece (and a last, partial one).
// Expected values come from direct loops and central differences, never from another path
// of the same code. Each case first asserts (through the plan) that it takes the path it is
// meant to, and then that an expectation missing the last band / block / piece differs from
// the result, so the comparison is known to involve those later parts.
//
//   x [N,Ci,H,W]  w [Co,Ci,K,K]  b [Co]  y, dy [N,Co,Ho,Wo]
#include "conv_reference.hpp"

#include <ambiseg/ops/all.hpp>

#include <omp.h>

#include <vector>

using namespace ambiseg;
using namespace ops_test;

namespace {

// tol for results of O(10) built from a few hundred products in double
constexpr double tight = 1e-11;

}  // namespace

TEST_CASE("conv2d rowshift path split into several row bands: forward, dx, dW", "[ops][conv][conv2d]") {
  rng r(301);
  conv_settings_guard guard;
  struct c_t { std::int64_t n, ci, h, w, co, k, rows; };
  // Ci, Co ≥ shifted_min_ci_forward (8): the forward and the flipped-filter dx both take
  // rowshift; rows: the band height forced through band_bytes (the last band is partial
  // where rows does not divide H).
  const std::vector<c_t> cases = {{2, 8, 7, 6, 8, 3, 2}, {2, 8, 5, 6, 9, 3, 1},
                                  {1, 9, 8, 7, 8, 5, 3}, {3, 8, 6, 5, 10, 3, 4}};
  using ck::conv_threading;
  for (auto mode : {conv_threading::images, conv_threading::gemm})
    for (const auto& c : cases) {
      INFO("N=" << c.n << " Ci=" << c.ci << " " << c.h << "x" << c.w << " Co=" << c.co << " K="
                << c.k << " rows/band " << c.rows << " mode " << static_cast<int>(mode));
      const int pad = static_cast<int>(c.k / 2);
      auto& t = ck::conv_settings();
      t = ck::conv_tuning{};
      t.threading = mode;
      t.shifted_min_width = 0;  // never the shifted GEMMs: rowshift for every "same" conv
      t.rowshift = true;
      // one col3 band = K·Ci·(rows + K − 1)·W doubles; dx's band has Co channels instead
      t.band_bytes = c.k * c.ci * (c.rows + c.k - 1) * c.w * std::int64_t{sizeof(double)};
      auto x = randn({c.n, c.ci, c.h, c.w}, r);
      auto w = randn({c.co, c.ci, c.k, c.k}, r);
      auto b = randn({c.co}, r);
      const auto g = geometry(x.shape(), w.shape(), 1, pad);
      const auto plan = ck::make_conv_plan(g, sizeof(double));
      REQUIRE(plan.rowshift);
      REQUIRE_FALSE(plan.shifted);
      REQUIRE(plan.rowshift_rows == c.rows);
      REQUIRE(plan.rowshift_rows < g.ho);  // several bands
      const auto plan_dx = ck::make_conv_plan(g.transposed(), sizeof(double));
      REQUIRE(plan_dx.rowshift);
      REQUIRE(plan_dx.rowshift_rows < g.h);
      REQUIRE(g.co >= t.shifted_min_ci_forward);

      auto dy = randn({c.n, c.co, c.h, c.w}, r);
      const auto got = run_conv(x, w, b, dy, 1, pad, r);
      // (without bias: the first kernel row's GEMM must overwrite y, beta 0, in every band)
      const auto [expected_y, expected] = check_conv_against_direct(x, w, b, dy, got, 1, pad, tight);

      // A forward that skipped the last band would be caught: the expectation with that
      // band's rows replaced by the bias alone differs from the result.
      auto wrong_y = expected_y.clone();
      const std::int64_t last_band = (g.ho - 1) / c.rows * c.rows;
      for (std::int64_t n = 0; n < c.n; ++n)
        for (std::int64_t o = 0; o < c.co; ++o)
          for (std::int64_t i = last_band; i < g.ho; ++i)
            for (std::int64_t j = 0; j < g.wo; ++j) wrong_y.at(n, o, i, j) = b[o];
      CHECK(max_abs_diff(got.y, wrong_y) > 0.1);
      // and so would a dx missing its last row
      auto wrong_dx = expected.dx.clone();
      for (std::int64_t n = 0; n < c.n; ++n)
        for (std::int64_t i = 0; i < c.ci; ++i)
          for (std::int64_t j = 0; j < c.w; ++j) wrong_dx.at(n, i, c.h - 1, j) = 0;
      CHECK(max_abs_diff(got.dx, wrong_dx) > 0.1);
    }

  SECTION("finite differences through several bands") {
    auto& t = ck::conv_settings();
    t = ck::conv_tuning{};
    t.threading = conv_threading::images;
    t.shifted_min_width = 0;
    t.band_bytes = 3 * 8 * (2 + 2) * 4 * std::int64_t{sizeof(double)};  // 2 rows per band
    auto x = randn({1, 8, 5, 4}, r);
    auto w = randn({2, 8, 3, 3}, r);
    auto b = randn({2}, r);
    const auto plan = ck::make_conv_plan(geometry(x.shape(), w.shape(), 1, 1), sizeof(double));
    REQUIRE(plan.rowshift);
    REQUIRE(plan.rowshift_rows == 2);
    auto dy = randn({1, 2, 5, 4}, r);
    const auto got = run_conv(x, w, b, dy, 1, 1, r);
    check_conv_finite_differences(x, w, b, dy, got, 1, 1);
  }
}

TEST_CASE("conv2d shifted filter gradient in several input-channel blocks", "[ops][conv][conv2d]") {
  rng r(302);
  conv_settings_guard guard;
  struct c_t { std::int64_t n, ci, h, w, co, ci_block, dw_cols; };
  // Co ≤ dw_small_co: dW per tap in GEMMs of Co × ci_block (the last block partial where
  // ci_block does not divide Ci); dw_cols 0 for one dW band, else that many padded columns.
  const std::vector<c_t> cases = {{2, 8, 6, 5, 4, 3, 0},  {2, 8, 6, 5, 4, 3, 14},
                                  {3, 7, 5, 6, 32, 2, 0}, {2, 20, 4, 4, 3, 16, 0},
                                  {2, 6, 5, 5, 5, 1, 7}};
  // The shifted path runs with images in parallel (or on one thread): threading::images
  // gives that for any thread count; the per-thread partial dWs are reduced afterwards.
  for (const auto& c : cases) {
    INFO("N=" << c.n << " Ci=" << c.ci << " " << c.h << "x" << c.w << " Co=" << c.co << " block "
              << c.ci_block << " dw_cols " << c.dw_cols << " threads " << omp_get_max_threads());
    auto& t = ck::conv_settings();
    t = ck::conv_tuning{};
    t.threading = ck::conv_threading::images;
    t.shifted_min_width = 1;  // every "same" conv takes the shifted GEMMs
    t.dw_ci_block = c.ci_block;
    if (c.dw_cols) t.shifted_dw_cols = c.dw_cols;
    auto x = randn({c.n, c.ci, c.h, c.w}, r);
    auto w = randn({c.co, c.ci, 3, 3}, r);
    auto b = randn({c.co}, r);
    const auto g = geometry(x.shape(), w.shape(), 1, 1);
    REQUIRE(ck::make_conv_plan(g, sizeof(double)).shifted);
    const auto layout = ck::make_shifted_layout(g, t.shifted_fwd_cols, t.shifted_dw_cols,
                                                t.dw_ci_block_for(g.co));
    REQUIRE(layout.dw_ci_block == c.ci_block);
    REQUIRE(layout.dw_ci_block < g.ci);  // several blocks
    if (c.dw_cols) REQUIRE(layout.dw_rows < g.ho);

    auto dy = randn({c.n, c.co, c.h, c.w}, r);
    const auto got = run_conv(x, w, b, dy, 1, 1, r);
    const auto expected = check_conv_against_direct(x, w, b, dy, got, 1, 1, tight).grads;

    // A dW that left out the last block of input channels would be caught.
    auto wrong_dw = expected.dw.clone();
    const std::int64_t last_block = (c.ci - 1) / c.ci_block * c.ci_block;
    for (std::int64_t o = 0; o < c.co; ++o)
      for (std::int64_t i = last_block; i < c.ci; ++i)
        for (std::int64_t kh = 0; kh < 3; ++kh)
          for (std::int64_t kw = 0; kw < 3; ++kw) wrong_dw.at(o, i, kh, kw) = 0;
    CHECK(max_abs_diff(got.dw, wrong_dw) > 0.1);
  }

  SECTION("finite differences with blocks of 3 of 8 input channels") {
    auto& t = ck::conv_settings();
    t = ck::conv_tuning{};
    t.threading = ck::conv_threading::images;
    t.shifted_min_width = 1;
    t.dw_ci_block = 3;
    auto x = randn({1, 8, 4, 5}, r);
    auto w = randn({2, 8, 3, 3}, r);
    auto b = randn({2}, r);
    REQUIRE(ck::make_conv_plan(geometry(x.shape(), w.shape(), 1, 1), sizeof(double)).shifted);
    auto dy = randn({1, 2, 4, 5}, r);
    const auto got = run_conv(x, w, b, dy, 1, 1, r);
    check_conv_finite_differences(x, w, b, dy, got, 1, 1);
  }
}

TEST_CASE("conv2d 1x1 small-Co filter gradient in pixel bands and channel blocks", "[ops][conv][conv2d]") {
  rng r(303);
  conv_settings_guard guard;
  struct c_t { std::int64_t n, ci, h, w, co, ci_block, small_cols; };
  // small_cols 0: the default knobs (1900 pixels, blocks of 16) on a 48² image: 39 + 9 rows,
  // 16 + 4 channels. Otherwise bands of small_cols / W rows.
  const std::vector<c_t> cases = {{2, 7, 5, 5, 3, 3, 10}, {3, 5, 6, 4, 2, 2, 5},
                                  {2, 4, 3, 7, 32, 1, 7}, {1, 20, 48, 48, 4, 16, 0}};
  using ck::conv_threading;
  for (auto mode : {conv_threading::images, conv_threading::gemm})
    for (const auto& c : cases) {
      INFO("N=" << c.n << " Ci=" << c.ci << " " << c.h << "x" << c.w << " Co=" << c.co
                << " block " << c.ci_block << " cols " << c.small_cols << " mode "
                << static_cast<int>(mode));
      auto& t = ck::conv_settings();
      t = ck::conv_tuning{};
      t.threading = mode;
      if (c.small_cols) {
        t.dw_small_cols = c.small_cols;
        t.dw_ci_block = c.ci_block;
      }
      auto x = randn({c.n, c.ci, c.h, c.w}, r);
      auto w = randn({c.co, c.ci, 1, 1}, r);
      auto b = randn({c.co}, r);
      const auto g = geometry(x.shape(), w.shape(), 1, 0);
      REQUIRE(g.pointwise());
      REQUIRE(g.co <= t.dw_small_co);
      REQUIRE(t.dw_ci_block == c.ci_block);
      REQUIRE(t.dw_ci_block < g.ci);                  // several channel blocks
      const std::int64_t band_rows = std::max<std::int64_t>(t.dw_small_cols / g.wo, 1);
      REQUIRE(band_rows < g.ho);                      // several pixel bands

      const auto expected_y = naive_conv(x, w, &b, 1, 0);
      auto dy = randn(expected_y.shape(), r);
      const auto expected = naive_conv_backward(x, w, dy, 1, 0);
      const auto got = run_conv(x, w, b, dy, 1, 0, r);
      const double scale_dw = std::max(1.0, max_abs(expected.dw));
      CHECK(max_abs_diff(got.y, expected_y) < tight * std::max(1.0, max_abs(expected_y)));
      CHECK(max_abs_diff(got.dx, expected.dx) < tight * std::max(1.0, max_abs(expected.dx)));
      CHECK(max_abs_diff(got.dw, expected.dw) < tight * scale_dw);
      CHECK(max_abs_diff(got.db, expected.db) < tight * std::max(1.0, max_abs(expected.db)));

      // A dW that left out the last block of channels, or the last band of pixels, would be
      // caught.
      auto wrong_block = expected.dw.clone();
      for (std::int64_t o = 0; o < c.co; ++o)
        for (std::int64_t i = (c.ci - 1) / c.ci_block * c.ci_block; i < c.ci; ++i)
          wrong_block.at(o, i, 0, 0) = 0;
      CHECK(max_abs_diff(got.dw, wrong_block) > 0.1);
      auto dy_head = dy.clone();  // dy without the last band: the dW such a bug would give
      const std::int64_t last_band = (g.ho - 1) / band_rows * band_rows;
      for (std::int64_t n = 0; n < c.n; ++n)
        for (std::int64_t o = 0; o < c.co; ++o)
          for (std::int64_t i = last_band; i < g.ho; ++i)
            for (std::int64_t j = 0; j < g.wo; ++j) dy_head.at(n, o, i, j) = 0;
      const auto wrong_band = naive_conv_backward(x, w, dy_head, 1, 0).dw;
      CHECK(max_abs_diff(got.dw, wrong_band) > 0.1);
    }

  SECTION("finite differences with bands of 2 rows and blocks of 3 channels") {
    auto& t = ck::conv_settings();
    t = ck::conv_tuning{};
    t.dw_small_cols = 10;
    t.dw_ci_block = 3;
    for (auto mode : {conv_threading::images, conv_threading::gemm}) {
      t.threading = mode;
      auto x = randn({1, 7, 5, 5}, r);
      auto w = randn({3, 7, 1, 1}, r);
      auto b = randn({3}, r);
      auto dy = randn({1, 3, 5, 5}, r);
      const auto got = run_conv(x, w, b, dy, 1, 0, r);
      check_conv_finite_differences(x, w, b, dy, got, 1, 0);
    }
  }
}

TEST_CASE("gemm_column_pieces matches a direct product with several pieces", "[ops][conv][gemm]") {
  rng r(304);
  using ck::trans;
  const std::int64_t m = 5, k = 7, n = 50, pad = 3;  // pad: leading dimensions wider than used
  struct p_t { std::int64_t max_mnk, piece; };
  // piece = max_mnk / (M·K), rounded down to a multiple of 16 when at least 16, else ≥ 1
  const std::vector<p_t> splits = {{16 * m * k, 16}, {20 * m * k, 16}, {5 * m * k, 5},
                                   {m * k - 1, 1}, {33 * m * k, 32}, {std::int64_t{1} << 30, n}};
  for (trans ta : {trans::no, trans::yes})
    for (trans tb : {trans::no, trans::yes})
      for (const auto& s : splits)
        for (double beta : {0.0, -1.3}) {
          INFO("ta " << static_cast<int>(ta) << " tb " << static_cast<int>(tb) << " max_mnk "
                     << s.max_mnk << " beta " << beta);
          // A stored [M, K] or, transposed, [K, M]; B [K, N] or [N, K]; C [M, N]; each row
          // `pad` elements wider than used.
          const std::int64_t a_rows = ta == trans::no ? m : k, lda = (ta == trans::no ? k : m) + pad;
          const std::int64_t b_rows = tb == trans::no ? k : n, ldb = (tb == trans::no ? n : k) + pad;
          const std::int64_t ldc = n + pad;
          auto a = randn({a_rows, lda}, r);
          auto b = randn({b_rows, ldb}, r);
          auto c = randn({m, ldc}, r);
          const auto c0 = c.clone();
          auto op_a = [&](std::int64_t i, std::int64_t l) {
            return ta == trans::no ? a[i * lda + l] : a[l * lda + i];
          };
          auto op_b = [&](std::int64_t l, std::int64_t j) {
            return tb == trans::no ? b[l * ldb + j] : b[j * ldb + l];
          };
          const double alpha = 0.7;
          tensor<double> expected = c0.clone();
          for (std::int64_t i = 0; i < m; ++i)
            for (std::int64_t j = 0; j < n; ++j) {
              double sum = 0;
              for (std::int64_t l = 0; l < k; ++l) sum += op_a(i, l) * op_b(l, j);
              expected[i * ldc + j] = alpha * sum + beta * c0[i * ldc + j];
            }
          ck::gemm_column_pieces(ta, tb, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta,
                                 c.data(), ldc, s.max_mnk);
          // the padding columns of C are compared too: they must be left as they were
          CHECK(max_abs_diff(c, expected) < 1e-13);

          if (s.piece < n) {  // a product that skipped the last piece would be caught
            auto wrong = expected.clone();
            for (std::int64_t i = 0; i < m; ++i)
              for (std::int64_t j = (n - 1) / s.piece * s.piece; j < n; ++j)
                wrong[i * ldc + j] = beta * c0[i * ldc + j];
            CHECK(max_abs_diff(c, wrong) > 0.1);
          }
        }
}
