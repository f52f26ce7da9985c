// Where the CUDA path makes the host wait, counted by the emulated runtime
// (cuda_emulator/host_waits.hpp): a training step of trainer<·, cuda> waits once, for its
// report (losses and gradient norm), and a sampling run once per network batch, for x̂0 —
// every upload in between is enqueued from pinned staging, the loss is reduced and the
// update guarded on the device. A new read-back, a synchronous copy or a free slipped into
// the loop fails this test. The device lags without bound (lagging_device_scope: an event is
// done only after the host synchronised), so every wait the block caches would make to
// recycle memory on a slow GPU is counted too. (A GPU would show the same calls; the
// emulator only counts.)
#include "cuda/cuda_test_util.hpp"
#include "cuda_emulator/host_waits.hpp"
#include "train/device_trainer_checks.hpp"

using namespace device_trainer_checks;

TEST_CASE("trainer<·, cuda>: a training step waits for the device once, a sampling run once "
          "per network batch", "[emulator][train]") {
  const ambiseg_emu::lagging_device_scope lagging;
  const auto data = cases();
  trainer<data::case_set, cuda> t(config(31), data);
  t.step();  // warm-up: cuDNN plans, cached blocks, pinned staging
  t.step();
  const auto before = ambiseg_emu::host_waits();
  const int steps = 3;
  for (int i = 0; i < steps; ++i) t.step();
  const auto d = ambiseg_emu::host_waits() - before;
  INFO("per " << steps << " steps: stream syncs " << d.stream_syncs << ", event syncs " << d.event_syncs
              << ", device syncs " << d.device_syncs << ", blocking copies " << d.blocking_copies
              << ", frees " << d.frees << ", cudaMalloc " << d.device_mallocs << ", cudaHostAlloc "
              << d.pinned_allocs);
  CHECK(d.stream_syncs == steps);  // the report's read-back
  CHECK(d.waits() == steps);
  CHECK(d.device_mallocs == 0);
  CHECK(d.pinned_allocs == 0);

  // Two images × 3 chains: one network batch (max_chains 8), then two (max_chains 4).
  const device_context<cuda>::scope on_stream(t.context());
  tensor<float> images(shape{2, 1, 16, 16});
  for (std::int64_t i = 0; i < images.numel(); ++i) images[i] = float(std::sin(0.37 * double(i)));
  for (const std::int64_t max_chains : {8, 4}) {
    const sample_options opts{.n = 3, .steps = 12, .sampler = "ddpm_large", .clip_x0 = false,
                              .max_chains = max_chains};
    rng g(5);
    (void)sample_masks(t.model(), images.cview(), opts, g);  // warm-up
    const auto b = ambiseg_emu::host_waits();
    (void)sample_masks(t.model(), images.cview(), opts, g);
    const auto s = ambiseg_emu::host_waits() - b;
    INFO("max_chains " << max_chains << ": stream syncs " << s.stream_syncs << ", event syncs "
                       << s.event_syncs << ", blocking copies " << s.blocking_copies << ", frees " << s.frees
                       << ", cudaMalloc " << s.device_mallocs << ", cudaHostAlloc " << s.pinned_allocs);
    CHECK(s.waits() == (max_chains == 8 ? 1u : 2u));
    CHECK(s.device_mallocs == 0);
  }
}
