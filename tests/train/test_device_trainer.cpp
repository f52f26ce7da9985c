// The device trainer's and sampler's orchestration on the CPU: trainer<Data, cpu, true>
// runs the device path (the device diffusion facade on host tensors, the batch "uploaded",
// checkpoints through the device-generic io) and must follow trainer<Data> (the host
// facade) from the same seed, resume bit for bit, and share its checkpoints; the same
// checks run on a GPU in tests/cuda/test_cuda_trainer.cpp.
#include "train/device_trainer_checks.hpp"

using namespace device_trainer_checks;

TEST_CASE("device trainer (device layer on the cpu) follows the CPU trainer from the same seed",
          "[train][device]") {
  for (const char* prediction : {"x", "eps", "v"}) {
    INFO("prediction " << prediction);
    check_steps_follow_cpu<cpu>(prediction);
  }
}

TEST_CASE("device trainer (device layer on the cpu): resume continues bit for bit, CPU resumes its checkpoint",
          "[train][device]") {
  check_resume<cpu>("cpu");
}

TEST_CASE("a non-finite step changes nothing, on the CPU trainer and through the device layer "
          "(whose guard, not the host, stops the update)", "[train][device]") {
  SECTION("cpu trainer") { check_nonfinite_step_changes_nothing<trainer<data::case_set>>(); }
  SECTION("device layer") { check_nonfinite_step_changes_nothing<trainer<data::case_set, cpu, true>>(); }
}

TEST_CASE("sample_masks through the device layer follows the CPU sampler", "[train][device]") {
  check_sampling_follows_cpu<cpu>([](nn::unet<float>& net, const diffusion_model& diffusion,
                                     tensor_view<const float> images, const sample_options& opts, rng& g) {
    const auto on_device = make_device_diffusion<cpu>(diffusion.choice());
    return sampling_detail::sample_on_device<cpu>(net, *on_device, images, opts, g, {});
  });
}
