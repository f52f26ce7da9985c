// The models' fixture tests: where their files are and how a tensor is compared.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

namespace models_test {

inline std::filesystem::path fixture(const std::string& folder, const std::string& name) {
  return std::filesystem::path(AMBISEG_FIXTURE_DIR) / folder / name;
}

// max |a − b| ≤ tol · max |b| (the tensor's own scale).
template <class A, class B>
void check_close(const std::string& what, const A& a, const B& b, double tol) {
  REQUIRE(a.numel() == b.numel());
  double scale = 0, worst = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(double(b.data()[i])));
  for (std::int64_t i = 0; i < b.numel(); ++i)
    worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
  INFO(what << ": largest difference " << worst << " against a peak of " << scale);
  CHECK(worst <= tol * scale + 1e-300);
}

}  // namespace models_test
