// Helpers for the whole-network CUDA tests: one UNet on each device with the same weights,
// and comparisons scaled to a tensor's own magnitude (a deep network's float error grows
// with the size of the values, not per element).
#pragma once

#include "cuda_test_util.hpp"

#include <ambiseg/nn/unet.hpp>

#include <algorithm>
#include <cmath>
#include <string>

namespace cuda_test {

using namespace ambiseg;

// The reference initialisation zeroes the head conv, every out_layers.3 and proj_out, which
// would leave most of the network without a gradient signal: every weight gets a uniform
// perturbation of ±spread on top, on the host, and the GPU model receives the same flat
// buffer (the layout depends only on the registrations, identical on both devices).
inline void perturb_and_mirror(nn::unet<float>& cpu_net, nn::unet<float, cuda>& gpu_net,
                               std::uint32_t seed, double spread = 0.05) {
  auto values = cpu_net.parameters().flat_values();
  const auto noise = random_tensor<float>(values.shape(), seed, -spread, spread);
  for (const auto& e : cpu_net.parameters().entries())
    for (std::int64_t i = e.offset; i < e.offset + e.shape.numel(); ++i) values[i] += noise[i];
  copy_to_device<float>(cpu_net.parameters().flat_values(), gpu_net.parameters().flat_values());
}

// max over elements of |gpu − cpu| / (atol + rtol·max|cpu|): ≤ 1 passes (with both
// tolerances 0: 0 when equal, infinite otherwise).
template <class T>
double scaled_error(const tensor<T>& gpu, const tensor<T>& cpu, double rtol, double atol) {
  REQUIRE(gpu.shape() == cpu.shape());
  double peak = 0, worst = 0;
  for (std::int64_t i = 0; i < cpu.numel(); ++i) peak = std::max(peak, std::abs(double(cpu[i])));
  const double bound = atol + rtol * peak;
  for (std::int64_t i = 0; i < cpu.numel(); ++i) {
    const double d = std::abs(double(gpu[i]) - double(cpu[i]));
    const double e = !std::isfinite(d) ? INFINITY : bound > 0 ? d / bound : (d == 0 ? 0.0 : INFINITY);
    worst = std::max(worst, e);
  }
  return worst;
}

inline tensor<float> host_copy(tensor_view<const float, cuda> d) {
  tensor<float> h(d.shape());
  copy_to_host<float>(d, h.view());
  return h;
}
inline tensor<float> host_copy(tensor_view<const float> v) {
  tensor<float> h(v.shape());
  h.copy_from(v);
  return h;
}

// Every parameter's gradient (or value) on the GPU against the CPU, per parameter tensor,
// scaled by that tensor's largest CPU entry.
inline void require_params_close(const parameter_store<float>& cpu_store,
                                 const parameter_store<float, cuda>& gpu_store, bool grads,
                                 double rtol, double atol) {
  const tensor<float> gpu_flat = host_copy(grads ? gpu_store.flat_grads() : gpu_store.flat_values());
  const tensor<float> cpu_flat = host_copy(grads ? cpu_store.flat_grads() : cpu_store.flat_values());
  int failures = 0;
  for (const auto& e : cpu_store.entries()) {
    tensor<float> g(e.shape), c(e.shape);
    std::copy(gpu_flat.data() + e.offset, gpu_flat.data() + e.offset + e.shape.numel(), g.data());
    std::copy(cpu_flat.data() + e.offset, cpu_flat.data() + e.offset + e.shape.numel(), c.data());
    const double err = scaled_error(g, c, rtol, atol);
    if (!(err <= 1.0)) {
      ++failures;
      UNSCOPED_INFO((grads ? "grad of " : "value of ") << e.name << ": scaled error " << err);
    }
  }
  CHECK(failures == 0);
}

}  // namespace cuda_test
