// Data-parallel training on GPUs (train/nccl_communicator.hpp), with one rank: the sums on
// device memory in a stream's order, and the trainer's data-parallel path on a GPU (the
// gradient buckets, the pre-multiplied share, the report placed at its rows) against the
// trainer alone. With one rank a sum is its own input, so both runs must agree bit for bit:
// anything the path loses, misplaces or scales twice shows. Several ranks: tests/mpi runs
// the tool under mpirun on the emulator, each process one emulated GPU.
// On a GPU these need NCCL (libnccl.so.2) on the library path; without it they say so
// and skip.
#include "cuda_test_util.hpp"

#include "ambiseg/train/nccl_communicator.hpp"
#include "train/device_trainer_checks.hpp"

#if defined(AMBISEG_NCCL_HEADERS)

using namespace device_trainer_checks;

namespace {

bool nccl_loads() {
  try {
    (void)nccl_library::get();
    return true;
  } catch (const ambiseg::error& e) {
    WARN("NCCL test skipped: " << e.what());
    return false;
  }
}

// Several ranks whose sums are on the host only (MPI's): a GPU trainer must refuse them.
class host_only_pair final : public communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 2; }
  std::string describe() const override { return "a host-memory pair"; }
  void allreduce_sum(std::span<double>) override {}
  void start_sum(std::span<float>) override {}
  void progress() override {}
  void finish() override {}
  bool agree_stop(bool stop) override { return stop; }
  bool same_everywhere(std::uint64_t) override { return true; }
  std::vector<std::uint8_t> gather_bytes(std::span<const std::uint8_t> b) override { return {b.begin(), b.end()}; }
  std::vector<std::uint8_t> broadcast_bytes(std::span<const std::uint8_t> b) override { return {b.begin(), b.end()}; }
  std::uint64_t bytes_reduced() const override { return 0; }
  [[noreturn]] void abort(const std::string& m, int code) override { throw ambiseg::error(m + std::to_string(code)); }
};

}  // namespace

TEST_CASE("nccl_communicator: one rank sums device memory with its share, in the stream's order", "[cuda][nccl]") {
  AMBISEG_REQUIRE_GPU();
  if (!nccl_loads()) return;
  solo_communicator host;
  nccl_communicator nccl(host, 0);
  CHECK(nccl.size() == 1);
  CHECK(nccl.on_device() == &nccl);
  CHECK(nccl.describe().find("NCCL 2.") == 0);
  cuda_context ctx;
  const cuda_context_scope on(ctx);
  const tensor<float> xf = cuda_test::random_tensor<float>(shape{1000}, 5);
  const tensor<double> xd = cuda_test::random_tensor<double>(shape{7}, 6);
  auto f = cuda_test::to_device(xf);
  auto d = cuda_test::to_device(xd);
  nccl.start_sum(f.data(), 1000, 0.25f, ctx.stream());
  nccl.start_sum(d.data(), 7, 1.0, ctx.stream());
  nccl.start_sum(d.data(), 0, 3.0, ctx.stream());  // nothing to sum: no call
  nccl.finish(ctx.stream());
  ctx.synchronize();
  const auto hf = cuda_test::to_host(f);
  const auto hd = cuda_test::to_host(d);
  for (std::int64_t i = 0; i < 1000; ++i) REQUIRE(hf[i] == xf[i] * 0.25f);
  for (std::int64_t i = 0; i < 7; ++i) REQUIRE(hd[i] == xd[i]);
  CHECK(nccl.bytes_reduced() == 1000 * sizeof(float) + 7 * sizeof(double));
}

TEST_CASE("trainer<·, cuda> over a one-GPU NCCL group trains as the trainer alone, bit for bit", "[cuda][nccl]") {
  AMBISEG_REQUIRE_GPU();
  if (!nccl_loads()) return;
  const auto data = cases();
  const trainer_config c = config(31);
  solo_communicator host;
  nccl_communicator nccl(host, 0);
  trainer<data::case_set, cuda> alone(c, data);
  trainer<data::case_set, cuda> grouped(c, data, &nccl);
  const std::uint64_t bytes_before = nccl.bytes_reduced();
  for (int step = 0; step < 4; ++step) {
    const auto a = alone.step(), g = grouped.step();
    INFO("step " << step + 1);
    CHECK(a.loss == g.loss);
    CHECK(a.grad_norm == g.grad_norm);
    CHECK(alone.per_case_loss() == grouped.per_case_loss());
  }
  CHECK(same_bits(on_host<cuda>(alone.model().parameters().flat_values()),
                  on_host<cuda>(grouped.model().parameters().flat_values())));
  CHECK(alone.state_hash() == grouped.state_hash());
  // Each step sums every gradient once and the report (B per-case losses and the loss).
  const auto params = static_cast<std::uint64_t>(grouped.model().parameters().flat_grads().numel());
  CHECK(nccl.bytes_reduced() - bytes_before == 4 * (params * sizeof(float) + (c.batch_size + 1) * sizeof(double)));
}

TEST_CASE("trainer<·, cuda> refuses ranks whose sums are on the host", "[cuda][nccl]") {
  AMBISEG_REQUIRE_GPU();
  const auto data = cases();
  host_only_pair pair;
  try {
    trainer<data::case_set, cuda> t(config(1), data, &pair);
    FAIL("no refusal");
  } catch (const value_error& e) {
    CHECK(std::string(e.what()).find("needs sums of device memory (NCCL)") != std::string::npos);
  }
}

#endif  // AMBISEG_NCCL_HEADERS
