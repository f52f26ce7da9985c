// The emulated cuDNN: its convolutions against a direct loop for a geometry ambiseg never
// uses (NHWC strides, dilation, asymmetric padding, stride per axis, true convolution,
// α/β), the backward operations through the adjoint identities, the heuristics' engines and
// notes, what finalisation and execution refuse, and the numerics policy it lets ambiseg
// exercise (strict rejects the TF32 engine, tf32 takes it).
#include <catch2/catch.hpp>

#include <ambiseg/core/cuda_context.hpp>
#include <ambiseg/core/cuda_memory.hpp>
#include <ambiseg/core/workspace.hpp>
#include <ambiseg/ops/cuda/api.hpp>

#include <cmath>
#include <random>
#include <vector>

#include "cuda_emulator/emulator.hpp"

using namespace ambiseg;

namespace {

struct desc {
  cudnnBackendDescriptor_t d = nullptr;
  explicit desc(cudnnBackendDescriptorType_t t) { REQUIRE(cudnnBackendCreateDescriptor(t, &d) == CUDNN_STATUS_SUCCESS); }
  desc(const desc&) = delete;
  ~desc() { (void)cudnnBackendDestroyDescriptor(d); }
  template <class V>
  cudnnStatus_t set(cudnnBackendAttributeName_t n, cudnnBackendAttributeType_t t, std::int64_t c, const V* v) {
    return cudnnBackendSetAttribute(d, n, t, c, v);
  }
  cudnnStatus_t ref(cudnnBackendAttributeName_t n, const desc& o) {
    return cudnnBackendSetAttribute(d, n, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &o.d);
  }
};

struct dims4 {
  std::int64_t n, c, h, w;
  std::int64_t count() const { return n * c * h * w; }
  // NHWC layout of an NCHW-indexed tensor: strides per (n, c, h, w).
  std::vector<std::int64_t> nhwc() const { return {h * w * c, 1, w * c, c}; }
  std::int64_t at(std::int64_t a, std::int64_t b, std::int64_t i, std::int64_t j) const {
    return a * h * w * c + b + i * w * c + j * c;
  }
};

void make_tensor(desc& t, std::int64_t uid, const dims4& d) {
  const cudnnDataType_t type = CUDNN_DATA_FLOAT;
  const std::int64_t dims[4] = {d.n, d.c, d.h, d.w}, align = 16;
  const auto strides = d.nhwc();
  REQUIRE(t.set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &type) == CUDNN_STATUS_SUCCESS);
  REQUIRE(t.set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims) == CUDNN_STATUS_SUCCESS);
  REQUIRE(t.set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides.data()) == CUDNN_STATUS_SUCCESS);
  REQUIRE(t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid) == CUDNN_STATUS_SUCCESS);
  REQUIRE(t.set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendFinalize(t.d) == CUDNN_STATUS_SUCCESS);
}

// The geometry under test: stride (2, 1), dilation (2, 1), padding pre (1, 0) post (2, 1).
const dims4 xs{2, 3, 9, 7}, ws{4, 3, 3, 2};
const std::int64_t stride[2] = {2, 1}, dil[2] = {2, 1}, pre[2] = {1, 0}, post[2] = {2, 1};
const dims4 ys{2, 4, (9 + 1 + 2 - 2 * 2 - 1) / 2 + 1, (7 + 0 + 1 - 1 - 1) / 1 + 1};

struct graph_parts {
  cudnnHandle_t handle = nullptr;
  desc x{CUDNN_BACKEND_TENSOR_DESCRIPTOR}, w{CUDNN_BACKEND_TENSOR_DESCRIPTOR}, y{CUDNN_BACKEND_TENSOR_DESCRIPTOR};
  desc conv{CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR};
  graph_parts() {
    REQUIRE(cudnnCreate(&handle) == CUDNN_STATUS_SUCCESS);
    make_tensor(x, 11, xs);
    make_tensor(w, 12, ws);
    make_tensor(y, 13, ys);
    const cudnnDataType_t compute = CUDNN_DATA_FLOAT;
    const cudnnConvolutionMode_t mode = CUDNN_CONVOLUTION;  // the kernel mirrored
    const std::int64_t spatial = 2;
    REQUIRE(conv.set(CUDNN_ATTR_CONVOLUTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &compute) == 0);
    REQUIRE(conv.set(CUDNN_ATTR_CONVOLUTION_CONV_MODE, CUDNN_TYPE_CONVOLUTION_MODE, 1, &mode) == 0);
    REQUIRE(conv.set(CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, CUDNN_TYPE_INT64, 1, &spatial) == 0);
    REQUIRE(conv.set(CUDNN_ATTR_CONVOLUTION_DILATIONS, CUDNN_TYPE_INT64, 2, dil) == 0);
    REQUIRE(conv.set(CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, CUDNN_TYPE_INT64, 2, stride) == 0);
    REQUIRE(conv.set(CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, CUDNN_TYPE_INT64, 2, pre) == 0);
    REQUIRE(conv.set(CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, CUDNN_TYPE_INT64, 2, post) == 0);
    REQUIRE(cudnnBackendFinalize(conv.d) == CUDNN_STATUS_SUCCESS);
  }
  ~graph_parts() { (void)cudnnDestroy(handle); }
};

// Builds, plans (engine `engine` of heuristics mode A) and runs one operation.
void run(graph_parts& g, cudnnBackendDescriptorType_t kind, float alpha, float beta, void* x, void* w,
         void* y, std::int64_t engine = 2) {
  desc op(kind);
  const bool fwd = kind == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR;
  const bool data = kind == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR;
  REQUIRE(op.ref(fwd ? CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X : data ? CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX : CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, g.x) == 0);
  REQUIRE(op.ref(fwd ? CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W : data ? CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W : CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW, g.w) == 0);
  REQUIRE(op.ref(fwd ? CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y : data ? CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY : CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, g.y) == 0);
  REQUIRE(op.ref(fwd ? CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC : data ? CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC : CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC, g.conv) == 0);
  REQUIRE(op.set(fwd ? CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA : data ? CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA : CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_TYPE_FLOAT, 1, &alpha) == 0);
  REQUIRE(op.set(fwd ? CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA : data ? CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA : CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA, CUDNN_TYPE_FLOAT, 1, &beta) == 0);
  REQUIRE(cudnnBackendFinalize(op.d) == CUDNN_STATUS_SUCCESS);
  desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  REQUIRE(graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op.d) == 0);
  REQUIRE(graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &g.handle) == 0);
  REQUIRE(cudnnBackendFinalize(graph.d) == CUDNN_STATUS_SUCCESS);
  desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
  const cudnnBackendHeurMode_t mode = CUDNN_HEUR_MODE_A;
  REQUIRE(heur.ref(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph) == 0);
  REQUIRE(heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode) == 0);
  REQUIRE(cudnnBackendFinalize(heur.d) == CUDNN_STATUS_SUCCESS);
  desc c0(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR), c1(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR), c2(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
  cudnnBackendDescriptor_t configs[3] = {c0.d, c1.d, c2.d};
  std::int64_t count = 0;
  REQUIRE(cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 3, &count, configs) == 0);
  REQUIRE(count == 3);
  desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
  REQUIRE(plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &g.handle) == 0);
  REQUIRE(plan.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &configs[engine]) == 0);
  REQUIRE(cudnnBackendFinalize(plan.d) == CUDNN_STATUS_SUCCESS);
  std::int64_t bytes = 0;
  REQUIRE(cudnnBackendGetAttribute(plan.d, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &count, &bytes) == 0);
  void* workspace = nullptr;
  if (bytes > 0) REQUIRE(cudaMalloc(&workspace, static_cast<std::size_t>(bytes)) == cudaSuccess);
  desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  const std::int64_t uids[3] = {11, 12, 13};
  void* pointers[3] = {x, w, y};
  REQUIRE(pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids) == 0);
  REQUIRE(pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, pointers) == 0);
  REQUIRE(pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace) == 0);
  REQUIRE(cudnnBackendFinalize(pack.d) == CUDNN_STATUS_SUCCESS);
  REQUIRE(cudnnBackendExecute(g.handle, plan.d, pack.d) == CUDNN_STATUS_SUCCESS);
  (void)cudaFree(workspace);
}

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-1, 1);
  std::vector<float> v(n);
  for (auto& e : v) e = dist(gen);
  return v;
}

float* upload(const std::vector<float>& h) {
  void* p = nullptr;
  REQUIRE(cudaMalloc(&p, h.size() * sizeof(float)) == cudaSuccess);
  REQUIRE(cudaMemcpy(p, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  return static_cast<float*>(p);
}
std::vector<float> download(const float* p, std::size_t n) {
  std::vector<float> h(n);
  REQUIRE(cudaMemcpy(h.data(), p, n * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess);
  return h;
}
double dot(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += double(a[i]) * b[i];
  return s;
}

}  // namespace

TEST_CASE("emulated cuDNN: forward against a direct loop, backward by the adjoint identities",
          "[cuda][emulator]") {
  graph_parts g;
  const auto x = random_floats(xs.count(), 1), w = random_floats(ws.count(), 2),
             y0 = random_floats(ys.count(), 3), dy = random_floats(ys.count(), 4);
  float *xd = upload(x), *wd = upload(w), *yd = upload(y0), *dyd = upload(dy);
  run(g, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, 2.0f, 0.5f, xd, wd, yd);
  const auto y = download(yd, y0.size());
  for (std::int64_t n = 0; n < ys.n; ++n)
    for (std::int64_t k = 0; k < ys.c; ++k)
      for (std::int64_t p = 0; p < ys.h; ++p)
        for (std::int64_t q = 0; q < ys.w; ++q) {
          double sum = 0;
          for (std::int64_t c = 0; c < xs.c; ++c)
            for (std::int64_t r = 0; r < ws.h; ++r)
              for (std::int64_t s = 0; s < ws.w; ++s) {
                const std::int64_t hi = p * stride[0] - pre[0] + r * dil[0], wi = q * stride[1] - pre[1] + s * dil[1];
                if (hi < 0 || hi >= xs.h || wi < 0 || wi >= xs.w) continue;
                sum += double(x[xs.at(n, c, hi, wi)]) * w[ws.at(k, c, ws.h - 1 - r, ws.w - 1 - s)];
              }
          const double ref = 2.0 * sum + 0.5 * y0[ys.at(n, k, p, q)];
          REQUIRE(std::abs(y[ys.at(n, k, p, q)] - ref) <= 1e-5 * (1 + std::abs(ref)));
        }
  // ⟨conv(x, w), dy⟩ = ⟨x, dgrad(dy, w)⟩ = ⟨w, wgrad(x, dy)⟩ (α = 1, β = 0 into NaN memory).
  void* fresh = nullptr;
  REQUIRE(cudaMalloc(&fresh, std::max(xs.count(), ws.count()) * sizeof(float)) == cudaSuccess);
  float* out = static_cast<float*>(fresh);
  run(g, CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR, 1.0f, 0.0f, xd, wd, yd);
  const double yy = dot(download(yd, ys.count()), dy);
  run(g, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR, 1.0f, 0.0f, out, wd, dyd);
  CHECK(std::abs(dot(download(out, xs.count()), x) - yy) <= 1e-4 * std::abs(yy));
  REQUIRE(cudaMemset(out, 0xFF, ws.count() * sizeof(float)) == cudaSuccess);
  run(g, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, 1.0f, 0.0f, xd, out, dyd);
  CHECK(std::abs(dot(download(out, ws.count()), w) - yy) <= 1e-4 * std::abs(yy));
  // The reverse-order engine agrees to rounding; the TF32 engine only to ~1e-3.
  run(g, CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR, 1.0f, 0.0f, xd, out, dyd, 0);
  const double tf32 = dot(download(out, ws.count()), w);
  CHECK(std::abs(tf32 - yy) <= 1e-2 * std::abs(yy));
  for (float* p : {xd, wd, yd, dyd, out}) (void)cudaFree(p);
}

TEST_CASE("emulated cuDNN: heuristics, notes and what finalisation and execution refuse",
          "[cuda][emulator]") {
  graph_parts g;
  // A y tensor of the wrong extent: the operation does not finalise.
  desc bad_y(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  make_tensor(bad_y, 13, dims4{ys.n, ys.c, ys.h + 1, ys.w});
  desc op(CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR);
  const float one = 1, zero = 0;
  op.ref(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, g.x);
  op.ref(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W, g.w);
  op.ref(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, bad_y);
  op.ref(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC, g.conv);
  op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_FLOAT, 1, &one);
  CHECK(cudnnBackendFinalize(op.d) == CUDNN_STATUS_BAD_PARAM);  // beta missing
  op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA, CUDNN_TYPE_FLOAT, 1, &zero);
  CHECK(cudnnBackendFinalize(op.d) == CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH);
  char message[256];
  cudnnGetLastErrorString(message, sizeof message);
  CHECK_THAT(std::string(message), Catch::Matchers::Contains("but y is"));
  // Wrong attribute type, a reference to a descriptor not finalised.
  const std::int64_t mode64 = 0;
  CHECK(op.set(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_TYPE_INT64, 1, &mode64) ==
        CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE);
  desc raw(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  CHECK(op.ref(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, raw) == CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED);
  CHECK(cudnnBackendFinalize(raw.d) == CUDNN_STATUS_BAD_PARAM);  // no attributes

  op.ref(CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, g.y);
  REQUIRE(cudnnBackendFinalize(op.d) == CUDNN_STATUS_SUCCESS);
  desc graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &op.d);
  CHECK(cudnnBackendFinalize(graph.d) == CUDNN_STATUS_BAD_PARAM);  // no handle
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &g.handle);
  REQUIRE(cudnnBackendFinalize(graph.d) == CUDNN_STATUS_SUCCESS);
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.ref(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph);
    heur.set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    REQUIRE(cudnnBackendFinalize(heur.d) == CUDNN_STATUS_SUCCESS);
    std::int64_t count = 0;
    REQUIRE(cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr) == 0);
    CHECK(count == (mode == CUDNN_HEUR_MODE_A ? 3 : 1));
    if (mode != CUDNN_HEUR_MODE_A) continue;
    desc c0(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR), c1(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR), c2(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR);
    cudnnBackendDescriptor_t configs[3] = {c0.d, c1.d, c2.d};
    REQUIRE(cudnnBackendGetAttribute(heur.d, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 3, &count, configs) == 0);
    const cudnnBackendNumericalNote_t expected[3] = {CUDNN_NUMERICAL_NOTE_TENSOR_CORE,
                                                     CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC,
                                                     CUDNN_NUMERICAL_NOTE_TYPE_COUNT};
    for (int i = 0; i < 3; ++i) {
      desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
      REQUIRE(cudnnBackendGetAttribute(configs[i], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &count, &engine.d) == 0);
      cudnnBackendNumericalNote_t notes[CUDNN_NUMERICAL_NOTE_TYPE_COUNT];
      REQUIRE(cudnnBackendGetAttribute(engine.d, CUDNN_ATTR_ENGINE_NUMERICAL_NOTE, CUDNN_TYPE_NUMERICAL_NOTE, CUDNN_NUMERICAL_NOTE_TYPE_COUNT, &count, notes) == 0);
      CHECK(count == (i < 2 ? 1 : 0));
      if (count) CHECK(notes[0] == expected[i]);
    }
    // Engine 1 (unit stride only) does not plan this stride-2 convolution.
    desc plan1(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    plan1.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &g.handle);
    plan1.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &configs[1]);
    CHECK(cudnnBackendFinalize(plan1.d) == CUDNN_STATUS_NOT_SUPPORTED);
    // Engine 2 needs a workspace; a pack without one, or a misaligned pointer, is refused.
    desc plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
    plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &g.handle);
    plan.set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &configs[2]);
    REQUIRE(cudnnBackendFinalize(plan.d) == CUDNN_STATUS_SUCCESS);
    std::int64_t bytes = 0;
    REQUIRE(cudnnBackendGetAttribute(plan.d, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &count, &bytes) == 0);
    CHECK(bytes > 0);
    float* x = upload(random_floats(xs.count() + 1, 5));
    float* w = upload(random_floats(ws.count(), 6));
    float* y = upload(random_floats(ys.count(), 7));
    for (int variant = 0; variant < 3; ++variant) {
      desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
      const std::int64_t uids[3] = {11, 12, 13};
      void* pointers[3] = {variant == 1 ? static_cast<void*>(x + 1) : x, w, y};
      void* workspace = nullptr;
      if (variant > 0) REQUIRE(cudaMalloc(&workspace, static_cast<std::size_t>(variant == 2 ? bytes - 4 : bytes)) == cudaSuccess);
      pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, 3, uids);
      pack.set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, 3, pointers);
      pack.set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace);
      REQUIRE(cudnnBackendFinalize(pack.d) == CUDNN_STATUS_SUCCESS);
      const cudnnStatus_t expect[3] = {CUDNN_STATUS_BAD_PARAM_NULL_POINTER,
                                       CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER,
                                       CUDNN_STATUS_EXECUTION_FAILED};  // workspace too small
      CHECK(cudnnBackendExecute(g.handle, plan.d, pack.d) == expect[variant]);
      (void)cudaFree(workspace);
    }
    for (float* p : {x, w, y}) (void)cudaFree(p);
  }
}

TEST_CASE("emulated cuDNN lets ambiseg's numerics policy choose: strict exact, tf32 rounded",
          "[cuda][emulator]") {
  const shape xs4{2, 8, 12, 12}, ws4{8, 8, 3, 3};
  auto host = [](const shape& s, unsigned seed) {
    tensor<float> t(s);
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(-1, 1);
    for (auto& v : t) v = dist(gen);
    return t;
  };
  const auto x = host(xs4, 8), w = host(ws4, 9);
  tensor<float, cuda> xd(xs4), wd(ws4);
  copy_to_device<float>(x.cview(), xd.view());
  copy_to_device<float>(w.cview(), wd.view());
  double worst[2] = {0, 0};
  for (int policy = 0; policy < 2; ++policy) {
    cuda_context ctx(cuda_context_options{0, policy ? cuda_precision::tf32 : cuda_precision::fp32, true});
    cuda_context_scope scope(ctx);
    workspace<cuda> ws;
    tensor<float, cuda> yd(shape{2, 8, 12, 12});
    ops::cuda_kernels::conv2d_forward(xd.cview(), wd.cview(), tensor_view<const float, cuda>{}, yd.view(), 1, -1, ws);
    tensor<float> y(yd.shape());
    copy_to_host<float>(yd.cview(), y.view());
    for (std::int64_t n = 0; n < 2; ++n)
      for (std::int64_t k = 0; k < 8; ++k)
        for (std::int64_t p = 0; p < 12; ++p)
          for (std::int64_t q = 0; q < 12; ++q) {
            double ref = 0;
            for (std::int64_t c = 0; c < 8; ++c)
              for (std::int64_t r = 0; r < 3; ++r)
                for (std::int64_t s = 0; s < 3; ++s) {
                  const std::int64_t hi = p - 1 + r, wi = q - 1 + s;
                  if (hi >= 0 && hi < 12 && wi >= 0 && wi < 12)
                    ref += double(x[((n * 8 + c) * 12 + hi) * 12 + wi]) * w[((k * 8 + c) * 3 + r) * 3 + s];
                }
            worst[policy] = std::max(worst[policy], std::abs(y[((n * 8 + k) * 12 + p) * 12 + q] - ref));
          }
  }
  CHECK(worst[0] <= 1e-5);  // strict: the exact engine
  CHECK(worst[1] > 1e-4);   // tf32: the tensor-core engine, ~10-bit operands
  CHECK(worst[1] <= 3e-2);
}
