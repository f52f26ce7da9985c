// ambiseg/core/device_context.hpp — what a model owns to run on device D, generically:
// device_context<D> and its scope.
//
//   device_context<cpu>    nothing (ops run on the calling thread)
//   device_context<cuda>   a cuda_context: the model's stream, cuBLAS/cuDNN handles and
//                          plan cache (core/cuda_context.hpp); scope makes it current.
// A device-generic class (train::trainer) holds one and opens a scope around each step,
// so the CPU instance compiles to nothing and a CPU-only build never sees a CUDA header.
//
// The transfers a step makes, generically:
//   enqueue_upload<D>(dst, src, bytes)  host → device in the current context's order,
//                                       without waiting; src may be reused at once
//   read_back<D>(dst, src, bytes)       device → host after all work enqueued so far on
//                                       the current context: the one deliberate wait
//   enqueue_copy<D>(dst, src, bytes)    device → device in the current context's order
//   enqueue_zero<D>(dst, bytes)         zero bytes in the current context's order
//   current_stream<D>()                 the current context's stream as an opaque handle
//                                       (for train::device_sums); nullptr on the CPU
// On the CPU the copies are memcpy.
#pragma once

#include <cstddef>
#include <cstring>

#include "ambiseg/core/device.hpp"
#if defined(AMBISEG_WITH_CUDA)
#include "ambiseg/core/cuda_context.hpp"
#endif

namespace ambiseg {

template <class D>
class device_context {
 public:
  class scope {
   public:
    explicit scope(device_context&) {}
  };
  void synchronize() {}
};

#if defined(AMBISEG_WITH_CUDA)
template <>
class device_context<cuda> {
 public:
  explicit device_context(cuda_context_options options = cuda_context_defaults()) : ctx_(options) {}
  cuda_context& get() { return ctx_; }
  class scope {
   public:
    explicit scope(device_context& c) : inner_(c.ctx_) {}

   private:
    cuda_context_scope inner_;
  };
  void synchronize() { ctx_.synchronize(); }

 private:
  cuda_context ctx_;
};
#endif

template <class D>
void enqueue_upload(void* dst, const void* host_src, std::size_t bytes) {
  if (bytes == 0) return;
  if constexpr (std::same_as<D, cpu>) {
    std::memcpy(dst, host_src, bytes);
  } else {
#if defined(AMBISEG_WITH_CUDA)
    current_cuda_context().upload(dst, host_src, bytes);
#else
    static_assert(dependent_false<D>, "enqueue_upload: the CUDA backend is not built in");
#endif
  }
}

template <class D>
void read_back(void* host_dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if constexpr (std::same_as<D, cpu>) {
    std::memcpy(host_dst, src, bytes);
  } else {
#if defined(AMBISEG_WITH_CUDA)
    current_cuda_context().download(host_dst, src, bytes);
#else
    static_assert(dependent_false<D>, "read_back: the CUDA backend is not built in");
#endif
  }
}

template <class D>
void enqueue_copy(void* dst, const void* src, std::size_t bytes) {
  if (bytes == 0) return;
  if constexpr (std::same_as<D, cpu>) {
    std::memcpy(dst, src, bytes);
  } else {
#if defined(AMBISEG_WITH_CUDA)
    current_cuda_context().copy_on_stream(dst, src, bytes);
#else
    static_assert(dependent_false<D>, "enqueue_copy: the CUDA backend is not built in");
#endif
  }
}

template <class D>
void enqueue_zero(void* dst, std::size_t bytes) {
  if (bytes == 0) return;
  if constexpr (std::same_as<D, cpu>) {
    std::memset(dst, 0, bytes);
  } else {
#if defined(AMBISEG_WITH_CUDA)
    current_cuda_context().zero_on_stream(dst, bytes);
#else
    static_assert(dependent_false<D>, "enqueue_zero: the CUDA backend is not built in");
#endif
  }
}

template <class D>
void* current_stream() {
  if constexpr (std::same_as<D, cpu>) {
    return nullptr;
  } else {
#if defined(AMBISEG_WITH_CUDA)
    return static_cast<void*>(current_cuda_context().stream());
#else
    static_assert(dependent_false<D>, "current_stream: the CUDA backend is not built in");
#endif
  }
}

}  // namespace ambiseg
