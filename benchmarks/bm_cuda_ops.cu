// CUDA op micro-benchmarks at the UNet's shapes (batch 8, 128×128 input, float), the same
// cases as bm_ops.cpp. Each iteration is timed on the GPU with CUDA events around the op
// (manual time), so host launch overhead that overlaps the GPU is not counted; the first
// call of every case runs before timing (it builds the cuDNN plans and grows workspaces).
// Without a GPU every case reports "no CUDA device" and is skipped.
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <ambiseg/core/cuda_context.hpp>
#include <ambiseg/core/cuda_memory.hpp>
#include <ambiseg/ops/cuda/api.hpp>
#include <ambiseg/optim/cuda/api.hpp>

#include <cstdint>
#include <random>

using namespace ambiseg;
namespace ck = ambiseg::ops::cuda_kernels;

namespace {

tensor<float, cuda> random_device(shape s, std::uint32_t seed) {
  tensor<float> h(s);
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  for (auto& v : h) v = dist(gen);
  tensor<float, cuda> d(s);
  copy_to_device<float>(h.cview(), d.view());
  return d;
}

// Times fn() on the context's stream with events; one sample per iteration.
template <class F>
void run_timed(benchmark::State& state, cuda_context& ctx, F&& fn) {
  fn();  // warm-up: plans, workspaces, cuBLAS handles' own allocations
  cudaEvent_t start, stop;
  cuda_check(cudaEventCreate(&start), "cudaEventCreate");
  cuda_check(cudaEventCreate(&stop), "cudaEventCreate");
  for (auto _ : state) {
    cuda_check(cudaEventRecord(start, ctx.stream()), "cudaEventRecord");
    fn();
    cuda_check(cudaEventRecord(stop, ctx.stream()), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms / 1e3);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
}

bool skip_without_gpu(benchmark::State& state) {
  if (cuda_available()) return false;
  state.SkipWithError("no CUDA device");
  for (auto _ : state) {
  }
  return true;
}

enum class pass { forward, backward_data, backward_filter };

constexpr cuda_precision precisions[] = {cuda_precision::fp32, cuda_precision::tf32,
                                         cuda_precision::bf16, cuda_precision::fp16};

// args: Ci, Co, H (=W, input), K, stride, 1×1 stride-1 path (1 = cuBLAS, the default; 0 = cuDNN),
// precision (0 fp32, 1 tf32, 2 bf16, 3 fp16: core/cuda_context.hpp; bf16/fp16 time includes
// rounding the inputs to 16 bits and widening the result)
template <pass P>
void bm_cuda_conv(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  cuda_context ctx({.precision = precisions[state.range(6)],
                    .pointwise = state.range(5) ? conv1x1_path::cublas : conv1x1_path::cudnn});
  cuda_context_scope scope(ctx);
  const std::int64_t n = 8, ci = state.range(0), co = state.range(1), h = state.range(2),
                     kk = state.range(3);
  const int stride = static_cast<int>(state.range(4));
  const std::int64_t pad = kk / 2, ho = (h + 2 * pad - kk) / stride + 1;
  auto x = random_device({n, ci, h, h}, 3), w = random_device({co, ci, kk, kk}, 4);
  auto b = random_device({co}, 5), dy = random_device({n, co, ho, ho}, 6);
  tensor<float, cuda> y(shape{n, co, ho, ho}), dx(x.shape()), dw(w.shape()), db(shape{co});
  dw.zero();
  db.zero();
  workspace<cuda> ws;
  run_timed(state, ctx, [&] {
    if constexpr (P == pass::forward) ck::conv2d_forward(x.cview(), w.cview(), b.cview(), y.view(), stride, -1, ws);
    if constexpr (P == pass::backward_data)
      ck::conv2d_backward(x.cview(), w.cview(), dy.cview(), dx.view(), {}, {}, stride, -1, ws);
    if constexpr (P == pass::backward_filter)
      ck::conv2d_backward(x.cview(), w.cview(), dy.cview(), {}, dw.view(), db.view(), stride, -1, ws);
  });
  const double flops = 2.0 * n * co * ho * ho * ci * kk * kk;
  state.counters["FLOPS"] = benchmark::Counter(flops, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["ws_MiB"] = static_cast<double>(ws.bytes()) / (1 << 20);
}

void conv_shapes(benchmark::internal::Benchmark* b) {
  b->ArgNames({"ci", "co", "hw", "k", "s", "gemm1x1", "prec"});
  for (const std::int64_t prec : {0, 1, 2}) {
    b->Args({32, 32, 128, 3, 1, 1, prec});
    b->Args({32, 32, 128, 3, 2, 1, prec});
    b->Args({64, 64, 32, 3, 1, 1, prec});
    b->Args({128, 128, 16, 3, 1, 1, prec});
    b->Args({96, 64, 32, 3, 1, 1, prec});
    b->Args({256, 128, 16, 3, 1, 1, prec});
    b->Args({64, 32, 128, 3, 1, 1, prec});
  }
  // The 1×1 shapes of the reference UNet (skip projection at 128², attention qkv at 16²),
  // each through cuBLAS and through cuDNN: the measurement behind conv1x1_path's default.
  for (const std::int64_t gemm : {1, 0}) {
    b->Args({64, 32, 128, 1, 1, gemm, 0});
    b->Args({128, 384, 16, 1, 1, gemm, 0});
  }
  b->Args({64, 32, 128, 1, 1, 1, 2});
  b->Args({128, 384, 16, 1, 1, 1, 2});
  b->UseManualTime()->Unit(benchmark::kMicrosecond);
}
BENCHMARK_TEMPLATE(bm_cuda_conv, pass::forward)->Apply(conv_shapes);
BENCHMARK_TEMPLATE(bm_cuda_conv, pass::backward_data)->Apply(conv_shapes);
BENCHMARK_TEMPLATE(bm_cuda_conv, pass::backward_filter)->Apply(conv_shapes);

// args: C, H (=W); 32 groups
template <bool Backward>
void bm_cuda_group_norm(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  cuda_context ctx;
  cuda_context_scope scope(ctx);
  const std::int64_t n = 8, c = state.range(0), h = state.range(1);
  const int groups = 32;
  auto x = random_device({n, c, h, h}, 7), dy = random_device({n, c, h, h}, 8);
  auto gamma = random_device({c}, 9), beta = random_device({c}, 10);
  tensor<float, cuda> y(x.shape()), dx(x.shape()), mean(shape{n, groups}), rstd(shape{n, groups});
  tensor<float, cuda> dg(shape{c}), dbeta(shape{c});
  dg.zero();
  dbeta.zero();
  ck::group_norm_forward(x.cview(), gamma.cview(), beta.cview(), groups, 1e-5, y.view(), mean.view(), rstd.view());
  run_timed(state, ctx, [&] {
    if constexpr (Backward)
      ck::group_norm_backward(x.cview(), gamma.cview(), mean.cview(), rstd.cview(), dy.cview(), groups,
                              dx.view(), dg.view(), dbeta.view());
    else
      ck::group_norm_forward(x.cview(), gamma.cview(), beta.cview(), groups, 1e-5, y.view(),
                             mean.view(), rstd.view());
  });
  const double bytes = 4.0 * x.numel() * (Backward ? 5 : 3);  // reads + writes
  state.counters["bytes"] = benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_TEMPLATE(bm_cuda_group_norm, false)->Args({32, 128})->Args({128, 16})->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_cuda_group_norm, true)->Args({32, 128})->Args({128, 16})->UseManualTime()->Unit(benchmark::kMicrosecond);

// x [8, 128, 256] (C = 128 at 16×16), 4 heads: qkv [8, 384, 256]
template <bool Backward>
void bm_cuda_attention(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  cuda_context ctx;
  cuda_context_scope scope(ctx);
  const std::int64_t b = 8, c = 128, t = 256;
  const int heads = 4;
  auto qkv = random_device({b, 3 * c, t}, 12), dy = random_device({b, c, t}, 13);
  tensor<float, cuda> y(shape{b, c, t}), probs(shape{b * heads, t, t}), dqkv(qkv.shape());
  workspace<cuda> ws;
  ck::attention_forward(qkv.cview(), heads, y.view(), probs.view(), ws);
  run_timed(state, ctx, [&] {
    if constexpr (Backward)
      ck::attention_backward(qkv.cview(), probs.cview(), dy.cview(), heads, dqkv.view(), ws);
    else
      ck::attention_forward(qkv.cview(), heads, y.view(), probs.view(), ws);
  });
  const double per_gemm = 2.0 * t * t * (c / heads) * b * heads;
  state.counters["FLOPS"] = benchmark::Counter(per_gemm * (Backward ? 4 : 2), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK_TEMPLATE(bm_cuda_attention, false)->UseManualTime()->Unit(benchmark::kMicrosecond);
BENCHMARK_TEMPLATE(bm_cuda_attention, true)->UseManualTime()->Unit(benchmark::kMicrosecond);

// AdamW over the reference UNet's 6,891,905 parameters.
void bm_cuda_adamw(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  cuda_context ctx;
  cuda_context_scope scope(ctx);
  const std::int64_t n = 6'891'905;
  auto p = random_device({n}, 14), g = random_device({n}, 15);
  auto m = tensor<float, cuda>::zeros(shape{n}), v = tensor<float, cuda>::zeros(shape{n});
  const auto s = optim::adamw_step_scalars<float>::make(optim::adamw_options{}, 1);
  run_timed(state, ctx,
            [&] { optim::cuda_kernels::adamw_step(p.view(), g.cview(), m.view(), v.view(), s); });
  state.counters["bytes"] = benchmark::Counter(4.0 * n * 7, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(bm_cuda_adamw)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
