// cuda_emulator/device.hpp — the device side of the CPU emulator of the CUDA backend: the
// CUDA keywords, built-in variables, barriers, warp shuffles, device maths and the kernel
// launcher behind AMBISEG_LAUNCH, for kernels compiled by the host compiler.
//
// core/cuda/launch.cuh includes this header (only when AMBISEG_CUDA_EMULATION is defined,
// i.e. in the target test_cuda_emulated) after the real <cuda_runtime.h>, which under a host
// compiler declares the runtime API and the vector types but none of the device built-ins.
//
// Execution model (runtime.cpp): a launch runs its blocks one after another; the threads of
// a block are fibers (own stacks, user-space switches) run round-robin, and a thread gives
// up the CPU only at a barrier (__syncthreads, a warp shuffle). Hence:
//   __shared__ = static: only one block is ever alive, so a static is exactly the shared
//     memory of the running block (a kernel must not rely on its initial contents, and
//     cannot here either: it holds the previous block's values).
//   threadIdx, blockIdx, blockDim, gridDim are globals the scheduler rewrites at every switch.
//   A barrier that can never complete (a thread exited, a divergent __syncthreads, a
//   full-mask shuffle with lanes missing) throws ambiseg_emu::emulation_error naming the
//   kernel — on a GPU that is a hang or undefined behaviour.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

// The real headers define these as attributes nvcc understands and a host compiler warns
// about; for the emulator every function is a host function.
#undef __global__
#undef __device__
#undef __host__
#undef __forceinline__
#undef __shared__
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

namespace ambiseg_emu {

// A condition that is a bug on a GPU (hang, illegal address, undefined behaviour) and that
// the emulator detects instead.
class emulation_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One launch's body, type-erased: run(ctx) is one thread's execution of the kernel.
struct kernel_body {
  void (*run)(const void* ctx);
  const void* ctx;
};

// Runs the grid (runtime.cpp). An invalid configuration sets the runtime's last error
// (cudaErrorInvalidConfiguration, as a GPU launch does) and runs nothing.
void run_grid(const char* kernel, dim3 grid, dim3 block, std::size_t shared_bytes,
              cudaStream_t stream, kernel_body body);

// __syncthreads(): waits until every thread of the block arrived.
void sync_block();
// A full-warp exchange: every lane of the warp publishes `bits` and receives the value of
// lane `source` (or its own when source < 0). `what` names the intrinsic for errors.
std::uint64_t warp_exchange(unsigned mask, std::uint64_t bits, int source, const char* what);
// The lane of the calling thread (its linear index in the block, modulo 32).
int lane_id();
// Throws emulation_error unless p (a kernel's pointer argument number `index`) points into
// a live device allocation (or one past its end) or into pinned host memory: a kernel given
// a host or freed pointer faults on a GPU, while the emulator could read it.
void require_kernel_pointer(const char* kernel, std::size_t index, const void* p);

template <class... P>
class launch_site {
 public:
  launch_site(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
              std::size_t shared_bytes, cudaStream_t stream)
      : name_(name), kernel_(kernel), grid_(grid), block_(block), shared_(shared_bytes),
        stream_(stream) {}

  // Arguments are converted to the kernel's parameter types once, as a launch copies them
  // into the kernel's parameter space; every thread then receives its own copies.
  template <class... A>
  void operator()(A&&... args) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    const std::tuple<P...> params(std::forward<A>(args)...);
    check_pointers(params, std::index_sequence_for<P...>{});
    struct bound {
      void (*kernel)(P...);
      const std::tuple<P...>* params;
    } ctx{kernel_, &params};
    run_grid(name_, grid_, block_, shared_, stream_,
             kernel_body{[](const void* c) {
                           const auto* b = static_cast<const bound*>(c);
                           std::apply(b->kernel, *b->params);
                         },
                         &ctx});
  }

 private:
  template <std::size_t... I>
  void check_pointers(const std::tuple<P...>& params, std::index_sequence<I...>) const {
    (check_pointer(I, std::get<I>(params)), ...);
  }
  template <class Q>
  void check_pointer(std::size_t index, const Q& value) const {
    if constexpr (std::is_pointer_v<Q>)
      if (value) require_kernel_pointer(name_, index, value);
  }

  const char* name_;
  void (*kernel_)(P...);
  dim3 grid_, block_;
  std::size_t shared_;
  cudaStream_t stream_;
};

template <class... P>
launch_site<P...> launcher(const char* name, void (*kernel)(P...), dim3 grid, dim3 block,
                           std::size_t shared_bytes, cudaStream_t stream) {
  return launch_site<P...>(name, kernel, grid, block, shared_bytes, stream);
}

template <class T>
T shuffle(unsigned mask, T value, int source, const char* what) {
  static_assert(std::is_trivially_copyable_v<T> && sizeof(T) <= 8,
                "the emulator shuffles trivially copyable values of at most 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = warp_exchange(mask, bits, source, what);
  T result;
  std::memcpy(&result, &bits, sizeof(T));
  return result;
}

inline void check_width(int width, const char* what) {
  if (width < 1 || width > 32 || (width & (width - 1)) != 0)
    throw emulation_error(std::string(what) + ": width " + std::to_string(width) +
                          " is not a power of two in [1, 32]");
}

}  // namespace ambiseg_emu

// ---- built-in variables (defined in runtime.cpp) ----------------------------------------
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
constexpr int warpSize = 32;

// ---- barriers and warp shuffles ----------------------------------------------------------
inline void __syncthreads() { ambiseg_emu::sync_block(); }

template <class T>
T __shfl_sync(unsigned mask, T value, int source_lane, int width = 32) {
  ambiseg_emu::check_width(width, "__shfl_sync");
  const int lane = ambiseg_emu::lane_id();
  const int source = (lane - lane % width) + ((source_lane % width) + width) % width;
  return ambiseg_emu::shuffle(mask, value, source, "__shfl_sync");
}
template <class T>
T __shfl_down_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  ambiseg_emu::check_width(width, "__shfl_down_sync");
  const int lane = ambiseg_emu::lane_id();
  const int in_segment = lane % width + static_cast<int>(delta);
  // Beyond the segment: the lane keeps its own value.
  const int source = in_segment < width ? lane - lane % width + in_segment : -1;
  return ambiseg_emu::shuffle(mask, value, source, "__shfl_down_sync");
}
template <class T>
T __shfl_up_sync(unsigned mask, T value, unsigned delta, int width = 32) {
  ambiseg_emu::check_width(width, "__shfl_up_sync");
  const int lane = ambiseg_emu::lane_id();
  const int in_segment = lane % width - static_cast<int>(delta);
  const int source = in_segment >= 0 ? lane - lane % width + in_segment : -1;
  return ambiseg_emu::shuffle(mask, value, source, "__shfl_up_sync");
}
template <class T>
T __shfl_xor_sync(unsigned mask, T value, int lane_mask, int width = 32) {
  ambiseg_emu::check_width(width, "__shfl_xor_sync");
  const int lane = ambiseg_emu::lane_id();
  const int other = lane ^ lane_mask;
  // A later segment is out of reach: the lane keeps its own value.
  const int source = other < (lane / width + 1) * width ? other : -1;
  return ambiseg_emu::shuffle(mask, value, source, "__shfl_xor_sync");
}

// ---- device maths ------------------------------------------------------------------------
// Device code calls exp/sqrt/... unqualified with float or double arguments and gets the
// overload of its type; the host's global namespace has only the C (double) functions.
using std::cos;
using std::exp;
using std::fabs;
using std::fma;
using std::fmax;
using std::fmin;
using std::isfinite;
using std::isinf;
using std::isnan;
using std::log;
using std::log1p;
using std::sin;
using std::sqrt;
using std::tanh;
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __expf(float x) { return std::exp(x); }
inline float __logf(float x) { return std::log(x); }
inline float __fdividef(float a, float b) { return a / b; }
