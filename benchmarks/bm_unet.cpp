// The reference UNet on the CPU: forward (sampling) and a full training step, plus the
// layers that dominate them. Compare with benchmarks/peer/torch_unet_bench.py
// (benchmarks/peer/compare.sh runs both). Run with OMP_NUM_THREADS set.
//
// FLOP counts: the reference forward costs 9.30 GFLOP per 128×128 image (multiply-add = 2),
// a training step ≈ 3× the forward; both scale with H·W.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "ambiseg/core/parallel.hpp"
#include "ambiseg/data/synthetic.hpp"
#include "ambiseg/nn/all.hpp"
#include "ambiseg/ops/all.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/clip.hpp"
#include "ambiseg/train/sampling.hpp"
#include "ambiseg/train/trainer.hpp"

using namespace ambiseg;

namespace {

constexpr double forward_gflop_128 = 9.30;

double forward_flop(std::int64_t batch, std::int64_t size) {
  return forward_gflop_128 * 1e9 * batch * (size / 128.0) * (size / 128.0);
}

tensor<float> normal(shape s, rng& gen, double scale = 1.0) {
  tensor<float> t(s);
  for (auto& v : t) v = static_cast<float>(scale * gen.normal());
  return t;
}

struct inputs {
  tensor<float> x_t, image, t, x0;
  inputs(std::int64_t n, std::int64_t size, rng& gen)
      : x_t(normal(shape{n, 1, size, size}, gen)),
        image(normal(shape{n, 3, size, size}, gen)),
        t(shape{n}),
        x0(shape{n, 1, size, size}) {
    for (auto& v : t) v = static_cast<float>(gen.uniform());
    for (auto& v : x0) v = gen.uniform() < 0.5 ? -1.f : 1.f;
  }
};

void set_counters(benchmark::State& state, double flop_per_iter) {
  state.counters["GFLOP/s"] = benchmark::Counter(flop_per_iter * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = num_threads();
}

// Sampling: one network evaluation of a batch (args: batch, size).
void BM_unet_forward(benchmark::State& state) {
  const std::int64_t n = state.range(0), size = state.range(1);
  nn::unet<float> net(nn::unet_config::reference(), 1);
  rng gen(2);
  inputs in(n, size, gen);
  net.reserve(n, size, size, nn::pass::inference);
  net.forward(in.x_t, in.image, in.t);  // warm-up: first touch of the buffers
  for (auto _ : state) {
    auto f = net.forward(in.x_t, in.image, in.t);
    benchmark::DoNotOptimize(f.data());
  }
  set_counters(state, forward_flop(n, size));
  state.counters["activation_MB"] = net.activation_bytes() / 1e6;
}
BENCHMARK(BM_unet_forward)->Args({8, 128})->Args({16, 128})->Unit(benchmark::kMillisecond)->UseRealTime();

// A full step: forward, x-space MSE, backward, clip to norm 1, AdamW (args: batch, size).
void BM_unet_train_step(benchmark::State& state) {
  const std::int64_t n = state.range(0), size = state.range(1);
  nn::unet<float> net(nn::unet_config::reference(), 1);
  auto& params = net.parameters();
  optim::adamw<float> opt(params.flat_values().numel());
  rng gen(3);
  inputs in(n, size, gen);
  tensor<float> df(in.x0.shape());
  auto step = [&] {
    params.zero_grad();
    const auto f = net.forward(in.x_t, in.image, in.t, nn::pass::training);
    const float scale = 2.0f / static_cast<float>(f.numel());  // d mean((f − x0)²) / df
    for (std::int64_t i = 0; i < f.numel(); ++i) df[i] = scale * (f[i] - in.x0[i]);
    net.backward(df);
    optim::clip_grad_norm(params, 1.0);
    opt.step(params.flat_values(), params.flat_grads());
  };
  net.reserve(n, size, size, nn::pass::training);
  step();  // warm-up
  const auto allocations = net.allocations();
  for (auto _ : state) step();
  set_counters(state, 3 * forward_flop(n, size));
  state.counters["activation_MB"] = net.activation_bytes() / 1e6;
  state.counters["steady_allocs"] = static_cast<double>(net.allocations() - allocations);
}
BENCHMARK(BM_unet_train_step)->Args({8, 128})->Args({8, 64})->Unit(benchmark::kMillisecond)->UseRealTime();

// One train::trainer step of the diffusion model through the model registry (batch drawn
// and cropped, noise, UNet forward and backward, the loss on the runner, clip, AdamW, EMA):
// the whole orchestration around the network of BM_unet_train_step (args: batch, crop).
void BM_trainer_step(benchmark::State& state) {
  const std::int64_t n = state.range(0), size = state.range(1);
  train::trainer_config c;
  c.model = models::diffusion_spec({nn::unet_config::reference(), {}});
  c.batch_size = n;
  c.crop_size = size;
  c.ema_decay = 0.999;
  c.lr = {1e-4, 10, 1'000'000, 0};
  const auto cases = data::synthetic_lesions({.size = size, .seed = 0}).make_cases(0, 64);
  train::trainer<data::case_set> t(c, cases);
  t.step();  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(t.step().loss);
  state.counters["threads"] = num_threads();
}
BENCHMARK(BM_trainer_step)->Args({8, 64})->Unit(benchmark::kMillisecond)->UseRealTime();

// Sampling as a user runs it: `chains` masks of one image, 10 DDPM steps (10 network
// evaluations at batch `chains` plus the sampler's arithmetic), through train::sample_masks
// on the reference diffusion model (args: chains, size). benchmarks/peer's sample_16_128.
void BM_sample(benchmark::State& state) {
  const std::int64_t chains = state.range(0), size = state.range(1);
  train::trainer_config c;
  c.model = models::diffusion_spec({nn::unet_config::reference(), {}});
  c.batch_size = 1;
  c.crop_size = size;
  const auto cases = data::synthetic_lesions({.size = size, .seed = 0}).make_cases(0, 2);
  train::trainer<data::case_set> t(c, cases);
  tensor<float> image(shape{1, cases[0].image.size(0), size, size});  // [1, C, H, W]
  std::copy(cases[0].image.data(), cases[0].image.data() + image.numel(), image.data());
  const train::sample_options options{.n = static_cast<int>(chains), .steps = 10, .sampler = "ddpm"};
  rng g(7);
  benchmark::DoNotOptimize(train::sample_masks(t.model(), image.cview(), options, g).masks.data());  // warm-up
  for (auto _ : state) benchmark::DoNotOptimize(train::sample_masks(t.model(), image.cview(), options, g).masks.data());
  set_counters(state, 10 * forward_flop(chains, size));
}
BENCHMARK(BM_sample)->Args({16, 128})->Unit(benchmark::kMillisecond)->UseRealTime();

// --- the layers behind the figures above (batch 8, 128×128 input) -----------------------
// conv3x3 at each level's shape (args: Ci, Co, H): forward, and backward with dx and dw.
void BM_layer_conv3x3_forward(benchmark::State& state) {
  const std::int64_t n = 8, ci = state.range(0), co = state.range(1), h = state.range(2);
  rng gen(4);
  auto x = normal(shape{n, ci, h, h}, gen), w = normal(shape{co, ci, 3, 3}, gen, 0.05);
  auto b = normal(shape{co}, gen);
  tensor<float> y(shape{n, co, h, h});
  workspace<cpu> ws;
  for (auto _ : state) ops::conv2d_forward(x, w, b, y.view(), {}, ws);
  set_counters(state, 2.0 * n * co * ci * 9 * h * h);
}
void BM_layer_conv3x3_backward(benchmark::State& state) {
  const std::int64_t n = 8, ci = state.range(0), co = state.range(1), h = state.range(2);
  rng gen(4);
  auto x = normal(shape{n, ci, h, h}, gen), w = normal(shape{co, ci, 3, 3}, gen, 0.05);
  auto dy = normal(shape{n, co, h, h}, gen);
  tensor<float> dx(x.shape()), dw(w.shape()), db(shape{co});
  workspace<cpu> ws;
  for (auto _ : state) ops::conv2d_backward(x, w, dy, dx.view(), dw.view(), db.view(), {}, ws);
  set_counters(state, 4.0 * n * co * ci * 9 * h * h);
}
#define AMBISEG_CONV_SHAPES                                                                    \
  Args({32, 32, 128})->Args({64, 32, 128})->Args({32, 32, 64})->Args({64, 32, 64})->          \
      Args({32, 64, 32})->Args({64, 64, 32})->Args({128, 64, 32})->Args({64, 128, 16})->      \
      Args({128, 128, 16})->Args({256, 128, 16})
BENCHMARK(BM_layer_conv3x3_forward)->AMBISEG_CONV_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_layer_conv3x3_backward)->AMBISEG_CONV_SHAPES->Unit(benchmark::kMillisecond)->UseRealTime();

// GroupNorm + SiLU forward and backward at [8, C, H, H] (args: C, H).
void BM_layer_groupnorm_silu(benchmark::State& state) {
  const std::int64_t n = 8, c = state.range(0), h = state.range(1);
  const int groups = nn::unet_config::groups_for(c);
  rng gen(5);
  auto x = normal(shape{n, c, h, h}, gen), dy = normal(shape{n, c, h, h}, gen);
  tensor<float> gamma(shape{c}), beta(shape{c}), dgamma(shape{c}), dbeta(shape{c});
  gamma.fill(1.f);
  beta.fill(0.f);
  tensor<float> y(x.shape()), a(x.shape()), dx(x.shape()), mean(shape{n, groups}),
      rstd(shape{n, groups});
  for (auto _ : state) {
    ops::group_norm_forward(x, gamma, beta, groups, 1e-5, y.view(), mean.view(), rstd.view());
    ops::silu_forward(y, a.view());
    ops::silu_backward(y, dy, a.view());
    ops::group_norm_backward(x, gamma, mean, rstd, a, groups, dx.view(), dgamma.view(), dbeta.view());
  }
  state.counters["GB/s"] = benchmark::Counter(4.0 * 8 * x.numel() * sizeof(float) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_layer_groupnorm_silu)->Args({32, 128})->Args({64, 128})->Args({64, 32})->Unit(benchmark::kMillisecond)->UseRealTime();

// The fused GroupNorm+SiLU the ResBlocks and the head use: forward, backward (args: C, H).
// GB/s counts the bytes that must cross memory: forward x, y; backward x, dy, dx.
void BM_layer_groupnorm_silu_fused(benchmark::State& state) {
  const std::int64_t n = 8, c = state.range(0), h = state.range(1);
  const int groups = nn::unet_config::groups_for(c);
  rng gen(5);
  auto x = normal(shape{n, c, h, h}, gen), dy = normal(shape{n, c, h, h}, gen);
  tensor<float> gamma(shape{c}), beta(shape{c}), dgamma(shape{c}), dbeta(shape{c});
  gamma.fill(1.f);
  beta.fill(0.f);
  tensor<float> y(x.shape()), dx(x.shape()), mean(shape{n, groups}), rstd(shape{n, groups});
  for (auto _ : state) {
    ops::group_norm_silu_forward(x, gamma, beta, groups, 1e-5, y.view(), mean.view(), rstd.view());
    ops::group_norm_silu_backward(x, gamma, beta, mean, rstd, dy, groups, dx.view(), dgamma.view(),
                                  dbeta.view());
  }
  state.counters["GB/s"] = benchmark::Counter(5.0 * x.numel() * sizeof(float) * 1e-9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_layer_groupnorm_silu_fused)->Args({32, 128})->Args({64, 128})->Args({64, 32})->Unit(benchmark::kMillisecond)->UseRealTime();

// Attention at the lowest level: [8, 128, 16×16], 4 heads, forward + backward.
void BM_layer_attention(benchmark::State& state) {
  const std::int64_t n = 8, c = 128, t = 256;
  const int heads = 4;
  rng gen(6);
  auto qkv = normal(shape{n, 3 * c, t}, gen), dy = normal(shape{n, c, t}, gen);
  tensor<float> y(shape{n, c, t}), probs(shape{n * heads, t, t}), dqkv(qkv.shape());
  workspace<cpu> ws;
  for (auto _ : state) {
    ops::attention_forward(qkv, heads, y.view(), probs.view(), ws);
    ops::attention_backward(qkv, probs, dy, heads, dqkv.view(), ws);
  }
  set_counters(state, 3.0 * 2 * 2.0 * n * c * t * t);
}
BENCHMARK(BM_layer_attention)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
