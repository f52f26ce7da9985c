// ambiseg/core/random.hpp — a small, portable, reproducible random number generator.
//
// std::normal_distribution is implementation-defined, so the same seed gives different
// numbers across standard libraries. ambiseg's training and sampling must be bit-for-bit
// reproducible for a seed (resume, tests), so it uses xoshiro256** seeded by splitmix64
// and its own Box–Muller transform. The full state is 4×u64 plus one cached normal and can
// be saved in a checkpoint.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>
#include <numbers>

namespace ambiseg {

class rng {
 public:
  using result_type = std::uint64_t;
  explicit rng(std::uint64_t seed = 0x5EEDULL) { reseed(seed); }

  void reseed(std::uint64_t seed) {
    std::uint64_t x = seed;
    for (auto& s : state_) s = splitmix64(x);
    has_cached_normal_ = false;
  }

  static constexpr result_type min() { return 0; }
  static constexpr result_type max() { return ~result_type{0}; }

  result_type operator()() {  // xoshiro256**
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }
  // Uniform in (0, 1]: safe for log().
  double uniform_open0() { return (static_cast<double>((*this)() >> 11) + 1.0) * 0x1.0p-53; }

  // Uniform integer in [0, n) without modulo bias (Lemire).
  std::uint64_t below(std::uint64_t n) {
    if (n <= 1) return 0;
    const std::uint64_t threshold = (0 - n) % n;
    for (;;) {
      const std::uint64_t r = (*this)();
      if (r >= threshold) return r % n;
    }
  }

  // Standard normal (Box–Muller, both values used).
  double normal() {
    if (has_cached_normal_) {
      has_cached_normal_ = false;
      return cached_normal_;
    }
    const double u1 = uniform_open0();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * std::numbers::pi * u2;
    cached_normal_ = radius * std::sin(angle);
    has_cached_normal_ = true;
    return radius * std::cos(angle);
  }

  // Serialisable state (for checkpoints and --resume).
  struct state_type {
    std::array<std::uint64_t, 4> s;
    double cached_normal;
    bool has_cached_normal;
  };
  state_type state() const { return {state_, cached_normal_, has_cached_normal_}; }
  void set_state(const state_type& st) {
    state_ = st.s;
    cached_normal_ = st.cached_normal;
    has_cached_normal_ = st.has_cached_normal;
  }

  // An independent stream derived from this seed (for per-worker / per-image streams).
  static rng derive(std::uint64_t seed, std::uint64_t stream) {
    std::uint64_t x = seed ^ (0x9E3779B97F4A7C15ULL * (stream + 1));
    return rng(splitmix64(x));
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static std::uint64_t splitmix64(std::uint64_t& x) {
    std::uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  std::array<std::uint64_t, 4> state_{};
  double cached_normal_ = 0.0;
  bool has_cached_normal_ = false;
};

}  // namespace ambiseg
