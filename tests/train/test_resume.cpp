// Resuming and guarding a run, on the CPU (the same checks run on a GPU and in the CUDA
// emulator through tests/cuda/test_cuda_trainer.cpp), and a checkpoint written before
// models had kinds resuming today.
#include <fstream>

#include "train/device_trainer_checks.hpp"

using namespace device_trainer_checks;

TEST_CASE("trainer: resume continues bit for bit (weights, moments, EMA)", "[train][resume]") {
  check_resume<cpu>("cpu");
}

TEST_CASE("trainer: a non-finite step changes nothing (the guard read where the update runs)",
          "[train][resume]") {
  check_nonfinite_step_changes_nothing<trainer<data::case_set>>();
}

TEST_CASE("sample_masks: a model built from a config samples what the trainer's model samples",
          "[train][sampling]") {
  check_sampling_follows_cpu<cpu>();
}

// tests/fixtures/checkpoints/v1_training_checkpoint.safetensors was written by the code
// before the model registry (tools/make_v1_checkpoint_fixture.cpp, commit 9109546): its
// config keeps "net" and "policy" at the top level and it has no model kind. The .log
// beside it holds the loss of the step after the save, computed then.
TEST_CASE("a v1 training checkpoint resumes as a diffusion model and continues the run", "[train][resume]") {
  const std::filesystem::path dir = std::filesystem::path(AMBISEG_FIXTURE_DIR) / "checkpoints";
  const auto path = dir / "v1_training_checkpoint.safetensors";
  const trainer_config c = trainer<data::case_set>::read_config(path);
  CHECK(c.model.kind == "diffusion");
  CHECK(c.ema_decay == 0.9);
  CHECK(c.seed == 5);
  const auto data = data::synthetic_lesions({.size = 16, .seed = 11}).make_cases(0, 4);
  trainer<data::case_set> t(c, data);
  t.resume(path);
  CHECK(t.steps_done() == 3);
  CHECK(t.ema() != nullptr);
  CHECK(t.optimizer().steps() == 3);

  double next_loss = 0, next_norm = 0;
  std::ifstream log(dir / "v1_training_checkpoint.log");
  for (std::string word; log >> word;)
    if (word == "next") log >> word >> next_loss >> word >> next_norm;
  REQUIRE(next_loss > 0);
  const step_report r = t.step();
  INFO("loss " << r.loss << " (then " << next_loss << "), norm " << r.grad_norm << " (then " << next_norm << ")");
  // The loops were rewritten (one per device) since the file was made: float rounding may
  // move, nothing more.
  CHECK(r.loss == Approx(next_loss).epsilon(1e-5));
  CHECK(r.grad_norm == Approx(next_norm).epsilon(1e-4));

  // Its weights load as a model too, the EMA by default.
  const auto m = load_model<cpu>(path);
  CHECK(m.ema_weights);
  CHECK(m.step == 3);
  CHECK(m.model->kind_name() == "diffusion");
}
