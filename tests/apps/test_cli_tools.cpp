// tests/apps: the CLI's tools for experiments — weight snapshots and the CPU-time column of
// the training log, `ambiseg export` (arrays for other tools), and the reference rows of
// `ambiseg eval --baselines` on real (non-synthetic) data, checked in closed form.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/io/image.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg/train/all.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "apps/tool_run.hpp"

using namespace ambiseg;
using namespace ambiseg::train;
using namespace ambiseg::apps;

namespace {

using ambiseg_test::fresh_build_dir;

void write_grey_png(const std::filesystem::path& path, const std::vector<std::uint8_t>& values, std::int64_t side) {
  tensor<std::uint8_t> pixels(shape{side, side});
  std::copy(values.begin(), values.end(), pixels.data());
  const auto bytes = io::encode_png(pixels.cview());
  io::write_file_atomically(path, std::string(bytes.begin(), bytes.end()));
}

std::vector<std::string> tiny_train(const std::string& out, const std::string& steps) {
  return {"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16", "--config", "tiny",
          "--batch", "2", "--steps", steps, "--out", out};
}

}  // namespace

TEST_CASE("cli: --snapshots and export parse, and refuse bad lists", "[apps][cli]") {
  using V = std::vector<std::string>;
  const auto t = std::get<train_command>(parse_command(V{"train", "--data", "synthetic", "--out", "d",
                                                         "--snapshots", "5,10,200"}));
  CHECK(t.snapshots == std::vector<std::int64_t>{5, 10, 200});
  const auto x = std::get<export_command>(parse_command(V{"export", "--data", "synthetic", "--out", "e", "--crop",
                                                          "32", "--crop-mode", "central", "--seed", "4"}));
  CHECK(x.crop_size == 32);
  CHECK(x.data.synthetic_size == 32);
  CHECK(x.crop == data::crop_mode::central);
  CHECK(x.seed == 4);
  for (const V& bad : {V{"train", "--data", "synthetic", "--out", "d", "--snapshots", "10,5"},
                       V{"train", "--data", "synthetic", "--out", "d", "--snapshots", "0"},
                       V{"train", "--data", "synthetic", "--out", "d", "--snapshots", "5,,6"},
                       V{"export", "--data", "synthetic"}, V{"export", "--out", "e"},
                       V{"export", "--data", "synthetic", "--out", "e", "--steps", "3"}}) {
    INFO("arguments: " << nlohmann::json(bad).dump());
    CHECK_THROWS_AS(parse_command(bad), value_error);
  }
}

TEST_CASE("cli: snapshots load as models; the log has wall and CPU seconds", "[apps][cli]") {
  const auto dir = fresh_build_dir("snapshots");
  auto args = tiny_train((dir / "run").string(), "5");
  args.insert(args.end(), {"--snapshots", "2,4,9"});
  std::ostringstream out, err;
  REQUIRE(run_cli(args, out, err) == 0);
  for (int step : {2, 4}) {
    const auto m = load_model(dir / "run" / "snapshots" / ("step-" + std::to_string(step) + ".safetensors"));
    CHECK(m.step == step);
  }
  CHECK_FALSE(std::filesystem::exists(dir / "run" / "snapshots" / "step-9.safetensors"));  // beyond the run
  std::ifstream csv(dir / "run" / "log.csv");
  std::string header, row;
  std::getline(csv, header);
  CHECK(header == "step,loss,lr,grad_norm,seconds,cpu_seconds");
  int rows = 0;
  while (std::getline(csv, row)) {
    ++rows;
    CHECK(std::count(row.begin(), row.end(), ',') == 5);
    CHECK(std::stod(row.substr(row.rfind(',') + 1)) >= 0.0);
  }
  CHECK(rows == 5);
}

TEST_CASE("cli: export writes the training cases as loaded and the test cases as eval crops them", "[apps][cli]") {
  const auto dir = fresh_build_dir("export");
  std::ostringstream out, err;
  REQUIRE(run_cli(std::vector<std::string>{"export", "--data", "synthetic", "--synthetic-images", "5",
                                           "--synthetic-test", "3", "--crop", "16", "--out", dir.string()},
                  out, err) == 0);
  const auto images = io::read_npy<float>(dir / "train_images.npy");
  const auto masks = io::read_npy<std::uint8_t>(dir / "train_masks.npy");
  const auto gen = data::synthetic_lesions({.size = 16, .seed = 0});
  const auto cases = gen.make_cases(0, 5);
  REQUIRE(images.shape == std::vector<std::int64_t>{5, 1, 16, 16});
  REQUIRE(masks.shape == std::vector<std::int64_t>{5, cases[0].annotations(), 16, 16});
  CHECK(std::equal(images.data.begin(), images.data.begin() + 256, cases[0].image.data()));
  const auto last = cases[4];
  CHECK(std::equal(masks.data.end() - last.masks.numel(), masks.data.end(), last.masks.data()));
  CHECK(io::read_npy<float>(dir / "test_images.npy").shape == std::vector<std::int64_t>{3, 1, 16, 16});
  std::ifstream ids(dir / "test_ids.txt");
  std::string line;
  int count = 0;
  while (std::getline(ids, line)) count += !line.empty();
  CHECK(count == 3);
}

TEST_CASE("cli: eval --baselines on real data scores the raters and their majority", "[apps][cli]") {
  // Two cases of a lidc-cimd-samples style folder (too few for a hold-out, so both are the
  // test set), 16×16, four labels: three mark the left half (A), one is empty (B).
  const auto dir = fresh_build_dir("baselines");
  const std::int64_t side = 16;
  std::vector<std::uint8_t> image(side * side), left(side * side, 0), empty(side * side, 0);
  for (std::int64_t p = 0; p < side * side; ++p) {
    image[static_cast<std::size_t>(p)] = static_cast<std::uint8_t>(p % 251);
    left[static_cast<std::size_t>(p)] = (p % side) < side / 2 ? 255 : 0;
  }
  for (const char* name : {"case_a", "case_b"}) {
    const auto c = dir / "cimd" / name;
    std::filesystem::create_directories(c);
    write_grey_png(c / "image_0.jpg", image, side);  // stb decodes by content, not by name
    for (int l = 0; l < 3; ++l) write_grey_png(c / ("label" + std::to_string(l) + "_.jpg"), left, side);
    write_grey_png(c / "label3_.jpg", empty, side);
  }
  std::ostringstream out, err;
  REQUIRE(run_cli(tiny_train((dir / "run").string(), "2"), out, err) == 0);
  std::ostringstream eval_out;
  REQUIRE(run_cli(std::vector<std::string>{"eval", "--ckpt", (dir / "run" / "checkpoint.safetensors").string(),
                                           "--data", (dir / "cimd").string(), "-n", "4,16", "--steps", "2",
                                           "--baselines", "--pp", "none", "--out", (dir / "eval").string()},
                  eval_out, err) == 0);
  const auto j = nlohmann::json::parse(std::ifstream(dir / "eval" / "eval.json"));
  REQUIRE(j["results"].size() == 6);
  for (std::size_t row : {3u, 5u}) {
    // Majority = A for every sample. Against {A, A, A, B}: d(A, A) = 0, d(A, B) = 1, so
    // 2·mean d(s, y) = 2·(1/4); mean d(y, y') over 16 ordered pairs = 6/16; GED² = 1/8.
    const auto& r = j["results"][row];
    CHECK(r["method"] == "majority");
    CHECK(r["raw"]["ged"].get<double>() == Approx(0.125).margin(1e-12));
    CHECK(r["raw"]["dice"].get<double>() == Approx(0.75).margin(1e-12));   // dice(A, B) = 0
    CHECK(r["raw"]["hm_iou"].get<double>() == Approx(0.75).margin(1e-12));
  }
  for (std::size_t row : {2u, 4u}) {
    // A fraction q of the n draws from {A, A, A, B} is A: mean d(s, y) = q/4 + (1 − q)·3/4,
    // mean d(s, s') = 2q(1 − q), mean d(y, y') = 3/8, so GED² = 2(q − 3/4)² per image; the
    // row is the mean of two such values, q = k/n.
    const auto& r = j["results"][row];
    CHECK(r["method"] == "raters");
    const int n = r["n"].get<int>();
    const double ged = r["raw"]["ged"].get<double>();
    bool explained = false;
    for (int k1 = 0; k1 <= n; ++k1)
      for (int k2 = 0; k2 <= n; ++k2) {
        const double q1 = double(k1) / n - 0.75, q2 = double(k2) / n - 0.75;
        explained = explained || std::abs(ged - (q1 * q1 + q2 * q2)) < 1e-12;
      }
    CHECK(explained);
  }
}

TEST_CASE("cli: --device parses; cuda in a build without CUDA is a clear error", "[apps][cli]") {
  using V = std::vector<std::string>;
  CHECK(std::get<train_command>(parse_command(V{"train", "--data", "synthetic", "--out", "d", "--device", "cuda"}))
            .device == "cuda");
  CHECK(std::get<eval_command>(parse_command(V{"eval", "--ckpt", "c", "--data", "synthetic", "--device", "cpu"}))
            .device == "cpu");
  CHECK_THROWS_AS(parse_command(V{"sample", "--ckpt", "c", "--image", "x.png", "--out", "o", "--device", "gpu"}),
                  value_error);
#if !defined(AMBISEG_WITH_CUDA)
  const auto dir = fresh_build_dir("device");
  auto args = tiny_train((dir / "run").string(), "1");
  args.insert(args.end(), {"--device", "cuda"});
  std::ostringstream out, err;
  CHECK(run_cli(args, out, err) == 1);
  CHECK(err.str().find("built without CUDA") != std::string::npos);
#endif
}
