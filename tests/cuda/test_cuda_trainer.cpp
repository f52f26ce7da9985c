// The GPU trainer and sampler: trainer<Data, cuda> against trainer<Data> (the CPU) from the
// same seed, resume on the GPU bit for bit (the GPU's reductions are deterministic), the
// GPU's checkpoint resuming the CPU trainer, and sample_masks on unet<float, cuda> against
// the CPU. The checks and their tolerances are tests/train/device_trainer_checks.hpp's,
// which tests/train runs on the CPU.
#include "cuda_test_util.hpp"

#include "train/device_trainer_checks.hpp"

using namespace device_trainer_checks;

TEST_CASE("trainer<·, cuda> follows the CPU trainer from the same seed", "[cuda][train]") {
  AMBISEG_REQUIRE_GPU();
  for (const char* prediction : {"x", "eps", "v"}) {
    INFO("prediction " << prediction);
    check_steps_follow_cpu<cuda>(prediction);
  }
}

TEST_CASE("trainer<·, cuda>: resume continues bit for bit; the CPU resumes its checkpoint", "[cuda][train]") {
  AMBISEG_REQUIRE_GPU();
  check_resume<cuda>("cuda");
}

TEST_CASE("trainer<·, cuda>: a non-finite step changes nothing (the device-side guard)", "[cuda][train]") {
  AMBISEG_REQUIRE_GPU();
  check_nonfinite_step_changes_nothing<trainer<data::case_set, cuda>>();
}

TEST_CASE("sample_masks on unet<float, cuda> follows the CPU sampler", "[cuda][train]") {
  AMBISEG_REQUIRE_GPU();
  check_sampling_follows_cpu<cuda>();
}

TEST_CASE("load_model<cuda> builds the network on the GPU from a CPU checkpoint", "[cuda][train]") {
  AMBISEG_REQUIRE_GPU();
  const auto data = cases();
  const trainer_config c = config(27);
  trainer<data::case_set> host(c, data);
  host.step();
  const auto dir = scratch("load_model");
  host.save(dir / "ckpt.safetensors");
  const auto m = load_model<cuda>(dir / "ckpt.safetensors");
  CHECK(m.ema_weights);
  CHECK(m.step == 1);
  CHECK(same_bits(on_host<cuda>(m.model->parameters().flat_values()), on_host<cpu>(host.ema()->shadow())));
}
