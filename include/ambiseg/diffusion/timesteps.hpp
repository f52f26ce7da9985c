// ambiseg/diffusion/timesteps.hpp — the training times t_b ∈ [0, 1] of a batch.
//
//   uniform_timesteps     t_b ~ U(0, 1) independently
//   stratified_timesteps  t_b = (π(b) + u_b)/B with π a random permutation of 0..B−1 and
//                         u_b ~ U(0, 1) (the reference default): each of the B strata
//                         [i/B, (i+1)/B) receives exactly one time, in random order, which
//                         lowers the variance of the batch loss without biasing it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "ambiseg/core/random.hpp"
#include "ambiseg/diffusion/concepts.hpp"

namespace ambiseg::diffusion {

struct uniform_timesteps {
  static constexpr const char* name = "uniform";
  void draw(std::span<double> t, rng& g) const {
    for (double& v : t) v = g.uniform();
  }
};

struct stratified_timesteps {
  static constexpr const char* name = "stratified";
  void draw(std::span<double> t, rng& g) const {
    const std::size_t batch = t.size();
    if (batch == 0) return;
    // The permutation is built in t itself (as stratum indices) by Fisher–Yates, so a
    // draw allocates nothing.
    for (std::size_t i = 0; i < batch; ++i) t[i] = static_cast<double>(i);
    for (std::size_t i = batch - 1; i > 0; --i) {
      const auto j = static_cast<std::size_t>(g.below(static_cast<std::uint64_t>(i) + 1));
      std::swap(t[i], t[j]);
    }
    const double inv = 1.0 / static_cast<double>(batch);
    for (std::size_t i = 0; i < batch; ++i) t[i] = (t[i] + g.uniform()) * inv;
  }
};

static_assert(timestep_sampler<uniform_timesteps>);
static_assert(timestep_sampler<stratified_timesteps>);

}  // namespace ambiseg::diffusion
