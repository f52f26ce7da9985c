// cuda_emulator/host_waits.hpp — the emulated runtime's count of the calls that, on a GPU,
// make the host wait for the device (CUDA Runtime API, "API synchronization behavior"):
//   stream, event and device synchronisations;
//   cudaMemcpy / cudaMemcpy2D with a host side (host→device waits for the legacy stream
//     and returns after the copy; device→host returns after the copy), not device→device;
//   cudaMemcpyAsync / cudaMemcpy2DAsync device→host into pageable memory (synchronous);
//   cudaFree and cudaFreeHost (they synchronise the device).
// Allocations are counted apart (slow, but not waits). What lets a test assert that a
// training step or a sampling run waits only where it says it does.
#pragma once

#include <cstdint>

namespace ambiseg_emu {

struct host_wait_counts {
  std::uint64_t stream_syncs = 0, event_syncs = 0, device_syncs = 0;
  std::uint64_t blocking_copies = 0, frees = 0;
  std::uint64_t device_mallocs = 0, pinned_allocs = 0;

  std::uint64_t waits() const { return stream_syncs + event_syncs + device_syncs + blocking_copies + frees; }
  host_wait_counts operator-(const host_wait_counts& o) const {
    return {stream_syncs - o.stream_syncs,     event_syncs - o.event_syncs,
            device_syncs - o.device_syncs,     blocking_copies - o.blocking_copies,
            frees - o.frees,                   device_mallocs - o.device_mallocs,
            pinned_allocs - o.pinned_allocs};
  }
};

// The counts since the process started (all threads).
host_wait_counts host_waits();

// The emulator completes all work when it is issued, so by default every event is done
// as soon as it is recorded. A lagging device is the opposite bound, the GPU infinitely
// behind the host: an event recorded after the host's last synchronisation (stream,
// device, event, or a synchronous copy) is not ready until the host synchronises again.
// Code that recycles memory by events (the block caches) then shows every wait it would
// make on a slow GPU.
void set_lagging_device(bool lagging);
class lagging_device_scope {
 public:
  lagging_device_scope() { set_lagging_device(true); }
  ~lagging_device_scope() { set_lagging_device(false); }
  lagging_device_scope(const lagging_device_scope&) = delete;
  lagging_device_scope& operator=(const lagging_device_scope&) = delete;
};

}  // namespace ambiseg_emu
