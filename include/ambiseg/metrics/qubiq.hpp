// ambiseg/metrics/qubiq.hpp — the QUBIQ challenge's score: the continuous mean of the samples
// against the continuous mean of the annotations, binarised together at τ = 0.1, 0.2, …, 0.9
// (strictly above τ is foreground), dice averaged over the nine thresholds (two empty masks
// have dice 1, as everywhere in SPEC §8). 1 is best.
//
// With c of n samples and a of m annotations covering a pixel, "c/n > τ_k" is tested as
// 10·c > k·n in integers, so a mean that equals a threshold (e.g. 2 of 4 at τ = 0.5) is
// never decided by a rounding error.
#pragma once

#include <cstdint>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/metrics/overlap.hpp"

namespace ambiseg::metrics {

inline double qubiq_score(const packed_masks& samples, const packed_masks& annotations) {
  const std::int64_t n = samples.count(), m = annotations.count();
  check_scored_sets(samples, annotations, "qubiq_score");
  const std::vector<std::int32_t> cs = foreground_counts(samples), ca = foreground_counts(annotations);
  double total = 0.0;
  for (std::int64_t k = 1; k <= 9; ++k) {
    overlap_counts o;
    for (std::size_t x = 0; x < cs.size(); ++x) {
      const bool s = 10 * static_cast<std::int64_t>(cs[x]) > k * n;
      const bool a = 10 * static_cast<std::int64_t>(ca[x]) > k * m;
      o.tp += s && a;
      o.fp += s && !a;
      o.fn += !s && a;
    }
    total += o.dice();
  }
  return total / 9.0;
}

}  // namespace ambiseg::metrics
