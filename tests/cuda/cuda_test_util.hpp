// Helpers shared by the CUDA tests: the skip guard, host/device copies, random data and
// element-wise comparison with a stated tolerance.
#pragma once

#include <catch2/catch.hpp>

#include <ambiseg/core/cuda_context.hpp>
#include <ambiseg/core/cuda_memory.hpp>
#include <ambiseg/core/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <random>

#ifndef AMBISEG_REQUIRE_GPU
#define AMBISEG_REQUIRE_GPU()                                             \
  do {                                                                    \
    if (!::ambiseg::cuda_available()) {                                   \
      WARN("no CUDA device present: CUDA test skipped");                  \
      return;                                                             \
    }                                                                     \
  } while (0)
#endif

namespace cuda_test {

using namespace ambiseg;

template <class T>
tensor<T, cuda> to_device(const tensor<T>& h) {
  tensor<T, cuda> d(h.shape());
  copy_to_device<T>(h.cview(), d.view());
  return d;
}
template <class T>
tensor<T> to_host(const tensor<T, cuda>& d) {
  tensor<T> h(d.shape());
  copy_to_host<T>(d.cview(), h.view());
  return h;
}

template <class T>
tensor<T> random_tensor(shape s, std::uint32_t seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  tensor<T> t(s);
  for (auto& v : t) v = static_cast<T>(dist(gen));
  return t;
}

// Tolerances for float and double results of the same computation on CPU and GPU
// (different summation orders and FMA contraction): |gpu − cpu| ≤ atol + rtol·|cpu|.
template <class T>
struct tol {
  double atol, rtol;
};
template <class T>
tol<T> default_tol() {
  if constexpr (std::is_same_v<T, float>) return {2e-5, 2e-5};
  else return {1e-12, 1e-12};
}

// Counts the elements outside the tolerance and reports the worst one.
template <class T>
void require_close(const tensor<T>& gpu, const tensor<T>& cpu, tol<T> t, const char* what) {
  REQUIRE(gpu.shape() == cpu.shape());
  std::int64_t bad = 0, worst = -1;
  double worst_excess = 0;
  for (std::int64_t i = 0; i < cpu.numel(); ++i) {
    const double g = gpu[i], c = cpu[i];
    const double excess = std::abs(g - c) - (t.atol + t.rtol * std::abs(c));
    if (!(excess <= 0)) {
      ++bad;
      if (worst < 0 || excess > worst_excess) {
        worst = i;
        worst_excess = excess;
      }
    }
  }
  INFO(what << ": " << bad << " of " << cpu.numel() << " elements differ; worst at " << worst
            << (worst >= 0 ? " (gpu " + std::to_string(static_cast<double>(gpu[worst])) + ", cpu " +
                                 std::to_string(static_cast<double>(cpu[worst])) + ")"
                           : std::string()));
  CHECK(bad == 0);
}

template <class T>
void require_close(const tensor<T, cuda>& gpu, const tensor<T>& cpu, tol<T> t, const char* what) {
  require_close(to_host(gpu), cpu, t, what);
}

}  // namespace cuda_test
