// Data-parallel training under mpirun, end to end through the `ambiseg` tool (Open MPI on
// loopback, 2 ranks × 1 thread on CI's 2 cores):
//   - 2 ranks follow 1 rank at the same global batch: the same losses (relative 1e-5)
//     over 20 steps, and final weights within float-sum noise of each other
//   - a 2-rank run resumes on 1 rank and a 1-rank run on 2, and each continues as the
//     uninterrupted run does
//   - a rank that fails (here: the only one given a corrupt data file) ends the whole job
//     at once with its message
//   - eval and sample spread their images over the ranks: the scores, masks and x̂0 do not
//     depend on their number
//   - distillation: each round of a 2-rank run follows the one-process round
// The ranks' weights and optimiser states are compared by hash inside the trainer every
// 50 steps and at the last one (a mismatch fails the run).
#include <catch2/catch.hpp>

#include <ambiseg/io/npy.hpp>
#include <ambiseg/train/all.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace ambiseg;
namespace fs = std::filesystem;

namespace {

fs::path scratch(const std::string& name) {
  const auto p = fs::temp_directory_path() / ("ambiseg-mpi-" + std::to_string(::getpid())) / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

std::string quoted(const std::string& s) { return "'" + s + "'"; }

// Runs a shell command, its output into `log`; returns the exit status.
int run(const std::string& command, const fs::path& log) {
  const std::string line = command + " > " + quoted(log.string()) + " 2>&1";
  const int status = std::system(line.c_str());
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  UNSCOPED_INFO("$ " << line << "\n" << text.str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string train_args(const fs::path& out, int steps, const std::string& data = "synthetic") {
  return std::string("train --data ") + quoted(data) +
         " --synthetic-images 16 --crop 16 --config tiny --batch 4 --lr 1e-3 --ema 0.9 --steps " +
         std::to_string(steps) + " --checkpoint-every 5 --out " + quoted(out.string());
}
std::string one_rank(const std::string& args) { return quoted(AMBISEG_CLI) + " " + args; }
std::string ranks(int n, const std::string& args) {
  return quoted(MPIEXEC) + " " + MPIEXEC_FLAGS + " -n " + std::to_string(n) + " " + quoted(AMBISEG_CLI) + " " + args;
}

std::vector<double> losses(const fs::path& run) {
  std::ifstream in(run / "log.csv");
  std::string line;
  std::getline(in, line);
  std::vector<double> out;
  while (std::getline(in, line)) out.push_back(std::stod(line.substr(line.find(',') + 1)));
  return out;
}

// absolute: a floor for losses that are themselves float noise (a distilled student that
// already matches its teacher: x̃0 − f cancels to ~1e-6).
void require_same_losses(const std::vector<double>& a, const std::vector<double>& b, std::size_t count,
                         double absolute = 0.0) {
  REQUIRE(a.size() == count);
  REQUIRE(b.size() == count);
  for (std::size_t k = 0; k < count; ++k) {
    INFO("step " << k + 1 << ": " << a[k] << " against " << b[k]);
    CHECK(std::abs(a[k] - b[k]) <= 1e-5 * std::abs(b[k]) + absolute);
  }
}

// How far the weights of two checkpoints are apart, relative to the largest weight.
struct gap_measure {
  double largest;  // max |Δ|
  double share;    // the fraction of weights with |Δ| > 1e-5·max |w|
};
// The weights of two runs that differ only in the order of float sums: the losses agree
// to 1e-5, all but 1% of the weights to 1e-5 of the largest (measured: 0.14% after 20
// steps). AdamW moves a weight by about lr a step whatever the gradient's size, so a
// weight whose gradient is rounding noise may step either way: none differs by more than
// 2.5·lr·steps (measured: 3.6e-3 with lr 1e-3 after 20 steps).
void require_close_weights(const gap_measure& gap, int steps) {
  INFO("largest weight difference " << gap.largest << "; " << gap.share
                                    << " of the weights differ by more than 1e-5 of the largest");
  CHECK(gap.share <= 0.01);
  CHECK(gap.largest <= 2.5 * 1e-3 * steps);
}
gap_measure weight_gap(const fs::path& a, const fs::path& b) {
  const auto x = train::load_model<cpu>(a / "checkpoint.safetensors", false);
  const auto y = train::load_model<cpu>(b / "checkpoint.safetensors", false);
  const auto u = x.model->parameters().flat_values(), v = y.model->parameters().flat_values();
  REQUIRE(u.numel() == v.numel());
  double gap = 0, peak = 0;
  for (std::int64_t i = 0; i < u.numel(); ++i) {
    gap = std::max(gap, std::abs(double(u[i]) - double(v[i])));
    peak = std::max(peak, std::abs(double(v[i])));
  }
  std::int64_t apart = 0;
  for (std::int64_t i = 0; i < u.numel(); ++i) apart += std::abs(double(u[i]) - double(v[i])) > 1e-5 * peak;
  return {gap, double(apart) / double(u.numel())};
}

}  // namespace

TEST_CASE("mpirun -n 2 ambiseg train follows the one-process run of the same global batch", "[mpi]") {
  const auto dir = scratch("follow");
  REQUIRE(run(one_rank(train_args(dir / "one", 20)), dir / "one.log") == 0);
  REQUIRE(run(ranks(2, train_args(dir / "two", 20)), dir / "two.log") == 0);
  require_same_losses(losses(dir / "two"), losses(dir / "one"), 20);
  require_close_weights(weight_gap(dir / "two", dir / "one"), 20);
  // Rank 0 alone speaks: one banner, naming the group.
  std::ifstream log(dir / "two.log");
  std::stringstream text;
  text << log.rdbuf();
  CHECK(text.str().find("data parallel over MPI, 2 ranks") != std::string::npos);
  CHECK(text.str().find("ambiseg train: 20 of 20 steps") == text.str().rfind("ambiseg train: 20 of 20 steps"));
}

TEST_CASE("a data-parallel run resumes on another number of ranks", "[mpi]") {
  const auto dir = scratch("resume");
  REQUIRE(run(one_rank(train_args(dir / "whole", 20)), dir / "whole.log") == 0);
  const auto whole = losses(dir / "whole");
  // A run interrupted at step 10: its snapshot of step 10 as the checkpoint of a folder
  // whose log ends there, resumed with the other number of ranks.
  auto interrupted_at_10 = [&](const std::string& first_part, const fs::path& out) {
    REQUIRE(run(first_part, out.string() + ".first.log") == 0);
    fs::copy_file(out / "snapshots" / "step-10.safetensors", out / "checkpoint.safetensors",
                  fs::copy_options::overwrite_existing);
    std::ifstream in(out / "log.csv");
    std::string line, kept;
    for (int row = 0; row <= 10 && std::getline(in, line); ++row) kept += line + "\n";
    in.close();
    std::ofstream(out / "log.csv") << kept;
  };
  interrupted_at_10(ranks(2, train_args(dir / "two_then_one", 20) + " --snapshots 10"), dir / "two_then_one");
  REQUIRE(run(one_rank(train_args(dir / "two_then_one", 20) + " --resume"), dir / "b.log") == 0);
  interrupted_at_10(one_rank(train_args(dir / "one_then_two", 20) + " --snapshots 10"), dir / "one_then_two");
  REQUIRE(run(ranks(2, train_args(dir / "one_then_two", 20) + " --resume"), dir / "d.log") == 0);
  require_same_losses(losses(dir / "two_then_one"), whole, 20);
  require_same_losses(losses(dir / "one_then_two"), whole, 20);
  require_close_weights(weight_gap(dir / "two_then_one", dir / "whole"), 20);
  require_close_weights(weight_gap(dir / "one_then_two", dir / "whole"), 20);
}

TEST_CASE("a rank that fails ends the whole data-parallel job with its message", "[mpi]") {
  const auto dir = scratch("failure");
  const auto corrupt = dir / "corrupt.pkl";
  std::ofstream(corrupt) << "this is not a pickle";
  // MPMD: rank 0 trains on good data and waits in its first gradient sum; rank 1's data is
  // corrupt.
  const std::string command = quoted(MPIEXEC) + " " + MPIEXEC_FLAGS + " -n 1 " + quoted(AMBISEG_CLI) + " " +
                              train_args(dir / "run", 20) + " : -n 1 " + quoted(AMBISEG_CLI) + " " +
                              train_args(dir / "run", 20, corrupt.string());
  const auto start = std::chrono::steady_clock::now();
  CHECK(run(command, dir / "fail.log") != 0);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(seconds < 30);
  std::ifstream log(dir / "fail.log");
  std::stringstream text;
  text << log.rdbuf();
  CHECK(text.str().find("error (rank 1 of 2)") != std::string::npos);
  CHECK(text.str().find("corrupt.pkl") != std::string::npos);
}

TEST_CASE("data-parallel runs refuse what they cannot split", "[mpi]") {
  const auto dir = scratch("refusals");
  const std::string base = "train --data synthetic --synthetic-images 16 --crop 16 --config tiny --steps 2 --out ";
  // A batch smaller than the ranks:
  CHECK(run(ranks(2, base + quoted((dir / "a").string()) + " --batch 1"), dir / "a.log") != 0);
  std::ifstream a(dir / "a.log");
  std::stringstream ta;
  ta << a.rdbuf();
  CHECK(ta.str().find("cannot be split over 2 ranks") != std::string::npos);
  // A model whose noise is not drawn per row yet:
  CHECK(run(ranks(2, "train --data synthetic --synthetic-images 16 --crop 32 --steps 2 --batch 2 --model prob_unet_aa "
                     "--out " + quoted((dir / "b").string())),
            dir / "b.log") != 0);
  std::ifstream b(dir / "b.log");
  std::stringstream tb;
  tb << b.rdbuf();
  CHECK(tb.str().find("data-parallel training (several ranks) is not supported for this model") != std::string::npos);
}

TEST_CASE("mpirun ambiseg eval spreads the images over the ranks; the scores do not depend on their number",
          "[mpi]") {
  const auto dir = scratch("eval");
  REQUIRE(run(one_rank(train_args(dir / "run", 3)), dir / "train.log") == 0);
  const std::string eval = "eval --ckpt " + quoted((dir / "run" / "checkpoint.safetensors").string()) +
                           " --data synthetic --synthetic-images 16 --images 5 -n 2,3 --steps 2 --pp none --out ";
  REQUIRE(run(ranks(2, eval + quoted((dir / "two").string())), dir / "two.log") == 0);
  REQUIRE(run(ranks(3, eval + quoted((dir / "three").string())), dir / "three.log") == 0);
  const auto two = nlohmann::json::parse(std::ifstream(dir / "two" / "eval.json"));
  const auto three = nlohmann::json::parse(std::ifstream(dir / "three" / "eval.json"));
  CHECK(two["info"]["ranks"] == 2);
  CHECK(three["info"]["ranks"] == 3);
  REQUIRE(two["results"].size() == 2);
  CHECK(two["results"] == three["results"]);
  CHECK(two["results"][0]["raw"]["ged"].get<double>() > 0.0);
}

TEST_CASE("mpirun ambiseg sample spreads the images over the ranks; the masks do not depend on their number",
          "[mpi]") {
  const auto dir = scratch("sample");
  REQUIRE(run(one_rank(train_args(dir / "run", 3)), dir / "train.log") == 0);
  auto sample = [&](int n, const std::string& name) {
    return run(ranks(n, "sample --ckpt " + quoted((dir / "run" / "checkpoint.safetensors").string()) +
                            " --data synthetic --synthetic-images 16 --images 3 -n 2 --steps 2 --seed 4 --out " +
                            quoted((dir / name).string()) + " --save-x0 " + quoted((dir / (name + ".npy")).string())),
               dir / (name + ".log"));
  };
  REQUIRE(sample(2, "two") == 0);
  REQUIRE(sample(3, "three") == 0);
  const auto m2 = io::read_npy<std::uint8_t>(dir / "two" / "masks.npy");
  const auto m3 = io::read_npy<std::uint8_t>(dir / "three" / "masks.npy");
  CHECK(m2.shape == std::vector<std::int64_t>{3, 2, 16, 16});
  CHECK(m2.data == m3.data);
  const auto x2 = io::read_npy<float>(dir / "two.npy"), x3 = io::read_npy<float>(dir / "three.npy");
  CHECK(x2.shape == m2.shape);
  CHECK(x2.data == x3.data);
  CHECK(fs::exists(dir / "two" / "samples.png"));
}

TEST_CASE("mpirun -n 2 ambiseg distill follows the one-process distillation, round by round", "[mpi]") {
  const auto dir = scratch("distill");
  REQUIRE(run(one_rank(train_args(dir / "teacher", 3)), dir / "teacher.log") == 0);
  auto distill = [&](const fs::path& out) {
    return "distill --ckpt " + quoted((dir / "teacher" / "checkpoint.safetensors").string()) +
           " --data synthetic --synthetic-images 16 --from 4 --to 1 --steps 8 --batch 4 --out " + quoted(out.string());
  };
  REQUIRE(run(one_rank(distill(dir / "one")), dir / "one.log") == 0);
  REQUIRE(run(ranks(2, distill(dir / "two")), dir / "two.log") == 0);
  for (const char* round : {"steps-2", "steps-1"}) {
    INFO("round " << round);
    // The second round's student starts where the first ended, a step of the same teacher:
    // its losses are 1e-11…1e-5, where float sums in another order differ by 1e-10.
    require_same_losses(losses(dir / "two" / round), losses(dir / "one" / round), 8, 1e-9);
    require_close_weights(weight_gap(dir / "two" / round, dir / "one" / round), 8);
  }
  const auto summary = nlohmann::json::parse(std::ifstream(dir / "two" / "steps-1" / "summary.json"));
  CHECK(summary["data_parallel"]["ranks"] == 2);
  CHECK(fs::exists(dir / "two" / "distill.json"));
}

#if defined(AMBISEG_CLI_EMULATED)
// GPUs: the tool built on the CUDA emulator, whose NCCL sums over MPI, so each process
// plays one GPU: the NCCL path (buckets pre-multiplied by the share, the report at its
// rows, the host group for the rest) against one emulated GPU alone.
TEST_CASE("mpirun -n 2 ambiseg train --device cuda (NCCL, emulated GPUs) follows one GPU", "[mpi][nccl]") {
  const auto dir = scratch("nccl");
  const std::string cli = quoted(AMBISEG_CLI_EMULATED);
  const std::string args = train_args(dir / "one", 12) + " --device cuda";
  REQUIRE(run(cli + " " + args, dir / "one.log") == 0);
  REQUIRE(run(quoted(MPIEXEC) + " " + MPIEXEC_FLAGS + " -n 2 " + cli + " " + train_args(dir / "two", 12) +
                  " --device cuda",
              dir / "two.log") == 0);
  require_same_losses(losses(dir / "two"), losses(dir / "one"), 12);
  require_close_weights(weight_gap(dir / "two", dir / "one"), 12);
  std::ifstream log(dir / "two.log");
  std::stringstream text;
  text << log.rdbuf();
  CHECK(text.str().find("data parallel over MPI, 2 ranks") != std::string::npos);
  const auto summary = nlohmann::json::parse(std::ifstream(dir / "two" / "summary.json"));
  INFO(summary.dump(2));
  CHECK(summary["data_parallel"]["ranks"] == 2);
}
#endif
