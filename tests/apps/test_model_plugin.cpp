// A second model plugged in by writing a model type and registering its name, nothing else:
// a deterministic UNet regressing the mask (one network pass; every draw is the same mask).
// It is trained, sampled and evaluated through the same trainer, sampler, checkpoints and
// CLI as the diffusion model, and the checkpoint records its kind.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/models/registry.hpp"
#include "ambiseg/nn/unet.hpp"
#include "ambiseg/train/all.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "apps/tool_run.hpp"

using namespace ambiseg;

namespace {

struct deterministic_unet_config {
  nn::unet_config net = nn::unet_config::tiny();
  void validate(int image_channels) const {
    throw_if<value_error>(image_channels < 1, "deterministic_unet: ", image_channels, " image channels");
    effective_net(image_channels).validate();
  }
  nn::unet_config effective_net(int image_channels) const {
    nn::unet_config c = net;
    c.in_channels = 1 + image_channels;  // a constant zero plane beside the image
    c.out_channels = 1;
    c.final_tanh = true;  // scores in (−1, 1), like the masks
    return c;
  }
};
void to_json(nlohmann::json& j, const deterministic_unet_config& c) { j = {{"net", c.net}}; }
void from_json(const nlohmann::json& j, deterministic_unet_config& c) {
  throw_if<format_error>(!j.is_object(), "deterministic_unet: the config must be a JSON object");
  c.net = j.contains("net") ? j.at("net").get<nn::unet_config>() : nn::unet_config::tiny();
}

// score = UNet(0, image, t = ½); loss = mean (score − mask)². Its loss loops run on the
// host, so it is registered on the CPU only.
template <class D = cpu>
class deterministic_unet {
 public:
  using device_type = D;
  using config_type = deterministic_unet_config;
  static constexpr std::string_view kind = "deterministic_unet";

  deterministic_unet(const config_type& config, const models::build_context& context)
      : config_((config.validate(context.image_channels), config)),
        image_channels_(context.image_channels),
        net_(config_.effective_net(image_channels_), context.seed) {}
  static std::vector<typename parameter_store<float, D>::entry> parameter_layout(const config_type& config,
                                                                                const models::build_context& c) {
    return nn::unet<float, D>::parameter_layout(config.effective_net(c.image_channels));
  }
  static models::input_spec inputs_of(const config_type& config, const models::build_context& c) {
    return {c.image_channels, config.effective_net(c.image_channels).size_divisor()};
  }

  parameter_store<float, D>& parameters() { return net_.parameters(); }
  const parameter_store<float, D>& parameters() const { return net_.parameters(); }
  nlohmann::json config_json() const { return config_; }
  models::input_spec inputs() const { return inputs_of(config_, {image_channels_, 0}); }
  std::int64_t network_passes(const models::sampling_request&) const { return 1; }

  void loss_and_gradient(models::training_inputs<D> batch, rng&, tensor_view<double, D> report) {
    const tensor_view<const float, D> score = run(batch.images, nn::pass::training);  // [B,1,s,s]
    const std::int64_t b = score.size(0), per = score.numel() / b;
    grad_.resize(score.shape());
    double total = 0;
    for (std::int64_t i = 0; i < b; ++i) {
      double sum = 0;
      for (std::int64_t p = i * per; p < (i + 1) * per; ++p) {
        const double e = double(score[p]) - double(batch.masks[p]);
        sum += e * e;
        grad_[p] = static_cast<float>(2.0 * e / double(b * per));
      }
      report[i] = sum / double(per);
      total += report[i];
    }
    report[b] = total / double(b);
    net_.backward(grad_.cview());
  }

  void sample(tensor_view<const float, D> images, const models::sampling_request& request, rng&,
              tensor_view<float, D> scores, tensor_view<const float, D> init_noise) {
    throw_if<value_error>(init_noise.data() != nullptr, "deterministic_unet: draws no noise (init_noise given)");
    const tensor_view<const float, D> score = run(images, nn::pass::inference);  // [B,1,H,W]
    const std::int64_t per = score.numel() / score.size(0);
    for (std::int64_t i = 0; i < score.size(0); ++i)
      for (int j = 0; j < request.n; ++j)
        std::copy(score.data() + i * per, score.data() + (i + 1) * per, scores.data() + (i * request.n + j) * per);
  }

 private:
  tensor_view<const float, D> run(tensor_view<const float, D> images, nn::pass mode) {
    const shape plane{images.size(0), 1, images.size(2), images.size(3)};
    zeros_.resize(plane);
    std::fill(zeros_.begin(), zeros_.end(), 0.0f);
    t_.resize(shape{images.size(0)});
    std::fill(t_.begin(), t_.end(), 0.5f);
    return net_.forward(zeros_.cview(), images, t_.cview(), mode);
  }

  config_type config_;
  int image_channels_;
  nn::unet<float, D> net_;
  tensor<float, D> zeros_, t_, grad_;
};

static_assert(models::segmentation_model<deterministic_unet<cpu>>);
const bool deterministic_unet_registered = models::register_model<deterministic_unet, cpu>();

using ambiseg_test::fresh_build_dir;

ambiseg_test::tool_run cli(const std::vector<std::string>& args) {
  return ambiseg_test::run_tool([](const auto& a, auto& out, auto& err) { return apps::run_cli(a, out, err); }, args);
}

}  // namespace

TEST_CASE("a second model: registered by name, trained, resumed and sampled by the library", "[apps][models]") {
  REQUIRE(deterministic_unet_registered);
  const auto kinds = models::model_registry<cpu>::instance().kinds();
  CHECK(std::count(kinds.begin(), kinds.end(), "deterministic_unet") == 1);
  CHECK(std::count(kinds.begin(), kinds.end(), "diffusion") == 1);

  train::trainer_config c;
  c.model = {"deterministic_unet", {{"net", nn::unet_config::tiny()}}};
  c.batch_size = 2;
  c.crop_size = 16;
  c.lr = {3e-3, 2, 40, 0};
  c.ema_decay = 0.9;
  const auto data = data::synthetic_lesions({.size = 16, .seed = 3}).make_cases(0, 4);
  train::trainer<data::case_set> t(c, data);
  CHECK(t.model().kind_name() == "deterministic_unet");
  double first = 0, last = 0;
  for (int i = 0; i < 40; ++i) {
    const double loss = t.step().loss;
    if (i < 5) first += loss / 5;
    if (i >= 35) last += loss / 5;
  }
  INFO("first " << first << ", last " << last);
  CHECK(last < first);
  CHECK(t.per_case_loss().size() == 2);

  const auto dir = fresh_build_dir("model_plugin_library");
  t.save(dir / "ckpt.safetensors");
  const auto file = io::safetensors_file::open(dir / "ckpt.safetensors");
  CHECK(nlohmann::json::parse(file.metadata().at("config"))["model"]["kind"] == "deterministic_unet");
  train::trainer<data::case_set> resumed(c, data);
  resumed.resume(dir / "ckpt.safetensors");
  CHECK(resumed.steps_done() == 40);

  auto loaded = train::load_model<cpu>(dir / "ckpt.safetensors");
  CHECK(loaded.model->kind_name() == "deterministic_unet");
  tensor<float> images(shape{2, 1, 16, 16});
  std::copy(data[0].image.data(), data[0].image.data() + 256, images.data());
  std::copy(data[1].image.data(), data[1].image.data() + 256, images.data() + 256);
  rng g(1);
  const auto r = train::sample_masks(*loaded.model, images.cview(), {.n = 3, .steps = 10}, g);
  REQUIRE(r.x0_hat.shape() == shape{2, 3, 16, 16});
  for (std::int64_t p = 0; p < 256; ++p) CHECK(r.x0_hat[p] == r.x0_hat[2 * 256 + p]);  // the same mask n times
  for (float v : r.variance) CHECK(v == 0.0f);

  // A diffusion model refuses the file; this model refuses a diffusion config.
  train::trainer_config other = c;
  other.model = models::diffusion_spec({.net = nn::unet_config::tiny(), .policy = {}});
  train::trainer<data::case_set> diffusion(other, data);
  CHECK_THROWS_WITH(diffusion.resume(dir / "ckpt.safetensors"), Catch::Contains("different configuration"));
}

TEST_CASE("a second model through the CLI: train, sample and eval with --model", "[apps][models][cli]") {
  const auto dir = fresh_build_dir("model_plugin_cli");
  const std::string run = (dir / "run").string();
  const auto trained = cli({"train", "--data", "synthetic", "--synthetic-images", "6", "--crop",
                                                "16", "--batch", "2", "--steps", "4", "--model", "deterministic_unet",
                                                "--model-config", R"({"net": {"model_channels": 8}})", "--out", run});
  INFO(trained.out << trained.err);
  REQUIRE(trained.code == 0);
  CHECK(trained.out.find("deterministic_unet") != std::string::npos);
  std::ifstream config_file(dir / "run" / "config.json");
  const auto config = nlohmann::json::parse(config_file);
  CHECK(config["model"]["kind"] == "deterministic_unet");

  const std::string ckpt = (dir / "run" / "checkpoint.safetensors").string();
  const auto sampled = cli({"sample", "--ckpt", ckpt, "--data", "synthetic", "--images", "2",
                                                "-n", "3", "--out", (dir / "samples").string()});
  INFO(sampled.out << sampled.err);
  CHECK(sampled.code == 0);

  const auto evaluated = cli({"eval", "--ckpt", ckpt, "--data", "synthetic", "--synthetic-test",
                                                  "3", "-n", "2,4", "--out", (dir / "eval").string()});
  INFO(evaluated.out << evaluated.err);
  REQUIRE(evaluated.code == 0);
  std::ifstream eval_file(dir / "eval" / "eval.json");
  const auto results = nlohmann::json::parse(eval_file)["results"];
  REQUIRE(results.size() == 2);
  for (const auto& row : results) CHECK(row["raw"]["ged"].get<double>() >= 0.0);

  // Checkpoint selection reaches the model through the sampler alone, so any model has it.
  const auto selected = cli({"train", "--data", "synthetic", "--synthetic-images", "6", "--crop", "16", "--batch", "2",
                             "--steps", "4", "--model", "deterministic_unet", "--model-config",
                             R"({"net": {"model_channels": 8}})", "--select-best-by", "val_ged", "--val-cases", "2",
                             "--val-every", "2", "--out", (dir / "selected").string()});
  INFO(selected.out << selected.err);
  REQUIRE(selected.code == 0);
  CHECK(train::load_model<cpu>(dir / "selected" / "best.safetensors").model->kind_name() == "deterministic_unet");

  // Options of the diffusion model are refused for another model, by name.
  const auto refused = cli({"train", "--data", "synthetic", "--out", run, "--model",
                                                "deterministic_unet", "--prediction", "v"});
  CHECK(refused.code == 2);
  CHECK(refused.err.find("--prediction applies to --model diffusion") != std::string::npos);
}
