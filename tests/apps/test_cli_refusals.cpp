// tests/apps: what `ambiseg` refuses and how it says so — output folders checked before any
// work (with the system's reason), --resume of a folder that is not there, a log.csv that
// is damaged or cut short, a checkpoint with an impossible step, and hostile arguments.
#include <catch2/catch.hpp>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "ambiseg/io/atomic_file.hpp"
#include "ambiseg/io/npy.hpp"
#include "ambiseg/io/safetensors.hpp"
#include "ambiseg_apps/cli.hpp"
#include "ambiseg_apps/run_cli.hpp"
#include "apps/tool_run.hpp"
#include "scratch_dir.hpp"

using namespace ambiseg;
using namespace ambiseg::apps;
using ambiseg_test::scratch_dir;
namespace fs = std::filesystem;

namespace {

using cli_run = ambiseg_test::tool_run;

cli_run run(const std::vector<std::string>& args) {
  return ambiseg_test::run_tool([](const auto& a, auto& out, auto& err) { return run_cli(a, out, err); }, args);
}

std::vector<std::string> tiny_train(const fs::path& out, const std::string& steps) {
  return {"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16", "--config", "tiny",
          "--batch", "2", "--steps", steps, "--out", out.string()};
}

// One tiny trained model for the tests that only read it.
const fs::path& tiny_checkpoint() {
  static const fs::path ckpt = [] {
    const fs::path dir = fs::path(AMBISEG_BINARY_DIR) / "test_cli_refusals_tmp" / "model";
    fs::remove_all(dir);
    const cli_run r = run(tiny_train(dir, "2"));
    INFO(r.err);
    REQUIRE(r.code == 0);
    return dir / "checkpoint.safetensors";
  }();
  return ckpt;
}

std::vector<std::string> lines_of(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void write_lines(const fs::path& file, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  io::write_file_atomically(file, text);
}

// A copy of `from` whose "step" metadata says `step`.
void copy_with_step(const fs::path& from, const fs::path& to, const std::string& step) {
  const auto file = io::safetensors_file::open(from);
  std::vector<std::vector<float>> values;
  std::vector<io::tensor_to_save> entries;
  values.reserve(file.size());
  for (const auto& t : file.tensors()) {
    values.push_back(file.read<float>(t.name));
    entries.push_back(io::tensor_to_save::from<float>(t.name, values.back().data(), t.shape));
  }
  std::map<std::string, std::string> metadata = file.metadata();
  metadata["step"] = step;
  io::save_safetensors(to, entries, metadata);
}

// A folder that exists and takes no files, even for root; empty when there is none.
fs::path read_only_folder(const scratch_dir& scratch) {
  if (::geteuid() != 0) {
    const fs::path dir = scratch / "read-only";
    fs::create_directories(dir);
    fs::permissions(dir, fs::perms::owner_read | fs::perms::owner_exec);
    return dir;
  }
  std::FILE* probe = std::fopen("/sys/ambiseg-write-probe", "wb");
  if (probe == nullptr && fs::is_directory("/sys")) return "/sys";  // sysfs: no new files
  if (probe) std::fclose(probe);
  return {};
}

}  // namespace

TEST_CASE("sample and eval check --out before any work", "[apps][cli]") {
  const scratch_dir scratch("cli-out");
  const std::string ckpt = tiny_checkpoint().string();
  const fs::path file = scratch / "a-file";
  io::write_file_atomically(file, "not a folder");

  const cli_run s = run({"sample", "--ckpt", ckpt, "--data", "synthetic", "--images", "1", "-n", "2", "--steps",
                         "1", "--out", file.string()});
  CHECK(s.code == 1);
  CHECK_THAT(s.err, Catch::Contains("--out folder '" + file.string() + "' is a file, not a folder"));
  CHECK(s.out.empty());

  // A bad --init-noise is only found while preparing the work: --out is refused first.
  io::write_npy<float>(scratch / "noise.npy", std::vector<float>(3, 0.0f), {3});
  const cli_run n = run({"sample", "--ckpt", ckpt, "--data", "synthetic", "--images", "1", "-n", "2", "--steps",
                         "1", "--init-noise", (scratch / "noise.npy").string(), "--out", file.string()});
  CHECK(n.code == 1);
  CHECK_THAT(n.err, Catch::Contains("--out folder") && !Catch::Contains("--init-noise"));

  const cli_run e = run({"eval", "--ckpt", ckpt, "--data", "synthetic", "--images", "1", "-n", "2", "--steps", "1",
                         "--out", file.string()});
  CHECK(e.code == 1);
  CHECK_THAT(e.err, Catch::Contains("is a file, not a folder") && !Catch::Contains("sampled"));
  CHECK(e.out.empty());

  // --save-x0 into a folder that is not there, also before the work.
  const cli_run x = run({"sample", "--ckpt", ckpt, "--data", "synthetic", "--images", "1", "-n", "2", "--steps", "1",
                         "--save-x0", (scratch / "nowhere" / "x0.npy").string(), "--out", (scratch / "s").string()});
  CHECK(x.code == 1);
  CHECK_THAT(x.err, Catch::Contains("--save-x0") && Catch::Contains("does not exist"));
  CHECK_FALSE(fs::exists(scratch / "s" / "masks.npy"));
}

TEST_CASE("an output folder that takes no files is refused with the system's reason", "[apps][cli]") {
  const scratch_dir scratch("cli-read-only");
  const fs::path locked = read_only_folder(scratch);
  if (locked.empty()) {
    WARN("no read-only folder on this machine; skipped");
    return;
  }
  const std::string reason = std::strerror(EACCES);  // "Permission denied"
  const cli_run t = run(tiny_train(locked, "1"));
  CHECK(t.code == 1);
  CHECK_THAT(t.err, Catch::Contains("cannot write in the --out folder '" + locked.string() + "'") &&
                        Catch::Contains(reason));
  const cli_run s = run({"sample", "--ckpt", tiny_checkpoint().string(), "--data", "synthetic", "--images", "1", "-n",
                         "1", "--steps", "1", "--out", locked.string()});
  CHECK(s.code == 1);
  CHECK_THAT(s.err, Catch::Contains(locked.string()) && Catch::Contains(reason));
  const cli_run x = run({"export", "--data", "synthetic", "--synthetic-images", "2", "--synthetic-test", "1",
                         "--crop", "16", "--out", locked.string()});
  CHECK(x.code == 1);
  CHECK_THAT(x.err, Catch::Contains(locked.string()) && Catch::Contains(reason));
  // A folder that cannot be created: the reason too.
  const fs::path below_file = scratch / "a-file" / "run";
  io::write_file_atomically(scratch / "a-file", "x");
  const cli_run c = run(tiny_train(below_file, "1"));
  CHECK(c.code == 1);
  CHECK_THAT(c.err, Catch::Contains("cannot create the --out folder '" + below_file.string() + "'") &&
                        Catch::Contains(std::strerror(ENOTDIR)));
}

TEST_CASE("--resume of a folder that does not exist is refused and creates nothing", "[apps][cli]") {
  const scratch_dir scratch("cli-resume-missing");
  const fs::path missing = scratch / "no-such-run";
  auto args = tiny_train(missing, "2");
  args.push_back("--resume");
  const cli_run r = run(args);
  CHECK(r.code == 1);
  CHECK_THAT(r.err, Catch::Contains("'" + missing.string() + "' does not exist"));
  CHECK_FALSE(fs::exists(missing));
}

TEST_CASE("--resume keeps every column of the earlier log rows and warns of what it cannot use", "[apps][cli]") {
  const scratch_dir scratch("cli-resume-log");
  // A run of 6 steps whose checkpoint is put back to step 4: it stopped after step 6 but
  // its last checkpoint was step 4 (rows 5 and 6 are then re-run).
  const fs::path run_dir = scratch / "run";
  auto args = tiny_train(run_dir, "6");
  args.insert(args.end(), {"--snapshots", "4"});
  REQUIRE(run(args).code == 0);
  const fs::path csv = run_dir / "log.csv", ckpt = run_dir / "checkpoint.safetensors";
  const std::vector<std::string> first_log = lines_of(csv);
  REQUIRE(first_log.size() == 7);
  auto resume_from_step_4 = [&](const std::vector<std::string>& log_lines) {
    fs::copy_file(run_dir / "snapshots" / "step-4.safetensors", ckpt, fs::copy_options::overwrite_existing);
    write_lines(csv, log_lines);
    auto resumed = tiny_train(run_dir, "6");
    resumed.push_back("--resume");
    return run(resumed);
  };

  SECTION("the rows up to the checkpoint are kept whole") {
    const cli_run r = resume_from_step_4(first_log);
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto log = lines_of(csv);
    REQUIRE(log.size() == 7);
    for (std::size_t k = 0; k <= 4; ++k) CHECK(log[k] == first_log[k]);  // header + steps 1-4, every column
    CHECK(log[5].rfind("5,", 0) == 0);
    CHECK_THAT(r.err, Catch::Contains("2 row(s) after step 4"));
  }
  SECTION("a malformed row is left out with a warning naming the file and the line") {
    auto damaged = first_log;
    damaged[2] = "two,0.5,1e-4,0.1,0.2,0.3";  // step 2
    damaged[3] = "3,0.5";                      // a row cut short: kept, the missing columns empty
    const cli_run r = resume_from_step_4(damaged);
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.err, Catch::Contains("warning: " + csv.string() + ":3: cannot read 'two,0.5"));
    CHECK_THAT(r.err, Catch::Contains("no rows for steps 2 "));
    const auto log = lines_of(csv);
    REQUIRE(log.size() == 6);
    CHECK(log[1] == first_log[1]);
    CHECK(log[2] == "3,0.5,,,,");
    CHECK(log[3] == first_log[4]);
    CHECK(log[4].rfind("5,", 0) == 0);
  }
  SECTION("a log cut short resumes with a warning naming the missing steps") {
    const cli_run r = resume_from_step_4({first_log[0], first_log[1], first_log[2]});
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.err, Catch::Contains("warning: " + csv.string() + " has no rows for steps 3-4"));
    const auto log = lines_of(csv);
    REQUIRE(log.size() == 5);
    CHECK(log[2] == first_log[2]);
    CHECK(log[3].rfind("5,", 0) == 0);
  }
  SECTION("a missing log resumes with a warning") {
    fs::remove(csv);
    fs::copy_file(run_dir / "snapshots" / "step-4.safetensors", ckpt, fs::copy_options::overwrite_existing);
    auto resumed = tiny_train(run_dir, "6");
    resumed.push_back("--resume");
    const cli_run r = run(resumed);
    REQUIRE(r.code == 0);
    CHECK_THAT(r.err, Catch::Contains("warning: " + csv.string() + " cannot be read"));
    CHECK(lines_of(csv).size() == 3);
  }
}

TEST_CASE("a checkpoint with a negative step is refused, naming the file", "[apps][cli]") {
  const scratch_dir scratch("cli-step");
  const fs::path bad = scratch / "negative.safetensors";
  copy_with_step(tiny_checkpoint(), bad, "-5");
  const cli_run s = run({"sample", "--ckpt", bad.string(), "--data", "synthetic", "--images", "1", "-n", "1",
                         "--steps", "1", "--out", (scratch / "s").string()});
  CHECK(s.code == 1);
  CHECK_THAT(s.err, Catch::Contains("checkpoint '" + bad.string() + "' records step='-5'"));
  CHECK_FALSE(fs::exists(scratch / "s" / "masks.npy"));
  const cli_run e = run({"eval", "--ckpt", bad.string(), "--data", "synthetic", "--images", "1", "-n", "1",
                         "--steps", "1"});
  CHECK(e.code == 1);
  CHECK_THAT(e.err, Catch::Contains(bad.string()) && Catch::Contains("step='-5'"));
  const fs::path words = scratch / "words.safetensors";
  copy_with_step(tiny_checkpoint(), words, "five");
  const cli_run w = run({"sample", "--ckpt", words.string(), "--data", "synthetic", "--images", "1", "-n", "1",
                         "--steps", "1", "--out", (scratch / "w").string()});
  CHECK(w.code == 1);
  CHECK_THAT(w.err, Catch::Contains(words.string()) && Catch::Contains("step='five'"));
}

TEST_CASE("hostile arguments get a message that names the option and the problem", "[apps][cli]") {
  struct bad_case {
    std::vector<std::string> args;
    int code;
    std::string expect;
  };
  const scratch_dir scratch("cli-hostile");
  const std::string ckpt = tiny_checkpoint().string(), out = (scratch / "o").string();
  // A forgotten value is not taken from the next option (that made a folder named --resume).
  const std::vector<bad_case> cases = {
      {{"train", "--data", "synthetic", "--out", "--resume"}, 2, "option --out needs a value (found the option '--resume'"},
      {{"train", "--data", "synthetic", "--out", "d", "--steps", "99999999999999999999999"}, 2,
       "option --steps: 99999999999999999999999 is outside [1, 1099511627776]"},
      {{"train", "--data", "synthetic", "--out", "d", "--ema", "1"}, 2, "option --ema: 1 is outside [0, 0.999999999]"},
      {{"train", "--data", "", "--out", "d"}, 2, "option --data needs a non-empty value"},
      {{"eval", "--ckpt", ckpt, "--data", "synthetic", "--pp", "nan"}, 2, "option --pp: 'nan' is not a number"},
      {{"sample", "--ckpt", (scratch / "none.safetensors").string(), "--data", "synthetic", "--out", out}, 1,
       "--ckpt '" + (scratch / "none.safetensors").string() + "' does not exist"},
      {{"sample", "--ckpt", scratch.path.string(), "--data", "synthetic", "--out", out}, 1, "is not a file"},
      {{"sample", "--ckpt", ckpt, "--data", "synthetic", "--split", scratch.path.string(), "--out", out}, 1,
       "the synthetic data has its own test images"},
  };
  for (const auto& c : cases) {
    INFO(nlohmann::json(c.args).dump());
    const cli_run r = run(c.args);
    CHECK(r.code == c.code);
    CHECK_THAT(r.err, Catch::Contains(c.expect));
  }
  CHECK_FALSE(fs::exists("--resume"));

  // Images that hold no picture: refused by name instead of sampled into garbage.
  io::write_npy<float>(scratch / "nan.npy", std::vector<float>(256, std::nanf("")), {16, 16});
  io::write_npy<float>(scratch / "empty.npy", std::vector<float>{}, {0, 16});
  for (const char* name : {"nan.npy", "empty.npy"}) {
    const std::string image = (scratch / name).string();
    const cli_run r = run({"sample", "--ckpt", ckpt, "--image", image, "--steps", "1", "-n", "1", "--out", out});
    INFO(r.err);
    CHECK(r.code == 1);
    CHECK_THAT(r.err, Catch::Contains("--image '" + image + "'") &&
                          (Catch::Contains("non-finite") || Catch::Contains("is empty")));
  }
}

namespace {
// A trainer whose step `fail_at` meets a non-finite loss, as train::trainer reports it.
struct diverging_trainer {
  train::trainer_config cfg;
  std::int64_t done = 0, fail_at = 0;
  const train::trainer_config& config() const { return cfg; }
  std::int64_t steps_done() const { return done; }
  train::step_report step() {
    if (done + 1 == fail_at) throw value_error("loss: the loss is nan (a non-finite value in the batch or the model's output)");
    return {++done, 1.0, cfg.lr.lr(done), 1.0};
  }
};
}  // namespace

TEST_CASE("a diverged step names the step, the rate and the checkpoint left", "[apps][cli]") {
  diverging_trainer t;
  t.cfg.lr.base_lr = 1e-3;
  t.cfg.lr.warmup_steps = 1;
  t.cfg.lr.total_steps = 1000;
  t.cfg.lr.decay_steps = 100;
  t.fail_at = 251;
  training_plan plan;
  plan.checkpoint = "runs/mix/last.safetensors";
  for (int i = 0; i < 250; ++i) diverging_step_named(t, 0, plan);
  CHECK_THROWS_WITH(diverging_step_named(t, 200, plan),
                    Catch::Contains("train: step 251 diverged at learning rate 0.001: loss: the loss is nan") &&
                        Catch::Contains("the checkpoint of step 200 in runs/mix/last.safetensors is from before "
                                        "it; train again with a lower --lr (--resume would keep the stored rate)"));
  CHECK_THROWS_WITH(diverging_step_named(t, 0, plan),
                    Catch::Contains("no checkpoint was written yet; train again with a lower --lr"));
}
