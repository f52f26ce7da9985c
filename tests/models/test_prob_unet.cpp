// The Probabilistic U-Net (AA) against a PyTorch reimplementation of the reference
// (tools/gen_prob_unet_reference.py, checked there against the authors' code): the
// posterior and prior, z, the U-Net features, the logits, the loss terms, every parameter
// gradient, the BatchNorm running statistics after the step, and an inference pass.
// Fixture: /usr/bin/python3 tools/make_prob_unet_fixture.py
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "ambiseg/io/checkpoint.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/models/prob_unet.hpp"

using namespace ambiseg;

namespace {

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(AMBISEG_FIXTURE_DIR) / "prob_unet" / name;
}

// max |a − b| ≤ tol · max |b| (the tensor's own scale).
template <class A, class B>
void check_close(const std::string& what, const A& a, const B& b, double tol) {
  REQUIRE(a.numel() == b.numel());
  double scale = 0, worst = 0;
  for (std::int64_t i = 0; i < b.numel(); ++i) scale = std::max(scale, std::abs(double(b.data()[i])));
  for (std::int64_t i = 0; i < b.numel(); ++i)
    worst = std::max(worst, std::abs(double(a.data()[i]) - double(b.data()[i])));
  INFO(what << ": largest difference " << worst << " against a peak of " << scale);
  CHECK(worst <= tol * scale + 1e-300);
}

models::prob_unet_config fixture_config(const io::safetensors_file& file) {
  const auto j = nlohmann::json::parse(file.metadata().at("config"));
  models::prob_unet_config c;
  c.net.num_filters = j.at("num_filters").get<std::vector<int>>();
  c.net.convs_per_block = j.at("convs_per_block");
  c.net.latent_dim = j.at("latent_dim");
  c.net.fcomb_convs = j.at("fcomb_convs");
  c.net.bn_eps = j.at("bn_eps");
  c.net.bn_momentum = j.at("bn_momentum");
  c.beta = j.at("beta");
  return c;
}

template <class T>
void check_against_fixture(double tol, double grad_tol) {
  const auto file = io::safetensors_file::open(fixture("gen_prob_unet_aa_small.safetensors"));
  const auto config = fixture_config(file);
  const double reg_weight = nlohmann::json::parse(file.metadata().at("config")).at("reg_weight");
  models::prob_unet_networks<T, cpu> nets(config.net, 1);
  nets.allocate(0);
  io::load_options by_name;
  by_name.mode = io::load_mode::non_strict;  // the file also holds inputs and results
  by_name.prefix = "param/";
  const auto loaded = io::load_parameters(nets.params, file, by_name);
  REQUIRE(loaded.missing.empty());
  REQUIRE(loaded.mismatched.empty());
  REQUIRE(loaded.loaded.size() == nets.params.size());

  const auto images = file.read_tensor<T>("image");
  auto masks = file.read_tensor<T>("mask");  // {0, 1} in the file, {−1, +1} for the model
  for (auto& m : masks) m = 2 * m - 1;
  const auto eps = file.read_tensor<T>("eps");
  const std::int64_t b = images.size(0);

  models::prob_unet_step<T, cpu> step;
  tensor<double> report(shape{b + 1});
  nets.params.zero_grad();
  step.loss_and_gradient(nets, config.beta, images.cview(), masks.cview(), eps.cview(), report.view());

  check_close("posterior mu", nets.posterior.mu(), file.read_tensor<double>("posterior_mu"), tol);
  check_close("posterior log sigma", nets.posterior.log_sigma(), file.read_tensor<double>("posterior_log_sigma"), tol);
  check_close("prior mu", nets.prior.mu(), file.read_tensor<double>("prior_mu"), tol);
  check_close("prior log sigma", nets.prior.log_sigma(), file.read_tensor<double>("prior_log_sigma"), tol);
  check_close("z", step.z(), file.read_tensor<double>("z"), tol);
  check_close("unet features", step.features(), file.read_tensor<double>("unet_features"), tol);
  check_close("logits", step.logits(), file.read_tensor<double>("logits"), tol);
  check_close("kl", step.kl(), file.read_tensor<double>("kl"), tol);
  double rec = 0;
  for (std::int64_t i = 0; i < b; ++i) rec += step.reconstruction()[i];
  CHECK(rec == Approx(file.read_tensor<double>("rec")[0]).epsilon(tol));
  CHECK(report[b] == Approx(file.read_tensor<double>("total")[0]).epsilon(tol));

  // The reference's loss adds reg = 1e-5·Σ‖θ‖₂ over the prior and posterior parameters,
  // which ambiseg leaves to the optimiser's weight decay: its gradient 1e-5·θ/‖θ‖ is taken
  // out of the reference's before comparing.
  for (std::size_t i = 0; i < nets.params.size(); ++i) {
    const auto& e = nets.params.info(i);
    auto expected = file.read_tensor<double>("grad/" + e.name);
    if (e.name.rfind("prior.", 0) == 0 || e.name.rfind("posterior.", 0) == 0) {
      const auto theta = nets.params.value(i);
      double norm = 0;
      for (std::int64_t k = 0; k < theta.numel(); ++k) norm += double(theta[k]) * double(theta[k]);
      norm = std::sqrt(norm);
      for (std::int64_t k = 0; k < theta.numel(); ++k) expected[k] -= reg_weight * double(theta[k]) / norm;
    }
    check_close("grad " + e.name, nets.params.grad(i), expected, grad_tol);
  }
  for (std::size_t i = 0; i < nets.buffers.size(); ++i) {
    const auto& e = nets.buffers.info(i);
    check_close("running " + e.name, nets.buffers.value(i), file.read_tensor<double>("running_after/" + e.name), tol);
  }

  // Inference on the running statistics the step left, from a given z.
  step.encode(nets, images.cview());
  check_close("eval prior mu", nets.prior.mu(), file.read_tensor<double>("eval/prior_mu"), tol);
  check_close("eval prior log sigma", nets.prior.log_sigma(), file.read_tensor<double>("eval/prior_log_sigma"), tol);
  check_close("eval unet features", step.features(), file.read_tensor<double>("eval/unet_features"), tol);
  const auto z_prior = file.read_tensor<T>("eval/z_prior");
  check_close("eval logits", step.decode(nets, z_prior.cview()), file.read_tensor<double>("eval/logits"), tol);
}

}  // namespace

TEST_CASE("prob_unet_aa matches the PyTorch reference in double: outputs, loss, gradients, BatchNorm state",
          "[models][prob_unet]") {
  check_against_fixture<double>(1e-10, 1e-10);
}

TEST_CASE("prob_unet_aa matches the PyTorch reference in float", "[models][prob_unet]") {
  check_against_fixture<float>(1e-5, 1e-4);
}

TEST_CASE("prob_unet_aa paper configuration: the reference's names, shapes and 6,847,129 parameters",
          "[models][prob_unet]") {
  const auto config = models::prob_unet_config::preset("paper");
  const auto layout = models::prob_unet_aa<cpu>::parameter_layout(config, {1, 0});
  std::int64_t count = 0;
  for (const auto& e : layout) count += e.shape.numel();
  CHECK(count == 6847129);  // the paper's Table 1
  // The smaller presets, counted independently from the reference's layer formulas.
  auto count_of = [](const char* preset) {
    std::int64_t n = 0;
    for (const auto& e : models::prob_unet_aa<cpu>::parameter_layout(models::prob_unet_config::preset(preset), {1, 0}))
      n += e.shape.numel();
    return n;
  };
  CHECK(count_of("small") == 1715545);
  CHECK(count_of("example") == 430777);

  // gen_prob_unet_aa_paper_keys.txt: "name<TAB>shape<TAB>param|buffer" from the reference.
  std::ifstream keys(fixture("gen_prob_unet_aa_paper_keys.txt"));
  REQUIRE(keys);
  std::vector<std::pair<std::string, std::string>> params, buffers;
  for (std::string line; std::getline(keys, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string name, dims, kind;
    std::getline(in, name, '\t');
    std::getline(in, dims, '\t');
    std::getline(in, kind, '\t');
    if (kind == "param") params.push_back({name, dims});
    else if (name.find("num_batches_tracked") == std::string::npos) buffers.push_back({name, dims});
  }
  const models::prob_unet_networks<float, cpu> nets(config.net, 1);
  auto dims_of = [](const shape& s) {
    std::string d;
    for (int i = 0; i < s.rank(); ++i) d += (i ? "x" : "") + std::to_string(s[i]);
    return d;
  };
  REQUIRE(layout.size() == params.size());
  for (std::size_t i = 0; i < layout.size(); ++i) {
    INFO(i << ": " << layout[i].name << " vs " << params[i].first);
    CHECK(layout[i].name == params[i].first);
    CHECK(dims_of(layout[i].shape) == params[i].second);
  }
  REQUIRE(nets.buffers.size() == buffers.size());
  for (std::size_t i = 0; i < buffers.size(); ++i) CHECK(nets.buffers.info(i).name == buffers[i].first);
}

TEST_CASE("prob_unet config: presets, overrides and refusals", "[models][prob_unet]") {
  const auto small = nlohmann::json{{"preset", "small"}, {"latent_dim", 4}}.get<models::prob_unet_config>();
  CHECK(small.net.num_filters == std::vector<int>{16, 32, 64, 128});
  CHECK(small.net.latent_dim == 4);
  CHECK(small.beta == 10.0);
  const nlohmann::json stored = small;
  CHECK(stored.get<models::prob_unet_config>().net.num_filters == small.net.num_filters);
  CHECK_THROWS_AS(nlohmann::json({{"preset", "huge"}}).get<models::prob_unet_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"latent", 3}}).get<models::prob_unet_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"latent_dim", "three"}}).get<models::prob_unet_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"num_filters", {8}}}).get<models::prob_unet_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"beta", -1}}).get<models::prob_unet_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json::array().get<models::prob_unet_config>(), format_error);
}
