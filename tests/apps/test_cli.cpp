// tests/apps: the `ambiseg` command line — parsing and its errors, a tiny end-to-end run
// (train, resume, sample, eval), and the pictures.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/image.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/plot.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "ambiseg/ops/cpu/conv2d.hpp"
#include "apps/tool_run.hpp"

using namespace ambiseg;
using namespace ambiseg::apps;

TEST_CASE("cli: parsing and its errors", "[apps][cli]") {
  auto parse = [](std::vector<std::string> v) { return parse_command(v); };
  const auto t = std::get<train_command>(parse({"train", "--data", "synthetic", "--out", "d", "--steps", "400",
                                                "--prediction=v", "--weighting", "trunc_snr", "--crop", "128"}));
  REQUIRE(t.config.model.kind == "diffusion");
  const auto d = t.config.model.config.get<models::diffusion_segmenter_config>();
  CHECK(d.policy.prediction == "v");
  CHECK(d.policy.weighting == "trunc_snr");
  CHECK(t.config.lr.total_steps == 400);
  CHECK(t.config.lr.warmup_steps == 40);  // a tenth of a short run
  CHECK(t.config.lr.decay_steps == 100);  // the last quarter
  CHECK(t.config.crop_size == 128);
  CHECK(t.data.synthetic_size == 128);
  const auto e = std::get<eval_command>(parse({"eval", "--ckpt", "c", "--data", "synthetic", "-n", "4,16", "--pp", "none"}));
  CHECK(e.n == std::vector<int>{4, 16});
  CHECK(e.pp.empty());
  const auto sweep = std::get<eval_command>(parse({"eval", "--ckpt", "c", "--data", "synthetic", "--pp", "0,0.25,0.5"}));
  CHECK(sweep.pp == std::vector<double>{0.0, 0.25, 0.5});
  const auto paper = std::get<eval_command>(parse({"eval", "--ckpt", "c", "--data", "synthetic", "--protocol", "paper"}));
  CHECK(paper.n == std::vector<int>{4});
  CHECK(paper.pp == std::vector<double>{0.5});
  CHECK_THROWS_WITH(parse({"eval", "--ckpt", "c", "--data", "synthetic", "--protocol", "paper", "-n", "16"}),
                    Catch::Contains("drop -n"));
  CHECK_THROWS_WITH(parse({"eval", "--ckpt", "c", "--data", "synthetic", "--pp", "0.5,0.2"}),
                    Catch::Contains("values must increase"));
  const auto s = std::get<sample_command>(parse({"sample", "--ckpt", "c", "--image", "x.png", "--out", "o", "--sampler", "ddim"}));
  CHECK(s.sampler == sampler_kind::ddim);
  CHECK(std::holds_alternative<help_command>(parse({"help"})));
  CHECK(std::holds_alternative<help_command>(parse({"train", "--data", "synthetic", "--help"})));

  using V = std::vector<std::string>;
  for (const V& bad : {V{}, V{"fly"}, V{"train", "--data", "synthetic"}, V{"train", "--out", "d"},
                       V{"train", "--data", "synthetic", "--out", "d", "--steps", "ten"},
                       V{"train", "--data", "synthetic", "--out", "d", "--steps", "0"},
                       V{"train", "--data", "synthetic", "--out", "d", "--prediction", "z"},
                       V{"train", "--data", "synthetic", "--out", "d", "--config", "huge"},
                       V{"train", "--data", "synthetic", "--out", "d", "--crop", "62"},
                       V{"train", "--data", "synthetic", "--out", "d", "--resume=yes"},
                       V{"train", "--data", "synthetic", "--out", "d", "--bogus", "1"},
                       V{"train", "--data", "synthetic", "--out", "d", "--steps"},
                       V{"train", "--data", "synthetic", "--out", "d", "--model", "no_such_model"},
                       V{"train", "--data", "synthetic", "--out", "d", "--model-config", "{\"net\": 1"},
                       V{"train", "--data", "synthetic", "--out", "d", "--model-config", "[1]"},
                       V{"train", "--data", "synthetic", "--out", "d", "--model-config", "/no/such/file.json"},
                       V{"train", "--data", "synthetic", "--out", "d", "--model-config", "{\"net\": {}}"},
                       V{"train", "--data", "synthetic", "--out", "d", "--prediction", "v", "--model-config",
                         "{\"net\": {}, \"policy\": {}}"},
                       V{"sample", "--ckpt", "c", "--out", "o"},
                       V{"sample", "--ckpt", "c", "--out", "o", "--data", "synthetic", "--image", "x.png"},
                       V{"sample", "--ckpt", "c", "--out", "o", "--image", "x.tif"},
                       V{"eval", "--ckpt", "c", "--data", "synthetic", "-n", "4,,16"},
                       V{"eval", "--ckpt", "c", "--data", "synthetic", "--pp", "1.5"},
                       V{"eval", "--data", "synthetic"}}) {
    INFO("arguments: " << nlohmann::json(bad).dump());
    CHECK_THROWS_AS(parse(bad), value_error);
    std::ostringstream out, err;
    CHECK(run_cli(bad, out, err) == 2);
    CHECK(err.str().find("usage: ambiseg") != std::string::npos);
  }
}

TEST_CASE("cli: train, resume, sample and eval end to end at a tiny size", "[apps][cli]") {
  const auto dir = ambiseg_test::fresh_build_dir("cli");
  const std::string out_dir = (dir / "run").string(), ckpt = (dir / "run" / "checkpoint.safetensors").string();
  const std::vector<std::string> base{"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16",
                                      "--config", "tiny", "--batch", "2", "--out", out_dir, "--checkpoint-every", "2"};
  std::ostringstream out, err;
  auto with = [&](std::vector<std::string> extra) {
    auto v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  REQUIRE(run_cli(with({"--steps", "4"}), out, err) == 0);
  const auto weights_4 = io::safetensors_file::open(ckpt).metadata().at("step");
  CHECK(weights_4 == "4");
  REQUIRE(run_cli(with({"--steps", "4", "--resume"}), out, err) == 0);  // nothing left to do
  const auto png = io::read_image(dir / "run" / "loss.png");
  CHECK(png.size(1) == 720);

  const std::string sample_dir = (dir / "sample").string();
  std::vector<std::int64_t> noise_shape{2, 3, 16, 16};
  std::vector<float> noise(2 * 3 * 256);
  rng g(5);
  for (float& v : noise) v = static_cast<float>(g.normal());
  io::write_npy<float>(dir / "noise.npy", noise, noise_shape);
  const std::vector<std::string> sample{"sample", "--ckpt", ckpt, "--data", "synthetic", "--images", "2", "-n", "3",
                                        "--steps", "2", "--sampler", "ddim", "--init-noise", (dir / "noise.npy").string(),
                                        "--save-x0", (dir / "x0.npy").string(), "--out", sample_dir};
  REQUIRE(run_cli(sample, out, err) == 0);
  const auto x0_first = io::read_npy<float>(dir / "x0.npy");
  REQUIRE(run_cli(sample, out, err) == 0);
  const auto x0_again = io::read_npy<float>(dir / "x0.npy");
  CHECK(x0_first.shape == noise_shape);
  CHECK(x0_first.data == x0_again.data);
  const auto masks = io::read_npy<std::uint8_t>(dir / "sample" / "masks.npy");
  CHECK(masks.shape == noise_shape);
  CHECK(std::filesystem::exists(dir / "sample" / "sample_1.png"));
  CHECK(std::filesystem::exists(dir / "sample" / "samples.png"));

  std::ostringstream eval_out;
  REQUIRE(run_cli(std::vector<std::string>{"eval", "--ckpt", ckpt, "--data", "synthetic", "--images", "3", "-n", "2,4",
                                           "--steps", "2", "--baselines", "--out", (dir / "eval").string()},
                  eval_out, err) == 0);
  const auto j = nlohmann::json::parse(std::ifstream(dir / "eval" / "eval.json"));
  REQUIRE(j["results"].size() == 6);
  CHECK(j["results"][0]["method"] == "model");
  CHECK(j["results"][2]["method"] == "oracle");
  CHECK(j["results"][3]["method"] == "majority");
  for (const auto& r : j["results"]) {
    CHECK(r["raw"]["ged"].get<double>() >= 0.0);
    CHECK(r["pp"]["dice"].get<double>() <= 1.0);
  }
  CHECK(eval_out.str().find("| majority | 4 |") != std::string::npos);

  std::ostringstream e2;
  CHECK(run_cli(std::vector<std::string>{"sample", "--ckpt", (dir / "missing.safetensors").string(), "--data",
                                         "synthetic", "--out", sample_dir},
                out, e2) == 1);
  CHECK(e2.str().find("missing.safetensors") != std::string::npos);
}

TEST_CASE("cli: distill a tiny teacher in rounds, resume, then sample and eval the student", "[apps][cli][distill]") {
  const auto dir = ambiseg_test::fresh_build_dir("distill");
  const std::string teacher = (dir / "teacher" / "checkpoint.safetensors").string();
  std::ostringstream out, err;
  REQUIRE(run_cli(std::vector<std::string>{"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16",
                                           "--config", "tiny", "--batch", "2", "--steps", "3", "--out",
                                           (dir / "teacher").string()},
                  out, err) == 0);
  const std::string distilled = (dir / "distilled").string();
  const std::vector<std::string> distill{"distill", "--ckpt", teacher, "--data", "synthetic", "--synthetic-images", "8",
                                         "--out", distilled, "--from", "4", "--to", "1", "--steps", "3", "--batch", "2"};
  std::ostringstream d_out, d_err;
  REQUIRE(run_cli(distill, d_out, d_err) == 0);
  INFO(d_out.str() << d_err.str());
  CHECK(d_out.str().find("ambiseg distill 4 -> 2 steps") != std::string::npos);
  CHECK(d_out.str().find("ambiseg distill 2 -> 1 steps") != std::string::npos);
  const std::string student = (dir / "distilled" / "steps-1" / "checkpoint.safetensors").string();
  const auto summary = nlohmann::json::parse(std::ifstream(dir / "distilled" / "distill.json"));
  CHECK(summary["rounds"].size() == 2);
  CHECK(summary["student"] == student);
  CHECK(summary["rounds"][1]["teacher"] == (dir / "distilled" / "steps-2" / "checkpoint.safetensors").string());
  CHECK(summary["distill_cpu_seconds"].get<double>() > 0);
  const auto config = stored_training_config(student);
  CHECK(config.model.kind == "distilled_diffusion");
  CHECK(config.model.config["steps"] == 1);
  CHECK(config.model.config["sampler"] == "ddim");
  CHECK(checkpoint_step(student) == 3);
  CHECK(std::filesystem::exists(dir / "distilled" / "steps-2" / "log.csv"));

  // --resume skips the rounds that ended and continues one that did not.
  std::filesystem::remove(dir / "distilled" / "steps-1" / "summary.json");
  auto resumed = distill;
  resumed.push_back("--resume");
  std::ostringstream r_out;
  REQUIRE(run_cli(resumed, r_out, err) == 0);
  CHECK(r_out.str().find("2 steps ended earlier") != std::string::npos);
  CHECK(r_out.str().find("resumed at step 3") != std::string::npos);
  CHECK(std::filesystem::exists(dir / "distilled" / "steps-1" / "summary.json"));

  // The student samples and evaluates as any model, with its own one DDIM step.
  std::ostringstream s_err;
  REQUIRE(run_cli(std::vector<std::string>{"sample", "--ckpt", student, "--data", "synthetic", "--images", "2", "-n",
                                           "3", "--steps", "10", "--out", (dir / "sample").string()},
                  out, s_err) == 0);
  CHECK(s_err.str().find("samples with 1 ddim step(s)") != std::string::npos);
  const auto info = nlohmann::json::parse(std::ifstream(dir / "sample" / "sample.json"));
  CHECK(info["steps"] == 1);
  CHECK(info["sampler"] == "ddim");
  CHECK(info["network_passes_per_mask"] == 1);
  REQUIRE(run_cli(std::vector<std::string>{"eval", "--ckpt", student, "--data", "synthetic", "--images", "2", "-n",
                                           "2", "--out", (dir / "eval").string()},
                  out, err) == 0);
  const auto eval = nlohmann::json::parse(std::ifstream(dir / "eval" / "eval.json"));
  CHECK(eval["info"]["steps"] == 1);
  CHECK(eval["info"]["model"] == "distilled_diffusion");

  // Refusals, each naming the problem.
  auto refused = [&](std::vector<std::string> args, const std::string& says) {
    std::ostringstream o, e;
    const int code = run_cli(args, o, e);
    INFO(e.str());
    CHECK(code != 0);
    CHECK(e.str().find(says) != std::string::npos);
  };
  auto with = [&](std::vector<std::string> extra) {
    auto v = distill;
    v[8] = (dir / "again").string();  // a fresh --out
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  REQUIRE(distill[8] == distilled);
  refused({"distill", "--ckpt", teacher, "--data", "synthetic", "--out", distilled}, "--to N is required");
  refused({"distill", "--ckpt", teacher, "--data", "synthetic", "--out", distilled, "--from", "6", "--to", "4"},
          "--from must be --to times a power of two");
  refused({"distill", "--ckpt", teacher, "--data", "synthetic", "--out", distilled, "--to", "3"},
          "--to must be 8 divided by a power of two");
  refused({"distill", "--ckpt", (dir / "distilled" / "steps-2" / "checkpoint.safetensors").string(), "--data",
           "synthetic", "--out", (dir / "again").string(), "--from", "8", "--to", "1"},
          "is distilled to 2 steps");
  refused(with({"--folds", "2", "--fold", "0"}), "the student must learn from the teacher's training cases");
  REQUIRE(run_cli(std::vector<std::string>{"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16",
                                           "--config", "tiny", "--batch", "2", "--steps", "1", "--prediction", "eps",
                                           "--out", (dir / "eps").string()},
                  out, err) == 0);
  refused({"distill", "--ckpt", (dir / "eps" / "checkpoint.safetensors").string(), "--data", "synthetic", "--out",
           (dir / "again").string(), "--to", "1"},
          "cannot be distilled to few steps");
}

TEST_CASE("plot: the loss curve and a tile grid are PNGs of the expected size", "[apps][cli]") {
  const auto c = loss_curve({1, 2, 3}, {1.0, 0.5, 0.25});
  const auto png = io::decode_image(io::encode_png(c.pixels()));
  CHECK(png.size(0) == 420);
  grid_tile tile{std::vector<float>(4, 0.5f), 0.0, 1.0, palette::grey};
  const auto g = tile_grid({{tile, tile}, {tile}}, 2, 2, 3);
  CHECK(g.height() == 2 * (6 + 4) + 4);
  CHECK(g.width() == 2 * (6 + 4) + 4);
  CHECK(g.pixels()[(4 * g.width() + 4) * 3] == 128);  // the first tile's top-left pixel, grey 0.5
  CHECK_THROWS_AS(loss_curve({1}, {}), value_error);
}

TEST_CASE("cli: --precision is a GPU's choice; fp16 does not train", "[apps][cli]") {
  auto parse = [](std::vector<std::string> v) { return parse_command(v); };
  const std::vector<std::string> train{"train", "--data", "synthetic", "--out", "d"};
  auto with = [](std::vector<std::string> v, std::initializer_list<std::string> extra) {
    v.insert(v.end(), extra);
    return v;
  };
  CHECK(std::get<train_command>(parse(train)).precision == "fp32");
  CHECK(std::get<train_command>(parse(with(train, {"--precision", "fp32"}))).precision == "fp32");
  // Not on the CPU, whatever the command:
  CHECK_THROWS_WITH(parse(with(train, {"--precision", "bf16"})),
                    Catch::Contains("--precision bf16 needs --device cuda") && Catch::Contains("fp32"));
  CHECK_THROWS_WITH(parse({"sample", "--ckpt", "c", "--image", "x.png", "--out", "o", "--precision", "tf32"}),
                    Catch::Contains("needs --device cuda"));
  CHECK_THROWS_WITH(parse({"eval", "--ckpt", "c", "--data", "synthetic", "--precision", "fp16"}),
                    Catch::Contains("needs --device cuda"));
  CHECK_THROWS_WITH(parse({"distill", "--ckpt", "c", "--data", "synthetic", "--out", "o", "--to", "2", "--precision",
                           "bf16"}),
                    Catch::Contains("needs --device cuda"));
  CHECK_THROWS_WITH(parse(with(train, {"--precision", "fp8"})), Catch::Contains("--precision") && Catch::Contains("bf16"));
  // On a GPU: fp16 samples and evaluates, but does not train (no loss scaling).
  CHECK(std::get<train_command>(parse(with(train, {"--device", "cuda", "--precision", "bf16"}))).precision == "bf16");
  CHECK(std::get<sample_command>(parse({"sample", "--ckpt", "c", "--image", "x.png", "--out", "o", "--device", "cuda",
                                        "--precision", "fp16"}))
            .precision == "fp16");
  CHECK(std::get<eval_command>(parse({"eval", "--ckpt", "c", "--data", "synthetic", "--device", "cuda", "--precision",
                                      "tf32"}))
            .precision == "tf32");
  CHECK_THROWS_WITH(parse(with(train, {"--device", "cuda", "--precision", "fp16"})),
                    Catch::Contains("fp16 is for sample and eval") && Catch::Contains("loss scaling"));
  CHECK_THROWS_WITH(parse({"distill", "--ckpt", "c", "--data", "synthetic", "--out", "o", "--to", "2", "--device",
                           "cuda", "--precision", "fp16"}),
                    Catch::Contains("fp16 is for sample and eval"));
}

TEST_CASE("cli: --cpu-conv picks the CPU's 3x3 convolution path for each run", "[apps][cli]") {
  namespace ck = ambiseg::ops::cpu_kernels;
  const ck::conv_tuning saved = ck::conv_settings();
  auto parse = [](std::vector<std::string> v) { return parse_command(v); };
  CHECK(std::get<train_command>(parse({"train", "--data", "synthetic", "--out", "d"})).cpu_conv == "winograd");
  CHECK(std::get<train_command>(parse({"train", "--data", "synthetic", "--out", "d", "--cpu-conv", "direct"})).cpu_conv ==
        "direct");
  CHECK(std::get<sample_command>(parse({"sample", "--ckpt", "c", "--image", "x.png", "--out", "o", "--cpu-conv",
                                        "winograd2"}))
            .cpu_conv == "winograd2");
  CHECK(std::get<eval_command>(parse({"eval", "--ckpt", "c", "--data", "synthetic", "--cpu-conv", "direct"})).cpu_conv ==
        "direct");
  CHECK(std::get<distill_command>(parse({"distill", "--ckpt", "c", "--data", "synthetic", "--out", "o", "--to", "2",
                                         "--cpu-conv", "winograd2"}))
            .cpu_conv == "winograd2");
  CHECK_THROWS_WITH(parse({"train", "--data", "synthetic", "--out", "d", "--cpu-conv", "fft"}),
                    Catch::Contains("--cpu-conv") && Catch::Contains("winograd2"));

  // The choice is applied before the command runs (here one that fails at once, on a
  // checkpoint that does not exist), and a later run without the flag returns to the default.
  std::ostringstream out, err;
  const auto missing = (std::filesystem::temp_directory_path() / "ambiseg-no-such-checkpoint.safetensors").string();
  auto run_sample_with = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"sample", "--ckpt", missing, "--image", "x.png", "--out", "o"};
    args.insert(args.end(), extra.begin(), extra.end());
    CHECK(run_cli(args, out, err) != 0);
  };
  run_sample_with({"--cpu-conv", "direct"});
  CHECK(ck::conv_settings().winograd == ck::winograd_tile::off);
  run_sample_with({"--cpu-conv", "winograd2"});
  CHECK(ck::conv_settings().winograd == ck::winograd_tile::f2);
  run_sample_with({});
  CHECK(ck::conv_settings().winograd == ck::winograd_tile::f4);
  ck::conv_settings() = saved;
}
