// Where the reference UNet's time goes on the CPU, op by op (core/profile.hpp): a training
// step (forward, x-space MSE, backward, clip, AdamW) or a forward, at a batch and size.
//
//   profile_unet [train|forward] [batch] [size] [steps] [off|f2|f4] [fp32|bf16]
//   (default: train 8 128 3 f4 fp32)
//
// Prints one row per (op, shape): calls and milliseconds per step, share of the step, and
// GFLOP/s where the op does arithmetic (convolutions, attention). "outside the ops" is the
// step's time minus the timed ops: the loss, clipping, AdamW and the network's own glue.
// Run with OMP_NUM_THREADS set; the first step (buffers' first touch) is not counted.
// The fifth argument picks the 3×3 convolutions' Winograd tile (off: the GEMM-lowered paths),
// the sixth the precision of the matrix products (ops/cpu/gemm.hpp).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "ambiseg/core/parallel.hpp"
#include "ambiseg/core/profile.hpp"
#include "ambiseg/nn/all.hpp"
#include "ambiseg/ops/cpu/conv2d.hpp"
#include "ambiseg/optim/adamw.hpp"
#include "ambiseg/optim/clip.hpp"

using namespace ambiseg;

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "train";
  const std::int64_t n = argc > 2 ? std::atoll(argv[2]) : 8, size = argc > 3 ? std::atoll(argv[3]) : 128;
  const int steps = argc > 4 ? std::atoi(argv[4]) : 3;
  const std::string tile = argc > 5 ? argv[5] : "f4";
  const std::string precision = argc > 6 ? argv[6] : "fp32";
  if ((mode != "train" && mode != "forward") || n < 1 || n > 256 || size < 8 || size > 1024 || size % 8 != 0 ||
      steps < 1 || steps > 1000 || (tile != "off" && tile != "f2" && tile != "f4") ||
      (precision != "fp32" && precision != "bf16")) {
    std::fprintf(stderr, "usage: profile_unet [train|forward] [batch 1..256] [size 8..1024, a multiple of 8] "
                         "[steps 1..1000] [winograd off|f2|f4] [fp32|bf16]\n");
    return 2;
  }
  namespace ck = ops::cpu_kernels;
  ck::conv_settings().winograd = tile == "off"  ? ck::winograd_tile::off
                                 : tile == "f2" ? ck::winograd_tile::f2
                                                : ck::winograd_tile::f4;
  if (precision == "bf16") {
    try {
      ck::set_cpu_matmul_precision(ck::matmul_precision::bf16);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "profile_unet: %s\n", e.what());
      return 2;
    }
  }
  nn::unet<float> net(nn::unet_config::reference(), 1);
  auto& params = net.parameters();
  optim::adamw<float> opt(params.flat_values().numel());
  rng gen(3);
  tensor<float> x_t(shape{n, 1, size, size}), image(shape{n, 3, size, size}), t(shape{n}), x0(x_t.shape()),
      df(x_t.shape());
  for (auto& v : x_t) v = static_cast<float>(gen.normal());
  for (auto& v : image) v = static_cast<float>(gen.normal());
  for (auto& v : t) v = static_cast<float>(gen.uniform());
  for (auto& v : x0) v = gen.uniform() < 0.5 ? -1.f : 1.f;
  const bool train = mode == "train";
  auto step = [&] {
    if (!train) {
      net.forward(x_t, image, t);
      return;
    }
    params.zero_grad();
    const auto f = net.forward(x_t, image, t, nn::pass::training);
    const float scale = 2.0f / static_cast<float>(f.numel());
    for (std::int64_t i = 0; i < f.numel(); ++i) df[i] = scale * (f[i] - x0[i]);
    net.backward(df);
    optim::clip_grad_norm(params, 1.0);
    opt.step(params.flat_values(), params.flat_grads());
  };
  step();  // first touch of every buffer
  profile::reset();
  profile::enable(true);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / steps;
  profile::enable(false);

  std::printf("# %s, batch %lld, %lldx%lld, %d threads, %d steps, winograd %s, %s products: %.1f ms per step\n",
              mode.c_str(), static_cast<long long>(n), static_cast<long long>(size),
              static_cast<long long>(size), num_threads(), steps, tile.c_str(), precision.c_str(), 1e3 * total);
  std::printf("%-26s %-30s %6s %9s %6s %8s\n", "op", "shape", "calls", "ms/step", "share", "GFLOP/s");
  double timed = 0;
  for (const auto& e : profile::entries()) {
    std::string dims;
    for (std::size_t k = 0; k < e.dims.size(); ++k) {
      if (k) dims += 'x';
      dims += std::to_string(e.dims[k]);
    }
    const double ms = 1e3 * e.seconds / steps;
    timed += e.seconds / steps;
    char rate[32] = "";
    if (e.flop > 0) std::snprintf(rate, sizeof rate, "%.1f", e.flop / e.seconds * 1e-9);
    std::printf("%-26s %-30s %6lld %9.2f %5.1f%% %8s\n", e.op.c_str(), dims.c_str(),
                static_cast<long long>(e.calls / steps), ms, 100 * ms / (1e3 * total), rate);
  }
  std::printf("%-26s %-30s %6s %9.2f %5.1f%%\n", "outside the ops", "", "", 1e3 * (total - timed),
              100 * (total - timed) / total);
  return 0;
}
