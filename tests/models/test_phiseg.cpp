// PHiSeg against the PyTorch port of the TensorFlow reference (tools/phiseg_reference.py):
// every level's posterior and prior, the samples, the level logits, the loss terms, every
// parameter gradient (the dead branches' exactly 0), the BatchNorm running statistics after
// the step (training and generation passes, dead branches included) and a generation pass.
// Fixture: /usr/bin/python3 tools/make_phiseg_fixture.py
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
#include "ambiseg/models/phiseg.hpp"

using namespace ambiseg;

namespace {

std::filesystem::path fixture(const std::string& name) { return models_test::fixture("phiseg", name); }
using models_test::check_close;
using models_test::winograd_scope;

models::phiseg_config fixture_config(const io::safetensors_file& file) {
  const auto j = nlohmann::json::parse(file.metadata().at("config"));
  models::phiseg_config c;
  c.net.n0 = j.at("n0");
  c.net.zdim0 = j.at("zdim0");
  c.net.latent_levels = j.at("latent_levels");
  c.net.resolution_levels = j.at("resolution_levels");
  c.net.bn_eps = j.at("bn_eps");
  c.net.bn_momentum = j.at("bn_momentum");
  c.net.dead_branches = j.at("dead_branches");
  c.bn_update_dead_branches = j.at("bn_update_dead_branches");
  c.bn_update_generation_pass = j.at("bn_update_generation_pass");
  c.validate(1);
  return c;
}

// The foreground logit s[:,1] − s[:,0] of a [B,2,H,W] reference tensor.
tensor<double> foreground_of(const tensor<double>& s) {
  const std::int64_t b = s.size(0), plane = s.size(2) * s.size(3);
  tensor<double> out(shape{b, 1, s.size(2), s.size(3)});
  for (std::int64_t i = 0; i < b; ++i)
    for (std::int64_t k = 0; k < plane; ++k) out[i * plane + k] = s[(2 * i + 1) * plane + k] - s[2 * i * plane + k];
  return out;
}

template <class T>
void check_against_fixture(double tol, double grad_tol) {
  const auto file = io::safetensors_file::open(fixture("phiseg_small.safetensors"));
  const auto config = fixture_config(file);
  const int levels = config.net.latent_levels;
  models::phiseg_networks<T, cpu> nets(config.net, 1);
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
  std::vector<tensor<T>> eps, gen_eps, eval_eps;
  models::level_tensors<T, cpu> eps_v, gen_v, eval_v;
  for (int l = 0; l < levels; ++l) {
    eps.push_back(file.read_tensor<T>("eps/" + std::to_string(l)));
    gen_eps.push_back(file.read_tensor<T>("gen_eps/" + std::to_string(l)));
    eval_eps.push_back(file.read_tensor<T>("eval/eps/" + std::to_string(l)));
  }
  for (int l = 0; l < levels; ++l) {
    eps_v.push_back(eps[l].cview());
    gen_v.push_back(gen_eps[l].cview());
    eval_v.push_back(eval_eps[l].cview());
  }
  const std::int64_t b = images.size(0);

  models::phiseg_step<T, cpu> step;
  tensor<double> report(shape{b + 1});
  nets.params.zero_grad();
  step.loss_and_gradient(nets, config, images.cview(), masks.cview(), eps_v, gen_v, report.view());

  // The generation pass overwrote the prior's and the likelihood's activations: the
  // posterior's are the training pass's.
  for (int l = 0; l < levels; ++l) {
    const std::string k = "/" + std::to_string(l);
    check_close("posterior mu" + k, nets.posterior.mu(l), file.read_tensor<double>("posterior_mu" + k), tol);
    check_close("posterior sigma" + k, nets.posterior.sigma(l), file.read_tensor<double>("posterior_sigma" + k), tol);
    check_close("z" + k, nets.posterior.z(l), file.read_tensor<double>("z" + k), tol);
    check_close("generation z" + k, nets.prior.z(l), file.read_tensor<double>("gen/z" + k), tol);
    check_close("level foreground logits" + k, step.foreground(l),
                foreground_of(file.read_tensor<double>("level_logits" + k)), tol);
  }
  double ce = 0, kl = 0;
  for (int l = 0; l < levels; ++l) {
    ce += file.read_tensor<double>("ce/" + std::to_string(l))[0];
    kl += double(1 << (2 * l)) * file.read_tensor<double>("kl/" + std::to_string(l))[0];
  }
  double rec = 0, kls = 0;
  for (std::int64_t i = 0; i < b; ++i) {
    rec += step.reconstruction()[i] / double(b);
    kls += step.kl()[i] / double(b);
  }
  CHECK(rec == Approx(ce).epsilon(tol));
  CHECK(kls == Approx(kl).epsilon(tol));
  CHECK(report[b] == Approx(file.read_tensor<double>("total")[0]).epsilon(tol));

  for (std::size_t i = 0; i < nets.params.size(); ++i) {
    const auto& e = nets.params.info(i);
    check_close("grad " + e.name, nets.params.grad(i), file.read_tensor<double>("grad/" + e.name), grad_tol);
  }
  for (std::size_t i = 0; i < nets.buffers.size(); ++i) {
    const auto& e = nets.buffers.info(i);
    check_close("running " + e.name, nets.buffers.value(i), file.read_tensor<double>("running_after/" + e.name), tol);
  }

  // A generation pass on the running statistics the step left.
  step.encode(nets, images.cview());
  const auto score = step.draw(nets, eval_v);
  for (int l = 0; l < levels; ++l) {
    const std::string k = "/" + std::to_string(l);
    check_close("eval prior mu" + k, nets.prior.mu(l), file.read_tensor<double>("eval/prior_mu" + k), tol);
    check_close("eval prior sigma" + k, nets.prior.sigma(l), file.read_tensor<double>("eval/prior_sigma" + k), tol);
    check_close("eval z" + k, nets.prior.z(l), file.read_tensor<double>("eval/z" + k), tol);
    check_close("eval level logits" + k, nets.likelihood.level_logits()[l],
                file.read_tensor<double>("eval/level_logits" + k), tol);
  }
  check_close("eval foreground logits", score, foreground_of(file.read_tensor<double>("eval/logits")), tol);
}

}  // namespace

TEST_CASE("phiseg matches the PyTorch port of the reference in double: latents, logits, loss, gradients, BatchNorm",
          "[models][phiseg]") {
  check_against_fixture<double>(1e-10, 1e-10);
}

TEST_CASE("phiseg matches the PyTorch port of the reference in float", "[models][phiseg]") {
  {
    const winograd_scope direct(ops::cpu_kernels::winograd_tile::off);
    check_against_fixture<float>(1e-5, 1e-4);
  }
  check_against_fixture<float>(1e-4, 1e-4);  // the default path, Winograd (see winograd_scope)
}

TEST_CASE("phiseg paper configuration: the port's names and shapes, Table 1's 7,322,210 parameters",
          "[models][phiseg]") {
  const auto config = models::phiseg_config::preset("paper");
  const auto layout = models::phiseg<cpu>::parameter_layout(config, {1, 0});
  std::int64_t count = 0;
  for (const auto& e : layout) count += e.shape.numel();
  CHECK(count == 7322210);
  auto count_of = [](const char* preset) {
    std::int64_t n = 0;
    for (const auto& e : models::phiseg<cpu>::parameter_layout(models::phiseg_config::preset(preset), {1, 0}))
      n += e.shape.numel();
    return n;
  };
  CHECK(count_of("small") == 1840430);   // counted by tools/phiseg_reference.py
  CHECK(count_of("example") == 465065);
  auto no_dead = config;
  no_dead.net.dead_branches = false;
  no_dead.bn_update_dead_branches = false;
  std::int64_t live = 0;
  for (const auto& e : models::phiseg<cpu>::parameter_layout(no_dead, {1, 0})) live += e.shape.numel();
  CHECK(live == 6974690);

  std::ifstream keys(fixture("phiseg_paper_keys.txt"));
  REQUIRE(keys);
  std::vector<std::pair<std::string, std::string>> params;
  std::vector<std::string> buffers;
  for (std::string line; std::getline(keys, line);) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream in(line);
    std::string name, dims, kind;
    std::getline(in, name, '\t');
    std::getline(in, dims, '\t');
    std::getline(in, kind, '\t');
    if (kind == "param") params.push_back({name, dims});
    else buffers.push_back(name);
  }
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
  const models::phiseg_networks<float, cpu> nets(config.net, 1);
  REQUIRE(nets.buffers.size() == buffers.size());
  for (std::size_t i = 0; i < buffers.size(); ++i) CHECK(nets.buffers.info(i).name == buffers[i]);
}

TEST_CASE("phiseg config: presets, overrides and refusals", "[models][phiseg]") {
  const auto small = nlohmann::json{{"preset", "small"}, {"latent_levels", 4}}.get<models::phiseg_config>();
  CHECK(small.net.n0 == 10);
  CHECK(small.net.latent_levels == 4);
  const nlohmann::json stored = small;
  CHECK(stored.get<models::phiseg_config>().net.latent_levels == 4);
  CHECK_THROWS_AS(nlohmann::json({{"preset", "huge"}}).get<models::phiseg_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"levels", 3}}).get<models::phiseg_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"latent_levels", 8}}).get<models::phiseg_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"n0", 0}}).get<models::phiseg_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"n0", "twenty"}}).get<models::phiseg_config>(), format_error);
  CHECK_THROWS_AS(nlohmann::json({{"dead_branches", false}, {"bn_update_dead_branches", true}})
                      .get<models::phiseg_config>(),
                  format_error);
}
