// Helpers shared by the op tests: random tensors, the scalar loss L = Σ dy·y, and a
// central-difference gradient check against an op's analytic gradient.
#pragma once

#include <catch2/catch.hpp>

#include <ambiseg/core/random.hpp>
#include <ambiseg/core/tensor.hpp>

#include <algorithm>
#include <cmath>
#include <functional>

namespace ops_test {

using namespace ambiseg;

template <class T = double>
inline tensor<T> randn(shape s, rng& r, double scale = 1.0) {
  tensor<T> t(s);
  for (auto& v : t) v = static_cast<T>(scale * r.normal());
  return t;
}

template <class T>
inline double dot(const tensor<T>& a, const tensor<T>& b) {
  double s = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

template <class A, class B>
inline double max_abs_diff(const A& a, const B& b) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}
template <class A>
inline double max_abs(const A& a) {
  double m = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i])));
  return m;
}

// Compares the analytic gradient of `loss` with respect to every element of `param` with
// central differences; the error is relative to the largest gradient entry.
inline void check_gradient(const char* what, tensor<double>& param, const tensor<double>& analytic,
                           const std::function<double()>& loss, double tol = 1e-6,
                           double step = 1e-5) {
  INFO("gradient of " << what);
  REQUIRE(analytic.shape() == param.shape());
  tensor<double> numeric(param.shape());
  for (std::int64_t i = 0; i < param.numel(); ++i) {
    const double keep = param[i];
    param[i] = keep + step;
    const double lp = loss();
    param[i] = keep - step;
    const double lm = loss();
    param[i] = keep;
    numeric[i] = (lp - lm) / (2 * step);
  }
  const double scale = std::max(max_abs(numeric), 1e-12);
  CHECK(max_abs(numeric) > 1e-8);  // a vanishing gradient would make the check vacuous
  CHECK(max_abs_diff(numeric, analytic) / scale < tol);
}

}  // namespace ops_test
