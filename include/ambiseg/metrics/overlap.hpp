// ambiseg/metrics/overlap.hpp — binary masks, their overlaps, IoU and dice.
//
// Shape legend: n masks of H×W pixels, row-major, one byte per pixel (0 = background,
// anything else = foreground); a batch adds a leading images axis: [images, n, H, W].
//
//   mask_set_view      non-owning view of n masks [n, H, W] (bytes or bools)
//   packed_masks       the same masks bit-packed (64 pixels a word) with their areas;
//                      every overlap is then a popcount over H·W/64 words
//   pair_overlaps      intersections and areas between two sets: IoU, dice, d = 1 − IoU
//   pairwise_overlaps  computes them once per image; every metric reads from them
//
// IoU = TP/(TP+FP+FN), dice = 2TP/(2TP+FP+FN); a zero denominator (both masks empty)
// gives 1 (SPEC §8).
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <iterator>
#include <span>
#include <type_traits>
#include <vector>

#include "ambiseg/core/error.hpp"

namespace ambiseg::metrics {

// A dense row-major matrix of doubles (costs, distances, IoU tables).
struct dmatrix {
  std::int64_t rows = 0, cols = 0;
  std::vector<double> values;

  dmatrix() = default;
  dmatrix(std::int64_t r, std::int64_t c, double fill = 0.0)
      : rows(r), cols(c), values(static_cast<std::size_t>(r * c), fill) {
    throw_if<shape_error>(r < 0 || c < 0, "dmatrix: negative extent ", r, "x", c);
  }
  double& operator()(std::int64_t i, std::int64_t j) { return values[static_cast<std::size_t>(i * cols + j)]; }
  double operator()(std::int64_t i, std::int64_t j) const { return values[static_cast<std::size_t>(i * cols + j)]; }
};

// TP, FP, FN of a prediction a against a reference b.
struct overlap_counts {
  std::int64_t tp = 0, fp = 0, fn = 0;

  double iou() const {
    const std::int64_t den = tp + fp + fn;
    return den == 0 ? 1.0 : static_cast<double>(tp) / static_cast<double>(den);
  }
  double dice() const {
    const std::int64_t den = 2 * tp + fp + fn;
    return den == 0 ? 1.0 : 2.0 * static_cast<double>(tp) / static_cast<double>(den);
  }
};

inline overlap_counts counts_from_areas(std::int64_t area_a, std::int64_t area_b, std::int64_t intersection) {
  return {intersection, area_a - intersection, area_b - intersection};
}

// n masks of H×W, contiguous, row-major. Holds bytes; bool arrays are viewed as bytes
// (reading a bool through unsigned char is allowed and gives 0 or 1).
struct mask_set_view {
  const unsigned char* data = nullptr;
  std::int64_t n = 0, height = 0, width = 0;

  mask_set_view() = default;
  mask_set_view(const unsigned char* d, std::int64_t count, std::int64_t h, std::int64_t w)
      : data(d), n(count), height(h), width(w) {
    throw_if<shape_error>(count < 0 || h < 0 || w < 0, "mask_set_view: negative extent [", count,
                          ", ", h, ", ", w, "]");
    throw_if<value_error>(!d && count * h * w > 0, "mask_set_view: null data for [", count, ", ", h,
                          ", ", w, "]");
  }
  mask_set_view(const bool* d, std::int64_t count, std::int64_t h, std::int64_t w)
      : mask_set_view(reinterpret_cast<const unsigned char*>(d), count, h, w) {}
  // Any row-major container with data() and a rank-3 shape(), e.g. xt::xtensor<std::uint8_t, 3>.
  template <class C>
    requires requires(const C& c) { c.data(); c.shape(); } &&
             (std::is_same_v<std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<const C&>().data())>>, std::uint8_t> ||
              std::is_same_v<std::remove_cv_t<std::remove_pointer_t<decltype(std::declval<const C&>().data())>>, bool>)
  explicit mask_set_view(const C& c) {
    const auto& s = c.shape();
    throw_if<shape_error>(std::size(s) != 3, "mask_set_view: masks must have rank 3 [n, H, W], got rank ",
                          std::size(s));
    *this = mask_set_view(c.data(), static_cast<std::int64_t>(s[0]), static_cast<std::int64_t>(s[1]),
                          static_cast<std::int64_t>(s[2]));
  }

  std::int64_t pixels() const { return height * width; }
  const unsigned char* mask(std::int64_t i) const { return data + i * pixels(); }
};

class packed_masks {
 public:
  packed_masks() = default;
  explicit packed_masks(const mask_set_view& m)
      : n_(m.n), height_(m.height), width_(m.width), words_((m.pixels() + 63) / 64),
        bits_(static_cast<std::size_t>(n_ * words_), 0), areas_(static_cast<std::size_t>(n_), 0) {
    const std::int64_t px = m.pixels();
    for (std::int64_t i = 0; i < n_; ++i) {
      const unsigned char* src = m.mask(i);
      std::uint64_t* dst = bits_.data() + i * words_;
      std::int64_t area = 0;
      for (std::int64_t w = 0; w < words_; ++w) {
        const std::int64_t first = w * 64, count = std::min<std::int64_t>(64, px - first);
        std::uint64_t word = 0;
        for (std::int64_t k = 0; k < count; ++k)
          word |= static_cast<std::uint64_t>(src[first + k] != 0) << k;
        dst[w] = word;
        area += std::popcount(word);
      }
      areas_[static_cast<std::size_t>(i)] = area;
    }
  }

  std::int64_t count() const { return n_; }
  std::int64_t height() const { return height_; }
  std::int64_t width() const { return width_; }
  std::int64_t area(std::int64_t i) const { return areas_[static_cast<std::size_t>(i)]; }
  const std::vector<std::int64_t>& areas() const { return areas_; }
  std::span<const std::uint64_t> bits(std::int64_t i) const {
    return {bits_.data() + i * words_, static_cast<std::size_t>(words_)};
  }
  bool pixel(std::int64_t i, std::int64_t y, std::int64_t x) const {
    const std::int64_t p = y * width_ + x;
    return (bits_[static_cast<std::size_t>(i * words_ + p / 64)] >> (p % 64)) & 1u;
  }
  // Mask i becomes empty (relative-area post-processing).
  void clear(std::int64_t i) {
    std::fill_n(bits_.begin() + i * words_, words_, 0);
    areas_[static_cast<std::size_t>(i)] = 0;
  }

 private:
  std::int64_t n_ = 0, height_ = 0, width_ = 0, words_ = 0;
  std::vector<std::uint64_t> bits_;
  std::vector<std::int64_t> areas_;
};

// The pixel-level metrics score n samples against m annotations: at least one of each, of
// the same, non-empty H×W. `who` names the metric in the message.
inline void check_scored_sets(const packed_masks& samples, const packed_masks& annotations, const char* who) {
  throw_if<value_error>(samples.count() < 1 || annotations.count() < 1, who,
                        ": needs at least one sample and one annotation (n = ", samples.count(), ", m = ",
                        annotations.count(), ")");
  throw_if<shape_error>(samples.height() != annotations.height() || samples.width() != annotations.width(), who,
                        ": mask sizes differ (", samples.height(), "x", samples.width(), " vs ", annotations.height(),
                        "x", annotations.width(), ")");
  throw_if<value_error>(samples.height() * samples.width() < 1, who, ": empty masks (", samples.height(), "x",
                        samples.width(), ")");
}

// How many of the masks cover each pixel: [H·W] counts in 0..n (the unnormalised mean mask
// that the uncertainty metrics read).
inline std::vector<std::int32_t> foreground_counts(const packed_masks& m) {
  const std::int64_t pixels = m.height() * m.width();
  std::vector<std::int32_t> counts(static_cast<std::size_t>(pixels), 0);
  for (std::int64_t i = 0; i < m.count(); ++i) {
    const auto bits = m.bits(i);
    for (std::size_t w = 0; w < bits.size(); ++w)
      for (std::uint64_t word = bits[w]; word != 0; word &= word - 1)
        ++counts[w * 64 + static_cast<std::size_t>(std::countr_zero(word))];
  }
  return counts;
}

inline std::int64_t intersection_area(std::span<const std::uint64_t> a, std::span<const std::uint64_t> b) {
  std::int64_t s = 0;
  for (std::size_t w = 0; w < a.size(); ++w) s += std::popcount(a[w] & b[w]);
  return s;
}

// Overlaps between set A (rows, e.g. samples) and set B (columns, e.g. annotations).
struct pair_overlaps {
  std::vector<std::int64_t> area_a, area_b;
  std::vector<std::int64_t> intersection;  // [rows, cols]

  std::int64_t rows() const { return static_cast<std::int64_t>(area_a.size()); }
  std::int64_t cols() const { return static_cast<std::int64_t>(area_b.size()); }
  overlap_counts counts(std::int64_t i, std::int64_t j) const {
    return counts_from_areas(area_a[static_cast<std::size_t>(i)], area_b[static_cast<std::size_t>(j)],
                             intersection[static_cast<std::size_t>(i * cols() + j)]);
  }
  double iou(std::int64_t i, std::int64_t j) const { return counts(i, j).iou(); }
  double dice(std::int64_t i, std::int64_t j) const { return counts(i, j).dice(); }
  double distance(std::int64_t i, std::int64_t j) const { return 1.0 - iou(i, j); }

  dmatrix iou_matrix() const {
    dmatrix m(rows(), cols());
    for (std::int64_t i = 0; i < rows(); ++i)
      for (std::int64_t j = 0; j < cols(); ++j) m(i, j) = iou(i, j);
    return m;
  }
  dmatrix distance_matrix() const {
    dmatrix m(rows(), cols());
    for (std::int64_t i = 0; i < rows(); ++i)
      for (std::int64_t j = 0; j < cols(); ++j) m(i, j) = distance(i, j);
    return m;
  }
  // As if row mask i / column mask j were empty (post-processing without recounting).
  void empty_row(std::int64_t i) {
    area_a[static_cast<std::size_t>(i)] = 0;
    std::fill_n(intersection.begin() + i * cols(), cols(), 0);
  }
  void empty_col(std::int64_t j) {
    area_b[static_cast<std::size_t>(j)] = 0;
    for (std::int64_t i = 0; i < rows(); ++i) intersection[static_cast<std::size_t>(i * cols() + j)] = 0;
  }
};

inline pair_overlaps pairwise_overlaps(const packed_masks& a, const packed_masks& b) {
  throw_if<shape_error>(a.height() != b.height() || a.width() != b.width(),
                        "pairwise_overlaps: mask sizes differ (", a.height(), "x", a.width(), " vs ",
                        b.height(), "x", b.width(), ")");
  pair_overlaps o;
  o.area_a = a.areas();
  o.area_b = b.areas();
  o.intersection.resize(static_cast<std::size_t>(a.count() * b.count()));
  for (std::int64_t i = 0; i < a.count(); ++i)
    for (std::int64_t j = 0; j < b.count(); ++j)
      o.intersection[static_cast<std::size_t>(i * b.count() + j)] = intersection_area(a.bits(i), b.bits(j));
  return o;
}

// A set against itself: the symmetric half is counted once, the diagonal is the area.
inline pair_overlaps self_overlaps(const packed_masks& a) {
  pair_overlaps o;
  o.area_a = o.area_b = a.areas();
  const std::int64_t n = a.count();
  o.intersection.resize(static_cast<std::size_t>(n * n));
  for (std::int64_t i = 0; i < n; ++i) {
    o.intersection[static_cast<std::size_t>(i * n + i)] = a.area(i);
    for (std::int64_t j = i + 1; j < n; ++j) {
      const std::int64_t s = intersection_area(a.bits(i), a.bits(j));
      o.intersection[static_cast<std::size_t>(i * n + j)] = s;
      o.intersection[static_cast<std::size_t>(j * n + i)] = s;
    }
  }
  return o;
}

// Single-pair helpers on unpacked masks of `pixels` bytes each.
inline overlap_counts overlap(const unsigned char* a, const unsigned char* b, std::int64_t pixels) {
  overlap_counts c;
  for (std::int64_t p = 0; p < pixels; ++p) {
    const bool x = a[p] != 0, y = b[p] != 0;
    c.tp += x && y;
    c.fp += x && !y;
    c.fn += !x && y;
  }
  return c;
}
inline double iou(const unsigned char* a, const unsigned char* b, std::int64_t pixels) {
  return overlap(a, b, pixels).iou();
}
inline double dice(const unsigned char* a, const unsigned char* b, std::int64_t pixels) {
  return overlap(a, b, pixels).dice();
}

}  // namespace ambiseg::metrics
