// The whole network on the GPU at the paper's shapes (reference config, 128×128, float
// tensors; the second argument picks the GEMMs' and convolutions' precision: 0 fp32 (no
// TF32), 1 tf32, 2 bf16, 3 fp16, core/cuda_context.hpp): UNet forward (inference), one
// training step (noise drawn on the
// host, facade, forward, x-space loss, backward, clip 1.0, AdamW) and 10-step sampling
// (DDIM and DDPM, noise from the host rng), at batch 8 and 16. Timed with CUDA events on
// the stream of the network's context around each iteration, so the host's share (noise
// draws, copies, the loss read-back, cuDNN/cuBLAS launches) counts wherever the GPU waits
// for it. The first iteration (cuDNN plan building, workspace growth) runs before timing.
// The same cases for PyTorch: benchmarks/peer/torch_unet_bench_gpu.py.
//
// Compiled by the C++ compiler (benchmarks/CMakeLists.txt sets LANGUAGE CXX on this file):
// it includes nn/ and the CPU op layer, which nvcc must not see. The .cu suffix keeps the
// CPU-only bm_*.cpp glob from picking it up. Without a GPU every case reports "no CUDA
// device".
#include <benchmark/benchmark.h>
#include <cuda_runtime_api.h>

#include <ambiseg/core/cuda_context.hpp>
#include <ambiseg/core/cuda_memory.hpp>
#include <ambiseg/diffusion/cuda.hpp>
#include <ambiseg/models/diffusion_segmenter.hpp>
#include <ambiseg/nn/unet.hpp>
#include <ambiseg/optim/adamw.hpp>
#include <ambiseg/optim/clip.hpp>

#include <cstdint>

using namespace ambiseg;

namespace {

constexpr std::int64_t image_size = 128;

tensor<float, cuda> random_device(shape s, rng& g, bool binary = false) {
  tensor<float> h(s);
  for (auto& v : h) {
    const double u = g.normal();
    v = binary ? (u > 0 ? 1.f : -1.f) : static_cast<float>(u);
  }
  tensor<float, cuda> d(s);
  copy_to_device<float>(h.cview(), d.view());
  return d;
}

constexpr cuda_precision precisions[] = {cuda_precision::fp32, cuda_precision::tf32,
                                         cuda_precision::bf16, cuda_precision::fp16};

// The case's own context with the precision of its second argument, current for the case.
struct precision_scope {
  explicit precision_scope(benchmark::State& state)
      : ctx({.precision = precisions[state.range(1)]}), scope(ctx) {
    state.SetLabel(precision_name(ctx.options().precision));
  }
  cuda_context ctx;
  cuda_context_scope scope;
};

bool skip_without_gpu(benchmark::State& state) {
  if (cuda_available()) return false;
  state.SkipWithError("no CUDA device");
  for (auto _ : state) {
  }
  return true;
}

template <class F>
void run_timed(benchmark::State& state, F&& fn) {
  fn();  // warm-up: cuDNN plans for every conv shape, workspaces, cuBLAS
  cudaStream_t stream = current_cuda_context().stream();
  cudaEvent_t start, stop;
  cuda_check(cudaEventCreate(&start), "cudaEventCreate");
  cuda_check(cudaEventCreate(&stop), "cudaEventCreate");
  for (auto _ : state) {
    cuda_check(cudaEventRecord(start, stream), "cudaEventRecord");
    fn();
    cuda_check(cudaEventRecord(stop, stream), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
    state.SetIterationTime(ms / 1e3);
  }
  (void)cudaEventDestroy(start);
  (void)cudaEventDestroy(stop);
}

using diffusion_t = diffusion::reference_config_diffusion;
using gpu_denoiser = models::unet_denoiser<cuda>;

void bm_cuda_unet_forward(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const precision_scope on(state);
  const std::int64_t n = state.range(0);
  nn::unet<float, cuda> net(nn::unet_config::reference(), 1);
  rng g(2);
  const auto x = random_device({n, 1, image_size, image_size}, g);
  const auto img = random_device({n, 3, image_size, image_size}, g);
  tensor<float> t_host(shape{n});
  for (auto& v : t_host) v = static_cast<float>(g.uniform());
  tensor<float, cuda> t(shape{n});
  copy_to_device<float>(t_host.cview(), t.view());
  net.reserve(n, image_size, image_size, nn::pass::inference);
  run_timed(state, [&] { net.forward(x.cview(), img.cview(), t.cview(), nn::pass::inference); });
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
}

void bm_cuda_unet_train_step(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const precision_scope on(state);
  const std::int64_t n = state.range(0);
  nn::unet<float, cuda> net(nn::unet_config::reference(), 1);
  optim::adamw<float, cuda> opt(net.parameters());
  diffusion::cuda_diffusion<diffusion_t> diff(diffusion_t(diffusion::make_reference_schedule(0.1)));
  diffusion::cuda_training_batch<float> batch;
  rng g(3);
  const auto x0 = random_device({n, 1, image_size, image_size}, g, true);
  const auto img = random_device({n, 3, image_size, image_size}, g);
  net.reserve(n, image_size, image_size, nn::pass::training);
  gpu_denoiser denoiser(net, nn::pass::training);
  // The step as trainer<·, cuda> runs it: everything enqueued, the update guarded on the
  // device by the loss and the norm, one wait at the end for the report.
  tensor<double, cuda> report(shape{n + 2});  // per-sample losses, loss, gradient norm
  const tensor_view<double, cuda> losses(report.data(), shape{n + 1}), norm(report.data() + n + 1, shape{1});
  const tensor_view<const double, cuda> guard(report.data() + n, shape{2});
  run_timed(state, [&] {
    diff.draw_training_noise(x0.shape(), g, batch);
    diff.training_loss_async(denoiser, x0.cview(), img.cview(), batch, losses);
    net.parameters().zero_grad();
    net.backward(batch.grad_f.cview());
    optim::clip_grad_norm_async(net.parameters(), 1.0, norm);
    opt.step(net.parameters(), guard);
    double host[2];
    read_back<cuda>(host, guard.data(), sizeof host);
    benchmark::DoNotOptimize(host[0]);
  });
  state.counters["images/s"] =
      benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
}

template <class Sampler>
void bm_cuda_unet_sample10(benchmark::State& state) {
  if (skip_without_gpu(state)) return;
  const precision_scope on(state);
  const std::int64_t n = state.range(0);
  nn::unet<float, cuda> net(nn::unet_config::reference(), 1);
  diffusion::cuda_diffusion<diffusion_t> diff(diffusion_t(diffusion::make_reference_schedule(0.1)));
  rng g(4);
  const auto img = random_device({n, 3, image_size, image_size}, g);
  net.reserve(n, image_size, image_size, nn::pass::inference);
  gpu_denoiser denoiser(net, nn::pass::inference);
  diffusion::sampling_options opts;
  opts.steps = 10;
  run_timed(state, [&] {
    // n images, one chain each: the batch the network sees is n
    benchmark::DoNotOptimize(diff.sample(denoiser, Sampler{}, img.cview(), 1, g, opts).data());
  });
  state.counters["masks/s"] =
      benchmark::Counter(static_cast<double>(n) * state.iterations(), benchmark::Counter::kIsRate);
}

}  // namespace

// {batch, precision}: fp16 does not train (no loss scaling).
BENCHMARK(bm_cuda_unet_forward)
    ->ArgsProduct({{8, 16}, {0, 1, 2, 3}})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(bm_cuda_unet_train_step)
    ->ArgsProduct({{8, 16}, {0, 1, 2}})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(bm_cuda_unet_sample10, diffusion::ddim_sampler)
    ->ArgsProduct({{8, 16}, {0, 2}})->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK_TEMPLATE(bm_cuda_unet_sample10, diffusion::ddpm_large)
    ->ArgsProduct({{8, 16}, {0, 2}})->UseManualTime()->Unit(benchmark::kMillisecond);

BENCHMARK_MAIN();
