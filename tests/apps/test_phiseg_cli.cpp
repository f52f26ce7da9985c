// PHiSeg through the library's trainer, checkpoints and sampler, and through the CLI: the
// same commands as every model, the checkpoint naming its kind and carrying its buffers.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/train/all.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "apps/tool_run.hpp"

using namespace ambiseg;

namespace {

ambiseg_test::tool_run cli(const std::vector<std::string>& args) {
  return ambiseg_test::run_tool([](const auto& a, auto& out, auto& err) { return apps::run_cli(a, out, err); }, args);
}

// Three resolution levels, two latent ones: crops of 16 (multiples of 4) train in seconds.
const nlohmann::json tiny_phiseg = {{"n0", 3}, {"latent_levels", 2}, {"resolution_levels", 3}};

train::trainer_config phiseg_trainer_config() {
  train::trainer_config c;
  c.model = {"phiseg", tiny_phiseg};
  c.batch_size = 3;
  c.crop_size = 16;
  c.lr = {1e-3, 2, 40, 0};
  c.ema_decay = 0.9;
  return c;
}

}  // namespace

TEST_CASE("phiseg trains, resumes bit for bit (BatchNorm buffers included) and samples", "[apps][models][phiseg]") {
  const auto c = phiseg_trainer_config();
  const auto data = data::synthetic_lesions({.size = 16, .seed = 4}).make_cases(0, 6);
  train::trainer<data::case_set> t(c, data);
  CHECK(t.model().kind_name() == "phiseg");
  REQUIRE(t.model().buffers() != nullptr);
  double first = 0, last = 0;
  for (int i = 0; i < 30; ++i) {
    const double loss = t.step().loss;
    REQUIRE(std::isfinite(loss));
    if (i < 5) first += loss / 5;
    if (i >= 25) last += loss / 5;
  }
  INFO("mean loss of the first 5 steps " << first << ", of the last 5 " << last);
  CHECK(last < first);

  const auto dir = ambiseg_test::fresh_build_dir("phiseg_library");
  const auto path = dir / "ckpt.safetensors";
  t.save(path);
  const auto file = io::safetensors_file::open(path);
  CHECK(nlohmann::json::parse(file.metadata().at("config"))["model"]["kind"] == "phiseg");
  CHECK(file.contains("buffers.prior.pre_z.0.bn.0.running_var"));
  CHECK(file.contains("buffers.prior.z_ups.1.1.bn.1.running_mean"));

  train::trainer<data::case_set> resumed(c, data);
  resumed.resume(path);
  const auto a = t.step();
  const auto b = resumed.step();
  CHECK(a.loss == b.loss);
  CHECK(a.grad_norm == b.grad_norm);
  const auto ba = t.model().buffers()->flat_values(), bb = resumed.model().buffers()->flat_values();
  bool same = true;
  for (std::int64_t i = 0; i < ba.numel(); ++i) same = same && ba[i] == bb[i];
  CHECK(same);

  auto loaded = train::load_model<cpu>(path);
  CHECK(loaded.model->kind_name() == "phiseg");
  tensor<float> images(shape{2, 1, 16, 16});
  std::copy(data[0].image.data(), data[0].image.data() + 256, images.data());
  std::copy(data[1].image.data(), data[1].image.data() + 256, images.data() + 256);
  rng g(1);
  const auto r = train::sample_masks(*loaded.model, images.cview(), {.n = 4, .steps = 1}, g);
  REQUIRE(r.x0_hat.shape() == shape{2, 4, 16, 16});
  bool draws_differ = false;
  for (std::int64_t p = 0; p < 256; ++p) draws_differ = draws_differ || r.x0_hat[p] != r.x0_hat[256 + p];
  CHECK(draws_differ);
  CHECK(loaded.model->network_passes({}) == 1);

  // Another kind refuses this file; this kind refuses a crop its pyramid cannot halve.
  train::trainer_config other = c;
  other.model = {"prob_unet_aa", {{"num_filters", {4, 8, 8}}}};
  train::trainer<data::case_set> prob_unet(other, data);
  CHECK_THROWS_WITH(prob_unet.resume(path), Catch::Contains("different configuration"));
  auto odd = c;
  odd.crop_size = 14;
  CHECK_THROWS_WITH((train::trainer<data::case_set>(odd, data)), Catch::Contains("14"));
}

TEST_CASE("phiseg through the CLI: train, sample and eval with --model", "[apps][models][phiseg][cli]") {
  const auto dir = ambiseg_test::fresh_build_dir("phiseg_cli");
  const std::string run = (dir / "run").string();
  const auto trained = cli({"train", "--data", "synthetic", "--synthetic-images", "6", "--crop", "16", "--batch", "2",
                            "--steps", "3", "--model", "phiseg", "--model-config", tiny_phiseg.dump(), "--out", run});
  INFO(trained.out << trained.err);
  REQUIRE(trained.code == 0);
  const std::string ckpt = (dir / "run" / "checkpoint.safetensors").string();
  const auto sampled = cli({"sample", "--ckpt", ckpt, "--data", "synthetic", "--images", "2", "-n", "3", "--out",
                            (dir / "samples").string()});
  INFO(sampled.out << sampled.err);
  CHECK(sampled.code == 0);
  const auto evaluated = cli({"eval", "--ckpt", ckpt, "--data", "synthetic", "--synthetic-test", "2", "-n", "2",
                              "--out", (dir / "eval").string()});
  INFO(evaluated.out << evaluated.err);
  CHECK(evaluated.code == 0);
  const auto refused = cli({"train", "--data", "synthetic", "--out", run, "--model", "phiseg", "--model-config",
                            R"({"latent_levels": 9})"});
  CHECK(refused.code == 2);
  CHECK(refused.err.find("latent_levels") != std::string::npos);
}
