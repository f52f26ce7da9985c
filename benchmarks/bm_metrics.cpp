// The metrics' pairwise intersection counts, two ways, at the size the paper's evaluation
// has: 1000 images × (16 samples + 4 annotations), 128×128 (docs/metrics.md, "Why bit
// packing"). Every metric (GED², HM-IoU, dice, IoU, CI) reads these counts.
//
//   popcount     what metrics/overlap.hpp does: each mask packed to 64-pixel words once,
//                then every pair (samples × annotations, samples × samples, annotations ×
//                annotations) is a popcount over H·W/64 words
//   xtensor_blas the 20 masks of an image as a float matrix M [20, H·W] and one product
//                M·Mᵀ (xt::linalg::dot on OpenBLAS's sgemm): all pairs at once, areas on the
//                diagonal; counts ≤ 2²⁴ are exact in float
//   cblas_ssyrk  the same product through cblas directly (the symmetric rank-k update),
//                without xtensor's containers: the method's best case
// The conversion of the image's bytes to floats (or bits) is inside each figure. One thread
// (OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1): evaluation parallelises over images, not
// inside one image's pairs. The results are compared before timing; a mismatch aborts.
// The two products are built where xtensor-blas is installed (AMBISEG_BENCH_XTENSOR_BLAS);
// the library does not depend on it. Run with --benchmark_enable_random_interleaving=true.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#if defined(AMBISEG_BENCH_XTENSOR_BLAS)
// xtensor-blas declares the cblas functions itself (xflens/cxxblas/drivers/cblas.h), in
// a way that conflicts with OpenBLAS's <cblas.h>: this file uses its declarations.
#include <xtensor-blas/xlinalg.hpp>
#include <xtensor/xtensor.hpp>
#endif

#include "ambiseg/metrics/overlap.hpp"

using namespace ambiseg;

namespace {

constexpr std::int64_t images = 1000, samples = 16, annotations = 4, side = 128;
constexpr std::int64_t pixels = side * side, masks_per_image = samples + annotations;

// [images, 20, 128, 128] bytes: blobs of ~10% foreground (a smooth random field,
// thresholded), samples first then annotations.
const std::vector<std::uint8_t>& mask_data() {
  static const std::vector<std::uint8_t> data = [] {
    std::vector<std::uint8_t> d(static_cast<std::size_t>(images * masks_per_image * pixels));
    std::mt19937 gen(7);
    std::uniform_real_distribution<float> u(0.f, 1.f);
    for (std::int64_t m = 0; m < images * masks_per_image; ++m) {
      const float cy = 40 + 48 * u(gen), cx = 40 + 48 * u(gen), r = 12 + 14 * u(gen);
      for (std::int64_t y = 0; y < side; ++y)
        for (std::int64_t x = 0; x < side; ++x) {
          const float dy = (y - cy) / r, dx = (x - cx) / (0.7f * r);
          d[static_cast<std::size_t>(m * pixels + y * side + x)] = dy * dy + dx * dx < 1.f + 0.2f * u(gen);
        }
    }
    return d;
  }();
  return data;
}

const std::uint8_t* image_masks(std::int64_t k) { return mask_data().data() + k * masks_per_image * pixels; }

// All 20×20 intersections of image k (areas on the diagonal), by each method.
std::vector<std::int64_t> by_popcount(std::int64_t k) {
  const std::uint8_t* m = image_masks(k);
  const metrics::packed_masks s(metrics::mask_set_view(m, samples, side, side));
  const metrics::packed_masks a(metrics::mask_set_view(m + samples * pixels, annotations, side, side));
  const auto sa = metrics::pairwise_overlaps(s, a), ss = metrics::self_overlaps(s), aa = metrics::self_overlaps(a);
  std::vector<std::int64_t> g(masks_per_image * masks_per_image);
  for (std::int64_t i = 0; i < masks_per_image; ++i)
    for (std::int64_t j = 0; j < masks_per_image; ++j) {
      std::int64_t v;
      if (i < samples && j < samples) v = ss.intersection[static_cast<std::size_t>(i * samples + j)];
      else if (i >= samples && j >= samples)
        v = aa.intersection[static_cast<std::size_t>((i - samples) * annotations + (j - samples))];
      else if (i < samples) v = sa.intersection[static_cast<std::size_t>(i * annotations + (j - samples))];
      else v = sa.intersection[static_cast<std::size_t>(j * annotations + (i - samples))];
      g[static_cast<std::size_t>(i * masks_per_image + j)] = v;
    }
  return g;
}

#if defined(AMBISEG_BENCH_XTENSOR_BLAS)
std::vector<std::int64_t> by_xtensor_blas(std::int64_t k, xt::xtensor<float, 2>& m) {
  const std::uint8_t* src = image_masks(k);
  std::copy(src, src + masks_per_image * pixels, m.begin());  // bytes → floats
  const xt::xtensor<float, 2> gram = xt::linalg::dot(m, xt::transpose(m));
  return std::vector<std::int64_t>(gram.begin(), gram.end());
}

std::vector<std::int64_t> by_ssyrk(std::int64_t k, std::vector<float>& m, std::vector<float>& gram) {
  const std::uint8_t* src = image_masks(k);
  std::copy(src, src + masks_per_image * pixels, m.begin());
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasNoTrans, masks_per_image, pixels, 1.f, m.data(), pixels, 0.f,
              gram.data(), masks_per_image);
  std::vector<std::int64_t> g(gram.size());
  for (std::int64_t i = 0; i < masks_per_image; ++i)
    for (std::int64_t j = 0; j < masks_per_image; ++j)
      g[static_cast<std::size_t>(i * masks_per_image + j)] =
          static_cast<std::int64_t>(gram[static_cast<std::size_t>(std::min(i, j) * masks_per_image + std::max(i, j))]);
  return g;
}

#endif

void check_agreement() {
#if defined(AMBISEG_BENCH_XTENSOR_BLAS)
  static const bool done = [] {
    xt::xtensor<float, 2> m({static_cast<std::size_t>(masks_per_image), static_cast<std::size_t>(pixels)});
    std::vector<float> mf(static_cast<std::size_t>(masks_per_image * pixels)), gram(masks_per_image * masks_per_image);
    for (std::int64_t k : {0L, 1L, images - 1}) {
      const auto p = by_popcount(k);
      if (p != by_xtensor_blas(k, m) || p != by_ssyrk(k, mf, gram)) {
        std::fprintf(stderr, "bm_metrics: the methods disagree on image %ld\n", static_cast<long>(k));
        std::abort();
      }
    }
    return true;
  }();
  (void)done;
#endif
}

void popcount(benchmark::State& state) {
  check_agreement();
  for (auto _ : state)
    for (std::int64_t k = 0; k < images; ++k) benchmark::DoNotOptimize(by_popcount(k).data());
  state.counters["per_image"] =
      benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsIterationInvariantRate |
                                                          benchmark::Counter::kInvert);
}

#if defined(AMBISEG_BENCH_XTENSOR_BLAS)
void xtensor_blas(benchmark::State& state) {
  check_agreement();
  xt::xtensor<float, 2> m({static_cast<std::size_t>(masks_per_image), static_cast<std::size_t>(pixels)});
  for (auto _ : state)
    for (std::int64_t k = 0; k < images; ++k) benchmark::DoNotOptimize(by_xtensor_blas(k, m).data());
  state.counters["per_image"] =
      benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsIterationInvariantRate |
                                                          benchmark::Counter::kInvert);
}

void ssyrk(benchmark::State& state) {
  check_agreement();
  std::vector<float> m(static_cast<std::size_t>(masks_per_image * pixels)), gram(masks_per_image * masks_per_image);
  for (auto _ : state)
    for (std::int64_t k = 0; k < images; ++k) benchmark::DoNotOptimize(by_ssyrk(k, m, gram).data());
  state.counters["per_image"] =
      benchmark::Counter(static_cast<double>(images), benchmark::Counter::kIsIterationInvariantRate |
                                                          benchmark::Counter::kInvert);
}

#endif

}  // namespace

// Alternating, so that drift in the machine's speed falls on both.
BENCHMARK(popcount)->Unit(benchmark::kMillisecond)->Repetitions(3)->Iterations(1);
#if defined(AMBISEG_BENCH_XTENSOR_BLAS)
BENCHMARK(xtensor_blas)->Unit(benchmark::kMillisecond)->Repetitions(3)->Iterations(1);
BENCHMARK(ssyrk)->Unit(benchmark::kMillisecond)->Repetitions(3)->Iterations(1);
#endif

BENCHMARK_MAIN();
