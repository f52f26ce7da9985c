// ambiseg's UNet against the PyTorch reference (tools/reference_unet.py): output and every
// parameter gradient of loss = Σ r·f at a small config, 32×32, batch 2, 4 heads.
// Fixture: /usr/bin/python3 tools/make_unet_fixture.py → tests/fixtures/unet_small.safetensors
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>

#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/nn/all.hpp"

using namespace ambiseg;

namespace {

template <class T>
void check_against_fixture(double rel_tol, double abs_tol) {
  const auto path = std::filesystem::path(AMBISEG_FIXTURE_DIR) / "unet_small.safetensors";
  REQUIRE(std::filesystem::exists(path));
  const auto file = io::safetensors_file::open(path);
  const auto config =
      nlohmann::json::parse(file.metadata().at("config")).template get<nn::unet_config>();
  nn::unet<T> net(config);
  auto& p = net.parameters();
  // By name, through the checkpoint loader (F16 weights convert exactly).
  io::load_options by_name;
  by_name.mode = io::load_mode::non_strict;  // the file also holds inputs and gradients
  by_name.prefix = "param/";
  const auto report = io::load_parameters(p, file, by_name);
  REQUIRE(report.missing.empty());
  REQUIRE(report.mismatched.empty());
  REQUIRE(report.loaded.size() == p.size());
  const auto x_t = file.read_tensor<T>("x_t");
  const auto image = file.read_tensor<T>("image");
  const auto t = file.read_tensor<T>("t");
  const auto r = file.read_tensor<T>("r");
  const auto f_ref = file.read_tensor<T>("f");

  p.zero_grad();
  const auto f = net.forward(x_t, image, t, nn::pass::training);
  REQUIRE(f.shape() == f_ref.shape());
  double worst = 0;
  for (std::int64_t i = 0; i < f.numel(); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(f[i]) - f_ref[i]));
    REQUIRE(f[i] == Approx(f_ref[i]).epsilon(rel_tol).margin(abs_tol));
  }
  INFO("largest output difference " << worst);
  net.backward(r);

  for (const auto& e : p.entries()) {
    const auto g_ref = file.read_tensor<T>("grad/" + e.name);
    const auto g = p.grad(e.name);
    // Tolerance relative to the tensor's scale: sums over many terms lose digits in float.
    double scale = 0;
    for (auto v : g_ref) scale = std::max(scale, std::abs(static_cast<double>(v)));
    std::int64_t bad = 0;
    double worst_rel = 0;
    for (std::int64_t i = 0; i < g.numel(); ++i) {
      const double d = std::abs(static_cast<double>(g[i]) - g_ref[i]);
      worst_rel = std::max(worst_rel, d / (scale + 1e-30));
      if (d > rel_tol * std::abs(static_cast<double>(g_ref[i])) + abs_tol + rel_tol * scale) ++bad;
    }
    INFO(e.name << ": " << bad << " of " << g.numel() << " entries off; worst difference "
                << worst_rel << " of the tensor's largest |gradient| " << scale);
    CHECK(bad == 0);
    CHECK(scale > 0);  // every gradient is informative
  }
}

}  // namespace

TEST_CASE("unet matches the PyTorch reference: output and every gradient (double)", "[nn]") {
  check_against_fixture<double>(1e-5, 1e-6);
}

TEST_CASE("unet matches the PyTorch reference: output and every gradient (float)", "[nn]") {
  check_against_fixture<float>(2e-3, 1e-4);
}
