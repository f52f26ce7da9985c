// Op-layer micro-benchmarks at the UNet's shapes (batch 8, 128×128 input), float.
// Counters: FLOPS (GFLOP/s as printed by Google Benchmark) for GEMM-shaped work, bytes/s
// for the memory-bound ops. Run with OMP_NUM_THREADS set to the cores to use; on a shared
// machine add --benchmark_repetitions=5 and read the medians.
#include <benchmark/benchmark.h>

#include <ambiseg/core/parallel.hpp>
#include <ambiseg/core/random.hpp>
#include <ambiseg/ops/all.hpp>

using namespace ambiseg;
namespace k = ambiseg::ops::cpu_kernels;

namespace {

tensor<float> random_tensor(shape s, std::uint64_t seed) {
  rng r(seed);
  tensor<float> t(s);
  for (auto& v : t) v = static_cast<float>(r.normal());
  return t;
}

// The reference point: one OpenBLAS sgemm.
void bm_sgemm(benchmark::State& state) {
  const std::int64_t m = state.range(0), n = state.range(1), kk = state.range(2);
  auto a = random_tensor({m, kk}, 1), b = random_tensor({kk, n}, 2);
  tensor<float> c({m, n});
  for (auto _ : state) {
    k::gemm(k::trans::no, k::trans::no, m, n, kk, 1.f, a.data(), kk, b.data(), n, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["FLOPS"] = benchmark::Counter(2.0 * m * n * kk, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(bm_sgemm)->Args({2048, 2048, 2048})->Args({32, 16384, 288})->Unit(benchmark::kMillisecond)->UseRealTime();

// The bf16 product (operands rounded while packing, float sums) on the same shapes, and on
// the Winograd F(4×4) GEMMs of the 32- and 128-channel levels ([Co,Ci]·[Ci,tiles]).
void bm_gemm_bf16(benchmark::State& state) {
  if (!k::cpu_has_avx512_bf16()) {
    state.SkipWithError("this CPU lacks AVX512-BF16");
    return;
  }
  const std::int64_t m = state.range(0), n = state.range(1), kk = state.range(2);
  auto a = random_tensor({m, kk}, 1), b = random_tensor({kk, n}, 2);
  tensor<float> c({m, n});
  for (auto _ : state) {
    k::gemm_bf16(false, false, m, n, kk, 1.f, a.data(), kk, b.data(), n, 0.f, c.data(), n);
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["FLOPS"] = benchmark::Counter(2.0 * m * n * kk, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(bm_gemm_bf16)->Args({2048, 2048, 2048})->Args({32, 16384, 288})->Args({32, 96, 32})->Args({128, 28, 128})
    ->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(bm_sgemm)->Args({32, 96, 32})->Args({128, 28, 128})->Unit(benchmark::kMillisecond)->UseRealTime();

enum class pass { forward, backward_data, backward_filter, backward_all };

// args: Ci, Co, H (=W, input), K, stride
template <pass P>
void bm_conv(benchmark::State& state) {
  const std::int64_t n = 8, ci = state.range(0), co = state.range(1), h = state.range(2),
                     kk = state.range(3);
  const int stride = static_cast<int>(state.range(4));
  const ops::conv2d_params p{stride, -1};
  auto x = random_tensor({n, ci, h, h}, 3);
  auto w = random_tensor({co, ci, kk, kk}, 4);
  auto b = random_tensor({co}, 5);
  const shape ys = ops::conv2d_output_shape(x.shape(), w.shape(), p);
  auto dy = random_tensor(ys, 6);
  tensor<float> y(ys), dx(x.shape());
  auto dw = tensor<float>::zeros(w.shape());
  auto db = tensor<float>::zeros({co});
  workspace<cpu> ws;
  for (auto _ : state) {
    if constexpr (P == pass::forward) ops::conv2d_forward(x, w, b, y.view(), p, ws);
    if constexpr (P == pass::backward_data)
      ops::conv2d_backward(x, w, dy, dx, tensor_view<float>{}, {}, p, ws);
    if constexpr (P == pass::backward_filter)
      ops::conv2d_backward(x, w, dy, {}, dw.view(), db, p, ws);
    if constexpr (P == pass::backward_all) ops::conv2d_backward(x, w, dy, dx, dw.view(), db, p, ws);
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * n * co * ys[2] * ys[3] * ci * kk * kk * (P == pass::backward_all ? 2 : 1);
  state.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
}

void conv_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"ci", "co", "hw", "k", "s"});
  b->Args({32, 32, 128, 3, 1});
  b->Args({32, 32, 128, 3, 2});
  b->Args({64, 64, 32, 3, 1});
  b->Args({128, 128, 16, 3, 1});
  b->Args({96, 64, 32, 3, 1});
  b->Args({256, 128, 16, 3, 1});
  b->Args({64, 32, 128, 3, 1});   // first decoder level
  b->Args({64, 32, 128, 1, 1});   // its 1×1 skip
  b->Unit(benchmark::kMillisecond)->UseRealTime();
}
BENCHMARK_TEMPLATE(bm_conv, pass::forward)->Apply(conv_shapes);
BENCHMARK_TEMPLATE(bm_conv, pass::backward_data)->Apply(conv_shapes);
BENCHMARK_TEMPLATE(bm_conv, pass::backward_filter)->Apply(conv_shapes);

// args: C, H (=W)
template <bool Backward>
void bm_group_norm(benchmark::State& state) {
  const std::int64_t n = 8, c = state.range(0), h = state.range(1);
  const int groups = 32;
  auto x = random_tensor({n, c, h, h}, 7);
  auto gamma = random_tensor({c}, 8), beta = random_tensor({c}, 9);
  auto dy = random_tensor(x.shape(), 10);
  tensor<float> y(x.shape()), mean({n, groups}), rstd({n, groups}), dx(x.shape());
  auto dgamma = tensor<float>::zeros({c}), dbeta = tensor<float>::zeros({c});
  ops::group_norm_forward(x, gamma, beta, groups, 1e-5, y.view(), mean, rstd);
  for (auto _ : state) {
    if constexpr (Backward)
      ops::group_norm_backward(x, gamma, mean, rstd, dy, groups, dx.view(), dgamma, dbeta);
    else
      ops::group_norm_forward(x, gamma, beta, groups, 1e-5, y.view(), mean, rstd);
    benchmark::ClobberMemory();
  }
  // bytes moved: forward reads x twice (two-pass statistics) and x again, writes y;
  // backward reads x, dy twice and writes dx
  const double bytes = sizeof(float) * static_cast<double>(x.numel()) * (Backward ? 5 : 4);
  state.counters["bytes"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_TEMPLATE(bm_group_norm, false)->Args({32, 128})->Args({128, 16})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_group_norm, true)->Args({32, 128})->Args({128, 16})->Unit(benchmark::kMillisecond)->UseRealTime();

// The fused group norm + SiLU (what a ResBlock's in_layers need), forward / backward.
template <bool Backward>
void bm_group_norm_silu(benchmark::State& state) {
  const std::int64_t n = 8, c = state.range(0), h = state.range(1);
  const int groups = 32;
  auto x = random_tensor({n, c, h, h}, 7);
  auto gamma = random_tensor({c}, 8), beta = random_tensor({c}, 9);
  auto dy = random_tensor(x.shape(), 10);
  tensor<float> y(x.shape()), mean({n, groups}), rstd({n, groups}), dx(x.shape());
  auto dgamma = tensor<float>::zeros({c}), dbeta = tensor<float>::zeros({c});
  ops::group_norm_silu_forward(x, gamma, beta, groups, 1e-5, y.view(), mean, rstd);
  for (auto _ : state) {
    if constexpr (Backward)
      ops::group_norm_silu_backward(x, gamma, beta, mean, rstd, dy, groups, dx.view(), dgamma, dbeta);
    else
      ops::group_norm_silu_forward(x, gamma, beta, groups, 1e-5, y.view(), mean, rstd);
    benchmark::ClobberMemory();
  }
  const double bytes = sizeof(float) * static_cast<double>(x.numel()) * (Backward ? 6 : 4);
  state.counters["bytes"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_TEMPLATE(bm_group_norm_silu, false)->Args({32, 128})->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_group_norm_silu, true)->Args({32, 128})->Unit(benchmark::kMillisecond)->UseRealTime();

void bm_silu(benchmark::State& state) {
  auto x = random_tensor({8, 32, 128, 128}, 11);
  tensor<float> y(x.shape());
  for (auto _ : state) {
    ops::silu_forward(x, y.view());
    benchmark::ClobberMemory();
  }
  state.counters["bytes"] = benchmark::Counter(8.0 * x.numel(), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(bm_silu)->Unit(benchmark::kMillisecond)->UseRealTime();

// x [8, 128, 256] (C = 128 at 16×16), 4 heads: qkv [8, 384, 256]
template <bool Backward>
void bm_attention(benchmark::State& state) {
  const std::int64_t b = 8, c = 128, t = 256;
  const int heads = 4;
  auto qkv = random_tensor({b, 3 * c, t}, 12);
  auto dy = random_tensor({b, c, t}, 13);
  tensor<float> y({b, c, t}), probs({b * heads, t, t}), dqkv(qkv.shape());
  workspace<cpu> ws;
  ops::attention_forward(qkv, heads, y.view(), probs, ws);
  for (auto _ : state) {
    if constexpr (Backward)
      ops::attention_backward(qkv, probs, dy, heads, dqkv.view(), ws);
    else
      ops::attention_forward(qkv, heads, y.view(), probs, ws);
    benchmark::ClobberMemory();
  }
  const double per_gemm = 2.0 * t * t * (c / heads) * b * heads;
  state.counters["FLOPS"] = benchmark::Counter(per_gemm * (Backward ? 4 : 2), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_TEMPLATE(bm_attention, false)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_TEMPLATE(bm_attention, true)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
