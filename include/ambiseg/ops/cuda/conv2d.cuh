// ambiseg/ops/cuda/conv2d.cuh — 2-D convolution through the cuDNN 9 graph (backend) API.
//
//   x [N,Ci,H,W]  w [Co,Ci,K,K]  b [Co]  y [N,Co,Ho,Wo], NCHW packed, float
//   (on a bf16/fp16 context the cuDNN graphs run on 16-bit copies of their inputs with float
//   compute, and their 16-bit result is widened into the float output: ops/cuda/mixed.cuh)
//
// Why the backend API: cuDNN 9 deprecates the legacy cudnnConvolutionForward/
// BackwardData/BackwardFilter family; the graph API is the supported path. Each of the
// three convolutions is a one-node operation graph. Per (kind, shape, pointer alignment)
// and per context, the plan is built once — heuristics (mode A, then FALLBACK), the first
// engine config that passes the context's numerics policy (no TF32/down-conversion under
// cuda_precision::fp32, no nondeterministic engine when deterministic) and finalises — and
// cached in the cuda_context. If no engine passes the policy the first one that finalises
// is used and the plan records that (relaxed). A call then only builds a variant pack
// (the three device pointers and the workspace) and executes.
//
// Tensor unique ids: 1 = x-shaped (x or dx), 2 = w-shaped (w or dw), 3 = y-shaped (y or dy),
// the same descriptors for all three kinds. cuDNN computes cross-correlation (PyTorch's
// convolution) with pre = post padding p, stride s, dilation 1.
//
// Accumulation: the weight gradient is computed into a staging block with β = 0 and added
// to dw by our own kernel (dw +=), which does not depend on an engine supporting β = 1.
// The bias is our own kernels: y += b per channel; db += Σ_{n,h,w} dy, one block per
// channel (deterministic).
//
// 1×1 convolutions with stride 1 and no padding (the UNet's skip projections, attention
// qkv and proj_out) are matrix products per image and run through cuBLAS unless the
// context says conv1x1_path::cudnn (see pointwise_* below; row-major maths as in blas.cuh):
//   y[n] [Co,HW] = W [Co,Ci] · x[n] [Ci,HW]     one strided-batched GEMM, W's stride 0
//   dx[n] [Ci,HW] = Wᵀ · dy[n] [Co,HW]          one strided-batched GEMM
//   dW [Co,Ci] += Σ_n dy[n] · x[n]ᵀ             N GEMMs with β = 1, n in order (deterministic)
#pragma once

#include <cudnn.h>

#include "ambiseg/ops/cuda/blas.cuh"

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "ambiseg/ops/cuda/api.hpp"
#include "ambiseg/ops/cuda/common.cuh"
#include "ambiseg/ops/cuda/elementwise.cuh"
#include "ambiseg/ops/cuda/mixed.cuh"

namespace ambiseg::ops::cuda_kernels {

namespace detail {

// Owns one cuDNN backend descriptor.
class backend_desc {
 public:
  explicit backend_desc(cudnnBackendDescriptorType_t type) {
    cudnn_check(cudnnBackendCreateDescriptor(type, &desc_), "cudnnBackendCreateDescriptor");
  }
  backend_desc(const backend_desc&) = delete;
  backend_desc& operator=(const backend_desc&) = delete;
  backend_desc(backend_desc&& o) noexcept : desc_(std::exchange(o.desc_, nullptr)) {}
  backend_desc& operator=(backend_desc&& o) noexcept {
    if (this != &o) {
      if (desc_) (void)cudnnBackendDestroyDescriptor(desc_);
      desc_ = std::exchange(o.desc_, nullptr);
    }
    return *this;
  }
  ~backend_desc() {
    if (desc_) (void)cudnnBackendDestroyDescriptor(desc_);
  }

  cudnnBackendDescriptor_t get() const { return desc_; }
  void set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, std::int64_t count,
           const void* values, const char* what) {
    cudnn_check(cudnnBackendSetAttribute(desc_, name, type, count, values), what);
  }
  void set_desc(cudnnBackendAttributeName_t name, const backend_desc& other, const char* what) {
    cudnnBackendDescriptor_t d = other.get();
    set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &d, what);
  }
  void finalize(const char* what) { cudnn_check(cudnnBackendFinalize(desc_), what); }

 private:
  cudnnBackendDescriptor_t desc_ = nullptr;
};

enum class conv_kind : std::int64_t { forward = 0, backward_data = 1, backward_filter = 2 };

struct conv_geometry {
  std::int64_t n, ci, h, w, co, k, stride, pad, ho, wo;
};

struct conv_plan final : cuda_cached_plan {
  std::vector<backend_desc> keep;  // everything the plan was built from, alive as long as it
  backend_desc plan{CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR};
  std::int64_t workspace_bytes = 0;
  bool relaxed = false;  // no engine met the numerics policy; the first working one is used
};

inline backend_desc make_tensor(std::int64_t uid, std::int64_t d0, std::int64_t d1,
                                std::int64_t d2, std::int64_t d3, std::int64_t alignment,
                                cudnnDataType_t type) {
  backend_desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const std::int64_t dims[4] = {d0, d1, d2, d3};
  const std::int64_t strides[4] = {d1 * d2 * d3, d2 * d3, d3, 1};
  t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type, "tensor data type");
  t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims, "tensor dimensions");
  t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides, "tensor strides");
  t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid, "tensor unique id");
  t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &alignment, "tensor alignment");
  t.finalize("tensor descriptor");
  return t;
}

// Whether an engine config meets the context's numerics policy.
inline bool engine_acceptable(const backend_desc& config, const cuda_context_options& options) {
  backend_desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
  cudnnBackendDescriptor_t e = engine.get();
  std::int64_t count = 0;
  if (cudnnBackendGetAttribute(config.get(), CUDNN_ATTR_ENGINECFG_ENGINE,
                               CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &count, &e) != CUDNN_STATUS_SUCCESS)
    return false;
  cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
  count = 0;
  if (cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE,
                               CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes) != CUDNN_STATUS_SUCCESS)
    return false;
  for (std::int64_t i = 0; i < count; ++i) {
    const cudnnBackendNumericalNote_t note = notes[i];
    if (options.precision == cuda_precision::fp32 &&
        (note == CUDNN_NUMERICAL_NOTE_TENSOR_CORE || note == CUDNN_NUMERICAL_NOTE_DOWN_CONVERT_INPUTS ||
         note == CUDNN_NUMERICAL_NOTE_REDUCED_PRECISION_REDUCTION))
      return false;
    if (options.deterministic && note == CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC) return false;
  }
  return true;
}

// The data type of the cuDNN graphs' tensors on a context: float, or the 16-bit copies.
inline cudnnDataType_t io_type(cuda_precision p) {
  return p == cuda_precision::bf16 ? CUDNN_DATA_BFLOAT16
         : p == cuda_precision::fp16 ? CUDNN_DATA_HALF
                                     : CUDNN_DATA_FLOAT;
}

inline std::unique_ptr<conv_plan> build_conv_plan(cuda_context& ctx, conv_kind kind,
                                                  const conv_geometry& g, std::int64_t align_x,
                                                  std::int64_t align_w, std::int64_t align_y) {
  auto result = std::make_unique<conv_plan>();
  auto& keep = result->keep;
  const cudnnDataType_t type = io_type(ctx.options().precision);
  keep.push_back(make_tensor(1, g.n, g.ci, g.h, g.w, align_x, type));
  keep.push_back(make_tensor(2, g.co, g.ci, g.k, g.k, align_w, type));
  keep.push_back(make_tensor(3, g.n, g.co, g.ho, g.wo, align_y, type));
  const backend_desc& tx = keep[0];
  const backend_desc& tw = keep[1];
  const backend_desc& ty = keep[2];

  backend_desc conv(CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR);
  {
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CROSS_CORRELATION;
    const std::int64_t spatial = 2;
    const std::int64_t dilation[2] = {1, 1}, stride[2] = {g.stride, g.stride},
                       pad[2] = {g.pad, g.pad};
    conv.set(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute, "conv compute type");
    conv.set(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode, "conv mode");
    conv.set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial, "conv spatial dims");
    conv.set(CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dilation, "conv dilations");
    conv.set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride, "conv strides");
    conv.set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pad, "conv pre paddings");
    conv.set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, pad, "conv post paddings");
    conv.finalize("convolution descriptor");
  }

  const float alpha = 1.0f, beta = 0.0f;
  backend_desc op(kind == conv_kind::forward ? CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR
                  : kind == conv_kind::backward_data
                      ? CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR
                      : CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR);
  switch (kind) {
    case conv_kind::forward:
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, tx, "conv fwd x");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, tw, "conv fwd w");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, ty, "conv fwd y");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, conv, "conv fwd desc");
      op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha, "conv fwd alpha");
      op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &beta, "conv fwd beta");
      break;
    case conv_kind::backward_data:
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, tx, "conv dgrad dx");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W, tw, "conv dgrad w");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, ty, "conv dgrad dy");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC, conv, "conv dgrad desc");
      op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha, "conv dgrad alpha");
      op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA, CUDNN_TYPE_FLOAT, 1, &beta, "conv dgrad beta");
      break;
    case conv_kind::backward_filter:
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, tx, "conv wgrad x");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, tw, "conv wgrad dw");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, ty, "conv wgrad dy");
      op.set_desc(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, conv, "conv wgrad desc");
      op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha, "conv wgrad alpha");
      op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA, CUDNN_TYPE_FLOAT, 1, &beta, "conv wgrad beta");
      break;
  }
  op.finalize("convolution operation");

  cudnnHandle_t handle = ctx.cudnn();
  backend_desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  {
    cudnnBackendDescriptor_t ops[1] = {op.get()};
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, ops, "graph ops");
    // The handle attribute is deprecated from cuDNN 9.8 (device-property descriptors) but
    // is what every cuDNN 9 release accepts.
    graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, "graph handle");
    graph.finalize("operation graph");
  }

  // Candidate engine configs, best first: heuristics mode A, then the fallback list.
  std::vector<backend_desc> configs;
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    backend_desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph, "heuristics graph");
    heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode, "heuristics mode");
    if (cudnnBackendFinalize(heur.get()) != CUDNN_STATUS_SUCCESS) continue;
    std::int64_t count = 0;
    if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr) !=
            CUDNN_STATUS_SUCCESS ||
        count <= 0)
      continue;
    std::vector<backend_desc> found;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (std::int64_t i = 0; i < count; ++i) {
      found.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
      raw.push_back(found.back().get());
    }
    std::int64_t returned = 0;
    if (cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, raw.data()) !=
        CUDNN_STATUS_SUCCESS)
      continue;
    for (std::int64_t i = 0; i < returned && i < count; ++i) configs.push_back(std::move(found[i]));
  }

  // Pass 0 honours the numerics policy; pass 1 takes the first config that works at all.
  for (int pass = 0; pass < 2; ++pass) {
    for (backend_desc& config : configs) {
      if (pass == 0 && !engine_acceptable(config, ctx.options())) continue;
      backend_desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle, "plan handle");
      plan.set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, config, "plan engine config");
      if (cudnnBackendFinalize(plan.get()) != CUDNN_STATUS_SUCCESS) continue;
      std::int64_t bytes = 0, count = 0;
      cudnn_check(cudnnBackendGetAttribute(plan.get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                           CUDNN_TYPE_INT64, 1, &count, &bytes),
                  "plan workspace size");
      result->plan = std::move(plan);
      result->workspace_bytes = bytes;
      result->relaxed = pass == 1;
      keep.push_back(std::move(config));
      keep.push_back(std::move(conv));
      keep.push_back(std::move(op));
      keep.push_back(std::move(graph));
      return result;
    }
  }
  throw cuda_error(std::string("cuDNN: no engine supports the convolution (kind ") +
                   std::to_string(static_cast<int>(kind)) + ", x [" + std::to_string(g.n) + "," +
                   std::to_string(g.ci) + "," + std::to_string(g.h) + "," + std::to_string(g.w) +
                   "], w [" + std::to_string(g.co) + "," + std::to_string(g.ci) + "," +
                   std::to_string(g.k) + "," + std::to_string(g.k) + "], stride " +
                   std::to_string(g.stride) + ", padding " + std::to_string(g.pad) + ")");
}

// The largest of 16, 8, 4 bytes that divides the address (cuDNN engines may vectorise on it).
inline std::int64_t pointer_alignment(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::int64_t alignment = 16;
  while (alignment > 4 && a % static_cast<std::uintptr_t>(alignment) != 0) alignment /= 2;
  return alignment;
}

inline conv_plan& conv_plan_for(cuda_context& ctx, conv_kind kind, const conv_geometry& g,
                                std::int64_t align_x, std::int64_t align_w, std::int64_t align_y) {
  const cuda_plan_key key{/*op: conv2d*/ 1, static_cast<std::int64_t>(kind), g.n, g.ci, g.h, g.w,
                          g.co, g.k, g.stride, g.pad, align_x, align_w, align_y,
                          static_cast<std::int64_t>(io_type(ctx.options().precision)), 0, 0};
  if (cuda_cached_plan* p = ctx.find_plan(key)) return static_cast<conv_plan&>(*p);
  return static_cast<conv_plan&>(*ctx.store_plan(key, build_conv_plan(ctx, kind, g, align_x,
                                                                      align_w, align_y)));
}

inline void execute_conv(cuda_context& ctx, const conv_plan& plan, const void* x_like,
                         const void* w_like, const void* y_like, void* workspace) {
  backend_desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  const std::int64_t uids[3] = {1, 2, 3};
  void* pointers[3] = {const_cast<void*>(x_like), const_cast<void*>(w_like),
                       const_cast<void*>(y_like)};
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids, "variant pack ids");
  pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, pointers,
           "variant pack pointers");
  pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace,
           "variant pack workspace");
  pack.finalize("variant pack");
  cudnn_check(cudnnBackendExecute(ctx.cudnn(), plan.plan.get(), pack.get()), "cudnnBackendExecute");
}

// The cuDNN convolutions on a bf16/fp16 context: 16-bit copies of the inputs in the
// workspace (64-byte aligned blocks, so alignment 16), the 16-bit result widened into
// float. The weight gradient is added into dw like the float path's staging block.
inline void conv_forward_16(cuda_context& ctx, const conv_geometry& g, const float* x,
                            const float* w, float* y, workspace<cuda>& ws) {
  const half_format f = format_of(ctx.options().precision);
  const conv_plan& plan = conv_plan_for(ctx, conv_kind::forward, g, 16, 16, 16);
  const std::int64_t nx = g.n * g.ci * g.h * g.w, nw = g.co * g.ci * g.k * g.k,
                     ny = g.n * g.co * g.ho * g.wo;
  const std::size_t counts[4] = {static_cast<std::size_t>(plan.workspace_bytes),
                                 sizeof(std::uint16_t) * static_cast<std::size_t>(nx),
                                 sizeof(std::uint16_t) * static_cast<std::size_t>(nw),
                                 sizeof(std::uint16_t) * static_cast<std::size_t>(ny)};
  char* blocks[4] = {};
  ws.get_many<char, 4>(counts, blocks);
  auto* x16 = reinterpret_cast<std::uint16_t*>(blocks[1]);
  auto* w16 = reinterpret_cast<std::uint16_t*>(blocks[2]);
  auto* y16 = reinterpret_cast<std::uint16_t*>(blocks[3]);
  narrow(ctx.stream(), f, x, x16, nx);
  narrow(ctx.stream(), f, w, w16, nw);
  execute_conv(ctx, plan, x16, w16, y16, plan.workspace_bytes ? blocks[0] : nullptr);
  widen<false>(ctx.stream(), f, y16, y, ny);
}

inline void conv_backward_16(cuda_context& ctx, const conv_geometry& g, const float* x,
                             const float* w, const float* dy, float* dx, float* dw,
                             workspace<cuda>& ws) {
  const half_format f = format_of(ctx.options().precision);
  const conv_plan* data_plan = dx ? &conv_plan_for(ctx, conv_kind::backward_data, g, 16, 16, 16) : nullptr;
  const conv_plan* filter_plan = dw ? &conv_plan_for(ctx, conv_kind::backward_filter, g, 16, 16, 16) : nullptr;
  const std::int64_t nx = g.n * g.ci * g.h * g.w, nw = g.co * g.ci * g.k * g.k,
                     ny = g.n * g.co * g.ho * g.wo;
  const auto halves = [](std::int64_t count) {
    return sizeof(std::uint16_t) * static_cast<std::size_t>(count);
  };
  const std::size_t engine_bytes = static_cast<std::size_t>(std::max(
      data_plan ? data_plan->workspace_bytes : 0, filter_plan ? filter_plan->workspace_bytes : 0));
  // engine scratch, dy16, then w16 and dx16 for dx, x16 and dw16 for dw
  const std::size_t counts[6] = {engine_bytes,           halves(ny),
                                 dx ? halves(nw) : 0,    dx ? halves(nx) : 0,
                                 dw ? halves(nx) : 0,    dw ? halves(nw) : 0};
  char* blocks[6] = {};
  ws.get_many<char, 6>(counts, blocks);
  void* engine_ws = engine_bytes ? blocks[0] : nullptr;
  auto* dy16 = reinterpret_cast<std::uint16_t*>(blocks[1]);
  narrow(ctx.stream(), f, dy, dy16, ny);
  if (data_plan) {
    auto* w16 = reinterpret_cast<std::uint16_t*>(blocks[2]);
    auto* dx16 = reinterpret_cast<std::uint16_t*>(blocks[3]);
    narrow(ctx.stream(), f, w, w16, nw);
    execute_conv(ctx, *data_plan, dx16, w16, dy16, engine_ws);
    widen<false>(ctx.stream(), f, dx16, dx, nx);
  }
  if (filter_plan) {
    auto* x16 = reinterpret_cast<std::uint16_t*>(blocks[4]);
    auto* dw16 = reinterpret_cast<std::uint16_t*>(blocks[5]);
    narrow(ctx.stream(), f, x, x16, nx);
    execute_conv(ctx, *filter_plan, x16, dw16, dy16, engine_ws);
    widen<true>(ctx.stream(), f, dw16, dw, nw);
  }
}

// db[c] += Σ_{n, s} dy[n, c, s]: one block per channel, n in order.
template <class T>
__global__ void conv_bias_grad_kernel(const T* dy, std::int64_t n, std::int64_t c, std::int64_t s,
                                      T* db) {
  const std::int64_t ch = blockIdx.x;
  T sum = T(0);
  for (std::int64_t i = 0; i < n; ++i) {
    const T* plane = dy + (i * c + ch) * s;
    for (std::int64_t j = threadIdx.x; j < s; j += blockDim.x) sum += plane[j];
  }
  sum = block_sum(sum);
  if (threadIdx.x == 0) db[ch] += sum;
}

// A 1×1 convolution that is a plain matrix product per image, on a context that wants it
// through cuBLAS.
inline bool pointwise_gemm(const cuda_context& ctx, const conv_geometry& g) {
  return ctx.options().pointwise == conv1x1_path::cublas && g.k == 1 && g.stride == 1 && g.pad == 0;
}

inline void pointwise_forward(cuda_context& ctx, const conv_geometry& g, const float* x, const float* w,
                              float* y) {
  const std::int64_t hw = g.h * g.w;
  gemm_rm<float>(ctx, false, false, g.co, hw, g.ci, 1.0f, w, g.ci, 0, x, hw, g.ci * hw, 0.0f, y, hw,
                 g.co * hw, g.n);
}

inline void pointwise_backward_data(cuda_context& ctx, const conv_geometry& g, const float* w,
                                    const float* dy, float* dx) {
  const std::int64_t hw = g.h * g.w;
  gemm_rm<float>(ctx, true, false, g.ci, hw, g.co, 1.0f, w, g.ci, 0, dy, hw, g.co * hw, 0.0f, dx, hw,
                 g.ci * hw, g.n);
}

inline void pointwise_backward_filter(cuda_context& ctx, const conv_geometry& g, const float* x,
                                      const float* dy, float* dw) {
  const std::int64_t hw = g.h * g.w;
  for (std::int64_t n = 0; n < g.n; ++n)
    gemm_rm<float>(ctx, false, true, g.co, g.ci, hw, 1.0f, dy + n * g.co * hw, hw, 0, x + n * g.ci * hw,
                   hw, 0, 1.0f, dw, g.ci, 0);
}

inline conv_geometry conv2d_check(const char* op, const shape& x, const shape& w, int stride,
                                  int padding) {
  throw_if<shape_error>(x.rank() != 4, op, ": x must have rank 4 [N,Ci,H,W], got ", x);
  throw_if<shape_error>(w.rank() != 4, op, ": w must have rank 4 [Co,Ci,K,K], got ", w);
  throw_if<shape_error>(w[2] != w[3], op, ": w must have a square kernel, got ", w);
  throw_if<shape_error>(w[1] != x[1], op, ": w has shape ", w, " but x ", x, " has ", x[1],
                        " channels");
  throw_if<value_error>(stride < 1, op, ": stride must be >= 1, got ", stride);
  const std::int64_t k = w[2];
  const std::int64_t pad = padding < 0 ? k / 2 : padding;
  throw_if<value_error>(k > 0 && pad >= k, op, ": padding ", pad,
                        " must be below the kernel size ", k);
  const std::int64_t hp = x[2] + 2 * pad - k, wp = x[3] + 2 * pad - k;
  throw_if<shape_error>(k < 1 || hp < 0 || wp < 0, op, ": kernel ", w, " does not fit input ", x,
                        " with padding ", pad);
  return {x[0], x[1], x[2], x[3], w[0], k, stride, pad, hp / stride + 1, wp / stride + 1};
}

}  // namespace detail

void conv2d_forward(tensor_view<const float, cuda> x, tensor_view<const float, cuda> w,
                    tensor_view<const float, cuda> b, tensor_view<float, cuda> y, int stride,
                    int padding, workspace<cuda>& ws) {
  const char* op = "conv2d_forward";
  const auto g = detail::conv2d_check(op, x.shape(), w.shape(), stride, padding);
  const bool has_b = detail::present(b);
  if (has_b) expect_shape(op, "b", b, shape{g.co});
  expect_shape(op, "y", y, shape{g.n, g.co, g.ho, g.wo});
  if (y.numel() == 0) return;
  cuda_context& ctx = current_cuda_context();
  if (x.numel() == 0) {  // Ci = 0: an empty sum, y = b (or 0)
    cuda_check(cudaMemsetAsync(y.data(), 0, sizeof(float) * y.numel(), ctx.stream()), op);
  } else if (detail::pointwise_gemm(ctx, g)) {
    detail::pointwise_forward(ctx, g, x.data(), w.data(), y.data());
  } else if (sixteen_bit(ctx.options().precision)) {
    detail::conv_forward_16(ctx, g, x.data(), w.data(), y.data(), ws);
  } else {
    const auto& plan = detail::conv_plan_for(ctx, detail::conv_kind::forward, g,
                                             detail::pointer_alignment(x.data()),
                                             detail::pointer_alignment(w.data()),
                                             detail::pointer_alignment(y.data()));
    void* scratch = plan.workspace_bytes > 0
                        ? ws.get<char>(static_cast<std::size_t>(plan.workspace_bytes))
                        : nullptr;
    detail::execute_conv(ctx, plan, x.data(), w.data(), y.data(), scratch);
  }
  if (has_b) detail::launch_row_bias(ctx.stream(), y.data(), b.data(), g.n * g.co, g.ho * g.wo, g.co);
}

void conv2d_backward(tensor_view<const float, cuda> x, tensor_view<const float, cuda> w,
                     tensor_view<const float, cuda> dy, tensor_view<float, cuda> dx,
                     tensor_view<float, cuda> dw, tensor_view<float, cuda> db, int stride,
                     int padding, workspace<cuda>& ws) {
  const char* op = "conv2d_backward";
  const auto g = detail::conv2d_check(op, x.shape(), w.shape(), stride, padding);
  expect_shape(op, "dy", dy, shape{g.n, g.co, g.ho, g.wo});
  const bool has_dx = detail::present(dx), has_dw = detail::present(dw),
             has_db = detail::present(db);
  if (has_dx) expect_shape(op, "dx", dx, x.shape());
  if (has_dw) expect_shape(op, "dw", dw, w.shape());
  if (has_db) expect_shape(op, "db", db, shape{g.co});
  cuda_context& ctx = current_cuda_context();
  const bool empty = x.numel() == 0 || dy.numel() == 0 || w.numel() == 0;
  if (empty) {
    // An empty product: dx = 0, and dw/db receive nothing.
    if (has_dx && dx.numel() > 0)
      cuda_check(cudaMemsetAsync(dx.data(), 0, sizeof(float) * dx.numel(), ctx.stream()), op);
  } else if (detail::pointwise_gemm(ctx, g)) {
    if (has_dx) detail::pointwise_backward_data(ctx, g, w.data(), dy.data(), dx.data());
    if (has_dw) detail::pointwise_backward_filter(ctx, g, x.data(), dy.data(), dw.data());
  } else if (sixteen_bit(ctx.options().precision)) {
    detail::conv_backward_16(ctx, g, x.data(), w.data(), dy.data(), has_dx ? dx.data() : nullptr,
                             has_dw ? dw.data() : nullptr, ws);
  } else {
    const detail::conv_plan* data_plan = nullptr;
    const detail::conv_plan* filter_plan = nullptr;
    // The staging block for dw sits 64-byte aligned in the workspace: alignment 16.
    if (has_dx)
      data_plan = &detail::conv_plan_for(ctx, detail::conv_kind::backward_data, g,
                                         detail::pointer_alignment(dx.data()),
                                         detail::pointer_alignment(w.data()),
                                         detail::pointer_alignment(dy.data()));
    if (has_dw)
      filter_plan = &detail::conv_plan_for(ctx, detail::conv_kind::backward_filter, g,
                                           detail::pointer_alignment(x.data()), 16,
                                           detail::pointer_alignment(dy.data()));
    const std::size_t engine_bytes = static_cast<std::size_t>(
        std::max(data_plan ? data_plan->workspace_bytes : 0, filter_plan ? filter_plan->workspace_bytes : 0));
    const std::size_t counts[2] = {engine_bytes, has_dw ? sizeof(float) * w.numel() : 0};
    char* blocks[2] = {nullptr, nullptr};
    ws.get_many<char, 2>(counts, blocks);
    void* engine_ws = engine_bytes ? blocks[0] : nullptr;
    if (data_plan) detail::execute_conv(ctx, *data_plan, dx.data(), w.data(), dy.data(), engine_ws);
    if (filter_plan) {
      float* staging = reinterpret_cast<float*>(blocks[1]);
      detail::execute_conv(ctx, *filter_plan, x.data(), staging, dy.data(), engine_ws);
      detail::accumulate(ctx.stream(), dw.data(), staging, w.numel());
    }
  }
  if (has_db && g.co > 0) {
    AMBISEG_LAUNCH(detail::row_grid(op, g.co), detail::block_threads, 0, ctx.stream(),
                   detail::conv_bias_grad_kernel<float>)(
        dy.data(), g.n, g.co, g.ho * g.wo, db.data());
    detail::check_launch("conv_bias_grad_kernel");
  }
}

}  // namespace ambiseg::ops::cuda_kernels
