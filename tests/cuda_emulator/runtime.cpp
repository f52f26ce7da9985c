// cuda_emulator/runtime.cpp — the CUDA runtime API subset ambiseg uses, on the CPU.
//
// One emulated device (device 0, "ambiseg CUDA emulator (CPU)"). Everything executes
// synchronously, in call order, on the calling thread: an asynchronous copy or a kernel has
// completed when its call returns, every event is complete once recorded, and a stream
// wait is a no-op. So the emulator cannot show a race between streams or between the host
// and a stream — it shows what the program computes when every enqueued operation runs in
// the order it was issued.
//
// What it checks that a GPU would only show as garbage, a crash or a hang:
//   - cudaMalloc memory is filled with 0xFF bytes (NaN as float and double): a kernel or
//     copy that reads memory nothing wrote produces NaN;
//   - freed blocks are poisoned the same way and quarantined (not handed out again until
//     256 MiB of later frees pushed them out), so a use after free reads NaN, and a copy
//     touching a freed block is refused as such;
//   - every copy and memset range on the device side must lie inside one live allocation,
//     and a pointer given as host memory must not be device memory (the kind must match);
//   - stream and event handles must be live.
// A refused call returns the CUDA error code a GPU would (cudaErrorInvalidValue, ...);
// cudaGetErrorString then appends what exactly was wrong.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "cuda_emulator/emulator.hpp"
#include "cuda_emulator/host_waits.hpp"

struct CUstream_st {
  unsigned flags = 0;
};
struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;
  std::chrono::steady_clock::time_point when{};
  std::uint64_t sequence = 0;  // the record's place in the order of all records
};

namespace ambiseg_emu {
namespace {

// host_waits.hpp's counters (under runtime_state's mutex where a call takes it, else
// atomically: a call may come from any thread).
struct wait_counters {
  std::atomic<std::uint64_t> stream_syncs{0}, event_syncs{0}, device_syncs{0};
  std::atomic<std::uint64_t> blocking_copies{0}, frees{0}, device_mallocs{0}, pinned_allocs{0};
};
wait_counters& counters() {
  static wait_counters c;
  return c;
}

// The lagging device of host_waits.hpp's lagging_device_scope: events recorded after the
// last synchronisation stay "not ready" until the host synchronises.
struct event_clock {
  std::atomic<bool> lagging{false};
  std::atomic<bool> work_pending{false};    // enqueued since the last synchronisation
  std::atomic<std::uint64_t> recorded{0};   // sequence of the last record
  std::atomic<std::uint64_t> completed{0};  // every record up to this one has completed
};
event_clock& events_clock() {
  static event_clock c;
  return c;
}
// A synchronisation of the whole device (or of a blocking stream: all the work the
// emulator knows of is ordered on them): every record so far has completed.
void complete_all_records() {
  events_clock().work_pending.store(false);
  events_clock().completed.store(events_clock().recorded.load());
}

constexpr std::size_t device_memory_bytes = std::size_t(16) << 30;  // what the device reports
constexpr std::size_t quarantine_limit = std::size_t(256) << 20;
constexpr std::size_t device_alignment = 256;  // cudaMalloc's guarantee

struct block_info {
  std::size_t bytes = 0;
  bool live = true;  // false: freed, poisoned, in quarantine
};

struct runtime_state {
  std::mutex mutex;
  std::map<std::uintptr_t, block_info> device_blocks;  // by start address
  std::map<std::uintptr_t, std::size_t> pinned_blocks;
  std::deque<std::uintptr_t> quarantine;
  std::size_t quarantine_bytes = 0, live_bytes = 0;
  std::set<const CUstream_st*> streams;
  std::set<const CUevent_st*> events;
};

runtime_state& rt() {
  static runtime_state* const s = new runtime_state();  // never destroyed: frees at exit
  return *s;
}

thread_local cudaError_t last_error = cudaSuccess;
thread_local int current_device = 0;
thread_local std::unordered_map<int, std::string> details;  // library << 16 | status

cudaError_t fail(cudaError_t status, std::string detail) {
  last_error = status;
  set_failure_detail(cudart, status, std::move(detail));
  return status;
}

std::string hex(const void* p) {
  std::ostringstream o;
  o << p;
  return o.str();
}

// The block containing address a (live or quarantined), or end(). Lock held.
std::map<std::uintptr_t, block_info>::iterator block_of(runtime_state& s, std::uintptr_t a) {
  auto it = s.device_blocks.upper_bound(a);
  if (it == s.device_blocks.begin()) return s.device_blocks.end();
  --it;
  if (a < it->first + std::max<std::size_t>(it->second.bytes, 1)) return it;
  return s.device_blocks.end();
}

std::optional<std::string> range_problem_locked(runtime_state& s, const void* p,
                                                std::size_t bytes) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto it = block_of(s, a);
  std::ostringstream o;
  if (it == s.device_blocks.end()) {
    o << "[" << p << ", +" << bytes << " bytes) is not device memory (no allocation contains "
      << p << ")";
    return o.str();
  }
  const void* base = reinterpret_cast<const void*>(it->first);
  if (!it->second.live) {
    o << "[" << p << ", +" << bytes << " bytes) lies in the freed allocation at " << base
      << " of " << it->second.bytes << " bytes (use after free)";
    return o.str();
  }
  if (a - it->first + bytes > it->second.bytes) {
    o << "[" << p << ", +" << bytes << " bytes) overruns the allocation at " << base << " of "
      << it->second.bytes << " bytes by " << (a - it->first + bytes - it->second.bytes)
      << " bytes (offset " << (a - it->first) << ")";
    return o.str();
  }
  return std::nullopt;
}

bool is_device_locked(runtime_state& s, const void* p) {
  auto it = block_of(s, reinterpret_cast<std::uintptr_t>(p));
  return it != s.device_blocks.end();
}

bool is_special_stream(cudaStream_t s) {
  return s == nullptr || s == cudaStreamLegacy || s == cudaStreamPerThread;
}

// Checks one side of a copy: `device` says what the kind claims it is.
std::optional<std::string> side_problem(runtime_state& s, const char* side, const void* p,
                                        std::size_t extent, bool device) {
  if (device) {
    if (auto problem = range_problem_locked(s, p, extent))
      return std::string(side) + " " + *problem;
    return std::nullopt;
  }
  if (is_device_locked(s, p))
    return std::string(side) + " " + hex(p) +
           " is device memory, but the copy kind says it is host memory";
  if (p == nullptr) return std::string(side) + " is a null host pointer";
  return std::nullopt;
}

bool is_pinned_locked(runtime_state& s, const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  auto pin = s.pinned_blocks.upper_bound(a);
  return pin != s.pinned_blocks.begin() && a < std::prev(pin)->first + std::prev(pin)->second;
}

cudaError_t check_kind(cudaMemcpyKind& kind, runtime_state& s, const void* dst, const void* src) {
  if (kind == cudaMemcpyDefault) {
    const bool d = is_device_locked(s, dst), h = is_device_locked(s, src);
    kind = d ? (h ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
             : (h ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice)
    return fail(cudaErrorInvalidMemcpyDirection, "unknown cudaMemcpyKind");
  return cudaSuccess;
}

// A 2-D copy (a plain copy is one row). Synchronous whatever the call.
cudaError_t copy_2d(const char* api, void* dst, std::size_t dpitch, const void* src,
                    std::size_t spitch, std::size_t width, std::size_t height,
                    cudaMemcpyKind kind, cudaStream_t stream) {
  if (!valid_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, std::string(api) + ": no such stream");
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > dpitch || width > spitch)
    return fail(cudaErrorInvalidPitchValue, std::string(api) + ": width " +
                                                std::to_string(width) + " exceeds a pitch (" +
                                                std::to_string(dpitch) + ", " +
                                                std::to_string(spitch) + ")");
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  if (const cudaError_t e = check_kind(kind, s, dst, src); e != cudaSuccess) return e;
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  const std::size_t dst_extent = dpitch * (height - 1) + width;
  const std::size_t src_extent = spitch * (height - 1) + width;
  for (auto problem : {side_problem(s, "destination", dst, dst_extent, dst_dev),
                       side_problem(s, "source", src, src_extent, src_dev)})
    if (problem) return fail(cudaErrorInvalidValue, std::string(api) + ": " + *problem);
  const auto d = reinterpret_cast<std::uintptr_t>(dst), so = reinterpret_cast<std::uintptr_t>(src);
  if (d != so && d < so + src_extent && so < d + dst_extent)
    return fail(cudaErrorInvalidValue, std::string(api) + ": source and destination overlap "
                                                          "(undefined on a GPU)");
  for (std::size_t r = 0; r < height; ++r)
    std::memmove(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch,
                 width);
  // On a GPU: a synchronous copy with a host side waits; an asynchronous one waits only when
  // it lands in pageable host memory.
  note_work();
  const bool synchronous_call = std::string_view(api).find("Async") == std::string_view::npos;
  const bool host_side = !(dst_dev && src_dev);
  if ((synchronous_call && host_side) || (!synchronous_call && src_dev && !dst_dev && !is_pinned_locked(s, dst))) {
    ++counters().blocking_copies;
    complete_all_records();
  }
  return cudaSuccess;
}

cudaError_t fill(const char* api, void* p, int value, std::size_t bytes, cudaStream_t stream) {
  if (!valid_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, std::string(api) + ": no such stream");
  if (bytes == 0) return cudaSuccess;
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  if (auto problem = range_problem_locked(s, p, bytes))
    return fail(cudaErrorInvalidValue, std::string(api) + ": " + *problem);
  std::memset(p, value & 0xFF, bytes);
  note_work();
  return cudaSuccess;
}

}  // namespace

void set_failure_detail(int library, int status, std::string detail) {
  details[library << 16 | status] = std::move(detail);
}
const std::string& failure_detail(int library, int status) {
  static const std::string none;
  auto it = details.find(library << 16 | status);
  return it == details.end() ? none : it->second;
}

void record_launch_error(cudaError_t status, std::string detail) { fail(status, std::move(detail)); }

std::optional<std::string> device_range_problem(const void* p, std::size_t bytes) {
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  return range_problem_locked(s, p, bytes);
}

void require_device_range(const void* p, std::size_t bytes, const std::string& what) {
  if (auto problem = device_range_problem(p, bytes))
    throw emulation_error("CUDA emulator: illegal address: " + what + ": " + *problem);
}

void require_kernel_pointer(const char* kernel, std::size_t index, const void* p) {
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  for (std::uintptr_t probe : {a, a - 1}) {  // a - 1: a pointer one past the end
    auto it = block_of(s, probe);
    if (it != s.device_blocks.end() && it->second.live) return;
    auto pin = s.pinned_blocks.upper_bound(probe);
    if (pin != s.pinned_blocks.begin() && probe < std::prev(pin)->first + std::prev(pin)->second)
      return;
  }
  auto it = block_of(s, a);
  throw emulation_error(std::string("CUDA emulator: kernel ") + kernel + ": pointer argument " +
                        std::to_string(index) + " (" + hex(p) + ") " +
                        (it != s.device_blocks.end() ? "points into a freed device allocation"
                                                     : "is not device memory"));
}

bool is_device_pointer(const void* p) {
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  auto it = block_of(s, reinterpret_cast<std::uintptr_t>(p));
  return it != s.device_blocks.end() && it->second.live;
}

bool valid_stream(cudaStream_t stream) {
  if (is_special_stream(stream)) return true;
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  return s.streams.count(stream) != 0;
}

}  // namespace ambiseg_emu

using namespace ambiseg_emu;

extern "C" {

cudaError_t cudaGetLastError(void) { return std::exchange(ambiseg_emu::last_error, cudaSuccess); }
cudaError_t cudaPeekAtLastError(void) { return ambiseg_emu::last_error; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidPitchValue: return "cudaErrorInvalidPitchValue";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    default: return "cudaErrorUnknown";
  }
}

const char* cudaGetErrorString(cudaError_t error) {
  const char* text = "unknown error";
  switch (error) {
    case cudaSuccess: text = "no error"; break;
    case cudaErrorInvalidValue: text = "invalid argument"; break;
    case cudaErrorMemoryAllocation: text = "out of memory"; break;
    case cudaErrorInvalidConfiguration: text = "invalid configuration argument"; break;
    case cudaErrorInvalidPitchValue: text = "invalid pitch argument"; break;
    case cudaErrorInvalidMemcpyDirection: text = "invalid copy direction for memcpy"; break;
    case cudaErrorInvalidDevice: text = "invalid device ordinal"; break;
    case cudaErrorInvalidDevicePointer: text = "invalid device pointer"; break;
    case cudaErrorInvalidResourceHandle: text = "invalid resource handle"; break;
    case cudaErrorNotReady: text = "device not ready"; break;
    default: break;
  }
  const std::string& detail = failure_detail(cudart, error);
  if (detail.empty()) return text;
  thread_local std::string message;
  message = std::string(text) + "; CUDA emulator: " + detail;
  return message.c_str();
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return fail(cudaErrorInvalidValue, "cudaGetDeviceCount: null count");
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return fail(cudaErrorInvalidValue, "cudaGetDeviceProperties: null prop");
  if (device != 0) return fail(cudaErrorInvalidDevice, "the emulator has device 0 only");
  *prop = cudaDeviceProp{};
  std::snprintf(prop->name, sizeof prop->name, "%s", "ambiseg CUDA emulator (CPU)");
  prop->totalGlobalMem = device_memory_bytes;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = 1024;
  prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 2147483647;
  prop->maxGridSize[1] = 65535;
  prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  prop->multiProcessorCount = 1;
  prop->unifiedAddressing = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  if (device != 0) return fail(cudaErrorInvalidDevice, "the emulator has device 0 only");
  ambiseg_emu::current_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* device) {
  if (!device) return fail(cudaErrorInvalidValue, "cudaGetDevice: null device");
  *device = ambiseg_emu::current_device;
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize(void) {
  ++ambiseg_emu::counters().device_syncs;
  ambiseg_emu::complete_all_records();
  return cudaSuccess;
}

// ---- memory ------------------------------------------------------------------------------
cudaError_t cudaMalloc(void** ptr, size_t size) {
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaMalloc: null result pointer");
  ++ambiseg_emu::counters().device_mallocs;
  *ptr = nullptr;
  if (size == 0) return cudaSuccess;
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  const std::size_t rounded = (size + device_alignment - 1) / device_alignment * device_alignment;
  if (s.live_bytes + size > device_memory_bytes)
    return fail(cudaErrorMemoryAllocation, "cudaMalloc of " + std::to_string(size) + " bytes with " +
                                               std::to_string(s.live_bytes) + " in use");
  void* p = std::aligned_alloc(device_alignment, rounded);
  if (!p) return fail(cudaErrorMemoryAllocation, "cudaMalloc: host allocation failed");
  std::memset(p, poison_byte, rounded);
  s.device_blocks[reinterpret_cast<std::uintptr_t>(p)] = block_info{size, true};
  s.live_bytes += size;
  *ptr = p;
  return cudaSuccess;
}

cudaError_t cudaFree(void* ptr) {
  ++ambiseg_emu::counters().frees;  // synchronises the device, even for nullptr
  ambiseg_emu::complete_all_records();
  if (!ptr) return cudaSuccess;
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  auto it = s.device_blocks.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == s.device_blocks.end())
    return fail(cudaErrorInvalidValue, "cudaFree(" + hex(ptr) + "): not the start of a device allocation");
  if (!it->second.live)
    return fail(cudaErrorInvalidValue, "cudaFree(" + hex(ptr) + "): freed twice");
  it->second.live = false;
  std::memset(ptr, poison_byte, it->second.bytes);
  s.live_bytes -= it->second.bytes;
  s.quarantine.push_back(it->first);
  s.quarantine_bytes += it->second.bytes;
  while (s.quarantine_bytes > quarantine_limit) {
    auto old = s.device_blocks.find(s.quarantine.front());
    s.quarantine.pop_front();
    s.quarantine_bytes -= old->second.bytes;
    std::free(reinterpret_cast<void*>(old->first));
    s.device_blocks.erase(old);
  }
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void** ptr, size_t size, unsigned int /*flags*/) {
  if (!ptr) return fail(cudaErrorInvalidValue, "cudaHostAlloc: null result pointer");
  ++ambiseg_emu::counters().pinned_allocs;
  const std::size_t rounded = (std::max<std::size_t>(size, 1) + 4095) / 4096 * 4096;
  void* p = std::aligned_alloc(4096, rounded);
  if (!p) return fail(cudaErrorMemoryAllocation, "cudaHostAlloc failed");
  std::memset(p, poison_byte, rounded);
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  s.pinned_blocks[reinterpret_cast<std::uintptr_t>(p)] = size;
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** ptr, size_t size) { return cudaHostAlloc(ptr, size, 0); }
cudaError_t cudaFreeHost(void* ptr) {
  ++ambiseg_emu::counters().frees;
  ambiseg_emu::complete_all_records();
  if (!ptr) return cudaSuccess;
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  auto it = s.pinned_blocks.find(reinterpret_cast<std::uintptr_t>(ptr));
  if (it == s.pinned_blocks.end())
    return fail(cudaErrorInvalidValue, "cudaFreeHost(" + hex(ptr) + "): not pinned host memory");
  std::free(ptr);
  s.pinned_blocks.erase(it);
  return cudaSuccess;
}

cudaError_t cudaPointerGetAttributes(cudaPointerAttributes* attributes, const void* ptr) {
  if (!attributes) return fail(cudaErrorInvalidValue, "cudaPointerGetAttributes: null result");
  *attributes = cudaPointerAttributes{};
  runtime_state& s = rt();
  std::lock_guard lock(s.mutex);
  const auto a = reinterpret_cast<std::uintptr_t>(ptr);
  auto it = block_of(s, a);
  if (it != s.device_blocks.end() && it->second.live) {
    attributes->type = cudaMemoryTypeDevice;
    attributes->device = 0;
    attributes->devicePointer = const_cast<void*>(ptr);
    return cudaSuccess;
  }
  auto pin = s.pinned_blocks.upper_bound(a);
  if (pin != s.pinned_blocks.begin() && a < std::prev(pin)->first + std::prev(pin)->second) {
    attributes->type = cudaMemoryTypeHost;
    attributes->device = 0;
    attributes->hostPointer = const_cast<void*>(ptr);
    attributes->devicePointer = const_cast<void*>(ptr);  // mapped (unified addressing)
    return cudaSuccess;
  }
  attributes->type = cudaMemoryTypeUnregistered;
  attributes->device = -2;
  attributes->hostPointer = const_cast<void*>(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t count, cudaMemcpyKind kind) {
  return copy_2d("cudaMemcpy", dst, count, src, count, count, 1, kind, nullptr);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  return copy_2d("cudaMemcpyAsync", dst, count, src, count, count, 1, kind, stream);
}
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width,
                         size_t height, cudaMemcpyKind kind) {
  return copy_2d("cudaMemcpy2D", dst, dpitch, src, spitch, width, height, kind, nullptr);
}
cudaError_t cudaMemcpy2DAsync(void* dst, size_t dpitch, const void* src, size_t spitch,
                              size_t width, size_t height, cudaMemcpyKind kind,
                              cudaStream_t stream) {
  return copy_2d("cudaMemcpy2DAsync", dst, dpitch, src, spitch, width, height, kind, stream);
}
cudaError_t cudaMemset(void* ptr, int value, size_t count) {
  return fill("cudaMemset", ptr, value, count, nullptr);
}
cudaError_t cudaMemsetAsync(void* ptr, int value, size_t count, cudaStream_t stream) {
  return fill("cudaMemsetAsync", ptr, value, count, stream);
}

// ---- streams -----------------------------------------------------------------------------
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned int flags) {
  if (!stream) return fail(cudaErrorInvalidValue, "cudaStreamCreate: null result pointer");
  if (flags & ~unsigned(cudaStreamNonBlocking))
    return fail(cudaErrorInvalidValue, "cudaStreamCreateWithFlags: unknown flags");
  auto* s = new CUstream_st{flags};
  std::lock_guard lock(rt().mutex);
  rt().streams.insert(s);
  *stream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard lock(rt().mutex);
  if (!rt().streams.erase(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: not a live stream");
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  ++ambiseg_emu::counters().stream_syncs;
  ambiseg_emu::complete_all_records();
  return valid_stream(stream) ? cudaSuccess
                              : fail(cudaErrorInvalidResourceHandle, "cudaStreamSynchronize: no such stream");
}
cudaError_t cudaStreamQuery(cudaStream_t stream) {  // never waits: the work is done already
  return valid_stream(stream) ? cudaSuccess
                              : fail(cudaErrorInvalidResourceHandle, "cudaStreamQuery: no such stream");
}
cudaError_t cudaLaunchHostFunc(cudaStream_t stream, cudaHostFn_t fn, void* user_data) {
  if (!valid_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaLaunchHostFunc: no such stream");
  if (!fn) return fail(cudaErrorInvalidValue, "cudaLaunchHostFunc: null function");
  fn(user_data);  // everything before it on the stream has completed
  return cudaSuccess;
}

// ---- events ------------------------------------------------------------------------------
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int flags) {
  if (!event) return fail(cudaErrorInvalidValue, "cudaEventCreate: null result pointer");
  auto* e = new CUevent_st{flags};
  std::lock_guard lock(rt().mutex);
  rt().events.insert(e);
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
}  // extern "C"

namespace {
bool live_event(cudaEvent_t e) {
  std::lock_guard lock(rt().mutex);
  return rt().events.count(e) != 0;
}
}  // namespace

extern "C" {
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard lock(rt().mutex);
  if (!rt().events.erase(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: not a live event");
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!live_event(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: not a live event");
  if (!valid_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: no such stream");
  event->recorded = true;
  event->when = std::chrono::steady_clock::now();
  auto& clock = ambiseg_emu::events_clock();
  event->sequence = ++clock.recorded;
  if (!clock.work_pending.load()) clock.completed.store(event->sequence);  // an idle device
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t event) {
  if (!live_event(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventQuery: not a live event");
  const auto& clock = ambiseg_emu::events_clock();
  if (clock.lagging.load() && event->sequence > clock.completed.load()) return cudaErrorNotReady;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  ++ambiseg_emu::counters().event_syncs;
  if (!live_event(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: not a live event");
  auto& clock = ambiseg_emu::events_clock();
  std::uint64_t done = clock.completed.load();
  while (done < event->sequence && !clock.completed.compare_exchange_weak(done, event->sequence)) {
  }
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return fail(cudaErrorInvalidValue, "cudaEventElapsedTime: null result");
  if (!live_event(start) || !live_event(end))
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: not a live event");
  if ((start->flags | end->flags) & cudaEventDisableTiming)
    return fail(cudaErrorInvalidResourceHandle,
                "cudaEventElapsedTime: an event was created with cudaEventDisableTiming");
  if (!start->recorded || !end->recorded)
    return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was never recorded");
  *ms = std::chrono::duration<float, std::milli>(end->when - start->when).count();
  return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned int /*flags*/) {
  if (!valid_stream(stream))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: no such stream");
  if (!live_event(event))
    return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: not a live event");
  return cudaSuccess;  // everything recorded has completed
}

}  // extern "C"

ambiseg_emu::host_wait_counts ambiseg_emu::host_waits() {
  const wait_counters& c = counters();
  return {c.stream_syncs.load(), c.event_syncs.load(),  c.device_syncs.load(),
          c.blocking_copies.load(), c.frees.load(), c.device_mallocs.load(),
          c.pinned_allocs.load()};
}

void ambiseg_emu::note_work() { events_clock().work_pending.store(true); }

void ambiseg_emu::set_lagging_device(bool lagging) {
  events_clock().lagging.store(lagging);
  complete_all_records();
}
