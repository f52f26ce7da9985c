// tests/apps: `ambiseg train --cpu-budget` (stops a long run, counts only the steps, carries
// over a resume) and `--folds K --fold I` (every case in one fold, train and test disjoint,
// independent of the load order; eval and sample on the fold; the refusals).
#include <catch2/catch.hpp>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ambiseg/io/safetensors.hpp"
#include "ambiseg_apps/training_run.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "apps/tool_run.hpp"

using namespace ambiseg;
using namespace ambiseg::apps;

namespace {

ambiseg_test::tool_run cli(const std::vector<std::string>& args) {
  return ambiseg_test::run_tool([](const auto& a, auto& out, auto& err) { return run_cli(a, out, err); }, args);
}

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  REQUIRE(in);
  return nlohmann::json::parse(in);
}

// The last data row of log.csv, split at the commas.
std::vector<std::string> last_log_row(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::string line, last;
  while (std::getline(in, line))
    if (!line.empty()) last = line;
  std::vector<std::string> f;
  std::stringstream s(last);
  for (std::string x; std::getline(s, x, ',');) f.push_back(x);
  return f;
}

std::set<std::string> ids(const data::case_set& cases) {
  std::set<std::string> out;
  for (std::size_t i = 0; i < cases.size(); ++i) out.emplace(cases[i].id);
  return out;
}

using args = std::vector<std::string>;

// A tiny synthetic run that could take a million steps.
args long_run(const std::filesystem::path& out, args extra) {
  args v{"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16", "--config", "tiny", "--batch",
         "2", "--steps", "1000000", "--checkpoint-every", "1000000", "--out", out.string()};
  v.insert(v.end(), extra.begin(), extra.end());
  return v;
}

}  // namespace

TEST_CASE("cpu budget: stops a long run, saves it as a normal end, and a resume counts on", "[apps][cli][budget]") {
  const auto dir = ambiseg_test::fresh_build_dir("cpu_budget");
  const auto run = dir / "run";
  const auto trained = cli(long_run(run, {"--cpu-budget", "0.5"}));
  INFO(trained.out << trained.err);
  REQUIRE(trained.code == 0);
  CHECK(trained.out.find("(stopped: --cpu-budget 0.5 s reached)") != std::string::npos);

  const auto summary = read_json(run / "summary.json");
  const auto steps = summary.at("steps_done").get<std::int64_t>();
  const double cpu = summary.at("train_cpu_seconds").get<double>();
  CHECK(summary.at("stopped_by") == "cpu_budget");
  CHECK(summary.at("planned_steps") == 1000000);
  CHECK(summary.at("cpu_budget") == 0.5);
  CHECK(summary.at("training_cases") == 8);
  CHECK(summary.at("parameters").get<std::int64_t>() > 0);
  CHECK(steps >= 1);
  CHECK(steps < 1000000);
  CHECK(cpu >= 0.5);
  CHECK(cpu < 5.0);  // one step past the budget at most; a tiny step is milliseconds

  // The checkpoint is the state at the last step, with the CPU seconds it took.
  const auto ckpt = io::safetensors_file::open(run / "checkpoint.safetensors");
  CHECK(ckpt.metadata().at("step") == std::to_string(steps));
  CHECK(std::stod(ckpt.metadata().at(train_cpu_key)) == Approx(cpu));
  CHECK(ckpt.metadata().at(folds_key) == "none");
  CHECK(last_log_row(run / "log.csv").at(0) == std::to_string(steps));

  // A resume counts the recorded seconds: the same budget is spent, a larger one goes on.
  const auto spent = cli({"train", "--data", "synthetic", "--synthetic-images", "8", "--out", run.string(), "--resume",
                          "--cpu-budget", "0.5"});
  INFO(spent.out << spent.err);
  REQUIRE(spent.code == 0);
  CHECK(read_json(run / "summary.json").at("steps_done") == steps);
  CHECK(read_json(run / "summary.json").at("stopped_by") == "cpu_budget");
  const double larger = cpu + 0.5;
  const auto more = cli({"train", "--data", "synthetic", "--synthetic-images", "8", "--out", run.string(), "--resume",
                         "--cpu-budget", std::to_string(larger)});
  INFO(more.out << more.err);
  REQUIRE(more.code == 0);
  const auto after = read_json(run / "summary.json");
  CHECK(after.at("first_step") == steps);
  CHECK(after.at("steps_done").get<std::int64_t>() > steps);
  CHECK(after.at("train_cpu_seconds").get<double>() >= larger - 1e-6);

  // --steps still ends a run first when it comes first.
  const auto short_run = cli({"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16", "--config",
                              "tiny", "--batch", "2", "--steps", "3", "--cpu-budget", "1000", "--out",
                              (dir / "short").string()});
  REQUIRE(short_run.code == 0);
  const auto s = read_json(dir / "short" / "summary.json");
  CHECK(s.at("stopped_by") == "steps");
  CHECK(s.at("steps_done") == 3);
}

TEST_CASE("cpu budget: with --select-best-by the budget's last step is validated", "[apps][cli][budget]") {
  const auto dir = ambiseg_test::fresh_build_dir("cpu_budget_val");
  const auto r = cli(long_run(dir / "run", {"--cpu-budget", "0.3", "--select-best-by", "val_ged", "--val-cases", "2",
                                            "--val-every", "1", "--val-samples", "4"}));
  INFO(r.out << r.err);
  REQUIRE(r.code == 0);
  const auto summary = read_json(dir / "run" / "summary.json");
  const auto steps = summary.at("steps_done").get<std::int64_t>();
  CHECK(summary.at("stopped_by") == "cpu_budget");
  CHECK(summary.at("training_cases") == 6);
  std::ifstream val(dir / "run" / "val.csv");
  std::string line, last;
  std::int64_t rows = -1;  // the header
  while (std::getline(val, line))
    if (!line.empty()) last = line, ++rows;
  CHECK(rows == steps);
  CHECK(last.substr(0, last.find(',')) == std::to_string(steps));
}

namespace {
struct quiet_observer final : training_observer {
  void started(const training_start&) override {}
  void stepped(const step_report&, bool) override {}
  void checkpointing() override {}
};
}  // namespace

TEST_CASE("cpu budget: the CPU time of validations is not counted", "[apps][budget]") {
  // Each validation burns 20 ms of CPU (measured by the same clock); were it counted, a
  // 50 ms budget would end the run after 3 steps, and the steps' count would hold it.
  const auto dir = ambiseg_test::fresh_build_dir("cpu_budget_burn");
  const auto cmd = std::get<train_command>(parse_command(long_run(dir, {"--cpu-budget", "0.05"})));
  data_request dr = cmd.data;
  dr.synthetic_size = cmd.config.crop_size;
  const loaded_data d = load_data(dr);
  training_plan plan;
  plan.checkpoint = dir / "checkpoint.safetensors";
  plan.checkpoint_every = 1000000;
  plan.validate_every = 1;
  plan.best = dir / "best.safetensors";
  plan.cpu_budget = 0.05;
  std::int64_t validations = 0;
  const validation_function<cpu> burn = [&](sampling_model<cpu>&) {
    ++validations;
    const std::clock_t c0 = std::clock();
    while (std::clock() - c0 < CLOCKS_PER_SEC / 50) {
    }
    return 1.0;
  };
  quiet_observer observer;
  const std::clock_t c0 = std::clock();
  const training_outcome o = run_training<cpu>(cmd.config, {&d.train, d.train.size()}, plan, observer, burn);
  const double total = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  CHECK(o.budget_reached);
  CHECK(validations == o.steps_done);
  CHECK(o.train_cpu_seconds >= 0.05);
  CHECK(total - o.train_cpu_seconds >= 0.02 * static_cast<double>(validations));
}

TEST_CASE("cpu budget and folds: refusals that name the flag", "[apps][cli][budget][folds]") {
  const args train{"train", "--data", "synthetic", "--synthetic-images", "8", "--out", "d"};
  const std::vector<std::pair<args, std::string>> refused{
      {{"--cpu-budget", "0"}, "option --cpu-budget: 0 is not a budget"},
      {{"--cpu-budget", "-2"}, "option --cpu-budget: -2 is not a budget"},
      {{"--cpu-budget", "nan"}, "option --cpu-budget: 'nan' is not a number"},
      {{"--cpu-budget", "inf"}, "option --cpu-budget: 'inf' is not a number"},
      {{"--cpu-budget", "ten"}, "option --cpu-budget: 'ten' is not a number"},
      {{"--cpu-budget", "1e99"}, "option --cpu-budget: 1e99 is outside"},
      {{"--cpu-budget"}, "option --cpu-budget needs a value"},
      {{"--fold", "1"}, "--fold I needs --folds K"},
      {{"--folds", "4"}, "--folds K needs --fold I"},
      {{"--folds", "4", "--fold", "4"}, "--fold 4 is not a fold of --folds 4 (0 to 3)"},
      {{"--folds", "1", "--fold", "0"}, "option --folds: 1 is outside [2,"},
      {{"--folds", "3", "--fold", "-1"}, "option --fold: -1 is outside [0,"},
      {{"--folds", "9", "--fold", "0"}, "--folds 9 exceeds the 8 synthetic cases"},
      {{"--folds", "2", "--fold", "0", "--split", "s"}, "--folds replaces the --split 's'"},
      {{"--folds", "2", "--fold", "0", "--select-best-by", "val_ged", "--val-cases", "4"},
       "--val-cases 4 holds out every training case (4 training cases outside the test fold"},
  };
  for (const auto& [extra, message] : refused) {
    args v = train;
    v.insert(v.end(), extra.begin(), extra.end());
    INFO("arguments: " << nlohmann::json(v).dump());
    const auto r = cli(v);
    CHECK(r.code == 2);
    CHECK(r.err.find(message) != std::string::npos);
  }
  // eval, sample and export read data the same way.
  for (const args& v : {args{"eval", "--ckpt", "c", "--data", "synthetic", "--fold", "0"},
                        args{"sample", "--ckpt", "c", "--data", "synthetic", "--out", "o", "--folds", "2"},
                        args{"export", "--data", "synthetic", "--out", "o", "--folds", "2", "--fold", "2"}}) {
    INFO("arguments: " << nlohmann::json(v).dump());
    const auto r = cli(v);
    CHECK(r.code == 2);
    CHECK(r.err.find("--fold") != std::string::npos);
  }
  // A data set's size is known once loaded.
  CHECK_THROWS_WITH(fold_of_cases(std::vector<std::string>{"a", "b", "c"}, 4),
                    Catch::Contains("--folds 4: the data has 3 cases"));
}

TEST_CASE("folds: every case in exactly one fold, by sorted id, whatever the load order", "[apps][folds]") {
  std::vector<std::string> names;
  for (int i = 0; i < 39; ++i) names.push_back("case" + std::string(i < 9 ? "0" : "") + std::to_string(i + 1));
  const auto fold = fold_of_cases(names, 5);
  std::map<std::int64_t, int> sizes;
  for (auto f : fold) ++sizes[f];
  CHECK(sizes == std::map<std::int64_t, int>{{0, 8}, {1, 8}, {2, 8}, {3, 8}, {4, 7}});
  CHECK(fold[0] == 0);  // case01
  CHECK(fold[5] == 0);  // case06
  CHECK(fold[38] == 3);  // case39
  // Reversed and shuffled load orders give each id the same fold.
  std::vector<std::string> shuffled = names;
  std::reverse(shuffled.begin(), shuffled.end());
  std::rotate(shuffled.begin(), shuffled.begin() + 11, shuffled.end());
  const auto again = fold_of_cases(shuffled, 5);
  for (std::size_t i = 0; i < shuffled.size(); ++i) {
    const auto at = std::find(names.begin(), names.end(), shuffled[i]) - names.begin();
    CHECK(again[i] == fold[static_cast<std::size_t>(at)]);
  }
}

TEST_CASE("folds: train and test of each fold partition the synthetic cases", "[apps][folds]") {
  data_request r;
  r.synthetic_size = 16;
  r.synthetic_train = 10;
  r.folds = 3;
  std::set<std::string> tested;
  for (std::int64_t i = 0; i < 3; ++i) {
    r.fold = i;
    const loaded_data d = load_data(r);
    const auto train = ids(d.train), test = ids(d.test);
    CHECK(train.size() + test.size() == 10);
    for (const auto& id : test) {
      CHECK(train.count(id) == 0);
      CHECK(tested.insert(id).second);  // in no earlier fold's test set
    }
    // The oracle of eval --baselines draws from the generator's index of each test case.
    REQUIRE(d.test_indices.size() == d.test.size());
    for (std::size_t k = 0; k < d.test.size(); ++k)
      CHECK(d.test[k].id == "synthetic_" + std::to_string(d.test_indices[k]));
    // The same request twice: the same folds.
    CHECK(ids(load_data(r).test) == test);
  }
  CHECK(tested.size() == 10);
}

TEST_CASE("folds: the QUBIQ brain-growth pickle in 5 folds", "[apps][folds]") {
  const std::string pkl = std::string(AMBISEG_SHARED_DIR) + "/data/qubiq-brain-growth/brain_growth_alpha.pkl";
  if (!std::filesystem::exists(pkl)) {
    WARN("skipped: " << pkl << " is absent (the project's shared/ folder)");
    return;
  }
  data_request r;
  r.spec = pkl;
  r.folds = 5;
  std::set<std::string> tested;
  for (std::int64_t i = 0; i < 5; ++i) {
    r.fold = i;
    const loaded_data d = load_data(r);
    CHECK(d.train.size() + d.test.size() == 39);
    CHECK(d.test.size() == (i < 4 ? 8u : 7u));
    for (const auto& id : ids(d.test)) CHECK(tested.insert(id).second);
    for (const auto& id : ids(d.train)) CHECK(ids(d.test).count(id) == 0);
  }
  CHECK(tested.size() == 39);
  r.folds = 40;
  r.fold = 0;
  CHECK_THROWS_WITH(load_data(r), Catch::Contains("--folds 40: the data has 39 cases"));
}

TEST_CASE("folds: train on the other folds, eval and sample on the fold, with the costs a table needs",
          "[apps][cli][folds]") {
  const auto dir = ambiseg_test::fresh_build_dir("folds_cli");
  const auto run = dir / "run";
  const args data{"--data", "synthetic", "--synthetic-images", "6", "--folds", "3", "--fold", "1"};
  args train{"train", "--crop", "16", "--config", "tiny", "--batch", "2", "--steps", "2", "--out", run.string()};
  train.insert(train.end(), data.begin(), data.end());
  const auto trained = cli(train);
  INFO(trained.out << trained.err);
  REQUIRE(trained.code == 0);
  CHECK(trained.out.find("4 training cases") != std::string::npos);
  const auto summary = read_json(run / "summary.json");
  CHECK(summary.at("folds") == 3);
  CHECK(summary.at("fold") == 1);
  CHECK(io::safetensors_file::open(run / "checkpoint.safetensors").metadata().at(folds_key) == "1/3");

  const std::string ckpt = (run / "checkpoint.safetensors").string();
  args eval{"eval", "--ckpt", ckpt, "-n", "2", "--steps", "2", "--baselines", "--out", (dir / "eval").string()};
  eval.insert(eval.end(), data.begin(), data.end());
  const auto evaluated = cli(eval);
  INFO(evaluated.out << evaluated.err);
  REQUIRE(evaluated.code == 0);
  CHECK(evaluated.err.find("warning") == std::string::npos);
  const auto e = read_json(dir / "eval" / "eval.json");
  CHECK(e.at("info").at("folds") == "1/3");
  CHECK(e.at("info").at("model") == "diffusion");
  CHECK(e.at("info").at("parameters") == summary.at("parameters"));
  CHECK(e.at("info").at("network_passes_per_mask") == 2);
  CHECK(e.at("info").at("sampling_cpu_seconds").get<double>() > 0);
  CHECK(e.at("results").at(0).at("images") == 2);  // the fold's cases
  CHECK(e.at("results").at(1).at("method") == "oracle");

  // Another fold (or none) holds cases the model trained on: said, not refused.
  const auto other = cli({"eval", "--ckpt", ckpt, "--data", "synthetic", "--synthetic-images", "6", "--folds", "3",
                          "--fold", "0", "-n", "2", "--steps", "2"});
  CHECK(other.code == 0);
  CHECK(other.err.find("was trained with --folds/--fold 1/3, this evaluation uses 0/3") != std::string::npos);
  // A resume on other folds would change the training data.
  const auto resumed = cli({"train", "--data", "synthetic", "--synthetic-images", "6", "--out", run.string(),
                            "--resume"});
  CHECK(resumed.code == 1);
  CHECK(resumed.err.find("trained on the folds 1/3") != std::string::npos);

  const auto sampled = cli({"sample", "--ckpt", ckpt, "--data", "synthetic", "--synthetic-images", "1", "--images",
                            "1", "-n", "16", "--steps", "3", "--out", (dir / "samples").string()});
  INFO(sampled.out << sampled.err);
  REQUIRE(sampled.code == 0);
  const auto s = read_json(dir / "samples" / "sample.json");
  CHECK(s.at("images") == 1);
  CHECK(s.at("n") == 16);
  CHECK(s.at("network_passes_per_mask") == 3);
  CHECK(s.at("cpu_seconds").get<double>() > 0);

  const auto kinds = cli({"help", "models"});
  CHECK(kinds.code == 0);
  CHECK(kinds.out.find("diffusion\n") != std::string::npos);
  CHECK(kinds.out.find("prob_unet_aa\n") != std::string::npos);
}
