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
#include "fixture_check.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/models/prob_unet.hpp"

using namespace ambiseg;

namespace {

std::filesystem::path fixture(const std::string& name) { return models_test::fixture("prob_unet", name); }
using models_test::check_close;
using models_test::winograd_scope;

struct fixture_case {
  const models::prob_unet_variant* variant;
  models::prob_unet_config config;
  double reg_weight = 0;  // AA's file: the reference's 1e-5·Σ‖θ‖₂ is in its gradients
};

fixture_case fixture_config(const io::safetensors_file& file, const models::prob_unet_variant& v) {
  const auto j = nlohmann::json::parse(file.metadata().at("config"));
  fixture_case f{&v, models::prob_unet_config::preset("paper", v)};
  auto& c = f.config;
  c.net.num_filters = j.at("num_filters").get<std::vector<int>>();
  c.net.convs_per_block = j.at("convs_per_block");
  c.net.latent_dim = j.at("latent_dim");
  c.net.n_components = j.value("n_components", 1);
  c.net.fcomb_convs = j.at("fcomb_convs");
  c.net.bn_eps = j.at("bn_eps");
  c.net.bn_momentum = j.at("bn_momentum");
  c.beta = j.at("beta");
  c.temperature = j.value("temperature", c.temperature);
  c.mc_samples = j.value("mc_samples", c.mc_samples);
  f.reg_weight = j.value("reg_weight", 0.0);
  c.validate(1, v);
  return f;
}

// The latent outputs of one head against the file's "<prefix>_*" tensors.
template <class T>
void check_latent(const io::safetensors_file& file, const std::string& prefix, const nn::latent_encoder<T, cpu>& e,
                  double tol) {
  check_close(prefix + " mu", e.mu(), file.read_tensor<double>(prefix + "_mu"), tol);
  check_close(prefix + " log sigma", e.log_sigma(), file.read_tensor<double>(prefix + "_log_sigma"), tol);
  if (e.full_covariance()) {
    check_close(prefix + " cov tril raw", e.tril_raw(), file.read_tensor<double>(prefix + "_cov_tril_raw"), tol);
    check_close(prefix + " scale tril", e.scale_tril(), file.read_tensor<double>(prefix + "_scale_tril"), tol);
  }
  if (e.components() > 1)
    check_close(prefix + " mixture logits", e.mixture_logits(), file.read_tensor<double>(prefix + "_mixture_logits"),
                tol);
}

template <class T>
void check_against_fixture(const std::string& name, const models::prob_unet_variant& v, double tol, double grad_tol) {
  INFO("fixture " << name);
  const auto file = io::safetensors_file::open(fixture(name));
  const auto f = fixture_config(file, v);
  const auto& config = f.config;
  const bool mixture = config.net.n_components > 1;
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
  tensor<T> gumbel, kl_eps, kl_gumbel;
  models::prob_unet_noise<T, cpu> noise;
  noise.eps = eps.cview();
  if (mixture) {
    gumbel = file.read_tensor<T>("gumbel");
    kl_eps = file.read_tensor<T>("kl_eps");
    kl_gumbel = file.read_tensor<T>("kl_gumbel");
    noise = {eps.cview(), gumbel.cview(), kl_eps.cview(), kl_gumbel.cview()};
  }
  const std::int64_t b = images.size(0);

  models::prob_unet_step<T, cpu> step;
  tensor<double> report(shape{b + 1});
  nets.params.zero_grad();
  step.loss_and_gradient(nets, {config.beta, config.temperature}, images.cview(), masks.cview(), noise, report.view());

  check_latent(file, "posterior", nets.posterior, tol);
  check_latent(file, "prior", nets.prior, tol);
  check_close("z", step.z(), file.read_tensor<double>("z"), tol);
  if (mixture) {
    const auto& draw = step.reconstruction_draw();
    check_close("z components", draw.component_samples(), file.read_tensor<double>("z_components"), tol);
    check_close("z relaxed", draw.relaxed(), file.read_tensor<double>("z_relaxed"), tol);
    // z_component (I64) is argmax z_relaxed; the reals say the same.
    const auto relaxed = file.read_tensor<double>("z_relaxed");
    const std::int64_t k = relaxed.size(1);
    for (std::int64_t i = 0; i < b; ++i)
      CHECK(draw.choice()[i] == std::max_element(relaxed.data() + i * k, relaxed.data() + (i + 1) * k) -
                                    (relaxed.data() + i * k));
    check_close("kl z", step.kl_draws().z(), file.read_tensor<double>("kl_z"), tol);
    check_close("kl relaxed", step.kl_draws().relaxed(), file.read_tensor<double>("kl_relaxed"), tol);
    check_close("kl log q", step.kl_log_q(), file.read_tensor<double>("kl_log_q"), tol);
    check_close("kl log p", step.kl_log_p(), file.read_tensor<double>("kl_log_p"), tol);
  }
  check_close("unet features", step.features(), file.read_tensor<double>("unet_features"), tol);
  check_close("logits", step.logits(), file.read_tensor<double>("logits"), tol);
  check_close("kl", step.kl(), file.read_tensor<double>("kl"), tol);
  double rec = 0;
  for (std::int64_t i = 0; i < b; ++i) rec += step.reconstruction()[i];
  CHECK(rec == Approx(file.read_tensor<double>("rec")[0]).epsilon(tol));
  CHECK(report[b] == Approx(file.read_tensor<double>("total")[0]).epsilon(tol));

  // The AA file's loss adds reg = 1e-5·Σ‖θ‖₂ over the prior and posterior parameters,
  // which ambiseg leaves to the optimiser's weight decay: its gradient 1e-5·θ/‖θ‖ is taken
  // out of the reference's before comparing. The other files hold d total / dθ.
  for (std::size_t i = 0; i < nets.params.size(); ++i) {
    const auto& e = nets.params.info(i);
    auto expected = file.read_tensor<double>("grad/" + e.name);
    if (f.reg_weight != 0 && (e.name.rfind("prior.", 0) == 0 || e.name.rfind("posterior.", 0) == 0)) {
      const auto theta = nets.params.value(i);
      double norm = 0;
      for (std::int64_t k = 0; k < theta.numel(); ++k) norm += double(theta[k]) * double(theta[k]);
      norm = std::sqrt(norm);
      for (std::int64_t k = 0; k < theta.numel(); ++k) expected[k] -= f.reg_weight * double(theta[k]) / norm;
    }
    check_close("grad " + e.name, nets.params.grad(i), expected, grad_tol);
  }
  for (std::size_t i = 0; i < nets.buffers.size(); ++i) {
    const auto& e = nets.buffers.info(i);
    check_close("running " + e.name, nets.buffers.value(i), file.read_tensor<double>("running_after/" + e.name), tol);
  }

  // Inference on the running statistics the step left, from a given z.
  step.encode(nets, images.cview());
  check_latent(file, "eval/prior", nets.prior, tol);
  check_close("eval unet features", step.features(), file.read_tensor<double>("eval/unet_features"), tol);
  const auto z_prior = file.read_tensor<T>("eval/z_prior");
  check_close("eval logits", step.decode(nets, z_prior.cview()), file.read_tensor<double>("eval/logits"), tol);
  if (mixture) {
    tensor<double> log_prob(shape{b});
    const auto q = models::latent_params<T, cpu>::of(nets.prior);
    const tensor_view<T, cpu> none{};
    if (q.full())
      ops::mixture_log_prob_forward_backward(z_prior.cview(), q.logits, q.mu, q.scale_tril, 0.0, log_prob.view(), none,
                                             none, none, none);
    else
      ops::diag_mixture_log_prob_forward_backward(z_prior.cview(), q.logits, q.mu, q.log_sigma, 0.0, log_prob.view(),
                                                  none, none, none, none);
    check_close("eval prior log prob", log_prob, file.read_tensor<double>("eval/prior_log_prob"), tol);
  }
}

const models::prob_unet_variant& variant_named(const std::string& v) {
  if (v == "aa") return models::prob_unet_aa_variant;
  if (v == "aa_mix") return models::prob_unet_aa_mix_variant;
  if (v == "fc") return models::prob_unet_fc_variant;
  return models::prob_unet_fc_mix_variant;
}

}  // namespace

TEST_CASE("prob_unet variants match the PyTorch reference in double: outputs, loss, gradients, BatchNorm state",
          "[models][prob_unet]") {
  for (const char* v : {"aa", "aa_mix", "fc", "fc_mix"})
    check_against_fixture<double>(std::string("gen_prob_unet_") + v + "_small.safetensors", variant_named(v), 1e-10,
                                  1e-10);
}

TEST_CASE("prob_unet variants match the PyTorch reference in float", "[models][prob_unet]") {
  for (const char* v : {"aa", "aa_mix", "fc", "fc_mix"}) {
    {
      const winograd_scope direct(ops::cpu_kernels::winograd_tile::off);
      check_against_fixture<float>(std::string("gen_prob_unet_") + v + "_small.safetensors", variant_named(v), 1e-5,
                                   1e-4);
    }
    // the default path, Winograd (see winograd_scope)
    check_against_fixture<float>(std::string("gen_prob_unet_") + v + "_small.safetensors", variant_named(v), 1e-4,
                                 1e-4);
  }
}

template <const models::prob_unet_variant& V>
std::int64_t count_of(const char* preset) {
  std::int64_t n = 0;
  for (const auto& e : models::prob_unet_model<V, cpu>::parameter_layout(models::prob_unet_config::preset(preset, V),
                                                                         {1, 0}))
    n += e.shape.numel();
  return n;
}

// "name<TAB>shape<TAB>param|buffer" lines of a reference's state_dict (num_batches_tracked left out).
std::pair<std::vector<std::pair<std::string, std::string>>, std::vector<std::string>> read_keys(const std::string& name) {
  std::ifstream keys(fixture(name));
  REQUIRE(keys);
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<std::string> buffers;
  for (std::string line; std::getline(keys, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string key, dims, kind;
    std::getline(in, key, '\t');
    std::getline(in, dims, '\t');
    std::getline(in, kind, '\t');
    if (kind == "param") params.push_back({key, dims});
    else if (key.find("num_batches_tracked") == std::string::npos) buffers.push_back(key);
  }
  return {params, buffers};
}

template <const models::prob_unet_variant& V>
void check_paper_layout(const std::string& keys_file, std::int64_t table1) {
  INFO(V.kind);
  const auto config = models::prob_unet_config::preset("paper", V);
  const auto layout = models::prob_unet_model<V, cpu>::parameter_layout(config, {1, 0});
  std::int64_t count = 0;
  for (const auto& e : layout) count += e.shape.numel();
  CHECK(count == table1);
  const auto [params, buffers] = read_keys(keys_file);
  const models::prob_unet_networks<float, cpu> nets(config.net, 1);
  auto dims_of = [](const shape& s) {
    std::string d;
    for (int i = 0; i < s.rank(); ++i) {
      if (i > 0) d += 'x';
      d += std::to_string(s[i]);
    }
    return d;
  };
  REQUIRE(layout.size() == params.size());
  for (std::size_t i = 0; i < layout.size(); ++i) {
    INFO(i << ": " << layout[i].name << " vs " << params[i].first);
    CHECK(layout[i].name == params[i].first);
    CHECK(dims_of(layout[i].shape) == params[i].second);
  }
  REQUIRE(nets.buffers.size() == buffers.size());
  for (std::size_t i = 0; i < buffers.size(); ++i) CHECK(nets.buffers.info(i).name == buffers[i]);
}

TEST_CASE("prob_unet paper configurations: the reference's names and shapes, Table 1's parameter counts",
          "[models][prob_unet]") {
  check_paper_layout<models::prob_unet_aa_variant>("gen_prob_unet_aa_paper_keys.txt", 6847129);
  check_paper_layout<models::prob_unet_aa_mix_variant>("gen_prob_unet_aa_mix_paper_keys.txt", 6864027);
  check_paper_layout<models::prob_unet_fc_variant>("gen_prob_unet_fc_paper_keys.txt", 6844945);
  check_paper_layout<models::prob_unet_fc_mix_variant>("gen_prob_unet_fc_mix_paper_keys.txt", 6882467);
  // The smaller presets, counted by the PyTorch reference (tools/gen_prob_unet_reference.py).
  CHECK(count_of<models::prob_unet_aa_variant>("small") == 1715545);
  CHECK(count_of<models::prob_unet_aa_variant>("example") == 430777);
  CHECK(count_of<models::prob_unet_aa_mix_variant>("small") == 1724027);
  CHECK(count_of<models::prob_unet_aa_mix_variant>("example") == 435051);
  CHECK(count_of<models::prob_unet_fc_variant>("small") == 1714449);
  CHECK(count_of<models::prob_unet_fc_variant>("example") == 430225);
  CHECK(count_of<models::prob_unet_fc_mix_variant>("small") == 1733283);
  CHECK(count_of<models::prob_unet_fc_mix_variant>("example") == 439715);
}

TEST_CASE("prob_unet config: presets per kind, overrides and refusals", "[models][prob_unet]") {
  using aa_config = models::prob_unet_aa<cpu>::config_type;
  using fc_mix_config = models::prob_unet_fc_mix<cpu>::config_type;
  const auto small = nlohmann::json{{"preset", "small"}, {"latent_dim", 4}}.get<aa_config>();
  CHECK(small.net.num_filters == std::vector<int>{16, 32, 64, 128});
  CHECK(small.net.latent_dim == 4);
  CHECK(small.beta == 10.0);
  const nlohmann::json stored = small;
  CHECK(stored.get<aa_config>().net.num_filters == small.net.num_filters);
  CHECK_FALSE(stored.contains("n_components"));  // an AA checkpoint's config reads as before
  CHECK_THROWS_AS(nlohmann::json({{"preset", "huge"}}).get<aa_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"latent", 3}}).get<aa_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"latent_dim", "three"}}).get<aa_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"num_filters", {8}}}).get<aa_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"beta", -1}}).get<aa_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json::array().get<aa_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"n_components", 3}}).get<aa_config>(), format_error);  // not a mixture

  const auto mix = nlohmann::json{{"preset", "example"}, {"temperature", 0.3}}.get<fc_mix_config>();
  CHECK(mix.net.covariance == nn::latent_covariance::full);
  CHECK(mix.net.n_components == 9);
  CHECK(mix.net.latent_dim == 2);
  CHECK(mix.beta == 1.0);
  CHECK(mix.temperature == 0.3);
  CHECK(mix.mc_samples == 1000);
  const nlohmann::json mix_stored = mix;
  CHECK(mix_stored.get<fc_mix_config>().temperature == 0.3);
  CHECK_THROWS_AS(nlohmann::json({{"n_components", 1}}).get<fc_mix_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"n_components", 33}}).get<fc_mix_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"latent_dim", 65}}).get<fc_mix_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"temperature", 0}}).get<fc_mix_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"mc_samples", 0}}).get<fc_mix_config>(), format_error);
  // A hand-made configuration of another kind.
  CHECK_THROWS_AS(models::prob_unet_fc<cpu>(models::prob_unet_config::preset("example"), {1, 0}), value_error);
}
