// Checkpoints of device models (io/ and train/checkpoint.hpp on parameter_store<T, D>, adamw<T, D>,
// ema<T, D>): files written from a device store are the bytes a CPU store with the same
// values writes, and loading into a device store restores the values bit for bit. Every
// case runs with D = cpu too (everywhere: the in-place path), D = cuda skips without a GPU
// (the staging path).
#include "cuda_unet_util.hpp"

#include <ambiseg/io/checkpoint.hpp>
#include <ambiseg/train/checkpoint.hpp>
#include <ambiseg/optim/adamw.hpp>
#include <ambiseg/optim/ema.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "scratch_dir.hpp"

using namespace ambiseg;
using namespace cuda_test;
namespace fs = std::filesystem;
using ambiseg_test::file_bytes;
using ambiseg_test::scratch_dir;

namespace {

// Bitwise equality of two flat buffers (float compared as bits: -0 vs 0 or NaN would show).
template <class T, class DA, class DB>
bool same_bits(tensor_view<const T, DA> a, tensor_view<const T, DB> b) {
  const tensor<T> ha = host_copy<T, DA>(a), hb = host_copy<T, DB>(b);
  return ha.shape() == hb.shape() &&
         std::memcmp(ha.data(), hb.data(), sizeof(T) * static_cast<std::size_t>(ha.numel())) == 0;
}

template <class D>
void fill_grads_from_host(parameter_store<float, D>& store, std::uint32_t seed) {
  auto g = random_tensor<float>(store.flat_grads().shape(), seed);
  // the padding between parameters keeps a zero gradient, as after a backward
  tensor<float> masked = tensor<float>::zeros(g.shape());
  for (const auto& e : store.entries())
    for (std::int64_t i = e.offset; i < e.offset + e.shape.numel(); ++i) masked[i] = g[i];
  device_memory<D>::copy_from_host(store.flat_grads().data(), masked.data(),
                                   sizeof(float) * static_cast<std::size_t>(masked.numel()));
}

}  // namespace

TEMPLATE_TEST_CASE("save_parameters / load_parameters on a device store: the CPU's bytes, bit-exact loads",
                   "[cuda][checkpoint]", cpu, cuda) {
  using D = TestType;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  scratch_dir dir(D::name);
  const auto cfg = nn::unet_config::tiny();
  nn::unet<float> cpu_net(cfg, 5);
  nn::unet<float, D> dev_net(cfg, 5);
  perturb_and_mirror(cpu_net, dev_net, 6);

  io::save_parameters(cpu_net.parameters(), dir / "cpu.safetensors", {{"k", "v"}});
  io::save_parameters(dev_net.parameters(), dir / "dev.safetensors", {{"k", "v"}});
  CHECK(file_bytes(dir / "cpu.safetensors") == file_bytes(dir / "dev.safetensors"));

  nn::unet<float, D> loaded(cfg, 99);  // other weights until loaded
  CHECK_FALSE(same_bits<float, D, cpu>(loaded.parameters().flat_values(), cpu_net.parameters().flat_values()));
  const auto report = io::load_parameters(loaded.parameters(), dir / "cpu.safetensors");
  CHECK(report.complete());
  CHECK(same_bits<float, D, cpu>(loaded.parameters().flat_values(), cpu_net.parameters().flat_values()));

  // non-strict: a file with one parameter leaves every other one as it was
  parameter_store<float> one;
  const auto& first = cpu_net.parameters().info(0);
  one.add(first.name, first.shape);
  one.allocate();
  for (std::int64_t i = 0; i < first.shape.numel(); ++i) one.flat_values()[i] = 0.25f;
  io::save_parameters(one, dir / "one.safetensors");
  nn::unet<float, D> partial(cfg, 7);
  const tensor<float> before = host_copy<float, D>(partial.parameters().flat_values());
  const auto r = io::load_parameters(partial.parameters(), dir / "one.safetensors",
                                     {.mode = io::load_mode::non_strict, .prefix = ""});
  CHECK(r.loaded.size() == 1);
  CHECK(r.missing.size() == partial.parameters().size() - 1);
  const tensor<float> after = host_copy<float, D>(partial.parameters().flat_values());
  for (std::int64_t i = 0; i < after.numel(); ++i) {
    const bool in_first = i >= first.offset && i < first.offset + first.shape.numel();
    if (in_first) {
      CHECK(after[i] == 0.25f);
    } else if (after[i] != before[i]) {
      FAIL("element " << i << " outside the loaded parameter changed");
    }
  }
}

TEMPLATE_TEST_CASE("training checkpoints of device models (weights, AdamW moments, EMA) round-trip bit for bit",
                   "[cuda][checkpoint]", cpu, cuda) {
  using D = TestType;
  AMBISEG_REQUIRE_GPU_IF_CUDA(D);
  scratch_dir dir(D::name);
  const auto cfg = nn::unet_config::tiny();
  nn::unet<float, D> net(cfg, 11);
  optim::adamw<float, D> opt(net.parameters(), {.lr = 1e-3});
  optim::ema<float, D> avg(net.parameters(), 0.9);
  for (int s = 0; s < 2; ++s) {
    fill_grads_from_host(net.parameters(), 12 + static_cast<std::uint32_t>(s));
    opt.step(net.parameters());
    avg.update(net.parameters());
  }
  train::training_state state;
  state.step = 2;
  state.rng_state = rng(3).state();
  state.config = {{"device", D::name}};
  train::save_training_checkpoint(dir / "a.safetensors", net.parameters(), opt, state, &avg);

  // into fresh device objects: every buffer bit for bit, counters restored
  nn::unet<float, D> net2(cfg, 12);
  optim::adamw<float, D> opt2(net2.parameters());
  optim::ema<float, D> avg2(net2.parameters(), 0.9);
  const auto loaded = train::load_training_checkpoint(dir / "a.safetensors", net2.parameters(), opt2, &avg2);
  CHECK(loaded.step == 2);
  CHECK(opt2.steps() == 2);
  CHECK(opt2.lr() == 1e-3);
  CHECK(avg2.updates() == 2);
  CHECK(same_bits<float, D, D>(net2.parameters().flat_values(), net.parameters().flat_values()));
  CHECK(same_bits<float, D, D>(opt2.exp_avg(), opt.exp_avg()));
  CHECK(same_bits<float, D, D>(opt2.exp_avg_sq(), opt.exp_avg_sq()));
  CHECK(same_bits<float, D, D>(avg2.shadow(), avg.shadow()));

  // saving again from the loaded objects writes the same file
  train::save_training_checkpoint(dir / "b.safetensors", net2.parameters(), opt2, state, &avg2);
  CHECK(file_bytes(dir / "a.safetensors") == file_bytes(dir / "b.safetensors"));

  // and a CPU model loads the device's checkpoint (and writes it back identically)
  nn::unet<float> host_net(cfg, 13);
  optim::adamw<float> host_opt(host_net.parameters());
  optim::ema<float> host_avg(host_net.parameters(), 0.9);
  train::load_training_checkpoint(dir / "a.safetensors", host_net.parameters(), host_opt, &host_avg);
  CHECK(same_bits<float, cpu, D>(host_net.parameters().flat_values(), net.parameters().flat_values()));
  train::save_training_checkpoint(dir / "c.safetensors", host_net.parameters(), host_opt, state, &host_avg);
  CHECK(file_bytes(dir / "a.safetensors") == file_bytes(dir / "c.safetensors"));

  // without the EMA argument, and a mismatched model is refused before anything changes
  nn::unet<float, D> net3(cfg, 14);
  optim::adamw<float, D> opt3(net3.parameters());
  train::load_training_checkpoint(dir / "a.safetensors", net3.parameters(), opt3, nullptr);
  CHECK(same_bits<float, D, D>(opt3.exp_avg(), opt.exp_avg()));
  auto other_cfg = cfg;
  other_cfg.model_channels *= 2;
  nn::unet<float, D> wrong(other_cfg, 15);
  optim::adamw<float, D> wrong_opt(wrong.parameters());
  const tensor<float> untouched = host_copy<float, D>(wrong.parameters().flat_values());
  CHECK_THROWS_AS(train::load_training_checkpoint(dir / "a.safetensors", wrong.parameters(), wrong_opt), error);
  CHECK(same_bits<float, D, cpu>(wrong.parameters().flat_values(), untouched.cview()));
}
