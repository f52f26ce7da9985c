// The Probabilistic U-Net through the library's trainer, checkpoints and sampler, and
// through the CLI: the same commands as the diffusion model, the checkpoint naming its kind
// and carrying its BatchNorm buffers.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
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

train::trainer_config prob_unet_config() {
  train::trainer_config c;
  c.model = {"prob_unet_aa", {{"num_filters", {4, 8, 8}}, {"latent_dim", 2}}};
  c.batch_size = 3;
  c.crop_size = 16;
  c.lr = {1e-3, 2, 40, 0};
  c.ema_decay = 0.9;
  return c;
}

}  // namespace

TEST_CASE("prob_unet_aa trains, resumes bit for bit (BatchNorm buffers included) and samples",
          "[apps][models][prob_unet]") {
  const auto c = prob_unet_config();
  const auto data = data::synthetic_lesions({.size = 16, .seed = 3}).make_cases(0, 6);
  train::trainer<data::case_set> t(c, data);
  CHECK(t.model().kind_name() == "prob_unet_aa");
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

  const auto dir = ambiseg_test::fresh_build_dir("prob_unet_library");
  const auto path = dir / "ckpt.safetensors";
  t.save(path);
  const auto file = io::safetensors_file::open(path);
  CHECK(nlohmann::json::parse(file.metadata().at("config"))["model"]["kind"] == "prob_unet_aa");
  CHECK(file.contains("buffers.unet.contracting_path.0.layers.6.running_mean"));
  CHECK(file.contains("optim.m.fcomb.last_layer.weight"));

  // The next step of the resumed run is the next step of this one, exactly.
  train::trainer<data::case_set> resumed(c, data);
  resumed.resume(path);
  CHECK(resumed.steps_done() == 30);
  const auto a = t.step();
  const auto b = resumed.step();
  CHECK(a.loss == b.loss);
  CHECK(a.grad_norm == b.grad_norm);
  const auto wa = t.model().parameters().flat_values(), wb = resumed.model().parameters().flat_values();
  bool same = true;
  for (std::int64_t i = 0; i < wa.numel(); ++i) same = same && wa[i] == wb[i];
  CHECK(same);
  const auto ba = t.model().buffers()->flat_values(), bb = resumed.model().buffers()->flat_values();
  for (std::int64_t i = 0; i < ba.numel(); ++i) same = same && ba[i] == bb[i];
  CHECK(same);

  // Sampling from the file: draws differ (the latent varies), the buffers are the trained ones.
  auto loaded = train::load_model<cpu>(path);
  CHECK(loaded.model->kind_name() == "prob_unet_aa");
  const auto lb = loaded.model->buffers()->flat_values();
  bool trained = false;
  for (std::int64_t i = 0; i < lb.numel(); ++i) trained = trained || (lb[i] != 0.0f && lb[i] != 1.0f);
  CHECK(trained);
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

  // init_noise belongs to a diffusion model: refused.
  tensor<float> noise(shape{8, 1, 16, 16});
  tensor<float> scores(shape{8, 1, 16, 16});
  CHECK_THROWS_AS(loaded.model->sample(images.cview(), {.n = 4}, g, scores.view(), noise.cview()), value_error);

  // A diffusion configuration refuses this file.
  train::trainer_config other = c;
  other.model = models::diffusion_spec({.net = nn::unet_config::tiny(), .policy = {}});
  train::trainer<data::case_set> diffusion(other, data);
  CHECK_THROWS_WITH(diffusion.resume(path), Catch::Contains("different configuration"));
}

TEST_CASE("prob_unet_aa refuses a crop its levels cannot halve, and a bad config, naming the problem",
          "[apps][models][prob_unet]") {
  auto c = prob_unet_config();
  c.crop_size = 14;  // 3 levels: H and W must be multiples of 4
  const auto data = data::synthetic_lesions({.size = 16, .seed = 3}).make_cases(0, 4);
  CHECK_THROWS_WITH((train::trainer<data::case_set>(c, data)), Catch::Contains("14"));
  c.crop_size = 16;
  c.model.config = {{"num_filters", {4}}};
  CHECK_THROWS_WITH((train::trainer<data::case_set>(c, data)), Catch::Contains("num_filters"));
}

TEST_CASE("prob_unet_aa through the CLI: train, sample and eval with --model", "[apps][models][prob_unet][cli]") {
  const auto dir = ambiseg_test::fresh_build_dir("prob_unet_cli");
  const std::string run = (dir / "run").string();
  const auto trained = cli({"train", "--data", "synthetic", "--synthetic-images", "6", "--crop", "16", "--batch", "2",
                            "--steps", "4", "--model", "prob_unet_aa", "--model-config",
                            R"({"num_filters": [4, 8, 8], "latent_dim": 2})", "--select-best-by", "val_ged",
                            "--val-cases", "2", "--val-every", "2", "--val-samples", "4", "--out", run});
  INFO(trained.out << trained.err);
  REQUIRE(trained.code == 0);
  // Checkpoint selection by validation GED works for this model too (its buffers travel with
  // the weights it validates).
  REQUIRE(std::filesystem::exists(dir / "run" / "best.safetensors"));
  const auto best = io::safetensors_file::open(dir / "run" / "best.safetensors");
  CHECK(best.contains("buffers.unet.contracting_path.0.layers.6.running_var"));
  const std::string ckpt = (dir / "run" / "best.safetensors").string();
  const auto sampled = cli({"sample", "--ckpt", ckpt, "--data", "synthetic", "--images", "2", "-n", "3", "--out",
                            (dir / "samples").string()});
  INFO(sampled.out << sampled.err);
  CHECK(sampled.code == 0);
  const auto evaluated = cli({"eval", "--ckpt", ckpt, "--data", "synthetic", "--synthetic-test", "3", "-n", "2,4",
                              "--out", (dir / "eval").string()});
  INFO(evaluated.out << evaluated.err);
  REQUIRE(evaluated.code == 0);
  std::ifstream eval_file(dir / "eval" / "eval.json");
  const auto results = nlohmann::json::parse(eval_file)["results"];
  REQUIRE(results.size() == 2);
  for (const auto& row : results) CHECK(row["raw"]["ged"].get<double>() >= 0.0);

  const auto refused = cli({"train", "--data", "synthetic", "--out", run, "--model", "prob_unet_aa",
                            "--model-config", R"({"latent_dim": 0})"});
  CHECK(refused.code == 2);
  CHECK(refused.err.find("latent_dim") != std::string::npos);
}

TEST_CASE("the Generalized Prob. U-Net kinds train, resume bit for bit, sample, and refuse each other's files",
          "[apps][models][prob_unet]") {
  const auto data = data::synthetic_lesions({.size = 16, .seed = 5}).make_cases(0, 6);
  const auto dir = ambiseg_test::fresh_build_dir("prob_unet_variants");
  const std::vector<std::pair<std::string, nlohmann::json>> kinds = {
      {"prob_unet_aa_mix", {{"num_filters", {4, 8, 8}}, {"n_components", 3}, {"mc_samples", 20}}},
      {"prob_unet_fc", {{"num_filters", {4, 8, 8}}}},
      {"prob_unet_fc_mix", {{"num_filters", {4, 8, 8}}, {"latent_dim", 3}, {"mc_samples", 20}}}};
  std::vector<std::filesystem::path> files;
  for (const auto& [kind, config] : kinds) {
    INFO(kind);
    auto c = prob_unet_config();
    c.model = {kind, config};
    train::trainer<data::case_set> t(c, data);
    CHECK(t.model().kind_name() == kind);
    for (int i = 0; i < 6; ++i) REQUIRE(std::isfinite(t.step().loss));
    const auto path = dir / (kind + ".safetensors");
    t.save(path);
    files.push_back(path);
    train::trainer<data::case_set> resumed(c, data);
    resumed.resume(path);
    const auto a = t.step();
    const auto b = resumed.step();
    CHECK(a.loss == b.loss);
    CHECK(a.grad_norm == b.grad_norm);

    auto loaded = train::load_model<cpu>(path);
    CHECK(loaded.model->kind_name() == kind);
    CHECK(loaded.model->config_json() == t.model().config_json());
    tensor<float> images(shape{1, 1, 16, 16});
    std::copy(data[0].image.data(), data[0].image.data() + 256, images.data());
    rng g(2);
    const auto r = train::sample_masks(*loaded.model, images.cview(), {.n = 8, .steps = 1}, g);
    REQUIRE(r.x0_hat.shape() == shape{1, 8, 16, 16});
    bool draws_differ = false;
    for (int j = 1; j < 8; ++j)
      for (std::int64_t p = 0; p < 256; ++p) draws_differ = draws_differ || r.x0_hat[p] != r.x0_hat[j * 256 + p];
    CHECK(draws_differ);
  }
  // A checkpoint of one kind given to a trainer of another: refused, naming the problem.
  auto c = prob_unet_config();
  c.model = {"prob_unet_fc", {{"num_filters", {4, 8, 8}}}};
  train::trainer<data::case_set> fc(c, data);
  CHECK_THROWS_WITH(fc.resume(files[0]), Catch::Contains("different configuration"));
}

TEST_CASE("prob_unet_fc_mix through the CLI: train and sample with --model", "[apps][models][prob_unet][cli]") {
  const auto dir = ambiseg_test::fresh_build_dir("prob_unet_fc_mix_cli");
  const std::string run = (dir / "run").string();
  const auto trained = cli({"train", "--data", "synthetic", "--synthetic-images", "6", "--crop", "16", "--batch", "2",
                            "--steps", "3", "--model", "prob_unet_fc_mix", "--model-config",
                            R"({"preset": "example", "num_filters": [4, 8, 8], "mc_samples": 10})", "--out", run});
  INFO(trained.out << trained.err);
  REQUIRE(trained.code == 0);
  const auto sampled = cli({"sample", "--ckpt", (dir / "run" / "checkpoint.safetensors").string(), "--data",
                            "synthetic", "--images", "2", "-n", "3", "--out", (dir / "samples").string()});
  INFO(sampled.out << sampled.err);
  CHECK(sampled.code == 0);
  const auto refused = cli({"train", "--data", "synthetic", "--out", run, "--model", "prob_unet_fc",
                            "--model-config", R"({"n_components": 4})"});
  CHECK(refused.code == 2);
  CHECK(refused.err.find("n_components") != std::string::npos);
}
