// Tests of the metrics the paper's code reports beside GED: S_NCC, the CI score (published and
// the authors' variant) and the QUBIQ score. The small case is worked by hand in the comments;
// tools/metrics_reference.py recomputes every value here with numpy, pixel by pixel, from the
// definitions (one-hot cross-entropies, np.var of difference masks, float thresholds).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <vector>

#include "ambiseg/metrics/all.hpp"

using namespace ambiseg;
using namespace ambiseg::metrics;

namespace {

struct mask_set {
  std::vector<std::uint8_t> bytes;
  packed_masks packed;
};

// Masks of 1×P pixels (or H×W with `height`) given by their foreground pixel lists.
mask_set make_set(std::int64_t pixels, const std::vector<std::vector<int>>& sets, std::int64_t height = 1) {
  mask_set s;
  s.bytes.assign(sets.size() * static_cast<std::size_t>(pixels), 0);
  for (std::size_t i = 0; i < sets.size(); ++i)
    for (int p : sets[i]) s.bytes[i * static_cast<std::size_t>(pixels) + static_cast<std::size_t>(p)] = 1;
  s.packed = packed_masks(
      mask_set_view(s.bytes.data(), static_cast<std::int64_t>(sets.size()), height, pixels / height));
  return s;
}

// S = {0,1,2,3}, {2,3,4}; Y = {0,1,2}, {2,3,4,5} on 8 pixels.
const mask_set& case_samples() {
  static const mask_set s = make_set(8, {{0, 1, 2, 3}, {2, 3, 4}});
  return s;
}
const mask_set& case_annotations() {
  static const mask_set s = make_set(8, {{0, 1, 2}, {2, 3, 4, 5}});
  return s;
}

}  // namespace

TEST_CASE("collective insight as published: a hand-computed case", "[metrics][ci]") {
  const auto c = collective_insight(case_samples().packed, case_annotations().packed, ci_variant::published);
  // Unions: samples {0..4}, annotations {0..5}; TP 5 of the annotations' 6.
  CHECK(c.combined_sensitivity == Approx(5.0 / 6.0).epsilon(1e-14));
  // Best dice per annotation: y1 with s1 2·3/7, y2 with s2 2·3/7.
  CHECK(c.max_dice_matching == Approx(6.0 / 7.0).epsilon(1e-14));
  // var(s1 − s2) = 3/8 − (1/8)², var(y1 − y2) = 5/8 − (1/8)²: both extremes differ by 1/4.
  CHECK(c.diversity_agreement == Approx(0.75).epsilon(1e-14));
  CHECK(c.ci == Approx(27.0 / 41.0).epsilon(1e-14));  // 3·(5/6)(6/7)(3/4) / (5/6 + 6/7 + 3/4)
}

TEST_CASE("collective insight, the authors' variant: precision and self-pairs", "[metrics][ci]") {
  const auto c = collective_insight(case_samples().packed, case_annotations().packed, ci_variant::authors);
  CHECK(c.combined_sensitivity == 1.0);  // every pixel of the samples' union is annotated
  CHECK(c.max_dice_matching == Approx(6.0 / 7.0).epsilon(1e-14));
  CHECK(c.diversity_agreement == Approx(0.875).epsilon(1e-14));  // both minima are the self-pairs' 0
  CHECK(c.ci == Approx(14.0 / 17.0).epsilon(1e-14));
}

TEST_CASE("collective insight: empty unions, single masks, identical sets", "[metrics][ci]") {
  const auto empty = make_set(6, {{}, {}});
  const auto some = make_set(6, {{1, 2}, {2}});
  // No annotated pixel: nothing to miss, published sensitivity 1; no sampled pixel: precision 1.
  CHECK(collective_insight(some.packed, empty.packed, ci_variant::published).combined_sensitivity == 1.0);
  CHECK(collective_insight(empty.packed, some.packed, ci_variant::authors).combined_sensitivity == 1.0);
  CHECK(collective_insight(empty.packed, some.packed, ci_variant::published).combined_sensitivity == 0.0);

  const auto one = make_set(6, {{1, 2}});
  const auto single = collective_insight(one.packed, some.packed, ci_variant::published);
  CHECK(std::isnan(single.diversity_agreement));
  CHECK(std::isnan(single.ci));
  CHECK(std::isfinite(collective_insight(one.packed, some.packed, ci_variant::authors).ci));

  const auto same = collective_insight(some.packed, some.packed, ci_variant::published);
  CHECK(same.combined_sensitivity == 1.0);
  CHECK(same.max_dice_matching == 1.0);
  CHECK(same.diversity_agreement == 1.0);
  CHECK(same.ci == Approx(1.0).epsilon(1e-15));
}

TEST_CASE("QUBIQ score: thresholded dice of the mean masks", "[metrics][qubiq]") {
  // Sample means .5 .5 1 1 .5 0 0 0, annotation means .5 .5 1 .5 .5 .5 0 0: dice 10/11 for
  // τ ≤ 0.4, 2/3 for τ ≥ 0.5 (a mean equal to τ is not above it).
  CHECK(qubiq_score(case_samples().packed, case_annotations().packed) == Approx(230.0 / 297.0).epsilon(1e-14));
  CHECK(qubiq_score(case_annotations().packed, case_annotations().packed) == 1.0);
  // 2 of 4 samples and 1 of 2 annotations: equal to 0.5, so foreground below τ = 0.5 only.
  const auto four = make_set(2, {{0}, {0}, {}, {}});
  const auto two = make_set(2, {{0}, {1}});
  // τ ≤ 0.4: samples {0}, annotations {0, 1}: 2/3; τ ≥ 0.5: both empty: 1.
  CHECK(qubiq_score(four.packed, two.packed) == Approx((4 * 2.0 / 3.0 + 5.0) / 9.0).epsilon(1e-14));
}

TEST_CASE("S_NCC: the uncertainty map against the annotators' disagreement", "[metrics][ncc]") {
  // γ ∝ (1,1,0,0,1,0,0,0); e_1 ∝ (.5,.5,0,1,.5,0,0,0) and e_2 ∝ (.5,.5,0,0,.5,1,0,0): both have
  // Pearson correlation 0.0703125/√(0.234375·0.12109375) with γ. The ε terms move it by < 1e-8.
  const double pearson = 0.0703125 / std::sqrt(0.234375 * 0.12109375);
  const double ncc = uncertainty_ncc(case_samples().packed, case_annotations().packed);
  CHECK(ncc == Approx(pearson).epsilon(1e-7));
  CHECK(ncc == Approx(0.417365005416).epsilon(1e-10));  // tools/metrics_reference.py

  // Samples that all agree have a constant uncertainty map: 0, not a division by zero.
  const auto agree = make_set(8, {{1, 2}, {1, 2}, {1, 2}});
  CHECK(uncertainty_ncc(agree.packed, case_annotations().packed) == 0.0);
}

TEST_CASE("the pixel metrics on a random 3x5 case match the numpy reference", "[metrics][ncc][ci][qubiq]") {
  // tools/metrics_reference.py, "random case" (numpy default_rng(7)).
  const auto s = make_set(15, {{3, 4, 6, 10, 11, 12}, {5, 6, 8, 9}, {1, 2, 3, 5, 6, 7, 9, 10}}, 3);
  const auto y = make_set(
      15, {{1, 5, 7, 8, 9, 10, 12}, {3, 4, 5, 6, 7, 9, 11, 14}, {4, 5, 8, 12, 13, 14}, {0, 2, 4, 6, 7, 8, 9, 12}}, 3);
  CHECK(uncertainty_ncc(s.packed, y.packed) == Approx(0.203632358230).epsilon(1e-10));
  CHECK(qubiq_score(s.packed, y.packed) == Approx(0.407398774065).epsilon(1e-11));
  const auto p = collective_insight(s.packed, y.packed, ci_variant::published);
  CHECK(p.combined_sensitivity == Approx(0.8).epsilon(1e-12));
  CHECK(p.max_dice_matching == Approx(0.547916666667).epsilon(1e-11));
  CHECK(p.diversity_agreement == Approx(0.893333333333).epsilon(1e-11));
  CHECK(p.ci == Approx(0.524142033835).epsilon(1e-11));
  const auto a = collective_insight(s.packed, y.packed, ci_variant::authors);
  CHECK(a.combined_sensitivity == 1.0);
  CHECK(a.diversity_agreement == Approx(0.96).epsilon(1e-12));
  CHECK(a.ci == Approx(0.629207509553).epsilon(1e-11));
}

TEST_CASE("evaluate() reports the pixel metrics raw and after post-processing", "[metrics][evaluate]") {
  // Image 0 is the hand case; post-processing with r = 0.9 empties s2 (area 3 < 0.9·4).
  const mask_set& s = case_samples();
  const mask_set& y = case_annotations();
  evaluation_options o = paper_protocol();
  o.pp_ratio = 0.9;
  const image_result r = evaluate_image(mask_set_view(s.bytes.data(), 2, 1, 8), mask_set_view(y.bytes.data(), 2, 1, 8), o);
  CHECK(r.raw.ci.ci == Approx(27.0 / 41.0).epsilon(1e-14));
  CHECK(r.raw.qubiq == Approx(230.0 / 297.0).epsilon(1e-14));
  const auto processed = make_set(8, {{0, 1, 2, 3}, {}});
  REQUIRE(r.pp);
  CHECK(r.pp->ncc == Approx(uncertainty_ncc(processed.packed, y.packed)).epsilon(1e-14));
  CHECK(r.pp->qubiq == Approx(qubiq_score(processed.packed, y.packed)).epsilon(1e-14));
  CHECK(r.pp->ci_authors.ci ==
        Approx(collective_insight(processed.packed, y.packed, ci_variant::authors).ci).epsilon(1e-14));

  // Means over images: the hand case and its mirror image (the same scores).
  std::vector<std::uint8_t> sb(s.bytes), yb(y.bytes);
  for (std::size_t k = 0; k < 2; ++k)
    for (std::size_t p = 0; p < 8; ++p) sb.push_back(s.bytes[k * 8 + 7 - p]), yb.push_back(y.bytes[k * 8 + 7 - p]);
  const evaluation_result all = evaluate({sb.data(), 2, 2, 1, 8}, {yb.data(), 2, 2, 1, 8}, paper_protocol());
  CHECK(all.raw.ci.ci == Approx(27.0 / 41.0).epsilon(1e-14));
  CHECK(all.raw.ci_authors.diversity_agreement == Approx(0.875).epsilon(1e-14));
  CHECK(all.raw.ncc == Approx(0.417365005416).epsilon(1e-10));
  CHECK(all.options.pp_ratio == 0.5);
}

TEST_CASE("the pixel metrics refuse mismatched sets", "[metrics][errors]") {
  const auto a = make_set(8, {{1}});
  const auto b = make_set(6, {{1}});
  CHECK_THROWS_AS(uncertainty_ncc(a.packed, b.packed), shape_error);
  CHECK_THROWS_AS(qubiq_score(a.packed, b.packed), shape_error);
  CHECK_THROWS_AS(collective_insight(a.packed, b.packed), shape_error);
  const packed_masks none(mask_set_view(a.bytes.data(), 0, 1, 8));
  CHECK_THROWS_AS(uncertainty_ncc(none, a.packed), value_error);
  CHECK_THROWS_AS(qubiq_score(a.packed, none), value_error);
  // One mask of 1x0 pixels: refused by all three (the CI's variances would divide by 0).
  const std::uint8_t byte = 0;
  const packed_masks no_pixels(mask_set_view(&byte, 1, 1, 0));
  CHECK_THROWS_AS(collective_insight(no_pixels, no_pixels), value_error);
  CHECK_THROWS_AS(uncertainty_ncc(no_pixels, no_pixels), value_error);
  CHECK_THROWS_AS(qubiq_score(no_pixels, no_pixels), value_error);
}
