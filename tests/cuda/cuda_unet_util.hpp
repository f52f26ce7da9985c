// Helpers for the whole-network CUDA tests: one UNet on each device with the same weights,
// and comparisons scaled to a tensor's own magnitude (a deep network's float error grows
// with the size of the values, not per element). Generic in the device D: the tests run
// each case with D = cpu too (everywhere, so without a GPU), which checks the runner's
// orchestration and the tests' own tolerances; D = cuda skips without a GPU.
#pragma once

#include "cuda_test_util.hpp"

#include <ambiseg/nn/unet.hpp>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace cuda_test {

using namespace ambiseg;

// The reference initialisation zeroes the head conv, every out_layers.3 and proj_out, which
// would leave most of the network without a gradient signal: every weight gets a uniform
// perturbation of ±spread on top, on the host, and the GPU model receives the same flat
// buffer (the layout depends only on the registrations, identical on both devices).
// A test case's element type and device, for TEMPLATE_TEST_CASE.
template <class T, class D>
struct on_device {
  using value = T;
  using device = D;
};
#define AMBISEG_REQUIRE_GPU_IF_CUDA(D)                                    \
  do {                                                                    \
    if constexpr (std::same_as<D, ::ambiseg::cuda>) AMBISEG_REQUIRE_GPU(); \
  } while (0)

template <class D, class T>
tensor<T, D> to_dev(const tensor<T>& h) {
  tensor<T, D> d(h.shape());
  device_memory<D>::copy_from_host(d.data(), h.data(), sizeof(T) * static_cast<std::size_t>(h.numel()));
  return d;
}
template <class T, class D>
tensor<T> host_copy(tensor_view<const T, D> d) {
  tensor<T> h(d.shape());
  device_memory<D>::copy_to_host(h.data(), d.data(), sizeof(T) * static_cast<std::size_t>(h.numel()));
  return h;
}
template <class T, class D>
tensor<T> host_copy(const tensor<T, D>& d) {
  return host_copy<T, D>(d.cview());
}

template <class D>
void perturb_and_mirror(nn::unet<float>& cpu_net, nn::unet<float, D>& dev_net, std::uint32_t seed,
                        double spread = 0.05) {
  auto values = cpu_net.parameters().flat_values();
  const auto noise = random_tensor<float>(values.shape(), seed, -spread, spread);
  for (const auto& e : cpu_net.parameters().entries())
    for (std::int64_t i = e.offset; i < e.offset + e.shape.numel(); ++i) values[i] += noise[i];
  device_memory<D>::copy_from_host(dev_net.parameters().flat_values().data(), values.data(),
                                   sizeof(float) * static_cast<std::size_t>(values.numel()));
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


// A parameter store's values or gradients on the host, one double vector per entry (the
// flat layouts of float and double stores differ: entries are 64-byte aligned).
template <class T, class D>
std::vector<std::vector<double>> per_entry(const parameter_store<T, D>& store, bool grads) {
  const tensor<T> flat = host_copy<T, D>(grads ? store.flat_grads() : store.flat_values());
  std::vector<std::vector<double>> out;
  for (const auto& e : store.entries())
    out.emplace_back(flat.data() + e.offset, flat.data() + e.offset + e.shape.numel());
  return out;
}

// Every parameter tensor of `test` against `ref`, entry by entry:
//   |Δ| ≤ rtol·max|ref entry| + global_rtol·max|ref, all entries| + atol.
// The global term is for tensors whose exact gradient is 0 (with one channel per
// GroupNorm group, a per-channel constant added before the norm — the time-embedding
// projection, the preceding conv's bias — is cancelled by it): both devices then hold
// rounding noise of the size of the other gradients' rounding, not a value to compare.
template <class TR, class DR, class TT, class DT>
void require_params_close(const parameter_store<TR, DR>& ref, const parameter_store<TT, DT>& test,
                          bool grads, double rtol, double global_rtol, double atol = 0.0) {
  const auto r = per_entry(ref, grads), t = per_entry(test, grads);
  REQUIRE(r.size() == t.size());
  double global = 0;
  for (const auto& v : r)
    for (double x : v) global = std::max(global, std::abs(x));
  int failures = 0;
  double worst = 0;
  for (std::size_t k = 0; k < r.size(); ++k) {
    double peak = 0, err = 0;
    for (double x : r[k]) peak = std::max(peak, std::abs(x));
    const double bound = rtol * peak + global_rtol * global + atol;
    for (std::size_t i = 0; i < r[k].size(); ++i) {
      const double d = std::abs(t[k][i] - r[k][i]);
      err = std::max(err, !std::isfinite(d) ? INFINITY : bound > 0 ? d / bound : (d == 0 ? 0.0 : INFINITY));
    }
    worst = std::max(worst, err);
    if (!(err <= 1.0)) {
      ++failures;
      UNSCOPED_INFO((grads ? "grad of " : "value of ") << ref.entries()[k].name << ": scaled error "
                                                       << err << " (entry peak " << peak
                                                       << ", global peak " << global << ")");
    }
  }
  INFO((grads ? "gradients" : "values") << ": worst scaled error " << worst);
  CHECK(failures == 0);
}

}  // namespace cuda_test
