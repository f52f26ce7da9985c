// Tests of the ambiseg-eval logic (ambiseg_apps/eval_tool.hpp): argument parsing, loading
// .npy mask files, JSON keys and values, and the refusals of malformed or mismatched inputs.
#include <catch2/catch.hpp>

#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/npy.hpp"
#include "ambiseg_apps/eval_tool.hpp"
#include "apps/tool_run.hpp"

namespace fs = std::filesystem;
using namespace ambiseg;
using namespace ambiseg::metrics;
using namespace ambiseg::apps;

namespace {

const std::string samples_fixture = std::string(AMBISEG_FIXTURE_DIR) + "/npy/eval_samples_1x2x2x2_b1.npy";
const std::string annotations_fixture = std::string(AMBISEG_FIXTURE_DIR) + "/npy/eval_annotations_1x2x2x2_f4.npy";

using cli_run = ambiseg_test::tool_run;

cli_run run(const std::vector<std::string>& args) {
  return ambiseg_test::run_tool([](const auto& a, auto& out, auto& err) { return run_eval_tool(a, out, err); }, args);
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("ambiseg_test_eval_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST_CASE("ambiseg-eval: argument parsing", "[apps][eval]") {
  using args = std::vector<std::string>;
  auto o = parse_eval_tool(args{"--samples", "s.npy", "--annotations=a.npy", "--pp", "0.5", "--json", "--unbiased"});
  CHECK(o.samples == "s.npy");
  CHECK(o.annotations == "a.npy");
  REQUIRE(o.pp_ratio);
  CHECK(*o.pp_ratio == 0.5);
  CHECK(o.json);
  CHECK(o.unbiased);
  o = parse_eval_tool(args{"--samples", "s.npy", "--annotations", "a.npy"});
  CHECK_FALSE(o.pp_ratio);
  CHECK_FALSE(o.json);
  CHECK(parse_eval_tool(args{"--help"}).help);
  CHECK_THROWS_AS(parse_eval_tool(args{"--annotations", "a.npy"}), value_error);
  CHECK_THROWS_AS(parse_eval_tool(args{"--samples", "s.npy"}), value_error);
  CHECK_THROWS_AS(parse_eval_tool(args{"--samples"}), value_error);
  CHECK_THROWS_AS(parse_eval_tool(args{"--samples", "s", "--annotations", "a", "--pp", "1.5"}), value_error);
  CHECK_THROWS_AS(parse_eval_tool(args{"--samples", "s", "--annotations", "a", "--pp", "0.5x"}), value_error);
  CHECK_THROWS_AS(parse_eval_tool(args{"--samples", "s", "--annotations", "a", "--pp", "nan"}), value_error);
  CHECK_THROWS_AS(parse_eval_tool(args{"--samples", "s", "--annotations", "a", "--frobnicate"}), value_error);
  CHECK_THROWS_AS(parse_eval_tool(args{"--samples", "s", "--annotations", "a", "--json=1"}), value_error);

  const cli_run help = run({"--help"});
  CHECK(help.code == 0);
  CHECK_THAT(help.out, Catch::Contains("usage: ambiseg-eval") && Catch::Contains("--pp"));
  const cli_run bad = run({"--bogus"});
  CHECK(bad.code == 2);
  CHECK_THAT(bad.err, Catch::StartsWith("ambiseg-eval: error: unknown option '--bogus'") && Catch::Contains("usage:"));
}

TEST_CASE("ambiseg-eval: JSON of the numpy-written fixture, computed by hand", "[apps][eval]") {
  // Fixture (tools/make_npy_fixtures.py), 2x2 masks, pixels numbered 0..3 row-major:
  // samples s1 = {0}, s2 = {0,1} (bool); annotations y1 = {0}, y2 = {3} (float32).
  // d: s1y1 0, s1y2 1, s2y1 1/2, s2y2 1 -> cross mean 5/8; d(s1,s2) = 1/2; d(y1,y2) = 1.
  // GED² all-pairs = 2·5/8 − (2·1/2)/4 − (2·1)/4 = 5/4 − 1/4 − 1/2 = 1/2
  // GED² unbiased = 5/4 − 1/2 − 1 = −1/4
  // dice 1, 0, 2/3, 0 -> 5/12; IoU 1, 0, 1/2, 0 -> 3/8; HM-IoU max(1 + 0, 0 + 1/2)/2 = 1/2
  // --pp 0.6: areas {1, 2}, threshold 1.2, s1 is emptied:
  // d: 1, 1, 1/2, 1 -> 7/8; d(s1,s2) = 1 -> 1/2; GED² = 7/4 − 1/2 − 1/2 = 3/4
  // dice 0, 0, 2/3, 0 -> 1/6; IoU 1/2 / 4 = 1/8; HM-IoU max(0 + 0, 0 + 1/2)/2 = 1/4
  const cli_run r = run({"--samples", samples_fixture, "--annotations", annotations_fixture, "--pp", "0.6", "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  const auto doc = nlohmann::json::parse(r.out);
  CHECK(doc.at("info").at("samples") == samples_fixture);
  REQUIRE(doc.at("results").size() == 1);
  const auto& j = doc.at("results")[0];
  CHECK(j.at("method") == samples_fixture);
  CHECK(j.at("images") == 1);
  CHECK(j.at("n") == 2);
  CHECK(j.at("m") == 2);
  CHECK(j.at("height") == 2);
  CHECK(j.at("ged_estimator") == "all_pairs");
  CHECK(j.at("raw").at("ged").get<double>() == Approx(0.5));
  CHECK(j.at("raw").at("dice").get<double>() == Approx(5.0 / 12.0));
  CHECK(j.at("raw").at("iou").get<double>() == Approx(3.0 / 8.0));
  CHECK(j.at("raw").at("hm_iou").get<double>() == Approx(0.5));
  CHECK(j.at("pp_ratio").get<double>() == 0.6);
  CHECK(j.at("pp").at("ged").get<double>() == Approx(0.75));
  CHECK(j.at("pp").at("dice").get<double>() == Approx(1.0 / 6.0));
  CHECK(j.at("pp").at("iou").get<double>() == Approx(1.0 / 8.0));
  CHECK(j.at("pp").at("hm_iou").get<double>() == Approx(0.25));

  const cli_run u = run({"--samples", samples_fixture, "--annotations", annotations_fixture, "--json", "--unbiased"});
  REQUIRE(u.code == 0);
  const auto ju = nlohmann::json::parse(u.out).at("results")[0];
  CHECK(ju.at("ged_estimator") == "unbiased");
  CHECK(ju.at("raw").at("ged").get<double>() == Approx(-0.25));
  CHECK(ju.at("pp_ratio").is_null());
  CHECK_FALSE(ju.contains("pp"));

  const cli_run t = run({"--samples", samples_fixture, "--annotations", annotations_fixture, "--pp", "0.6"});
  REQUIRE(t.code == 0);
  CHECK_THAT(t.out, Catch::Contains("GED") && Catch::Contains("0.5000") && Catch::Contains("0.7500") &&
                        Catch::Contains("HM-IoU"));
}

TEST_CASE("ambiseg-eval: rank-3 files, thresholds and many images", "[apps][eval]") {
  const fs::path dir = temp_dir();
  // One image as (n, H, W) float64 with values around the 0.5 threshold, against uint8
  // annotations: 0.5 is background, 0.51 and 2.0 are foreground.
  io::write_npy<double>(dir / "s3.npy", std::vector<double>{0.51, 0.5, 0.0, 2.0}, {1, 2, 2});
  io::write_npy<std::uint8_t>(dir / "a3.npy", std::vector<std::uint8_t>{1, 0, 0, 1}, {1, 2, 2});
  cli_run r = run({"--samples", (dir / "s3.npy").string(), "--annotations", (dir / "a3.npy").string(), "--json"});
  INFO(r.err);
  REQUIRE(r.code == 0);
  auto j = nlohmann::json::parse(r.out).at("results")[0];
  CHECK(j.at("images") == 1);
  CHECK(j.at("raw").at("iou").get<double>() == 1.0);
  CHECK(j.at("raw").at("ged").get<double>() == 0.0);

  // 3 images, 4 samples, 2 annotations: the mean over images equals the library's.
  std::vector<std::uint8_t> s(3 * 4 * 16), a(3 * 2 * 16);
  for (std::size_t k = 0; k < s.size(); ++k) s[k] = (k * 7919 % 13) < 5;
  for (std::size_t k = 0; k < a.size(); ++k) a[k] = (k * 104729 % 11) < 4;
  io::write_npy<std::uint8_t>(dir / "s4.npy", s, {3, 4, 4, 4});
  io::write_npy<std::uint8_t>(dir / "a4.npy", a, {3, 2, 4, 4});
  r = run({"--samples", (dir / "s4.npy").string(), "--annotations", (dir / "a4.npy").string(), "--json"});
  REQUIRE(r.code == 0);
  j = nlohmann::json::parse(r.out).at("results")[0];
  double ged_sum = 0.0;
  for (int k = 0; k < 3; ++k)
    ged_sum += evaluate_image(mask_set_view(s.data() + k * 64, 4, 4, 4), mask_set_view(a.data() + k * 32, 2, 4, 4)).raw.ged;
  CHECK(j.at("raw").at("ged").get<double>() == Approx(ged_sum / 3));
  fs::remove_all(dir);
}

TEST_CASE("ambiseg-eval: malformed and mismatched inputs fail with a message", "[apps][eval]") {
  const fs::path dir = temp_dir();
  auto path = [&](const char* name) { return (dir / name).string(); };
  io::write_npy<std::uint8_t>(path("s.npy"), std::vector<std::uint8_t>(2 * 3 * 16, 1), {2, 3, 4, 4});
  io::write_npy<std::uint8_t>(path("a_images.npy"), std::vector<std::uint8_t>(3 * 2 * 16, 1), {3, 2, 4, 4});
  io::write_npy<std::uint8_t>(path("a_size.npy"), std::vector<std::uint8_t>(2 * 2 * 20, 1), {2, 2, 4, 5});
  io::write_npy<std::uint8_t>(path("rank2.npy"), std::vector<std::uint8_t>(16, 1), {4, 4});
  io::write_npy<std::uint8_t>(path("rank5.npy"), std::vector<std::uint8_t>(16, 1), {1, 1, 1, 4, 4});
  io::write_npy<std::uint8_t>(path("empty_axis.npy"), std::vector<std::uint8_t>{}, {2, 0, 4, 4});
  std::vector<float> with_nan(2 * 2 * 16, 0.0f);
  with_nan[37] = std::numeric_limits<float>::quiet_NaN();
  io::write_npy<float>(path("nan.npy"), with_nan, {2, 2, 4, 4});
  io::write_file_atomically(dir / "junk.npy", "not an npy file at all");

  struct bad_case {
    std::vector<std::string> args;
    std::string expect;
  };
  const std::vector<bad_case> cases = {
      {{"--samples", path("s.npy"), "--annotations", path("a_images.npy")}, "2 images but annotations"},
      {{"--samples", path("s.npy"), "--annotations", path("a_size.npy")}, "are 4x4 but annotations"},
      {{"--samples", path("rank2.npy"), "--annotations", path("s.npy")}, "has shape (4, 4)"},
      {{"--samples", path("s.npy"), "--annotations", path("rank5.npy")}, "has shape (1, 1, 1, 4, 4)"},
      {{"--samples", path("empty_axis.npy"), "--annotations", path("s.npy")}, "empty axis"},
      {{"--samples", path("s.npy"), "--annotations", path("nan.npy")}, "NaN"},
      {{"--samples", path("junk.npy"), "--annotations", path("s.npy")}, "bad magic"},
      {{"--samples", path("missing.npy"), "--annotations", path("s.npy")}, "missing.npy"},
      {{"--samples", path("s.npy"), "--annotations", path("s.npy"), "--unbiased"}, ""},  // valid: n = m = 3
  };
  for (const auto& c : cases) {
    INFO(c.args[1] << " / " << c.args[3]);
    const cli_run r = run(c.args);
    if (c.expect.empty()) {
      CHECK(r.code == 0);
      continue;
    }
    CHECK(r.code == 1);
    CHECK(r.out.empty());
    CHECK_THAT(r.err, Catch::StartsWith("ambiseg-eval: error: ") && Catch::Contains(c.expect));
  }
  // The unbiased estimator with a single annotation is refused by name.
  io::write_npy<std::uint8_t>(path("a1.npy"), std::vector<std::uint8_t>(2 * 16, 1), {2, 1, 4, 4});
  const cli_run u = run({"--samples", path("s.npy"), "--annotations", path("a1.npy"), "--unbiased"});
  CHECK(u.code == 1);
  CHECK_THAT(u.err, Catch::Contains("unbiased"));
  fs::remove_all(dir);
}
