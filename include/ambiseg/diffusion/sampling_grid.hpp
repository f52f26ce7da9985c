// ambiseg/diffusion/sampling_grid.hpp — where a sampler evaluates the network: the times
// t_0 = 1 > t_1 > … > t_N = 0 of an N-step reverse process, and their log-SNRs.
//
//   uniform_t        t_k = (N − k)/N (the reference's grid)
//   uniform_lambda   λ(t_k) = λ(1) + (λ(0) − λ(1))·k/N, t_k found by bisection (λ is
//                    decreasing); needs a schedule with finite ends, i.e. one wrapped in
//                    clipped<> — the clip's λ_min and λ_max are the grid's ends
//
// Equal steps in λ are what the exponential integrators (DPM-Solver++, UniPC) are
// analysed in: their local error is a power of the step h in λ, so a uniform-λ grid
// spreads it evenly.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/diffusion/concepts.hpp"

namespace ambiseg::diffusion {

enum class time_spacing { uniform_t, uniform_lambda };

inline const char* spacing_name(time_spacing s) {
  return s == time_spacing::uniform_t ? "uniform_t" : "uniform_lambda";
}

inline time_spacing parse_spacing(std::string_view name) {
  if (name == "uniform_t" || name == "t") return time_spacing::uniform_t;
  if (name == "uniform_lambda" || name == "lambda") return time_spacing::uniform_lambda;
  throw value_error("unknown time spacing '" + std::string(name) + "' (uniform_t or uniform_lambda)");
}

// The N + 1 times from 1 down to 0 (both ends exact).
template <class S>
std::vector<double> sampling_times(const S& schedule, int steps, time_spacing spacing) {
  static_assert(check_noise_schedule<S>());
  throw_if<value_error>(steps < 1, "sampling_times: steps = ", steps, " must be >= 1");
  std::vector<double> t(static_cast<std::size_t>(steps) + 1);
  const double n = static_cast<double>(steps);
  if (spacing == time_spacing::uniform_t) {
    for (int k = 0; k <= steps; ++k) t[static_cast<std::size_t>(k)] = static_cast<double>(steps - k) / n;
    return t;
  }
  const double lambda_1 = log_snr(schedule, 1.0), lambda_0 = log_snr(schedule, 0.0);
  throw_if<value_error>(!std::isfinite(lambda_1) || !std::isfinite(lambda_0),
                        "sampling_times: uniform_lambda spacing needs finite log-SNR ends, but λ(1) = ",
                        lambda_1, " and λ(0) = ", lambda_0, " (wrap the schedule in clipped<>)");
  t.front() = 1.0;
  t.back() = 0.0;
  for (int k = 1; k < steps; ++k) {
    const double target = lambda_1 + (lambda_0 - lambda_1) * static_cast<double>(k) / n;
    double lo = 0.0, hi = 1.0;  // λ(lo) ≥ target ≥ λ(hi)
    for (int it = 0; it < 200 && hi - lo > 1e-15; ++it) {
      const double mid = 0.5 * (lo + hi);
      (log_snr(schedule, mid) >= target ? lo : hi) = mid;
    }
    t[static_cast<std::size_t>(k)] = 0.5 * (lo + hi);
  }
  return t;
}

template <class S>
std::vector<double> log_snrs_at(const S& schedule, const std::vector<double>& times) {
  std::vector<double> lambdas(times.size());
  for (std::size_t k = 0; k < times.size(); ++k) lambdas[k] = log_snr(schedule, times[k]);
  return lambdas;
}

}  // namespace ambiseg::diffusion
