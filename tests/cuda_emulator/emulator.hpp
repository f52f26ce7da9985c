// cuda_emulator/emulator.hpp — what the emulated libraries (cuBLAS, cuDNN) need from the
// emulated runtime: the device allocation table, stream handles and error details. Internal
// to the emulator's sources; the kernels see device.hpp only.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <optional>
#include <string>

#include "cuda_emulator/device.hpp"

namespace ambiseg_emu {

// The byte pattern of fresh and of freed device memory: 0xFF bytes read as a NaN float or
// double, so a read of memory nothing wrote surfaces as NaN in the results.
constexpr unsigned char poison_byte = 0xFF;

// Why [p, p + bytes) is not inside one live device allocation, or nothing when it is.
std::optional<std::string> device_range_problem(const void* p, std::size_t bytes);
// Throws emulation_error ("illegal address" on a GPU) unless [p, p + bytes) is inside one
// live device allocation; `what` names the access.
void require_device_range(const void* p, std::size_t bytes, const std::string& what);
// Whether p points into a live device allocation.
bool is_device_pointer(const void* p);
// Whether s is the default stream, cudaStreamLegacy, cudaStreamPerThread or a live stream.
bool valid_stream(cudaStream_t s);
// Work was enqueued (a kernel, an async copy or memset, a GEMM, a convolution): under a
// lagging device (host_waits.hpp), events recorded from now on wait for the host's next
// synchronisation; before any, an event completes at once (the device is idle).
void note_work();

// Detailed message of the most recent failure with `status` on this thread, or "".
// cudaGetErrorString, cublasGetStatusString append it, so that cuda_check's exception
// says what was wrong (which range, which sizes), not only the status name.
const std::string& failure_detail(int library, int status);
void set_failure_detail(int library, int status, std::string detail);
enum library_id { cudart = 0, cublas = 1 };

}  // namespace ambiseg_emu
