// ambiseg/metrics/uncertainty_ncc.hpp — S_NCC, the agreement between the samples' uncertainty
// map and where the samples disagree with each annotator (PHiSeg, Baumgartner et al. 2019;
// the same code in the paper's utils.py).
//
// Masks are one-hot over {background, foreground}; s̄ is the samples' mean (per pixel
// (1 − p, p), p the fraction of samples that mark the pixel); CE(q, s) = −Σ_c q_c·log(s_c + ε)
// with ε = 1e-8. Per pixel
//   γ(x)   = mean over samples s of CE(s̄, s)      the expected cross-entropy to the mean
//   e_j(x) = mean over samples s of CE(y_j, s)    the expected cross-entropy to annotation j
// and S_NCC = mean over annotations j of NCC(γ, e_j), with
//   NCC(a, v) = Σ_x (a − ā)/(σ_a·P + ε) · (v − v̄)/(σ_v + ε),
// σ the population standard deviation over the P pixels: a Pearson correlation, except that a
// constant map (σ = 0: all samples agree everywhere, or an annotation that every sample
// matches) gives 0 instead of being undefined. 1 is best.
//
// Every term depends only on the pixel's count of foreground samples c and the annotation's
// value there, so the maps are read from a table over c = 0..n.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/overlap.hpp"

namespace ambiseg::metrics {

namespace ncc_detail {

inline constexpr double xent_eps = 1e-8;  // inside the log, as PHiSeg's pixel_wise_xent
inline constexpr double ncc_eps = 1e-8;   // in the normalisation, as PHiSeg's ncc

// NCC(a, v) as above.
inline double normalised_cross_correlation(const std::vector<double>& a, const std::vector<double>& v) {
  const double p = static_cast<double>(a.size());
  double mean_a = 0.0, mean_v = 0.0;
  for (std::size_t x = 0; x < a.size(); ++x) mean_a += a[x], mean_v += v[x];
  mean_a /= p, mean_v /= p;
  double var_a = 0.0, var_v = 0.0, cross = 0.0;
  for (std::size_t x = 0; x < a.size(); ++x) {
    var_a += (a[x] - mean_a) * (a[x] - mean_a);
    var_v += (v[x] - mean_v) * (v[x] - mean_v);
    cross += (a[x] - mean_a) * (v[x] - mean_v);
  }
  const double sd_a = std::sqrt(var_a / p), sd_v = std::sqrt(var_v / p);
  return cross / ((sd_a * p + ncc_eps) * (sd_v + ncc_eps));
}

}  // namespace ncc_detail

inline double uncertainty_ncc(const packed_masks& samples, const packed_masks& annotations) {
  const std::int64_t n = samples.count(), m = annotations.count();
  check_scored_sets(samples, annotations, "uncertainty_ncc");
  const std::int64_t pixels = samples.height() * samples.width();

  // −log(1 + ε) where a sample agrees with the reference class, −log(ε) where it does not.
  const double agree = -std::log(1.0 + ncc_detail::xent_eps), disagree = -std::log(ncc_detail::xent_eps);
  std::vector<double> gamma_of(static_cast<std::size_t>(n + 1)), to_positive(gamma_of.size()),
      to_negative(gamma_of.size());
  for (std::int64_t c = 0; c <= n; ++c) {
    const double p = static_cast<double>(c) / static_cast<double>(n);
    // CE(s̄, s) for a foreground sample and for a background one, weighted by their shares.
    const double ce_fg = (1.0 - p) * disagree + p * agree, ce_bg = (1.0 - p) * agree + p * disagree;
    gamma_of[static_cast<std::size_t>(c)] = p * ce_fg + (1.0 - p) * ce_bg;
    to_positive[static_cast<std::size_t>(c)] = p * agree + (1.0 - p) * disagree;
    to_negative[static_cast<std::size_t>(c)] = p * disagree + (1.0 - p) * agree;
  }
  const std::vector<std::int32_t> counts = foreground_counts(samples);
  std::vector<double> gamma(static_cast<std::size_t>(pixels)), e(gamma.size());
  for (std::int64_t x = 0; x < pixels; ++x) gamma[static_cast<std::size_t>(x)] = gamma_of[static_cast<std::size_t>(counts[static_cast<std::size_t>(x)])];

  double sum = 0.0;
  for (std::int64_t j = 0; j < m; ++j) {
    for (std::int64_t y = 0, x = 0; y < samples.height(); ++y)
      for (std::int64_t col = 0; col < samples.width(); ++col, ++x) {
        const auto c = static_cast<std::size_t>(counts[static_cast<std::size_t>(x)]);
        e[static_cast<std::size_t>(x)] = annotations.pixel(j, y, col) ? to_positive[c] : to_negative[c];
      }
    sum += ncc_detail::normalised_cross_correlation(gamma, e);
  }
  return sum / static_cast<double>(m);
}

}  // namespace ambiseg::metrics
