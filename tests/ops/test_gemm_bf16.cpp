// The bfloat16 GEMM (ops/cpu/gemm_bf16.hpp) and the float GEMM's precision switch
// (ops/cpu/gemm.hpp). Rounding: against bit patterns worked out by hand. Products: against
// a double-precision sum of the bf16-rounded operands (each product of two bf16 values is
// exact in float, so the only error left is the float accumulation's), for every
// transposition, sizes that leave partial micro-tiles and cross the K, M and N blocks,
// alpha/beta, and one and two threads. Skipped where the CPU lacks AVX512-BF16.
#include "ops_test_util.hpp"

#include <ambiseg/ops/cpu/gemm.hpp>

#include <omp.h>

#include <cmath>
#include <limits>
#include <vector>

using namespace ambiseg;
using namespace ops_test;
namespace ck = ambiseg::ops::cpu_kernels;

TEST_CASE("bf16 rounding: nearest even, overflow to infinity, NaN kept", "[ops][gemm][bf16]") {
  CHECK(ck::bf16_bits(1.0f) == 0x3f80u);
  CHECK(ck::bf16_bits(-2.0f) == 0xc000u);
  // 1 + 2⁻⁸ lies halfway between 1 and 1 + 2⁻⁷: ties go to the even mantissa (1)
  CHECK(ck::bf16_bits(1.0f + 0x1p-8f) == 0x3f80u);
  // 1 + 3·2⁻⁸ lies halfway between 1 + 2⁻⁷ and 1 + 2⁻⁶: to the even one, 1 + 2⁻⁶
  CHECK(ck::bf16_bits(1.0f + 3 * 0x1p-8f) == 0x3f82u);
  CHECK(ck::bf16_bits(1.0f + 0x1p-8f + 0x1p-20f) == 0x3f81u);  // above halfway: up
  CHECK(ck::bf16_round(0.1f) == 0.10009765625f);
  CHECK(ck::bf16_bits(std::numeric_limits<float>::max()) == 0x7f80u);  // rounds to +inf
  CHECK(ck::bf16_bits(std::numeric_limits<float>::infinity()) == 0x7f80u);
  CHECK(std::isnan(ck::bf16_round(std::numeric_limits<float>::quiet_NaN())));
  CHECK(ck::bf16_pair(1.0f, -2.0f) == 0xc0003f80u);
}

namespace {

// C = alpha·bf16(op(A))·bf16(op(B)) + beta·C0 in double; also Σ|a·b| per entry (error scale).
void reference(bool ta, bool tb, std::int64_t m, std::int64_t n, std::int64_t k, double alpha,
               const std::vector<float>& a, std::int64_t lda, const std::vector<float>& b, std::int64_t ldb,
               double beta, const std::vector<float>& c0, std::int64_t ldc, std::vector<double>& c,
               std::vector<double>& scale) {
  c.assign(c0.size(), 0.0);
  scale.assign(c0.size(), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double s = 0, sa = 0;
      for (std::int64_t p = 0; p < k; ++p) {
        const double x = ck::bf16_round(ta ? a[p * lda + i] : a[i * lda + p]);
        const double y = ck::bf16_round(tb ? b[j * ldb + p] : b[p * ldb + j]);
        s += x * y;
        sa += std::abs(x * y);
      }
      c[i * ldc + j] = alpha * s + (beta == 0 ? 0.0 : beta * c0[i * ldc + j]);
      scale[i * ldc + j] = std::abs(alpha) * sa + std::abs(beta * c0[i * ldc + j]);
    }
}

}  // namespace

TEST_CASE("bf16 GEMM equals the double sum of bf16-rounded operands", "[ops][gemm][bf16]") {
  if (!ck::cpu_has_avx512_bf16()) {
    WARN("this CPU lacks AVX512-BF16: the bf16 GEMM is not exercised");
    CHECK_THROWS_WITH(ck::set_cpu_matmul_precision(ck::matmul_precision::bf16),
                      Catch::Contains("AVX512-BF16"));
    return;
  }
  rng r(71);
  const int saved_threads = omp_get_max_threads();
  struct c_t { std::int64_t m, n, k; double alpha, beta; };
  // partial micro-tiles (m % 12, n % 32), odd K, K across the 256 block, M across the 96
  // block, N across the 2048 block; beta 0 (C never read: it holds NaN), 1 and ½
  const std::vector<c_t> cases = {{1, 1, 1, 1, 0},      {13, 37, 7, 1, 0},    {24, 64, 32, 2, 1},
                                  {30, 50, 257, 1, 0.5}, {100, 33, 600, -1, 1}, {7, 2100, 9, 1, 0},
                                  {97, 40, 3, 0.5, 0}};
  for (int threads : {1, 2})
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (const auto& c : cases) {
          INFO("threads " << threads << " ta " << ta << " tb " << tb << " M=" << c.m << " N=" << c.n << " K=" << c.k
                          << " alpha " << c.alpha << " beta " << c.beta);
          omp_set_num_threads(threads);
          const std::int64_t lda = (ta ? c.m : c.k) + 3, ldb = (tb ? c.k : c.n) + 5, ldc = c.n + 2;
          std::vector<float> a((ta ? c.k : c.m) * lda), b((tb ? c.n : c.k) * ldb), c0(c.m * ldc);
          for (auto& v : a) v = static_cast<float>(r.normal());
          for (auto& v : b) v = static_cast<float>(r.normal());
          for (auto& v : c0) v = c.beta == 0 ? std::numeric_limits<float>::quiet_NaN() : static_cast<float>(r.normal());
          std::vector<double> want, scale;
          reference(ta, tb, c.m, c.n, c.k, c.alpha, a, lda, b, ldb, c.beta, c0, ldc, want, scale);
          auto got = c0;
          ck::gemm_bf16(ta, tb, c.m, c.n, c.k, static_cast<float>(c.alpha), a.data(), lda, b.data(), ldb,
                        static_cast<float>(c.beta), got.data(), ldc);
          double worst = 0;
          for (std::int64_t i = 0; i < c.m; ++i)
            for (std::int64_t j = 0; j < c.n; ++j) {
              const std::int64_t at = i * ldc + j;
              // float accumulation over K terms: a few ulps of the terms' magnitude per term
              worst = std::max(worst, std::abs(got[at] - want[at]) / ((c.k + 2) * 0x1p-23 * scale[at] + 1e-30));
            }
          CHECK(worst <= 1.0);
          // the padding columns between rows are never written
          for (std::int64_t i = 0; i < c.m; ++i)
            for (std::int64_t j = c.n; j < ldc; ++j) {
              const float before = c0[i * ldc + j], after = got[i * ldc + j];
              CHECK((std::isnan(before) ? std::isnan(after) : before == after));
            }
        }
  omp_set_num_threads(saved_threads);
}

TEST_CASE("the float GEMM follows the matmul precision switch", "[ops][gemm][bf16]") {
  if (!ck::cpu_has_avx512_bf16()) return;  // (the refusal is checked above)
  rng r(73);
  const std::int64_t m = 20, n = 40, k = 50;
  std::vector<float> a(m * k), b(k * n), c_bf(m * n), c_fp(m * n);
  for (auto& v : a) v = static_cast<float>(r.normal());
  for (auto& v : b) v = static_cast<float>(r.normal());
  struct restore {
    ~restore() { ck::set_cpu_matmul_precision(ck::matmul_precision::fp32); }
  } guard;
  ck::set_cpu_matmul_precision(ck::matmul_precision::bf16);
  ck::gemm(ck::trans::no, ck::trans::no, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c_bf.data(), n);
  std::vector<float> direct(m * n);
  ck::gemm_bf16(false, false, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, direct.data(), n);
  CHECK(c_bf == direct);
  ck::set_cpu_matmul_precision(ck::matmul_precision::fp32);
  ck::gemm(ck::trans::no, ck::trans::no, m, n, k, 1.f, a.data(), k, b.data(), n, 0.f, c_fp.data(), n);
  CHECK(c_fp != c_bf);  // float products differ from the bf16 ones
}
