// ambiseg/core/device_context.hpp — what a model owns to run on device D, generically:
// device_context<D> and its scope.
//
//   device_context<cpu>    nothing (ops run on the calling thread)
//   device_context<cuda>   a cuda_context: the model's stream, cuBLAS/cuDNN handles and
//                          plan cache (core/cuda_context.hpp); scope makes it current.
// A device-generic class (train::trainer) holds one and opens a scope around each step,
// so the CPU instance compiles to nothing and a CPU-only build never sees a CUDA header.
#pragma once

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
  explicit device_context(cuda_context_options options = {}) : ctx_(options) {}
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

}  // namespace ambiseg
