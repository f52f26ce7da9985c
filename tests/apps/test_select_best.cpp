// tests/apps: `ambiseg train --select-best-by val_ged` — the flags and their refusals, a
// tiny run that validates every 2 steps, best.safetensors against val.csv, sampling from
// it, and a resume from an earlier checkpoint that keeps the best.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/safetensors.hpp"
#include "ambiseg/train/checkpoint.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "ambiseg_apps/selection.hpp"
#include "apps/tool_run.hpp"

using namespace ambiseg;
using namespace ambiseg::apps;

namespace {

ambiseg_test::tool_run cli(const std::vector<std::string>& args) {
  return ambiseg_test::run_tool([](const auto& a, auto& out, auto& err) { return run_cli(a, out, err); }, args);
}

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct val_row {
  std::int64_t step;
  std::string value;  // as written: the shortest text that reads back as the double
};

std::vector<val_row> read_val_csv(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  CHECK(line == "step,val_ged");
  std::vector<val_row> rows;
  while (std::getline(in, line)) {
    const auto comma = line.find(',');
    REQUIRE(comma != std::string::npos);
    rows.push_back({std::stoll(line.substr(0, comma)), line.substr(comma + 1)});
  }
  return rows;
}

// The first row of the lowest value: a later equal value does not replace the best.
val_row lowest(const std::vector<val_row>& rows) {
  REQUIRE(!rows.empty());
  return *std::min_element(rows.begin(), rows.end(),
                           [](const val_row& a, const val_row& b) { return std::stod(a.value) < std::stod(b.value); });
}

}  // namespace

TEST_CASE("select-best: flags, defaults and refusals that name the flag", "[apps][cli][select]") {
  using V = std::vector<std::string>;
  const V base{"train", "--data", "synthetic", "--synthetic-images", "8", "--out", "d", "--checkpoint-every", "50"};
  auto with = [&](V extra) {
    V v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return parse_command(v);
  };
  const auto plain = std::get<train_command>(with({}));
  CHECK_FALSE(plain.select.has_value());
  const auto t = std::get<train_command>(with({"--select-best-by", "val_ged", "--val-cases", "2"}));
  REQUIRE(t.select.has_value());
  CHECK(t.select->by == "val_ged");
  CHECK(t.select->every == 50);  // --checkpoint-every
  CHECK(t.select->cases == 2);
  CHECK(t.select->samples == 16);
  const auto u = std::get<train_command>(
      with({"--select-best-by=val_ged", "--val-cases", "3", "--val-every", "7", "--val-samples", "4"}));
  CHECK(nlohmann::json(*u.select) == nlohmann::json{{"by", "val_ged"}, {"every", 7}, {"cases", 3}, {"samples", 4}});

  const std::vector<std::pair<V, std::string>> refused{
      {{"--select-best-by", "loss", "--val-cases", "2"}, "'loss' is not one of val_ged"},
      {{"--val-every", "2"}, "--val-every configures the validation of --select-best-by"},
      {{"--val-cases", "2"}, "--val-cases configures the validation of --select-best-by"},
      {{"--val-samples", "4"}, "--val-samples configures"},
      {{"--select-best-by", "val_ged"}, "needs --val-cases K"},
      {{"--select-best-by", "val_ged", "--val-cases", "8"}, "--val-cases 8 holds out every training case"},
      {{"--select-best-by", "val_ged", "--val-cases", "0"}, "option --val-cases: 0 is outside"},
      {{"--select-best-by", "val_ged", "--val-cases", "2", "--val-samples", "0"}, "option --val-samples: 0"},
      {{"--select-best-by", "val_ged", "--val-cases", "2", "--val-every", "x"}, "option --val-every: 'x'"},
  };
  for (const auto& [extra, message] : refused) {
    V v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    INFO("arguments: " << nlohmann::json(v).dump());
    const auto r = cli(v);
    CHECK(r.code == 2);
    CHECK(r.err.find(message) != std::string::npos);
  }
}

TEST_CASE("select-best: val.csv, best.safetensors, sampling from it, and a resume that keeps the best",
          "[apps][cli][select]") {
  const auto dir = ambiseg_test::fresh_build_dir("select_best");
  const auto run = dir / "run";
  // A high lr makes the values move within 6 steps.
  const std::vector<std::string> base{
      "train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16", "--config", "tiny", "--batch", "2",
      "--steps", "6", "--lr", "0.01", "--warmup", "1", "--ema", "0.5", "--checkpoint-every", "4", "--snapshots", "2",
      "--out", run.string()};
  auto with = [&](std::vector<std::string> extra) {
    auto v = base;
    v.insert(v.end(), extra.begin(), extra.end());
    return v;
  };
  const std::vector<std::string> select{"--select-best-by", "val_ged", "--val-cases", "2", "--val-every", "2",
                                        "--val-samples", "4"};
  const auto trained = cli(with(select));
  INFO(trained.out << trained.err);
  REQUIRE(trained.code == 0);
  CHECK(trained.out.find("6 training cases (2 more held out for validation)") != std::string::npos);
  CHECK(trained.err.find("step 2: val_ged ") != std::string::npos);

  // Every 2 steps and at the end.
  const auto rows = read_val_csv(run / "val.csv");
  REQUIRE(rows.size() == 3);
  CHECK(rows[0].step == 2);
  CHECK(rows[1].step == 4);
  CHECK(rows[2].step == 6);
  for (const auto& r : rows) CHECK(std::stod(r.value) >= 0.0);

  // best.safetensors: a training checkpoint of the lowest row, the last kept beside it.
  REQUIRE(std::filesystem::exists(run / "best.safetensors"));
  const auto best = io::safetensors_file::open(run / "best.safetensors");
  const val_row low = lowest(rows);
  CHECK(best.metadata().at("step") == std::to_string(low.step));
  CHECK(best.metadata().at("val_ged") == low.value);
  CHECK(best.metadata().at("format") == train::training_checkpoint_format);
  CHECK(best.metadata().count("ema") == 1);
  const auto last = io::safetensors_file::open(run / "checkpoint.safetensors");
  CHECK(last.metadata().at("step") == "6");
  CHECK(nlohmann::json::parse(last.metadata().at("selection")) ==
        nlohmann::json{{"by", "val_ged"}, {"every", 2}, {"cases", 2}, {"samples", 4}});

  const auto sampled = cli({"sample", "--ckpt", (run / "best.safetensors").string(), "--data", "synthetic",
                            "--synthetic-images", "1", "--images", "2", "-n", "2", "--steps", "2", "--out",
                            (dir / "samples").string()});
  INFO(sampled.out << sampled.err);
  CHECK(sampled.code == 0);
  CHECK(sampled.out.find("step " + std::to_string(low.step) + ", EMA weights") != std::string::npos);
  const auto evaluated = cli({"eval", "--ckpt", (run / "best.safetensors").string(), "--data", "synthetic",
                              "--synthetic-images", "1", "--synthetic-test", "2", "-n", "2", "--steps", "2"});
  CHECK(evaluated.code == 0);

  // Interrupted after step 2: the steps after it run and are validated again, the best so
  // far comes back from best.safetensors, and the run ends as it did.
  const std::string val_before = read_text(run / "val.csv");
  std::filesystem::copy_file(run / "snapshots" / "step-2.safetensors", run / "checkpoint.safetensors",
                             std::filesystem::copy_options::overwrite_existing);
  const auto resumed = cli({"train", "--data", "synthetic", "--synthetic-images", "8", "--out", run.string(),
                            "--resume"});
  INFO(resumed.out << resumed.err);
  REQUIRE(resumed.code == 0);
  CHECK(resumed.err.find("note: --resume continues the validation stored in") != std::string::npos);
  CHECK(resumed.err.find("2 row(s) after step 2") != std::string::npos);
  CHECK(read_text(run / "val.csv") == val_before);  // validation draws nothing from the training rngs
  const auto best_after = io::safetensors_file::open(run / "best.safetensors");
  CHECK(best_after.metadata().at("step") == std::to_string(low.step));
  CHECK(best_after.metadata().at("val_ged") == low.value);
  // A rerun step finds the same value: no longer strictly better than the best read back.
  if (low.step > 2) CHECK(resumed.err.find("(best; writing") == std::string::npos);

  // A run started without validation cannot take it up on --resume; a new run in the folder
  // removes the earlier run's best.safetensors and val.csv.
  const auto plain = cli(with({}));
  INFO(plain.out << plain.err);
  REQUIRE(plain.code == 0);
  CHECK(plain.err.find("removed") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(run / "best.safetensors"));
  CHECK_FALSE(std::filesystem::exists(run / "val.csv"));
  auto late = with(select);
  late.push_back("--resume");
  const auto refused = cli(late);
  CHECK(refused.code == 1);
  CHECK(refused.err.find("--select-best-by val_ged: the run of") != std::string::npos);
}

TEST_CASE("select-best: --val-cases is checked against a data set's training cases once loaded",
          "[apps][cli][select]") {
  // Synthetic sizes are refused at parsing; a loaded data set at run time (status 1).
  data::case_set all;
  for (int i = 0; i < 3; ++i)
    all.add({"c" + std::to_string(i), tensor<float>::zeros(shape{1, 8, 8}),
             tensor<std::uint8_t>::zeros(shape{2, 8, 8})});
  CHECK_THROWS_WITH(split_for_validation(all, 3), Catch::Contains("--val-cases 3 holds out every training case"));
  const auto s = split_for_validation(all, 1);
  CHECK(s.train.size() == 2);
  REQUIRE(s.validation.size() == 1);
  CHECK(s.validation[0].id == "c2");  // the last case, in the loader's order
  CHECK(split_for_validation(all, 0).train.size() == 3);
}
