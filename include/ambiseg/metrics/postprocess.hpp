// ambiseg/metrics/postprocess.hpp — the paper's relative-area post-processing (suppl. 7.1).
//
// For a set of n predicted masks with areas a_i (foreground pixels) and r ∈ [0, 1]:
// A_max = max_i a_i, and every mask with a_i < r·A_max is replaced by the empty mask.
// r = 0 changes nothing; the paper uses r = 0.5. Only samples are post-processed, never
// annotations.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/overlap.hpp"

namespace ambiseg::metrics {

inline void check_relative_area_ratio(double r) {
  throw_if<value_error>(!(r >= 0.0 && r <= 1.0), "relative_area_postprocess: ratio r = ", r,
                        " is outside [0, 1]");
}

// keep[i] is false for the masks that post-processing empties.
inline std::vector<bool> relative_area_keep(std::span<const std::int64_t> areas, double r) {
  check_relative_area_ratio(r);
  std::int64_t a_max = 0;
  for (std::int64_t a : areas) a_max = std::max(a_max, a);
  const double threshold = r * static_cast<double>(a_max);
  std::vector<bool> keep(areas.size());
  for (std::size_t i = 0; i < areas.size(); ++i) keep[i] = !(static_cast<double>(areas[i]) < threshold);
  return keep;
}

// In place on packed masks.
inline void relative_area_postprocess(packed_masks& masks, double r) {
  const auto keep = relative_area_keep(masks.areas(), r);
  for (std::int64_t i = 0; i < masks.count(); ++i)
    if (!keep[static_cast<std::size_t>(i)]) masks.clear(i);
}

// In place on n masks of `pixels` bytes each, contiguous.
inline void relative_area_postprocess(std::span<std::uint8_t> masks, std::int64_t n, std::int64_t pixels, double r) {
  throw_if<shape_error>(n < 0 || pixels < 0 || static_cast<std::int64_t>(masks.size()) != n * pixels,
                        "relative_area_postprocess: ", masks.size(), " bytes do not hold ", n, " masks of ",
                        pixels, " pixels");
  std::vector<std::int64_t> areas(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i)
    areas[static_cast<std::size_t>(i)] =
        std::count_if(masks.begin() + i * pixels, masks.begin() + (i + 1) * pixels, [](std::uint8_t v) { return v != 0; });
  const auto keep = relative_area_keep(areas, r);
  for (std::int64_t i = 0; i < n; ++i)
    if (!keep[static_cast<std::size_t>(i)]) std::fill_n(masks.begin() + i * pixels, pixels, 0);
}

// The same on overlaps already counted: rows of `sy` and rows/columns of `ss` belong to
// the samples. Gives exactly what recounting the post-processed masks would give.
inline void relative_area_postprocess(pair_overlaps& sy, pair_overlaps& ss, double r) {
  throw_if<shape_error>(ss.rows() != sy.rows() || ss.cols() != sy.rows(),
                        "relative_area_postprocess: sample tables disagree (", sy.rows(), " vs ", ss.rows(), "x",
                        ss.cols(), ")");
  const auto keep = relative_area_keep(sy.area_a, r);
  for (std::int64_t i = 0; i < sy.rows(); ++i)
    if (!keep[static_cast<std::size_t>(i)]) {
      sy.empty_row(i);
      ss.empty_row(i);
      ss.empty_col(i);
    }
}

}  // namespace ambiseg::metrics
