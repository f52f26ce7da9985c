// The models' fixture tests: where their files are and how a tensor is compared.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

#include <ambiseg/ops/cpu/conv2d.hpp>

namespace models_test {

// Runs a scope with the CPU's 3×3 convolutions on the given path, restoring the settings
// after. Float fixture tests run twice: on the direct (GEMM-lowered) path at the tight
// tolerance, and on the default Winograd F(4×4,3×3), whose rounding is about ten times the
// direct sum's (tests/ops/test_conv_winograd.cpp measures it) and needs 1e-4.
struct winograd_scope {
  ambiseg::ops::cpu_kernels::conv_tuning saved = ambiseg::ops::cpu_kernels::conv_settings();
  explicit winograd_scope(ambiseg::ops::cpu_kernels::winograd_tile tile) {
    ambiseg::ops::cpu_kernels::conv_settings().winograd = tile;
  }
  ~winograd_scope() { ambiseg::ops::cpu_kernels::conv_settings() = saved; }
};

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
