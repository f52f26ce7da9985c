// Tests of metrics/: overlaps, Hungarian assignment, GED², HM-IoU, post-processing and the
// batch evaluation. Expected values are counted by hand in the comments;
// tools/metrics_reference.py recomputes the same cases with numpy and brute force.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "ambiseg/metrics/all.hpp"

using namespace ambiseg;
using namespace ambiseg::metrics;

namespace {

// Masks of 1×P pixels given by their foreground pixel lists.
std::vector<std::uint8_t> masks_1d(std::int64_t pixels, const std::vector<std::vector<int>>& sets) {
  std::vector<std::uint8_t> m(sets.size() * static_cast<std::size_t>(pixels), 0);
  for (std::size_t i = 0; i < sets.size(); ++i)
    for (int p : sets[i]) m[i * static_cast<std::size_t>(pixels) + static_cast<std::size_t>(p)] = 1;
  return m;
}

packed_masks pack_1d(std::int64_t pixels, const std::vector<std::vector<int>>& sets, std::vector<std::uint8_t>& store) {
  store = masks_1d(pixels, sets);
  return packed_masks(mask_set_view(store.data(), static_cast<std::int64_t>(sets.size()), 1, pixels));
}

std::vector<std::uint8_t> random_masks(std::mt19937& rng, std::int64_t n, std::int64_t pixels, double p) {
  std::bernoulli_distribution coin(p);
  std::vector<std::uint8_t> m(static_cast<std::size_t>(n * pixels));
  for (auto& v : m) v = coin(rng) ? 1 : 0;
  return m;
}

double brute_force_min_cost(const dmatrix& c) {  // rows <= cols
  std::vector<std::int64_t> perm(static_cast<std::size_t>(c.cols));
  std::iota(perm.begin(), perm.end(), 0);
  double best = 1e300;
  do {
    double s = 0;
    for (std::int64_t i = 0; i < c.rows; ++i) s += c(i, perm[static_cast<std::size_t>(i)]);
    best = std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  return best;
}

}  // namespace

TEST_CASE("metrics: IoU and dice on a hand-counted 3x3 pair", "[metrics]") {
  // a = 1 1 0    b = 1 0 0    TP = 2 ((0,0), (1,0)), FP = 1 ((0,1)), FN = 2 ((1,1), (2,2))
  //     1 0 0        1 1 0    IoU = 2/5, dice = 4/7
  //     0 0 0        0 0 1
  const std::uint8_t a[9] = {1, 1, 0, 1, 0, 0, 0, 0, 0};
  const std::uint8_t b[9] = {1, 0, 0, 1, 1, 0, 0, 0, 1};
  const overlap_counts c = overlap(a, b, 9);
  CHECK(c.tp == 2);
  CHECK(c.fp == 1);
  CHECK(c.fn == 2);
  CHECK(c.iou() == Approx(0.4));
  CHECK(c.dice() == Approx(4.0 / 7.0));
  std::uint8_t both[18];
  std::copy(a, a + 9, both);
  std::copy(b, b + 9, both + 9);
  const packed_masks p(mask_set_view(both, 2, 3, 3));
  CHECK(p.area(0) == 3);
  CHECK(p.area(1) == 4);
  CHECK(p.pixel(1, 2, 2));
  CHECK_FALSE(p.pixel(0, 2, 2));
  const pair_overlaps o = self_overlaps(p);
  CHECK(o.iou(0, 1) == Approx(0.4));
  CHECK(o.dice(1, 0) == Approx(4.0 / 7.0));
  CHECK(o.distance(0, 1) == Approx(0.6));
  CHECK(o.distance(0, 0) == 0.0);
}

TEST_CASE("metrics: empty masks", "[metrics]") {
  const std::uint8_t empty[4] = {0, 0, 0, 0}, one[4] = {0, 1, 0, 0};
  CHECK(iou(empty, empty, 4) == 1.0);  // zero denominator -> 1
  CHECK(dice(empty, empty, 4) == 1.0);
  CHECK(1.0 - iou(empty, empty, 4) == 0.0);
  CHECK(iou(empty, one, 4) == 0.0);
  CHECK(dice(one, empty, 4) == 0.0);
  // GED of two all-empty sets is 0, their dice/IoU/HM-IoU are 1.
  const std::uint8_t zeros[3 * 4] = {};
  const mask_set_view v(zeros, 3, 2, 2);
  const image_result r = evaluate_image(v, mask_set_view(zeros, 2, 2, 2));
  CHECK(r.raw.ged == 0.0);
  CHECK(r.raw.dice == 1.0);
  CHECK(r.raw.iou == 1.0);
  CHECK(r.raw.hm_iou == 1.0);
}

TEST_CASE("metrics: bit-packed overlaps agree with the byte loop", "[metrics]") {
  std::mt19937 rng(7);
  for (auto [h, w] : {std::pair<int, int>{7, 9}, {13, 11}, {8, 8}, {1, 1}, {16, 20}}) {
    const std::int64_t px = h * w;
    const auto a = random_masks(rng, 3, px, 0.4), b = random_masks(rng, 4, px, 0.3);
    const packed_masks pa(mask_set_view(a.data(), 3, h, w)), pb(mask_set_view(b.data(), 4, h, w));
    const pair_overlaps o = pairwise_overlaps(pa, pb);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 4; ++j) {
        const overlap_counts c = overlap(a.data() + i * px, b.data() + j * px, px);
        CHECK(o.counts(i, j).tp == c.tp);
        CHECK(o.counts(i, j).fp == c.fp);
        CHECK(o.counts(i, j).fn == c.fn);
      }
  }
  std::vector<std::uint8_t> x(2 * 5 * 5, 0);
  std::vector<std::uint8_t> y(1 * 4 * 5, 0);
  CHECK_THROWS_AS(pairwise_overlaps(packed_masks(mask_set_view(x.data(), 2, 5, 5)),
                                    packed_masks(mask_set_view(y.data(), 1, 4, 5))),
                  shape_error);
}

TEST_CASE("metrics: masks from an xtensor container", "[metrics]") {
  xt::xtensor<std::uint8_t, 3> m = xt::zeros<std::uint8_t>({2, 3, 4});
  m(0, 1, 2) = 1;
  m(1, 1, 2) = 7;  // any non-zero byte is foreground
  m(1, 2, 3) = 1;
  const packed_masks p{mask_set_view(m)};
  CHECK(p.count() == 2);
  CHECK(p.area(0) == 1);
  CHECK(p.area(1) == 2);
  CHECK(self_overlaps(p).iou(0, 1) == Approx(0.5));
  xt::xtensor<bool, 3> b = xt::zeros<bool>({1, 2, 2});
  b(0, 1, 1) = true;
  CHECK(packed_masks(mask_set_view(b)).area(0) == 1);
}

TEST_CASE("metrics: Hungarian assignment on known problems", "[metrics][hungarian]") {
  // Row-greedy takes 2 (r0->c1), 3 (r1->c2), 5 (r2->c0), 4 (r3->c3) = 14; the optimum is
  // r0->c1 2, r1->c0 6, r2->c2 1, r3->c3 4 = 13.
  dmatrix c(4, 4);
  const double v[16] = {9, 2, 7, 8, 6, 4, 3, 7, 5, 8, 1, 8, 7, 6, 9, 4};
  std::copy(v, v + 16, c.values.begin());
  const assignment a = solve_assignment(c);
  CHECK(a.cost == 13.0);
  CHECK(a.col_of_row == std::vector<std::int64_t>{1, 0, 2, 3});
  // Greedy on the global minimum takes 1 then 100; the optimum is 2 + 2.
  dmatrix g(2, 2);
  g.values = {1, 2, 2, 100};
  CHECK(solve_assignment(g).cost == 4.0);
  CHECK(solve_assignment(g).col_of_row == std::vector<std::int64_t>{1, 0});
  // Rectangular both ways: each row of the smaller side is assigned.
  dmatrix r(2, 3);
  r.values = {5, 1, 3, 1, 9, 2};
  CHECK(solve_assignment(r).cost == 2.0);
  dmatrix rt(3, 2);
  rt.values = {5, 1, 1, 9, 3, 2};
  const assignment at = solve_assignment(rt);
  CHECK(at.cost == 2.0);
  CHECK(at.col_of_row == std::vector<std::int64_t>{1, 0, -1});
  CHECK(solve_assignment(dmatrix(0, 0)).cost == 0.0);
  dmatrix bad(2, 2, 1.0);
  bad(1, 0) = std::numeric_limits<double>::quiet_NaN();
  CHECK_THROWS_AS(solve_assignment(bad), value_error);
}

TEST_CASE("metrics: Hungarian matches brute force on random problems", "[metrics][hungarian]") {
  std::mt19937 rng(11);
  std::uniform_real_distribution<double> u(-3, 5);
  std::uniform_int_distribution<int> small(0, 3);
  for (int trial = 0; trial < 60; ++trial) {
    const std::int64_t rows = 1 + trial % 6, cols = rows + trial % 3;
    dmatrix c(rows, cols);
    for (auto& x : c.values) x = trial % 2 ? u(rng) : double(small(rng));  // ties in half the cases
    const assignment a = solve_assignment(c);
    CHECK(a.cost == Approx(brute_force_min_cost(c)).margin(1e-12));
    std::vector<std::int64_t> cols_used = a.col_of_row;
    std::sort(cols_used.begin(), cols_used.end());
    CHECK(std::adjacent_find(cols_used.begin(), cols_used.end()) == cols_used.end());
  }
}

TEST_CASE("metrics: GED² of a hand-computed case, both estimators", "[metrics][ged]") {
  // 1×4 masks. S: s1 = {0,1}, s2 = {}. Y: y1 = {0}, y2 = {0,1,2}.
  // d(s1,y1) = 1 − 1/2 = 1/2, d(s1,y2) = 1 − 2/3 = 1/3, d(s2,y1) = d(s2,y2) = 1
  //   cross mean = (1/2 + 1/3 + 1 + 1)/4 = 17/24
  // d(s1,s2) = 1: all-pairs mean (0 + 1 + 1 + 0)/4 = 1/2, unbiased 1
  // d(y1,y2) = 1 − 1/3 = 2/3: all-pairs mean 1/3, unbiased 2/3
  // all-pairs GED² = 17/12 − 1/2 − 1/3 = 7/12; unbiased = 17/12 − 1 − 2/3 = −1/4
  // (the unbiased estimate can be negative); their difference 10/12 = U_ss/2 + U_yy/2.
  std::vector<std::uint8_t> sb, yb;
  const packed_masks s = pack_1d(4, {{0, 1}, {}}, sb), y = pack_1d(4, {{0}, {0, 1, 2}}, yb);
  CHECK(ged_squared(s, y) == Approx(7.0 / 12.0));
  CHECK(ged_squared(s, y, ged_estimator::unbiased) == Approx(-0.25));
  // dice: 2/3, 4/5, 0, 0 -> mean 11/30; IoU: 1/2, 2/3, 0, 0 -> mean 7/24;
  // HM-IoU (n = m = 2): max(1/2 + 0, 2/3 + 0)/2 = 1/3.
  const image_result r = evaluate_image(s, y);
  CHECK(r.raw.ged == Approx(7.0 / 12.0));
  CHECK(r.raw.dice == Approx(11.0 / 30.0));
  CHECK(r.raw.iou == Approx(7.0 / 24.0));
  CHECK(r.raw.hm_iou == Approx(1.0 / 3.0));
  // A set against itself: GED² = 0 under all-pairs (not under unbiased).
  CHECK(ged_squared(s, s) == Approx(0.0).margin(1e-15));
  // The unbiased estimator needs two of each.
  std::vector<std::uint8_t> one_b;
  const packed_masks one = pack_1d(4, {{0}}, one_b);
  CHECK_THROWS_AS(ged_squared(one, y, ged_estimator::unbiased), value_error);
  CHECK(ged_squared(one, y) == Approx(2 * (0 + 2.0 / 3) / 2 - 0 - 1.0 / 3));
}

TEST_CASE("metrics: the two GED estimators differ by U_ss/n + U_yy/m", "[metrics][ged]") {
  std::mt19937 rng(3);
  for (int trial = 0; trial < 10; ++trial) {
    const std::int64_t n = 2 + trial % 4, m = 2 + trial % 3, px = 50;
    const auto sv = random_masks(rng, n, px, 0.3), yv = random_masks(rng, m, px, 0.3);
    const packed_masks s(mask_set_view(sv.data(), n, 5, 10)), y(mask_set_view(yv.data(), m, 5, 10));
    double u_ss = 0, u_yy = 0;
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < n; ++k)
        if (i != k) u_ss += 1 - iou(sv.data() + i * px, sv.data() + k * px, px);
    for (int i = 0; i < m; ++i)
      for (int k = 0; k < m; ++k)
        if (i != k) u_yy += 1 - iou(yv.data() + i * px, yv.data() + k * px, px);
    u_ss /= double(n * (n - 1));
    u_yy /= double(m * (m - 1));
    CHECK(ged_squared(s, y) - ged_squared(s, y, ged_estimator::unbiased) == Approx(u_ss / n + u_yy / m));
    const double g = ged_squared(s, y);
    CHECK(g >= -1e-12);
    CHECK(g <= 2.0);
  }
}

TEST_CASE("metrics: HM-IoU with n != m repeats both sets to lcm(n, m)", "[metrics][hm_iou]") {
  // s1 = y1 = {0}, s2 = y2 = {1}, y3 = {0,1}; IoU table [[1, 0, 1/2], [0, 1, 1/2]].
  // L = lcm(2, 3) = 6: three copies of each sample, two of each annotation. Best: two
  // s1 copies to the y1 copies (1 each), two s2 copies to y2 (1 each), the remaining s1
  // and s2 copies to the y3 copies (1/2 each): (4 + 1)/6 = 5/6.
  std::vector<std::uint8_t> sb, yb;
  const packed_masks s = pack_1d(3, {{0}, {1}}, sb), y = pack_1d(3, {{0}, {1}, {0, 1}}, yb);
  CHECK(hm_iou(pairwise_overlaps(s, y)) == Approx(5.0 / 6.0));
  // Transposing the roles gives the same value.
  CHECK(hm_iou(pairwise_overlaps(y, s)) == Approx(5.0 / 6.0));
  // n = 1: every annotation is matched with the single sample -> the mean IoU.
  dmatrix t(1, 3);
  t.values = {0.2, 0.5, 0.8};
  CHECK(hm_iou(t) == Approx(0.5));
  // A matching that greedy would get wrong: [[0.9, 0.8], [0.8, 0.0]]: greedy 0.9 + 0.0,
  // optimum 0.8 + 0.8.
  dmatrix gr(2, 2);
  gr.values = {0.9, 0.8, 0.8, 0.0};
  CHECK(hm_iou(gr) == Approx(0.8));
  CHECK_THROWS_AS(hm_iou(dmatrix(97, 89, 0.5)), value_error);  // lcm 8633 > limit
}

TEST_CASE("metrics: HM-IoU is invariant to shuffling samples and annotations", "[metrics][hm_iou]") {
  std::mt19937 rng(5);
  const std::int64_t n = 4, m = 6, px = 64;
  const auto sv = random_masks(rng, n, px, 0.35), yv = random_masks(rng, m, px, 0.35);
  const double base = hm_iou(pairwise_overlaps(packed_masks(mask_set_view(sv.data(), n, 8, 8)),
                                               packed_masks(mask_set_view(yv.data(), m, 8, 8))));
  CHECK(base > 0.0);
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<int> ps(n), py(m);
    std::iota(ps.begin(), ps.end(), 0);
    std::iota(py.begin(), py.end(), 0);
    std::shuffle(ps.begin(), ps.end(), rng);
    std::shuffle(py.begin(), py.end(), rng);
    std::vector<std::uint8_t> s2(sv.size()), y2(yv.size());
    for (int i = 0; i < n; ++i) std::copy_n(sv.begin() + ps[i] * px, px, s2.begin() + i * px);
    for (int j = 0; j < m; ++j) std::copy_n(yv.begin() + py[j] * px, px, y2.begin() + j * px);
    const packed_masks s(mask_set_view(s2.data(), n, 8, 8)), y(mask_set_view(y2.data(), m, 8, 8));
    CHECK(hm_iou(pairwise_overlaps(s, y)) == Approx(base).epsilon(1e-12));
    CHECK(ged_squared(s, y) == Approx(ged_squared(packed_masks(mask_set_view(sv.data(), n, 8, 8)),
                                                  packed_masks(mask_set_view(yv.data(), m, 8, 8))))
                                   .epsilon(1e-12));
  }
}

TEST_CASE("metrics: relative-area post-processing", "[metrics][pp]") {
  // Areas 4, 1, 2, 0 with r = 0.5: A_max = 4, threshold 2; 1 < 2 is emptied, 2 is kept
  // (not strictly below), 0 stays empty.
  const std::vector<std::int64_t> areas = {4, 1, 2, 0};
  CHECK(relative_area_keep(areas, 0.5) == std::vector<bool>{true, false, true, false});
  CHECK(relative_area_keep(areas, 0.0) == std::vector<bool>{true, true, true, true});
  CHECK(relative_area_keep(areas, 1.0) == std::vector<bool>{true, false, false, false});
  CHECK(relative_area_keep(std::vector<std::int64_t>{150, 74, 75}, 0.5) == std::vector<bool>{true, false, true});
  CHECK_THROWS_AS(relative_area_keep(areas, 1.5), value_error);
  CHECK_THROWS_AS(relative_area_keep(areas, std::nan("")), value_error);

  auto bytes = masks_1d(5, {{0, 1, 2, 3}, {4}, {3, 4}, {}});
  relative_area_postprocess(bytes, 4, 5, 0.5);
  CHECK(bytes == masks_1d(5, {{0, 1, 2, 3}, {}, {3, 4}, {}}));
  std::vector<std::uint8_t> store;
  packed_masks p = pack_1d(5, {{0, 1, 2, 3}, {4}, {3, 4}, {}}, store);
  relative_area_postprocess(p, 0.5);
  CHECK(p.areas() == std::vector<std::int64_t>{4, 0, 2, 0});
  CHECK_FALSE(p.pixel(1, 0, 4));
}

TEST_CASE("metrics: post-processed metrics equal metrics of post-processed masks", "[metrics][pp]") {
  std::mt19937 rng(9);
  for (int trial = 0; trial < 8; ++trial) {
    const std::int64_t n = 4, m = 3, px = 36;
    std::vector<std::uint8_t> sv;
    for (int i = 0; i < n; ++i) {  // very different areas so that r matters
      const auto one = random_masks(rng, 1, px, 0.1 + 0.2 * ((i + trial) % 4));
      sv.insert(sv.end(), one.begin(), one.end());
    }
    const auto yv = random_masks(rng, m, px, 0.4);
    evaluation_options opt;
    opt.pp_ratio = 0.5;
    const image_result r = evaluate_image(mask_set_view(sv.data(), n, 6, 6), mask_set_view(yv.data(), m, 6, 6), opt);
    auto processed = sv;
    relative_area_postprocess(processed, n, px, 0.5);
    const image_result ref = evaluate_image(mask_set_view(processed.data(), n, 6, 6), mask_set_view(yv.data(), m, 6, 6));
    REQUIRE(r.pp);
    CHECK(r.pp->ged == Approx(ref.raw.ged).epsilon(1e-12));
    CHECK(r.pp->dice == Approx(ref.raw.dice).epsilon(1e-12));
    CHECK(r.pp->iou == Approx(ref.raw.iou).epsilon(1e-12));
    CHECK(r.pp->hm_iou == Approx(ref.raw.hm_iou).epsilon(1e-12));
  }
}

TEST_CASE("metrics: evaluate averages over images and checks shapes", "[metrics]") {
  // Image 0 is the GED hand case (7/12, dice 11/30); image 1 compares a set with itself
  // under all-pairs (GED 0; dice of {0}/{0,1} pairs: 1, 2/3, 2/3, 1 -> 5/6).
  const auto s0 = masks_1d(4, {{0, 1}, {}}), y0 = masks_1d(4, {{0}, {0, 1, 2}});
  const auto s1 = masks_1d(4, {{0}, {0, 1}}), y1 = s1;
  std::vector<std::uint8_t> s = s0, y = y0;
  s.insert(s.end(), s1.begin(), s1.end());
  y.insert(y.end(), y1.begin(), y1.end());
  const mask_batch_view sv{s.data(), 2, 2, 1, 4}, yv{y.data(), 2, 2, 1, 4};
  const evaluation_result r = evaluate(sv, yv);
  CHECK(r.images == 2);
  CHECK(r.per_image[1].raw.ged == Approx(0.0).margin(1e-15));
  CHECK(r.raw.ged == Approx((7.0 / 12.0 + 0.0) / 2));
  CHECK(r.raw.dice == Approx((11.0 / 30.0 + 5.0 / 6.0) / 2));
  // diversity: image 0's samples {0,1} and {} share nothing (d = 1); image 1's {0} and
  // {0,1} have IoU 1/2 (d = 1/2).
  CHECK(r.per_image[0].raw.diversity == Approx(1.0));
  CHECK(r.per_image[1].raw.diversity == Approx(0.5));
  CHECK(r.raw.diversity == Approx(0.75));
  CHECK_FALSE(r.pp);
  // one sample per image has no spread
  CHECK(evaluate(mask_batch_view{s.data(), 1, 1, 1, 4}, mask_batch_view{y.data(), 1, 2, 1, 4}).raw.diversity == 0.0);
  const mask_batch_view one_image{s.data(), 1, 2, 1, 4};
  CHECK_THROWS_AS(evaluate(one_image, yv), shape_error);
  const mask_batch_view other_size{y.data(), 2, 2, 2, 2};
  CHECK_THROWS_AS(evaluate(sv, other_size), shape_error);
  evaluation_options unb;
  unb.estimator = ged_estimator::unbiased;
  const mask_batch_view single{s.data(), 2, 1, 1, 4};
  CHECK_THROWS_AS(evaluate(single, mask_batch_view{y.data(), 2, 1, 1, 4}, unb), value_error);
}
