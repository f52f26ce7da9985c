// ambiseg/metrics/collective_insight.hpp — the CI score ("collective insight") of Rahman et
// al., CVPR 2023 (CIMD), which the paper's code reports beside GED.
//
// n samples Ŷ, m annotations Y of P pixels each:
//   S_c   combined sensitivity: TP / (TP + FN) of the union of the samples against the
//         union of the annotations (1 when the annotations' union is empty)
//   D_max maximum dice matching: the mean over annotations y of max over samples of dice(ŷ, y)
//   D_a   diversity agreement: 1 − (|V_max(Y) − V_max(Ŷ)| + |V_min(Y) − V_min(Ŷ)|) / 2, with
//         V(a, b) the pixel variance of the difference mask a − b over the pairs of distinct
//         masks of a set
//   CI    3·S_c·D_max·D_a / (S_c + D_max + D_a), the combination both the paper and its code
//         use (it is called a harmonic mean there; it is not one: three equal scores x give x²)
// The published score needs n ≥ 2 and m ≥ 2 (D_a compares pairs); with fewer its D_a and CI
// are NaN.
//
// ci_variant::authors reproduces the code of Christensen et al. (AmbDiffSeg utils.py), so
// their tables can be matched: its "sensitivity" passes the two unions in swapped order and
// so computes TP / (TP + FP), the precision of the samples' union (1 when that union is
// empty), and its variances run over all ordered pairs including a mask with itself, whose
// variance 0 makes both minima 0 (ΔV_min vanishes).
//
// For binary masks a, b: mean(a − b) = (|a| − |b|)/P and mean((a − b)²) = (FP + FN)/P, so each
// variance comes from the overlap tables without another pass over the pixels.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/overlap.hpp"

namespace ambiseg::metrics {

enum class ci_variant { published, authors };

inline std::string_view to_string(ci_variant v) { return v == ci_variant::published ? "published" : "authors"; }

struct collective_insight_score {
  double combined_sensitivity = 0.0;  // the authors' variant: the union's precision
  double max_dice_matching = 0.0;
  double diversity_agreement = 0.0;
  double ci = 0.0;
};

namespace ci_detail {

// Pixel variance of a − b for masks of areas a, b with intersection i, over `pixels`.
inline double difference_variance(std::int64_t a, std::int64_t b, std::int64_t i, std::int64_t pixels) {
  const double p = static_cast<double>(pixels);
  const double mean = static_cast<double>(a - b) / p;
  const double mean_square = static_cast<double>(a + b - 2 * i) / p;
  return std::max(0.0, mean_square - mean * mean);
}

struct extremes {
  double min = std::numeric_limits<double>::infinity(), max = -std::numeric_limits<double>::infinity();
};

inline extremes variance_extremes(const pair_overlaps& self, std::int64_t pixels, bool with_self_pairs) {
  extremes e;
  const std::int64_t n = self.rows();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = with_self_pairs ? i : i + 1; j < n; ++j) {
      const double v = difference_variance(self.area_a[static_cast<std::size_t>(i)],
                                           self.area_a[static_cast<std::size_t>(j)],
                                           self.intersection[static_cast<std::size_t>(i * n + j)], pixels);
      e.min = std::min(e.min, v);
      e.max = std::max(e.max, v);
    }
  return e;
}

inline std::int64_t count_bits(const std::vector<std::uint64_t>& words) {
  std::int64_t s = 0;
  for (std::uint64_t w : words) s += std::popcount(w);
  return s;
}

}  // namespace ci_detail

// The union of a set's masks as packed words.
inline std::vector<std::uint64_t> union_bits(const packed_masks& masks) {
  std::vector<std::uint64_t> u(static_cast<std::size_t>((masks.height() * masks.width() + 63) / 64), 0);
  for (std::int64_t i = 0; i < masks.count(); ++i) {
    const auto bits = masks.bits(i);
    for (std::size_t w = 0; w < u.size(); ++w) u[w] |= bits[w];
  }
  return u;
}

// From the masks (for the unions) and the overlap tables that evaluate() counts once:
// sy [n, m] samples × annotations, ss [n, n], yy [m, m].
inline collective_insight_score collective_insight(const packed_masks& samples, const packed_masks& annotations,
                                                   const pair_overlaps& sy, const pair_overlaps& ss,
                                                   const pair_overlaps& yy, ci_variant variant) {
  const std::int64_t n = samples.count(), m = annotations.count();
  check_scored_sets(samples, annotations, "collective_insight");
  throw_if<shape_error>(sy.rows() != n || sy.cols() != m || ss.rows() != n || yy.rows() != m,
                        "collective_insight: overlap tables do not fit n = ", n, " samples and m = ", m,
                        " annotations");
  const std::int64_t pixels = samples.height() * samples.width();
  collective_insight_score s;

  const auto sample_union = union_bits(samples), annotation_union = union_bits(annotations);
  std::int64_t both = 0;
  for (std::size_t w = 0; w < sample_union.size(); ++w) both += std::popcount(sample_union[w] & annotation_union[w]);
  // Published: recall of the annotations' union; authors': precision of the samples' union.
  const std::int64_t reference = ci_detail::count_bits(variant == ci_variant::published ? annotation_union : sample_union);
  s.combined_sensitivity = reference == 0 ? 1.0 : static_cast<double>(both) / static_cast<double>(reference);

  double dice_sum = 0.0;
  for (std::int64_t j = 0; j < m; ++j) {
    double best = 0.0;
    for (std::int64_t i = 0; i < n; ++i) best = std::max(best, sy.dice(i, j));
    dice_sum += best;
  }
  s.max_dice_matching = dice_sum / static_cast<double>(m);

  const bool self_pairs = variant == ci_variant::authors;
  if (!self_pairs && (n < 2 || m < 2)) {
    s.diversity_agreement = s.ci = std::numeric_limits<double>::quiet_NaN();
    return s;
  }
  const auto vs = ci_detail::variance_extremes(ss, pixels, self_pairs);
  const auto vy = ci_detail::variance_extremes(yy, pixels, self_pairs);
  s.diversity_agreement = 1.0 - (std::abs(vy.max - vs.max) + std::abs(vy.min - vs.min)) / 2.0;

  const double sum = s.combined_sensitivity + s.max_dice_matching + s.diversity_agreement;
  s.ci = sum == 0.0 ? 0.0 : 3.0 * s.combined_sensitivity * s.max_dice_matching * s.diversity_agreement / sum;
  return s;
}

inline collective_insight_score collective_insight(const packed_masks& samples, const packed_masks& annotations,
                                                   ci_variant variant = ci_variant::published) {
  return collective_insight(samples, annotations, pairwise_overlaps(samples, annotations), self_overlaps(samples),
                            self_overlaps(annotations), variant);
}

}  // namespace ambiseg::metrics
