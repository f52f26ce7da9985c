// The trainer and sampler on a device D against the CPU ones, generic in D: used by
// tests/train (D = cpu: resume, the non-finite guard) and tests/cuda (D = cuda, skips
// without a GPU; the CUDA emulator runs it everywhere).
//
// Tolerances. On a GPU the kernels and the network sum in other orders than the CPU; so
// the runs agree to float rounding, which AdamW then
// amplifies (its first steps move a weight by ≈ lr·sign(g)). Per step k (from 1):
//   loss, grad norm     relative 1e-3 · k (rounding grows as the weights drift apart)
//   weights after K     |Δ| ≤ 2.5·lr·K + 1e-5·max|w|  (a gradient ≈ 0 may take either sign)
// A wrong upload, a draw out of order or a missing EMA/clip differs by O(1) of the loss.
// Within one device, a resumed run continues bit for bit.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include <unistd.h>

#include "ambiseg/data/synthetic.hpp"
#include "ambiseg/models/diffusion_config.hpp"
#include "ambiseg/train/sampling.hpp"
#include "ambiseg/train/trainer.hpp"

namespace device_trainer_checks {

using namespace ambiseg;
using namespace ambiseg::train;

// The tiny trainer configuration of the train tests (tests/train/test_train.cpp too).
inline trainer_config tiny_config(std::uint64_t seed = 3) {
  trainer_config c;
  c.model = models::diffusion_spec({.net = nn::unet_config::tiny(), .policy = {}});
  c.batch_size = 2;
  c.crop_size = 16;
  c.seed = seed;
  c.adamw.lr = 1e-3;
  c.lr = {1e-3, 2, 50, 10};
  return c;
}

// The diffusion policy of a config, edited: edit(models::policy_choice&).
template <class Edit>
trainer_config with_policy(trainer_config c, Edit&& edit) {
  auto d = c.model.config.get<models::diffusion_segmenter_config>();
  edit(d.policy);
  c.model = models::diffusion_spec(d);
  return c;
}
inline trainer_config with_prediction(const trainer_config& c, const std::string& prediction) {
  return with_policy(c, [&](models::policy_choice& p) { p.prediction = prediction; });
}

// The same with an EMA, so that the device checks cover it.
inline trainer_config config(std::uint64_t seed) {
  trainer_config c = tiny_config(seed);
  c.ema_decay = 0.9;
  return c;
}

inline data::case_set cases(std::int64_t count = 4) {
  return data::synthetic_lesions({.size = 16, .seed = 11}).make_cases(0, static_cast<std::uint64_t>(count));
}

inline std::filesystem::path scratch(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("ambiseg-device-trainer-" + std::to_string(::getpid())) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

template <class D>
tensor<float> on_host(tensor_view<const float, D> v) {
  tensor<float> h(v.shape());
  device_memory<D>::copy_to_host(h.data(), v.data(), sizeof(float) * static_cast<std::size_t>(v.numel()));
  return h;
}

inline bool same_bits(const tensor<float>& a, const tensor<float>& b) {
  return a.shape() == b.shape() &&
         std::memcmp(a.data(), b.data(), sizeof(float) * static_cast<std::size_t>(a.numel())) == 0;
}

// max |a − b| over the parameters' elements (padding excluded) and max |a|.
inline std::pair<double, double> weight_gap(const tensor<float>& a, const tensor<float>& b,
                                            const parameter_store<float>& layout) {
  double gap = 0, peak = 0;
  for (const auto& e : layout.entries())
    for (std::int64_t i = e.offset; i < e.offset + e.shape.numel(); ++i) {
      gap = std::max(gap, std::abs(double(a[i]) - double(b[i])));
      peak = std::max(peak, std::abs(double(a[i])));
    }
  return {gap, peak};
}

// The device trainer follows the CPU trainer from the same seed: same initial weights, same
// draws (so the same loss to rounding), step after step, for each prediction.
template <class D>
void check_steps_follow_cpu(const std::string& prediction) {
  const auto data = cases();
  const trainer_config c = with_prediction(config(21), prediction);
  trainer<data::case_set> host(c, data);
  trainer<data::case_set, D> dev(c, data);
  REQUIRE(same_bits(on_host<D>(dev.model().parameters().flat_values()),
                    on_host<cpu>(host.model().parameters().flat_values())));
  const int steps = 4;
  for (int k = 1; k <= steps; ++k) {
    const step_report h = host.step(), d = dev.step();
    INFO("step " << k << ": loss cpu " << h.loss << " device " << d.loss << "; grad norm cpu " << h.grad_norm
                 << " device " << d.grad_norm);
    CHECK(d.step == h.step);
    CHECK(d.lr == h.lr);
    CHECK(std::abs(d.loss - h.loss) <= 1e-3 * k * std::abs(h.loss));
    CHECK(std::abs(d.grad_norm - h.grad_norm) <= 1e-3 * k * h.grad_norm);
  }
  const auto [gap, peak] = weight_gap(on_host<D>(dev.model().parameters().flat_values()),
                                      on_host<cpu>(host.model().parameters().flat_values()),
                                      host.model().parameters());
  INFO("weights after " << steps << " steps: max gap " << gap << ", peak " << peak);
  CHECK(gap <= 2.5 * c.adamw.lr * steps + 1e-5 * peak);
  const auto [egap, epeak] = weight_gap(on_host<D>(dev.ema()->shadow()), on_host<cpu>(host.ema()->shadow()),
                                        host.model().parameters());
  CHECK(egap <= 2.5 * c.adamw.lr * steps + 1e-5 * epeak);
  CHECK(dev.ema()->updates() == steps);
}

// Saved after 2 steps and resumed on the device, the run continues bit for bit; the
// checkpoint also resumes the CPU trainer (the same file format).
template <class D>
void check_resume(const std::string& tag) {
  const auto data = cases();
  const trainer_config c = with_prediction(config(23), "v");
  const auto dir = scratch(tag);
  trainer<data::case_set, D> straight(c, data);
  std::vector<double> losses;
  for (int i = 0; i < 4; ++i) losses.push_back(straight.step().loss);
  {
    trainer<data::case_set, D> killed(c, data);
    killed.step();
    killed.step();
    killed.save(dir / "ckpt.safetensors");
    killed.step();  // lost with the process
  }
  trainer<data::case_set, D> resumed(c, data);
  resumed.resume(dir / "ckpt.safetensors");
  REQUIRE(resumed.steps_done() == 2);
  for (int i = 2; i < 4; ++i) CHECK(resumed.step().loss == losses[static_cast<std::size_t>(i)]);
  CHECK(same_bits(on_host<D>(resumed.model().parameters().flat_values()),
                  on_host<D>(straight.model().parameters().flat_values())));
  CHECK(same_bits(on_host<D>(resumed.optimizer().exp_avg()), on_host<D>(straight.optimizer().exp_avg())));
  CHECK(same_bits(on_host<D>(resumed.optimizer().exp_avg_sq()), on_host<D>(straight.optimizer().exp_avg_sq())));
  CHECK(same_bits(on_host<D>(resumed.ema()->shadow()), on_host<D>(straight.ema()->shadow())));

  // the CPU trainer resumes the device's checkpoint: same weights, same step
  trainer<data::case_set> host(c, data);
  host.resume(dir / "ckpt.safetensors");
  CHECK(host.steps_done() == 2);
  trainer<data::case_set, D> reference(c, data);
  reference.resume(dir / "ckpt.safetensors");
  CHECK(same_bits(on_host<cpu>(host.model().parameters().flat_values()),
                  on_host<D>(reference.model().parameters().flat_values())));
}

// sample_masks on a model built on D follows the CPU model from the same seed and weights.
template <class D>
void check_sampling_follows_cpu() {
  const auto data = cases();
  const trainer_config c = config(25);
  trainer<data::case_set> host(c, data);
  for (int i = 0; i < 3; ++i) host.step();
  const auto dev = build_model<D>(c);
  const auto flat = host.model().parameters().flat_values();
  device_memory<D>::copy_from_host(dev->parameters().flat_values().data(), flat.data(),
                                   sizeof(float) * static_cast<std::size_t>(flat.numel()));
  // two images, 3 chains each, two per network batch (max_chains 4 < 2·3)
  tensor<float> images(shape{2, 1, 16, 16});
  for (std::int64_t i = 0; i < images.numel(); ++i) images[i] = float(std::sin(0.37 * double(i)));
  for (const char* sampler : {"ddim", "ddpm_large"}) {
    const sample_options opts{.n = 3, .steps = 4, .sampler = sampler, .clip_x0 = false, .max_chains = 4};
    rng g_host(9), g_dev(9);
    const sample_result h = sample_masks(host.model(), images.cview(), opts, g_host);
    const sample_result d = sample_masks(*dev, images.cview(), opts, g_dev);
    CHECK(g_host.state().s == g_dev.state().s);  // the same number of draws
    REQUIRE(d.x0_hat.shape() == h.x0_hat.shape());
    double peak = 0, gap = 0;
    std::int64_t flips = 0;
    for (std::int64_t i = 0; i < h.x0_hat.numel(); ++i) {
      peak = std::max(peak, std::abs(double(h.x0_hat[i])));
      gap = std::max(gap, std::abs(double(d.x0_hat[i]) - double(h.x0_hat[i])));
      flips += d.masks[i] != h.masks[i];
    }
    INFO("sampler " << sampler << ": max |Δx̂0| " << gap << " of peak " << peak << ", " << flips << " mask flips");
    CHECK(gap <= 1e-3 * peak);
    CHECK(flips <= h.x0_hat.numel() / 100);
  }
}

// A step whose loss is NaN (a poisoned weight) throws the CPU trainer's error and changes
// nothing: weights, both AdamW moments, the EMA and every counter keep their bits. On the
// device the update ran before the host saw the loss — its guard (the loss and the norm
// read on the device) is what keeps the weights; the CPU runs the same step path.
template <class Trainer>
void check_nonfinite_step_changes_nothing() {
  using D = typename Trainer::device_type;
  const auto data = cases();
  const trainer_config c = config(29);
  Trainer t(c, data);
  t.step();
  auto values = t.model().parameters().flat_values();
  tensor<float> poisoned = on_host<D>(values);
  poisoned[t.model().parameters().entries().front().offset] = std::numeric_limits<float>::quiet_NaN();
  device_memory<D>::copy_from_host(values.data(), poisoned.data(),
                                   sizeof(float) * static_cast<std::size_t>(poisoned.numel()));
  const tensor<float> w0 = on_host<D>(values), m0 = on_host<D>(t.optimizer().exp_avg()),
                      v0 = on_host<D>(t.optimizer().exp_avg_sq()), e0 = on_host<D>(t.ema()->shadow());
  const std::int64_t opt_steps = t.optimizer().steps(), ema_updates = t.ema()->updates();
  CHECK_THROWS_WITH(t.step(), Catch::Contains("loss: the loss is nan"));
  CHECK(same_bits(on_host<D>(values), w0));
  CHECK(same_bits(on_host<D>(t.optimizer().exp_avg()), m0));
  CHECK(same_bits(on_host<D>(t.optimizer().exp_avg_sq()), v0));
  CHECK(same_bits(on_host<D>(t.ema()->shadow()), e0));
  CHECK(t.optimizer().steps() == opt_steps);
  CHECK(t.ema()->updates() == ema_updates);
  CHECK(t.steps_done() == 1);
}

}  // namespace device_trainer_checks
