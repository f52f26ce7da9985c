// The command line on `--device cuda`, end to end: train, sample and eval on
// the GPU against the same commands on the CPU. The checkpoint format is shared, so the GPU
// run's weights are compared with the CPU run's, and the GPU's samples with the CPU's from
// the same checkpoint and seed. Tolerances: tests/train/device_trainer_checks.hpp's.
#include "cuda_test_util.hpp"

#include <ambiseg/io/npy.hpp>
#include <ambiseg/train/all.hpp>
#include "ambiseg_apps/run_cli.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <unistd.h>

using namespace ambiseg;
using namespace ambiseg::train;
using namespace ambiseg::apps;

namespace {

std::filesystem::path cli_dir(const std::string& name) {
  const auto p = std::filesystem::temp_directory_path() /
                 ("ambiseg-cuda-cli-" + std::to_string(::getpid())) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

int cli(std::vector<std::string> args) {
  std::ostringstream out, err;
  const int rc = run_cli(args, out, err);
  UNSCOPED_INFO("ambiseg " << nlohmann::json(args).dump() << " -> " << rc << "\n" << out.str() << err.str());
  return rc;
}

// The loss column of a run's log.csv, by step.
std::vector<double> logged_losses(const std::filesystem::path& csv) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);  // header
  std::vector<double> losses;
  while (std::getline(in, line)) {
    const auto comma = line.find(',');
    losses.push_back(std::stod(line.substr(comma + 1)));
  }
  return losses;
}

std::vector<std::string> train_args(const std::filesystem::path& out, const char* steps, const char* device) {
  return {"train", "--data", "synthetic", "--synthetic-images", "8", "--crop", "16", "--config", "tiny",
          "--batch", "2", "--lr", "1e-3", "--steps", steps, "--out", out.string(), "--device", device};
}

}  // namespace

TEST_CASE("ambiseg train/sample/eval --device cuda follow the CPU commands", "[cuda][cli]") {
  AMBISEG_REQUIRE_GPU();
  const auto dir = cli_dir("end_to_end");
  // The same 4 steps on each device (the trainer's resume is tested in test_cuda_trainer).
  REQUIRE(cli(train_args(dir / "gpu", "4", "cuda")) == 0);
  REQUIRE(cli(train_args(dir / "cpu", "4", "cpu")) == 0);

  // The same losses step by step (relative 1e-3·k, the device trainer checks' tolerance).
  const auto lg = logged_losses(dir / "gpu" / "log.csv"), lc = logged_losses(dir / "cpu" / "log.csv");
  REQUIRE(lg.size() == 4);
  REQUIRE(lc.size() == 4);
  for (std::size_t k = 0; k < 4; ++k) {
    INFO("step " << k + 1 << ": loss gpu " << lg[k] << " cpu " << lc[k]);
    CHECK(std::abs(lg[k] - lc[k]) <= 1e-3 * double(k + 1) * std::abs(lc[k]));
  }

  const auto gpu = load_model(dir / "gpu" / "checkpoint.safetensors", /*use_ema=*/false);
  const auto cpu_run = load_model(dir / "cpu" / "checkpoint.safetensors", false);
  CHECK(gpu.step == 4);
  // The initial weights, as the trainer draws them from the run's seed.
  const auto cfg = trainer<data::case_set>::read_config(dir / "cpu" / "checkpoint.safetensors");
  const auto initial = build_model<cpu>(cfg);
  const tensor_view<const float> a = gpu.model->parameters().flat_values(),
                                 b = cpu_run.model->parameters().flat_values(),
                                 w0 = initial->parameters().flat_values();
  double gap = 0, peak = 0, moved_gpu = 0, moved_cpu = 0;
  for (std::int64_t i = 0; i < a.numel(); ++i) {
    gap = std::max(gap, std::abs(double(a[i]) - double(b[i])));
    peak = std::max(peak, std::abs(double(b[i])));
    moved_gpu = std::max(moved_gpu, std::abs(double(a[i]) - double(w0[i])));
    moved_cpu = std::max(moved_cpu, std::abs(double(b[i]) - double(w0[i])));
  }
  INFO("weights after 4 steps: max gap " << gap << " of peak " << peak << "; moved gpu " << moved_gpu
                                         << ", cpu " << moved_cpu);
  CHECK(gap <= 2.5 * 1e-3 * 4 + 1e-5 * peak);
  CHECK(moved_cpu > 0.0);
  CHECK(moved_gpu >= 0.5 * moved_cpu);  // the GPU run did update its weights

  // The GPU checkpoint sampled on both devices from the same seed.
  for (const char* device : {"cuda", "cpu"}) {
    REQUIRE(cli({"sample", "--ckpt", (dir / "gpu" / "checkpoint.safetensors").string(), "--data", "synthetic",
                 "--synthetic-images", "8", "--images", "2", "-n", "3", "--steps", "3", "--seed", "7",
                 "--out", (dir / (std::string("sample-") + device)).string(), "--save-x0",
                 (dir / (std::string("x0-") + device + ".npy")).string(), "--device", device}) == 0);
  }
  const auto xg = io::read_npy<float>(dir / "x0-cuda.npy"), xc = io::read_npy<float>(dir / "x0-cpu.npy");
  REQUIRE(xg.shape == xc.shape);
  double xgap = 0, xpeak = 0;
  for (std::size_t i = 0; i < xc.data.size(); ++i) {
    xgap = std::max(xgap, std::abs(double(xg.data[i]) - double(xc.data[i])));
    xpeak = std::max(xpeak, std::abs(double(xc.data[i])));
  }
  INFO("x0 from the same checkpoint and seed: max gap " << xgap << " of peak " << xpeak);
  CHECK(xgap <= 1e-3 * xpeak);
  CHECK(std::filesystem::exists(dir / "sample-cuda" / "samples.png"));

  REQUIRE(cli({"eval", "--ckpt", (dir / "gpu" / "checkpoint.safetensors").string(), "--data", "synthetic",
               "--synthetic-images", "8", "--images", "2", "-n", "4", "--steps", "2", "--pp", "none",
               "--out", (dir / "eval").string(), "--device", "cuda"}) == 0);
  const auto j = nlohmann::json::parse(std::ifstream(dir / "eval" / "eval.json"));
  REQUIRE(!j["results"].empty());
  CHECK(j["results"][0]["raw"]["ged"].get<double>() >= 0.0);

  CHECK(cli({"train", "--data", "synthetic", "--out", (dir / "bad").string(), "--device", "tpu"}) != 0);
}

// --precision bf16 end to end: the run trains on 16-bit tensor-core operands (float
// tensors), its losses stay near the fp32 run's, the checkpoint it writes is an ordinary
// float checkpoint, and fp16 samples from it near the fp32 samples.
TEST_CASE("ambiseg train/sample --device cuda --precision bf16|fp16", "[cuda][cli][mixed]") {
  AMBISEG_REQUIRE_GPU();
  const auto dir = cli_dir("precision");
  auto args = train_args(dir / "bf16", "3", "cuda");
  args.insert(args.end(), {"--precision", "bf16"});
  REQUIRE(cli(args) == 0);
  REQUIRE(cli(train_args(dir / "fp32", "3", "cuda")) == 0);
  const auto lb = logged_losses(dir / "bf16" / "log.csv"), lf = logged_losses(dir / "fp32" / "log.csv");
  REQUIRE(lb.size() == 3);
  REQUIRE(lf.size() == 3);
  bool differs = false;
  for (std::size_t k = 0; k < 3; ++k) {
    INFO("step " << k + 1 << ": loss bf16 " << lb[k] << " fp32 " << lf[k]);
    CHECK(std::abs(lb[k] - lf[k]) <= 2e-2 * std::abs(lf[k]));
    differs = differs || lb[k] != lf[k];
  }
  CHECK(differs);  // the 16-bit path ran
  // The setting is for the run only: the process's defaults are back.
  CHECK(cuda_context_defaults().precision == cuda_precision::fp32);

  std::vector<std::vector<float>> x0;
  for (const char* precision : {"fp32", "fp16"}) {
    const auto npy = dir / (std::string("x0-") + precision + ".npy");
    REQUIRE(cli({"sample", "--ckpt", (dir / "bf16" / "checkpoint.safetensors").string(), "--data", "synthetic",
                 "--synthetic-images", "8", "--images", "2", "-n", "2", "--steps", "2", "--seed", "3", "--out",
                 (dir / (std::string("sample-") + precision)).string(), "--save-x0", npy.string(), "--device",
                 "cuda", "--precision", precision}) == 0);
    x0.push_back(io::read_npy<float>(npy).data);
  }
  REQUIRE(x0[0].size() == x0[1].size());
  double gap = 0, peak = 0;
  for (std::size_t i = 0; i < x0[0].size(); ++i) {
    gap = std::max(gap, std::abs(double(x0[1][i]) - double(x0[0][i])));
    peak = std::max(peak, std::abs(double(x0[0][i])));
  }
  INFO("x0 fp16 against fp32: max gap " << gap << " of peak " << peak);
  CHECK(gap > 0.0);
  CHECK(gap <= 2e-2 * peak);
  CHECK(cuda_context_defaults().precision == cuda_precision::fp32);
}
