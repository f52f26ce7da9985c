// ambiseg/metrics/ged.hpp — the generalized energy distance between two sets of masks.
//
// n samples S, m annotations Y, d(a, b) = 1 − IoU(a, b):
//   D²_GED = 2·E[d(s, y)] − E[d(s, s')] − E[d(y, y')]
// This is the quantity the paper's tables (and PHiSeg's) report as "GED": the square,
// with no square root taken (it lies in [0, 2]).
//
//   ged_estimator::all_pairs   the expectations are means over ALL ordered pairs,
//                              i = i' included (d(s, s) = 0): the reference's, PHiSeg's and
//                              the paper's estimator, so numbers compare with theirs.
//   ged_estimator::unbiased    the within-set means skip i = i' (n(n−1) and m(m−1) pairs):
//                              an unbiased estimate of D²_GED; needs n ≥ 2 and m ≥ 2.
// all_pairs − unbiased = U_ss/n + U_yy/m ≥ 0, U the unbiased within-set means.
#pragma once

#include <cstdint>
#include <string_view>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/overlap.hpp"

namespace ambiseg::metrics {

enum class ged_estimator { all_pairs, unbiased };

inline std::string_view to_string(ged_estimator e) {
  return e == ged_estimator::all_pairs ? "all_pairs" : "unbiased";
}

namespace detail {
inline double mean_distance(const dmatrix& d, bool skip_diagonal) {
  double sum = 0.0;
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < d.rows; ++i)
    for (std::int64_t j = 0; j < d.cols; ++j) {
      if (skip_diagonal && i == j) continue;
      sum += d(i, j);
      ++count;
    }
  return sum / static_cast<double>(count);
}
}  // namespace detail

// From distance tables: d_sy [n, m], d_ss [n, n], d_yy [m, m].
inline double ged_squared(const dmatrix& d_sy, const dmatrix& d_ss, const dmatrix& d_yy,
                          ged_estimator estimator = ged_estimator::all_pairs) {
  const std::int64_t n = d_sy.rows, m = d_sy.cols;
  throw_if<shape_error>(d_ss.rows != n || d_ss.cols != n || d_yy.rows != m || d_yy.cols != m,
                        "ged_squared: distance tables [", d_sy.rows, ", ", d_sy.cols, "], [", d_ss.rows,
                        ", ", d_ss.cols, "], [", d_yy.rows, ", ", d_yy.cols, "] do not fit n = ", n,
                        " samples and m = ", m, " annotations");
  throw_if<value_error>(n < 1 || m < 1, "ged_squared: needs at least one sample and one annotation (n = ", n,
                        ", m = ", m, ")");
  const bool unbiased = estimator == ged_estimator::unbiased;
  throw_if<value_error>(unbiased && (n < 2 || m < 2),
                        "ged_squared: the unbiased estimator needs n >= 2 and m >= 2 (n = ", n, ", m = ", m, ")");
  return 2.0 * detail::mean_distance(d_sy, false) - detail::mean_distance(d_ss, unbiased) -
         detail::mean_distance(d_yy, unbiased);
}

// From the overlaps that pairwise_overlaps / self_overlaps computed once per image.
inline double ged_squared(const pair_overlaps& sy, const pair_overlaps& ss, const pair_overlaps& yy,
                          ged_estimator estimator = ged_estimator::all_pairs) {
  return ged_squared(sy.distance_matrix(), ss.distance_matrix(), yy.distance_matrix(), estimator);
}

inline double ged_squared(const packed_masks& samples, const packed_masks& annotations,
                          ged_estimator estimator = ged_estimator::all_pairs) {
  return ged_squared(pairwise_overlaps(samples, annotations), self_overlaps(samples), self_overlaps(annotations),
                     estimator);
}

}  // namespace ambiseg::metrics
