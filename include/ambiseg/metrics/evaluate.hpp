// ambiseg/metrics/evaluate.hpp — every metric of SPEC §8 for one image and for a batch.
//
// Shape legend: samples [images, n, H, W], annotations [images, m, H, W] (bytes, 0 =
// background). Per image the pairwise overlaps are counted once (bit-packed popcounts);
// GED², dice, IoU and HM-IoU are read from them, and the post-processed metrics come from
// the same tables with the emptied samples' rows zeroed (no recount). Images are
// evaluated in parallel (OpenMP) and the per-image metrics averaged. The pixel-level scores
// (S_NCC, the QUBIQ score, the CI score) read the packed masks themselves, post-processed
// ones for the pp set.
#pragma once

#include <cstdint>
#include <exception>
#include <optional>
#include <utility>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/collective_insight.hpp"
#include "ambiseg/metrics/ged.hpp"
#include "ambiseg/metrics/hm_iou.hpp"
#include "ambiseg/metrics/overlap.hpp"
#include "ambiseg/metrics/postprocess.hpp"
#include "ambiseg/metrics/qubiq.hpp"
#include "ambiseg/metrics/uncertainty_ncc.hpp"

namespace ambiseg::metrics {

struct set_metrics {
  double ged = 0.0;     // D²_GED with the chosen estimator
  double dice = 0.0;    // mean over the n·m (sample, annotation) pairs
  double iou = 0.0;     // idem
  double hm_iou = 0.0;  // Hungarian-matched IoU over lcm(n, m) repeats
  // The samples' own spread, the sample–sample term of GED: mean d(s, s') = 1 − IoU over
  // the n(n − 1) ordered pairs of distinct samples (0 for n = 1). A sampler that collapses
  // to one mask shows here first.
  double diversity = 0.0;
  double ncc = 0.0;    // S_NCC of the uncertainty map against the annotators' (uncertainty_ncc.hpp)
  double qubiq = 0.0;  // the QUBIQ challenge's thresholded dice of the mean masks (qubiq.hpp)
  collective_insight_score ci;          // as published (CIMD); NaN for n < 2 or m < 2
  collective_insight_score ci_authors;  // as the paper's code computes it
};

// f(a_k, b_k) over every number of two metric sets (means over images).
template <class F>
void for_each_value(set_metrics& a, const set_metrics& b, F f) {
  f(a.ged, b.ged), f(a.dice, b.dice), f(a.iou, b.iou), f(a.hm_iou, b.hm_iou), f(a.diversity, b.diversity);
  f(a.ncc, b.ncc), f(a.qubiq, b.qubiq);
  for (auto [x, y] : {std::pair{&a.ci, &b.ci}, std::pair{&a.ci_authors, &b.ci_authors}}) {
    f(x->combined_sensitivity, y->combined_sensitivity), f(x->max_dice_matching, y->max_dice_matching);
    f(x->diversity_agreement, y->diversity_agreement), f(x->ci, y->ci);
  }
}

struct evaluation_options {
  ged_estimator estimator = ged_estimator::all_pairs;
  std::optional<double> pp_ratio;  // relative-area post-processing r (paper: 0.5)
  std::int64_t hm_iou_max_items = hm_iou_default_max_items;
};

// The paper's evaluation convention (the authors' evaluate.py): 4 samples per image, GED's
// within-set means over all pairs with self-pairs, every metric raw and after relative-area
// post-processing with r = 0.5.
inline constexpr int paper_protocol_samples = 4;
inline evaluation_options paper_protocol() {
  evaluation_options o;
  o.estimator = ged_estimator::all_pairs;
  o.pp_ratio = 0.5;
  return o;
}

struct image_result {
  set_metrics raw;
  std::optional<set_metrics> pp;
};

// The overlaps of one image, counted once.
struct image_overlaps {
  pair_overlaps sy, ss, yy;
};

inline image_overlaps compute_overlaps(const packed_masks& samples, const packed_masks& annotations) {
  return {pairwise_overlaps(samples, annotations), self_overlaps(samples), self_overlaps(annotations)};
}

inline set_metrics metrics_from_overlaps(const image_overlaps& o, const evaluation_options& options) {
  set_metrics r;
  r.ged = ged_squared(o.sy, o.ss, o.yy, options.estimator);
  double dice_sum = 0.0, iou_sum = 0.0;
  for (std::int64_t i = 0; i < o.sy.rows(); ++i)
    for (std::int64_t j = 0; j < o.sy.cols(); ++j) {
      const overlap_counts c = o.sy.counts(i, j);
      dice_sum += c.dice();
      iou_sum += c.iou();
    }
  const double pairs = static_cast<double>(o.sy.rows() * o.sy.cols());
  r.dice = dice_sum / pairs;
  r.iou = iou_sum / pairs;
  r.hm_iou = hm_iou(o.sy, options.hm_iou_max_items);
  const std::int64_t n = o.ss.rows();
  if (n >= 2) {
    double spread = 0.0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        if (i != j) spread += o.ss.distance(i, j);
    r.diversity = spread / static_cast<double>(n * (n - 1));
  }
  return r;
}

// Every metric of one image: the table-based ones from the overlaps, the pixel-level ones
// from the masks (which must be those the overlaps were counted from).
inline set_metrics image_metrics(const packed_masks& samples, const packed_masks& annotations, const image_overlaps& o,
                                 const evaluation_options& options) {
  set_metrics r = metrics_from_overlaps(o, options);
  r.ncc = uncertainty_ncc(samples, annotations);
  r.qubiq = qubiq_score(samples, annotations);
  r.ci = collective_insight(samples, annotations, o.sy, o.ss, o.yy, ci_variant::published);
  r.ci_authors = collective_insight(samples, annotations, o.sy, o.ss, o.yy, ci_variant::authors);
  return r;
}

inline void check_evaluation_sizes(std::int64_t n, std::int64_t m, const evaluation_options& options) {
  throw_if<value_error>(n < 1 || m < 1, "evaluate: needs at least one sample and one annotation per image (n = ",
                        n, ", m = ", m, ")");
  throw_if<value_error>(options.estimator == ged_estimator::unbiased && (n < 2 || m < 2),
                        "evaluate: the unbiased GED estimator needs n >= 2 samples and m >= 2 annotations (n = ",
                        n, ", m = ", m, ")");
  check_hm_iou_size(n, m, options.hm_iou_max_items);
  if (options.pp_ratio) check_relative_area_ratio(*options.pp_ratio);
}

inline image_result evaluate_image(const packed_masks& samples, const packed_masks& annotations,
                                   const evaluation_options& options = {}) {
  check_evaluation_sizes(samples.count(), annotations.count(), options);
  image_overlaps o = compute_overlaps(samples, annotations);
  image_result r;
  r.raw = image_metrics(samples, annotations, o, options);
  if (options.pp_ratio) {
    packed_masks processed = samples;
    relative_area_postprocess(processed, *options.pp_ratio);
    relative_area_postprocess(o.sy, o.ss, *options.pp_ratio);
    r.pp = image_metrics(processed, annotations, o, options);
  }
  return r;
}

inline image_result evaluate_image(const mask_set_view& samples, const mask_set_view& annotations,
                                   const evaluation_options& options = {}) {
  throw_if<shape_error>(samples.height != annotations.height || samples.width != annotations.width,
                        "evaluate_image: samples are ", samples.height, "x", samples.width, " but annotations are ",
                        annotations.height, "x", annotations.width);
  return evaluate_image(packed_masks(samples), packed_masks(annotations), options);
}

// [images, n, H, W] contiguous bytes.
struct mask_batch_view {
  const unsigned char* data = nullptr;
  std::int64_t images = 0, n = 0, height = 0, width = 0;

  mask_set_view image(std::int64_t k) const {
    return mask_set_view(data + k * n * height * width, n, height, width);
  }
};

struct evaluation_result {
  std::int64_t images = 0, n = 0, m = 0, height = 0, width = 0;
  evaluation_options options;
  set_metrics raw;                  // means over images
  std::optional<set_metrics> pp;    // when options.pp_ratio is set
  std::vector<image_result> per_image;
};

inline evaluation_result evaluate(const mask_batch_view& samples, const mask_batch_view& annotations,
                                  const evaluation_options& options = {}) {
  throw_if<shape_error>(samples.images != annotations.images, "evaluate: ", samples.images,
                        " images of samples but ", annotations.images, " of annotations");
  throw_if<shape_error>(samples.height != annotations.height || samples.width != annotations.width,
                        "evaluate: samples are ", samples.height, "x", samples.width, " but annotations are ",
                        annotations.height, "x", annotations.width);
  throw_if<value_error>(samples.images < 1, "evaluate: no images");
  throw_if<value_error>(samples.height < 1 || samples.width < 1, "evaluate: empty masks (", samples.height, "x",
                        samples.width, ")");
  check_evaluation_sizes(samples.n, annotations.n, options);

  evaluation_result result;
  result.images = samples.images;
  result.n = samples.n;
  result.m = annotations.n;
  result.height = samples.height;
  result.width = samples.width;
  result.options = options;
  result.per_image.resize(static_cast<std::size_t>(samples.images));

  // Exceptions must not leave an OpenMP region: the first one is kept and rethrown.
  std::exception_ptr failure;
#pragma omp parallel for schedule(dynamic, 4)
  for (std::int64_t k = 0; k < samples.images; ++k) {
    try {
      result.per_image[static_cast<std::size_t>(k)] =
          evaluate_image(packed_masks(samples.image(k)), packed_masks(annotations.image(k)), options);
    } catch (...) {
#pragma omp critical(ambiseg_evaluate_failure)
      if (!failure) failure = std::current_exception();
    }
  }
  if (failure) std::rethrow_exception(failure);

  auto accumulate = [](set_metrics& sum, const set_metrics& x) { for_each_value(sum, x, [](double& a, double b) { a += b; }); };
  auto scale = [](set_metrics& s, double f) { for_each_value(s, s, [f](double& a, double) { a *= f; }); };
  if (options.pp_ratio) result.pp = set_metrics{};
  for (const image_result& r : result.per_image) {
    accumulate(result.raw, r.raw);
    if (result.pp) accumulate(*result.pp, *r.pp);
  }
  const double inv = 1.0 / static_cast<double>(samples.images);
  scale(result.raw, inv);
  if (result.pp) scale(*result.pp, inv);
  return result;
}

}  // namespace ambiseg::metrics
