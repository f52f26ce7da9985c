// ambiseg/core/cuda_context.hpp — one CUDA stream, cuBLAS and cuDNN handle per model.
//
// Every CUDA op enqueues its work on the stream of the *current* context and returns
// without waiting: there is no hidden synchronisation. The host waits only where it
// must read a result (cuda_context::synchronize(), the explicit copies of
// core/cuda_memory.hpp, and the few functions documented as synchronising, e.g.
// cuda_kernels::global_grad_norm).
//
// A model owns a cuda_context and makes it current for the duration of its forward and
// backward with a cuda_context_scope; code that never sets one uses a default context
// per host thread. Contexts are not shared between threads (cuBLAS/cuDNN handles are
// not thread-safe), and everything enqueued through one context is ordered on its stream,
// which is what lets its scratch blocks be reused on that stream without waiting.
//
// The context also owns the cache of cuDNN execution plans (one per op kind, shape and
// data type, built once on first use) and the numerics policy of the float GEMMs and
// convolutions (every other op computes in float whatever the policy):
//   cuda_precision::fp32  no TF32 anywhere (cuBLAS compute type 32F, cuDNN engines with a
//                         tensor-core or down-convert numerical note rejected) — the
//                         default, and what the CPU parity tests assume.
//   cuda_precision::tf32  TF32 tensor cores allowed (PyTorch's default for cuDNN
//                         convolutions): 10-bit mantissa products, float in and out.
//   cuda_precision::bf16  mixed precision: the operands are rounded to bfloat16 (8-bit
//   cuda_precision::fp16  mantissa) or IEEE half (11-bit, range ±65504) for tensor cores,
//                         products accumulate in float, results and every stored tensor
//                         (activations, master weights, gradients) stay float; GroupNorm,
//                         softmax and the losses run in float. fp16 gradients underflow
//                         without loss scaling: the trainer refuses fp16 (ops/cuda/mixed.cuh).
//   deterministic         reject cuDNN engines noted nondeterministic (atomics in the weight
//                         gradient), so that a training run is reproducible bit for bit.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <cudnn.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <unordered_map>

#include "ambiseg/core/cuda_memory.hpp"

namespace ambiseg {

inline void cublas_check(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS) [[unlikely]]
    throw cuda_error(std::string("cuBLAS: ") + what + ": " + cublasGetStatusName(status) + " (" +
                     cublasGetStatusString(status) + ")");
}

inline void cudnn_check(cudnnStatus_t status, const char* what) {
  if (status != CUDNN_STATUS_SUCCESS) [[unlikely]] {
    char detail[512] = {};
    cudnnGetLastErrorString(detail, sizeof detail);
    throw cuda_error(std::string("cuDNN: ") + what + ": " + cudnnGetErrorString(status) +
                     (detail[0] ? std::string(" — ") + detail : std::string()));
  }
}

enum class cuda_precision { fp32, tf32, bf16, fp16 };

inline const char* precision_name(cuda_precision p) {
  switch (p) {
    case cuda_precision::fp32: return "fp32";
    case cuda_precision::tf32: return "tf32";
    case cuda_precision::bf16: return "bf16";
    case cuda_precision::fp16: return "fp16";
  }
  return "?";
}
// Whether the float GEMMs and convolutions round their operands to 16 bits.
inline bool sixteen_bit(cuda_precision p) {
  return p == cuda_precision::bf16 || p == cuda_precision::fp16;
}

// How a 1×1, stride-1, unpadded convolution runs: as cuBLAS GEMMs (it is a matrix product
// per image: y[n] = W·x[n]) or as a cuDNN plan like every other convolution.
enum class conv1x1_path { cublas, cudnn };

struct cuda_context_options {
  int device = 0;
  cuda_precision precision = cuda_precision::fp32;
  bool deterministic = true;
  conv1x1_path pointwise = conv1x1_path::cublas;
};

// The options of a context built without explicit ones (a model's device_context, a
// trainer's). The CLI's --precision sets them before it builds a model; a context keeps
// the options it was built with. A thread's fallback context (below) never takes them:
// code outside any model's scope computes in fp32 whatever ran before.
inline cuda_context_options& cuda_context_defaults() {
  static cuda_context_options defaults;
  return defaults;
}

// An entry of the plan cache; the CUDA backend derives from it (cuDNN descriptors).
struct cuda_cached_plan {
  virtual ~cuda_cached_plan() = default;
};
// Plan keys: the op kind, data type, extents, geometry and pointer alignments, packed.
using cuda_plan_key = std::array<std::int64_t, 16>;
struct cuda_plan_key_hash {
  std::size_t operator()(const cuda_plan_key& k) const noexcept {
    std::uint64_t h = 1469598103934665603ull;  // FNV-1a over the 64-bit words
    for (std::int64_t v : k) {
      h ^= static_cast<std::uint64_t>(v);
      h *= 1099511628211ull;
    }
    return static_cast<std::size_t>(h);
  }
};

struct cuda_plan_cache_stats {
  std::uint64_t builds = 0;  // plans built (heuristics + finalisation)
  std::uint64_t hits = 0;    // calls served by a cached plan
};

class cuda_context {
 public:
  explicit cuda_context(cuda_context_options options = cuda_context_defaults()) : options_(options) {
    cuda_check(cudaSetDevice(options_.device), "cudaSetDevice");
    // A blocking stream: it stays ordered with the legacy default stream, on which the
    // copies and memsets of core/cuda_memory.hpp run, so tensor::zero() before an op and
    // copy_to_host() after it need no explicit synchronisation.
    cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamDefault), "cudaStreamCreate");
    try {
      cublas_check(cublasCreate(&cublas_), "cublasCreate");
      cublas_check(cublasSetStream(cublas_, stream_), "cublasSetStream");
      cublas_check(cublasSetMathMode(cublas_, options_.precision == cuda_precision::tf32
                                                  ? CUBLAS_TF32_TENSOR_OP_MATH
                                                  : CUBLAS_DEFAULT_MATH),
                   "cublasSetMathMode");
      cudnn_check(cudnnCreate(&cudnn_), "cudnnCreate");
      cudnn_check(cudnnSetStream(cudnn_, stream_), "cudnnSetStream");
    } catch (...) {
      destroy();
      throw;
    }
  }
  cuda_context(const cuda_context&) = delete;
  cuda_context& operator=(const cuda_context&) = delete;
  ~cuda_context() {
    // Queued work may still use plans and cached blocks: finish it first.
    if (stream_) (void)cudaStreamSynchronize(stream_);
    plans_.clear();
    destroy();
  }

  const cuda_context_options& options() const { return options_; }
  int device() const { return options_.device; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t cublas() const { return cublas_; }
  cudnnHandle_t cudnn() const { return cudnn_; }
  // Scratch for a few kernels on this context's stream: from the process-wide block cache,
  // tagged with the stream, so the next request on this stream reuses it without waiting.
  cuda_buffer scratch(std::size_t bytes) {
    const on_device here(options_.device);  // blocks are cached per current device
    return cuda_buffer(cuda_tensor_cache(), bytes, stream_);
  }

  // host → device in this stream's order, through a pinned staging block: returns at once
  // (the host never waits) and `host_src` may be reused at once.
  void upload(void* dst, const void* host_src, std::size_t bytes) {
    if (bytes == 0) return;
    // The staging block's event goes on this device's legacy stream, which orders stream_.
    const on_device here(options_.device);
    cuda_pinned_cache& staging = cuda_pinned_staging();
    void* block = staging.allocate(bytes);
    std::memcpy(block, host_src, bytes);
    const cudaError_t status = cudaMemcpyAsync(dst, block, bytes, cudaMemcpyHostToDevice, stream_);
    staging.deallocate(block);  // reused after its event: after the copy above
    cuda_check(status, "cuda_context::upload: cudaMemcpyAsync");
  }

  // device → host after everything enqueued on this stream so far: a synchronisation by
  // design (the one a training step makes, to report its loss).
  void download(void* host_dst, const void* src, std::size_t bytes) {
    if (bytes == 0) return;
    const on_device here(options_.device);
    cuda_pinned_cache& staging = cuda_pinned_staging();
    void* block = staging.allocate(bytes);
    cudaError_t status = cudaMemcpyAsync(block, src, bytes, cudaMemcpyDeviceToHost, stream_);
    if (status == cudaSuccess) status = cudaStreamSynchronize(stream_);
    if (status == cudaSuccess) std::memcpy(host_dst, block, bytes);
    staging.deallocate(block);
    cuda_check(status, "cuda_context::download");
  }

  // device → device and zeroing, in this stream's order (the host does not wait).
  void copy_on_stream(void* dst, const void* src, std::size_t bytes) {
    if (bytes == 0) return;
    const on_device here(options_.device);
    cuda_check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_),
               "cuda_context::copy_on_stream: cudaMemcpyAsync");
  }
  void zero_on_stream(void* dst, std::size_t bytes) {
    if (bytes == 0) return;
    const on_device here(options_.device);
    cuda_check(cudaMemsetAsync(dst, 0, bytes, stream_), "cuda_context::zero_on_stream: cudaMemsetAsync");
  }

  // Waits for everything enqueued on this context.
  void synchronize() const { cuda_check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize"); }

  // The plan for `key`, or nullptr; store() takes ownership of a newly built one.
  cuda_cached_plan* find_plan(const cuda_plan_key& key) {
    auto it = plans_.find(key);
    if (it == plans_.end()) return nullptr;
    ++plan_stats_.hits;
    return it->second.get();
  }
  cuda_cached_plan* store_plan(const cuda_plan_key& key, std::unique_ptr<cuda_cached_plan> plan) {
    ++plan_stats_.builds;
    auto& slot = plans_[key];
    slot = std::move(plan);
    return slot.get();
  }
  cuda_plan_cache_stats plan_stats() const { return plan_stats_; }
  std::size_t cached_plans() const { return plans_.size(); }

 private:
  // This context's device for a scope, whatever the caller's current device is.
  using on_device = cuda_runtime_block_driver<cuda_block_memory::device>::device_guard;

  void destroy() noexcept {
    if (cudnn_) (void)cudnnDestroy(cudnn_);
    if (cublas_) (void)cublasDestroy(cublas_);
    if (stream_) (void)cudaStreamDestroy(stream_);
    cudnn_ = nullptr;
    cublas_ = nullptr;
    stream_ = nullptr;
  }

  cuda_context_options options_;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  cudnnHandle_t cudnn_ = nullptr;
  std::unordered_map<cuda_plan_key, std::unique_ptr<cuda_cached_plan>, cuda_plan_key_hash> plans_;
  cuda_plan_cache_stats plan_stats_;
};

namespace detail {
inline cuda_context*& current_cuda_context_slot() {
  thread_local cuda_context* current = nullptr;
  return current;
}
}  // namespace detail

// The context CUDA ops run on: the innermost cuda_context_scope of this thread, else this
// thread's fallback context (created on first use, device 0, cuda_context_options{}).
inline cuda_context& current_cuda_context() {
  if (cuda_context* c = detail::current_cuda_context_slot()) return *c;
  thread_local std::unique_ptr<cuda_context> fallback;
  if (!fallback) fallback = std::make_unique<cuda_context>(cuda_context_options{});
  return *fallback;
}

// Makes `ctx` current (and its device the current device) until the end of the scope.
class cuda_context_scope {
 public:
  explicit cuda_context_scope(cuda_context& ctx) : previous_(detail::current_cuda_context_slot()) {
    cuda_check(cudaSetDevice(ctx.device()), "cudaSetDevice");
    detail::current_cuda_context_slot() = &ctx;
  }
  cuda_context_scope(const cuda_context_scope&) = delete;
  cuda_context_scope& operator=(const cuda_context_scope&) = delete;
  ~cuda_context_scope() {
    detail::current_cuda_context_slot() = previous_;
    if (previous_) (void)cudaSetDevice(previous_->device());
  }

 private:
  cuda_context* previous_;
};

}  // namespace ambiseg
