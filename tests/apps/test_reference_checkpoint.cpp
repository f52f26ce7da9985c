// The authors' checkpoints end to end (docs/checkpoints.md, "The authors' checkpoints"): a
// checkpoint of the reference PyTorch model (tools/reference_unet.py, random weights),
// converted by tools/convert_reference_checkpoint.py with the authors' run configuration,
// is a complete ambiseg model: load_model builds it, and its DDIM samples from fixed noise
// equal the PyTorch model's (tests/fixtures/reference_checkpoint, written by
// tools/make_reference_checkpoint_fixture.py), through the library and through the tool.
//
// Tolerance: the reference ran in float64 with the same (half-precision) weights, ambiseg
// runs in float; 4 DDIM steps of a 0.7M-parameter network differ by float rounding only.
// A wrong time convention, schedule, input scale, head split, image encoding or channel
// order differs by O(0.1).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/npy.hpp"
#include "ambiseg/train/all.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "apps/tool_run.hpp"

using namespace ambiseg;

namespace {

const std::filesystem::path fixture_dir = std::filesystem::path(AMBISEG_FIXTURE_DIR) / "reference_checkpoint";
constexpr double tolerance = 5e-5;  // |Δx̂0|, x̂0 ∈ [−1, 1] (measured: 8.3e-6)

double largest_gap(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double gap = 0;
  for (std::size_t i = 0; i < a.size(); ++i) gap = std::max(gap, std::abs(double(a[i]) - double(b[i])));
  return gap;
}

}  // namespace

TEST_CASE("a converted reference checkpoint is a complete ambiseg model", "[apps][reference]") {
  const auto m = train::load_model<cpu>(fixture_dir / "converted.safetensors");
  CHECK(m.step == 1500);
  CHECK_FALSE(m.ema_weights);
  CHECK(m.config.model.kind == "diffusion");
  CHECK(m.config.encoding == data::image_encoding::imagenet_rgb);  // read from the stem's 4 input channels
  CHECK(m.config.crop_size == 64);                                  // unet.random_crop64: True
  CHECK(m.config.crop == data::crop_mode::random);
  CHECK(m.config.lr.total_steps == 2000);
  const auto policy = m.config.model.config.at("policy");
  CHECK(policy.at("schedule") == "cosine");
  CHECK(policy.at("input_scale").get<double>() == 0.1);
  CHECK(policy.at("prediction") == "x");
  CHECK(policy.at("weighting") == "snr_plus_one");
  CHECK(m.config.model.config.at("net").at("num_heads") == 2);
}

TEST_CASE("a converted reference checkpoint samples as the PyTorch model does, from the same noise",
          "[apps][reference]") {
  const auto image = io::read_npy<float>(fixture_dir / "image.npy");
  const auto noise = io::read_npy<float>(fixture_dir / "noise.npy");
  const auto expected = io::read_npy<float>(fixture_dir / "ddim_x0.npy");
  REQUIRE(image.shape == std::vector<std::int64_t>{2, 3, 16, 16});
  REQUIRE(noise.shape == std::vector<std::int64_t>{2, 3, 16, 16});
  auto m = train::load_model<cpu>(fixture_dir / "converted.safetensors");
  tensor<float> images(shape{2, 3, 16, 16}), init(shape{2, 3, 16, 16});
  std::copy(image.data.begin(), image.data.end(), images.begin());
  std::copy(noise.data.begin(), noise.data.end(), init.begin());
  train::sample_options opts;
  opts.n = 3;
  opts.steps = 4;
  opts.sampler = "ddim";
  rng g(1);
  const auto r = train::sample_masks(*m.model, images.cview(), opts, g, init.cview());
  const std::vector<float> got(r.x0_hat.begin(), r.x0_hat.end());
  const double gap = largest_gap(got, expected.data);
  INFO("largest |x̂0 − x̂0_PyTorch| = " << gap);
  CHECK(gap <= tolerance);
  // The samples are not trivial: both signs, and the three chains of an image differ.
  const auto positives = std::count_if(got.begin(), got.end(), [](float v) { return v > 0; });
  CHECK(positives > 100);
  CHECK(positives < static_cast<long>(got.size()) - 100);
  CHECK(largest_gap(std::vector<float>(got.begin(), got.begin() + 256),
                    std::vector<float>(got.begin() + 256, got.begin() + 512)) > 0.1);
}

TEST_CASE("ambiseg sample and eval run on a converted reference checkpoint", "[apps][reference]") {
  const auto dir = ambiseg_test::fresh_build_dir("reference_checkpoint");
  const std::string ckpt = (fixture_dir / "converted.safetensors").string();
  // Image 0 as a grey --image, its chains' noise as --init-noise: the tool encodes the grey
  // as the model's config says (ImageNet RGB) and must land on the PyTorch samples.
  const auto grey = io::read_npy<float>(fixture_dir / "grey.npy");
  const auto noise = io::read_npy<float>(fixture_dir / "noise.npy");
  const auto expected = io::read_npy<float>(fixture_dir / "ddim_x0.npy");
  const std::int64_t plane = 16 * 16, n = 3;
  io::write_npy(dir / "grey0.npy", std::span<const float>(grey.data.data(), plane), std::vector<std::int64_t>{16, 16});
  io::write_npy(dir / "noise0.npy", std::span<const float>(noise.data.data(), n * plane),
                std::vector<std::int64_t>{1, n, 16, 16});
  const auto sample = ambiseg_test::run_tool(
      [](const auto& a, auto& o, auto& e) { return apps::run_cli(a, o, e); },
      {"sample", "--ckpt", ckpt, "--image", (dir / "grey0.npy").string(), "-n", "3", "--steps", "4", "--sampler",
       "ddim", "--init-noise", (dir / "noise0.npy").string(), "--out", (dir / "sample").string(), "--save-x0",
       (dir / "x0.npy").string()});
  INFO(sample.out << sample.err);
  REQUIRE(sample.code == 0);
  const auto x0 = io::read_npy<float>(dir / "x0.npy");
  REQUIRE(x0.shape == std::vector<std::int64_t>{1, n, 16, 16});
  const double gap = largest_gap(x0.data, std::vector<float>(expected.data.begin(), expected.data.begin() + n * plane));
  INFO("largest |x̂0 − x̂0_PyTorch| through the tool = " << gap);
  CHECK(gap <= tolerance);
  // eval on a data set, cut as the model was trained (64×64 random windows).
  const auto eval = ambiseg_test::run_tool(
      [](const auto& a, auto& o, auto& e) { return apps::run_cli(a, o, e); },
      {"eval", "--ckpt", ckpt, "--data", "synthetic", "--synthetic-images", "8", "--images", "2", "-n", "2",
       "--steps", "2", "--out", (dir / "eval").string()});
  INFO(eval.out << eval.err);
  REQUIRE(eval.code == 0);
  const auto scores = nlohmann::json::parse(std::ifstream(dir / "eval" / "eval.json"));
  REQUIRE(scores["results"].size() == 1);
  CHECK(scores["results"][0]["images"] == 2);
  CHECK(scores["results"][0]["n"] == 2);
  const double ged = scores["results"][0]["raw"]["ged"].get<double>();
  CHECK(ged >= 0.0);  // GED² of masks and annotations lies in [0, 2]
  CHECK(ged <= 2.0);
}
