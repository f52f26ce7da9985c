// ambiseg/metrics/hm_iou.hpp — Hungarian-matched IoU between samples and annotations.
//
// Both sets are repeated to L = lcm(n, m) items (sample k is s_{k mod n}, annotation l is
// y_{l mod m}), matched one-to-one by minimum total cost 1 − IoU, and the matched IoUs are
// averaged. The matching costs O(L³): L is capped (max_items) so that a coprime pair like
// n = 97, m = 89 is a clear error rather than an hour of work.
#pragma once

#include <cstdint>
#include <numeric>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/hungarian.hpp"
#include "ambiseg/metrics/overlap.hpp"

namespace ambiseg::metrics {

inline constexpr std::int64_t hm_iou_default_max_items = 1024;

inline std::int64_t hm_iou_items(std::int64_t n, std::int64_t m) { return std::lcm(n, m); }

inline void check_hm_iou_size(std::int64_t n, std::int64_t m, std::int64_t max_items = hm_iou_default_max_items) {
  throw_if<value_error>(n < 1 || m < 1, "hm_iou: needs at least one sample and one annotation (n = ", n,
                        ", m = ", m, ")");
  throw_if<value_error>(hm_iou_items(n, m) > max_items, "hm_iou: lcm(n = ", n, ", m = ", m, ") = ",
                        hm_iou_items(n, m), " items exceeds the limit of ", max_items,
                        " (the matching is cubic in it)");
}

// iou [n, m]: IoU of sample i with annotation j.
inline double hm_iou(const dmatrix& iou, std::int64_t max_items = hm_iou_default_max_items) {
  const std::int64_t n = iou.rows, m = iou.cols;
  check_hm_iou_size(n, m, max_items);
  const std::int64_t L = hm_iou_items(n, m);
  dmatrix cost(L, L);
  for (std::int64_t k = 0; k < L; ++k)
    for (std::int64_t l = 0; l < L; ++l) cost(k, l) = 1.0 - iou(k % n, l % m);
  const assignment a = solve_assignment(cost);
  double matched = 0.0;
  for (std::int64_t k = 0; k < L; ++k) matched += iou(k % n, a.col_of_row[static_cast<std::size_t>(k)] % m);
  return matched / static_cast<double>(L);
}

inline double hm_iou(const pair_overlaps& sy, std::int64_t max_items = hm_iou_default_max_items) {
  return hm_iou(sy.iou_matrix(), max_items);
}

}  // namespace ambiseg::metrics
