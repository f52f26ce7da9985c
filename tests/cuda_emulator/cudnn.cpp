// cuda_emulator/cudnn.cpp — the cuDNN 9 graph (backend) API subset ambiseg uses: tensor,
// convolution and convolution-operation descriptors, one-operation graphs, heuristics,
// engine configs, execution plans, variant packs and execution of 2-D convolutions
// (forward, backward data, backward filter) in float.
//
// Descriptors store their attributes as set (type, count, bytes) and are validated at
// finalisation as real cuDNN requires: every required attribute present with the right
// attribute type and count, referenced descriptors finalised and of the right kind, tensor
// dimensions/strides/uid/alignment/data type, the convolution's fields, the operation's
// shapes (y = conv(x, w) for the given padding, stride, dilation), the graph's handle.
//
// Engines: heuristics return three engine configs (mode A/B/instant; FALLBACK returns only
// the last), so the caller's numerics policy has something to reject:
//   0  "TF32 tensor cores"   note TENSOR_CORE: rounds x, w and dy to TF32 before multiplying
//   1  "atomic split"        note NONDETERMINISTIC: sums the channels in reverse order; unit
//                            stride and dilation only (its plan fails to finalise otherwise)
//   2  "exact FP32"          no note; plans ask for a workspace (filled with 0xFF at each
//                            execution, as an engine's scratch would be overwritten)
// All accumulate in float. Execution checks the variant pack (every uid present, pointers
// aligned as the tensors declare, each tensor's extent inside one live device allocation,
// a workspace of the plan's size) and runs synchronously.
#include <algorithm>
#include <cstdio>
#include <optional>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <vector>

#include "cuda_emulator/cudnn_model.hpp"
#include "cuda_emulator/emulator.hpp"

struct cudnnContext {
  cudaStream_t stream = nullptr;
};


namespace ambiseg_emu {
namespace {

const std::vector<cudnnBackendNumericalNote_t>& engine_notes(std::int64_t index) {
  static const std::vector<cudnnBackendNumericalNote_t> notes[engine_count] = {
      {CUDNN_NUMERICAL_NOTE_TENSOR_CORE}, {CUDNN_NUMERICAL_NOTE_NONDETERMINISTIC}, {}};
  return notes[index];
}


std::mutex registry_mutex;
std::set<const descriptor*> descriptors;
std::set<const cudnnContext*> handles;
thread_local std::string last_message;

cudnnStatus_t fail(cudnnStatus_t status, std::string message) {
  last_message = "CUDA emulator (cuDNN): " + std::move(message);
  return status;
}

}  // namespace

descriptor* live_descriptor(void* d) {
  std::lock_guard lock(registry_mutex);
  auto* p = static_cast<descriptor*>(d);
  return descriptors.count(p) ? p : nullptr;
}
bool live_handle(cudnnHandle_t h) {
  std::lock_guard lock(registry_mutex);
  return handles.count(h) != 0;
}

bool is_operation(cudnnBackendDescriptorType_t t) {
  return t == CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR ||
         t == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR ||
         t == CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR;
}

namespace {

std::size_t element_size(cudnnBackendAttributeType_t t) {
  switch (t) {
    case CUDNN_TYPE_HANDLE: return sizeof(cudnnHandle_t);
    case CUDNN_TYPE_DATA_TYPE: return sizeof(cudnnDataType_t);
    case CUDNN_TYPE_BOOLEAN: return sizeof(bool);
    case CUDNN_TYPE_INT64: return 8;
    case CUDNN_TYPE_FLOAT: return 4;
    case CUDNN_TYPE_DOUBLE: return 8;
    case CUDNN_TYPE_VOID_PTR: return sizeof(void*);
    case CUDNN_TYPE_CONVOLUTION_MODE: return sizeof(cudnnConvolutionMode_t);
    case CUDNN_TYPE_HEUR_MODE: return sizeof(cudnnBackendHeurMode_t);
    case CUDNN_TYPE_NUMERICAL_NOTE: return sizeof(cudnnBackendNumericalNote_t);
    case CUDNN_TYPE_BACKEND_DESCRIPTOR: return sizeof(void*);
    case CUDNN_TYPE_INT32: return 4;
    default: return 0;
  }
}

// The attribute type a settable attribute must have on a descriptor type (and for
// descriptor references, the referenced descriptor type); nothing when not settable.
struct attribute_schema {
  cudnnBackendAttributeType_t type;
  cudnnBackendDescriptorType_t refers_to = CUDNN_BACKEND_POINTWISE_DESCRIPTOR;  // unused unless a reference
  bool alpha_beta = false;  // FLOAT or DOUBLE
};
std::optional<attribute_schema> schema(cudnnBackendDescriptorType_t d, cudnnBackendAttributeName_t a) {
  using S = attribute_schema;
  const S tensor_ref{CUDNN_TYPE_BACKEND_DESCRIPTOR, CUDNN_BACKEND_TENSOR_DESCRIPTOR};
  const S conv_ref{CUDNN_TYPE_BACKEND_DESCRIPTOR, CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR};
  const S scalar{CUDNN_TYPE_FLOAT, {}, true};
  switch (d) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR:
      if (a == CUDNN_ATTR_TENSOR_DATA_TYPE) return S{CUDNN_TYPE_DATA_TYPE};
      if (a == CUDNN_ATTR_TENSOR_DIMENSIONS || a == CUDNN_ATTR_TENSOR_STRIDES ||
          a == CUDNN_ATTR_TENSOR_UNIQUE_ID || a == CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT)
        return S{CUDNN_TYPE_INT64};
      if (a == CUDNN_ATTR_TENSOR_IS_VIRTUAL) return S{CUDNN_TYPE_BOOLEAN};
      return std::nullopt;
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
      if (a == CUDNN_ATTR_CONVOLUTION_COMP_TYPE) return S{CUDNN_TYPE_DATA_TYPE};
      if (a == CUDNN_ATTR_CONVOLUTION_CONV_MODE) return S{CUDNN_TYPE_CONVOLUTION_MODE};
      if (a == CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS || a == CUDNN_ATTR_CONVOLUTION_DILATIONS ||
          a == CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES || a == CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS ||
          a == CUDNN_ATTR_CONVOLUTION_POST_PADDINGS)
        return S{CUDNN_TYPE_INT64};
      return std::nullopt;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X || a == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W ||
          a == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y)
        return tensor_ref;
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC) return conv_ref;
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA || a == CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA)
        return scalar;
      return std::nullopt;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX || a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W ||
          a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY)
        return tensor_ref;
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC) return conv_ref;
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA || a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA)
        return scalar;
      return std::nullopt;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X || a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW ||
          a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY)
        return tensor_ref;
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC) return conv_ref;
      if (a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA || a == CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA)
        return scalar;
      return std::nullopt;
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR:
      if (a == CUDNN_ATTR_OPERATIONGRAPH_HANDLE) return S{CUDNN_TYPE_HANDLE};
      if (a == CUDNN_ATTR_OPERATIONGRAPH_OPS) return S{CUDNN_TYPE_BACKEND_DESCRIPTOR};  // any operation
      return std::nullopt;
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
      if (a == CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH)
        return S{CUDNN_TYPE_BACKEND_DESCRIPTOR, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR};
      if (a == CUDNN_ATTR_ENGINEHEUR_MODE) return S{CUDNN_TYPE_HEUR_MODE};
      if (a == CUDNN_ATTR_ENGINEHEUR_SM_COUNT_TARGET) return S{CUDNN_TYPE_INT32};
      return std::nullopt;
    case CUDNN_BACKEND_ENGINE_DESCRIPTOR:
      if (a == CUDNN_ATTR_ENGINE_OPERATION_GRAPH)
        return S{CUDNN_TYPE_BACKEND_DESCRIPTOR, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR};
      if (a == CUDNN_ATTR_ENGINE_GLOBAL_INDEX) return S{CUDNN_TYPE_INT64};
      return std::nullopt;
    case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
      if (a == CUDNN_ATTR_ENGINECFG_ENGINE)
        return S{CUDNN_TYPE_BACKEND_DESCRIPTOR, CUDNN_BACKEND_ENGINE_DESCRIPTOR};
      return std::nullopt;
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR:
      if (a == CUDNN_ATTR_EXECUTION_PLAN_HANDLE) return S{CUDNN_TYPE_HANDLE};
      if (a == CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG)
        return S{CUDNN_TYPE_BACKEND_DESCRIPTOR, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR};
      return std::nullopt;
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR:
      if (a == CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS) return S{CUDNN_TYPE_INT64};
      if (a == CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS || a == CUDNN_ATTR_VARIANT_PACK_WORKSPACE)
        return S{CUDNN_TYPE_VOID_PTR};
      return std::nullopt;
    default:
      return std::nullopt;
  }
}

cudnnStatus_t execute(cudnnHandle_t handle, descriptor& plan_desc, descriptor& pack_desc) {
  const plan_info& plan = *plan_desc.plan;
  const pack_info& pack = *pack_desc.pack;
  if (handle != plan.handle) return fail(CUDNN_STATUS_BAD_PARAM, "execute: the handle is not the plan's");
  const op_info& op = plan.engine.graph->op;
  void* pointers[3] = {};
  const tensor_info* tensors[3] = {&op.x, &op.w, &op.y};
  for (int i = 0; i < 3; ++i) {
    const tensor_info& t = *tensors[i];
    auto it = std::find(pack.uids.begin(), pack.uids.end(), t.uid);
    if (it == pack.uids.end())
      return fail(CUDNN_STATUS_BAD_PARAM, "execute: tensor uid " + std::to_string(t.uid) + " is not in the variant pack");
    void* p = pack.pointers[static_cast<std::size_t>(it - pack.uids.begin())];
    if (!p) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "execute: tensor uid " + std::to_string(t.uid) + " has a null pointer");
    if (reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(t.alignment) != 0)
      return fail(CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER,
                  "execute: tensor uid " + std::to_string(t.uid) + " declares " + std::to_string(t.alignment) +
                      "-byte alignment, its pointer is not");
    std::int64_t last = 0;
    for (std::size_t k = 0; k < t.dims.size(); ++k) last += (t.dims[k] - 1) * t.strides[k];
    const std::size_t element = t.type == CUDNN_DATA_FLOAT ? sizeof(float) : sizeof(std::uint16_t);
    if (auto problem = device_range_problem(p, static_cast<std::size_t>(last + 1) * element))
      return fail(CUDNN_STATUS_EXECUTION_FAILED,
                  "execute: tensor uid " + std::to_string(t.uid) + " " + dims_text(t.dims) + ": " + *problem);
    pointers[i] = p;
  }
  if (plan.workspace > 0) {
    if (!pack.workspace)
      return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER,
                  "execute: the plan needs a workspace of " + std::to_string(plan.workspace) + " bytes");
    const auto bytes = static_cast<std::size_t>(plan.workspace);
    if (auto problem = device_range_problem(pack.workspace, bytes))
      return fail(CUDNN_STATUS_EXECUTION_FAILED, "execute: workspace: " + *problem);
    std::memset(pack.workspace, poison_byte, bytes);  // the engine's scratch
  }
  run_convolution(op, plan.engine.index, pointers[0], pointers[1], pointers[2]);
  return CUDNN_STATUS_SUCCESS;
}

// Fills the descriptors `out` (created by the caller) from `from`'s computed attribute.
cudnnStatus_t fill_descriptors(const std::vector<engine_info>& from, cudnnBackendDescriptorType_t type,
                               std::int64_t requested, std::int64_t* count, void* out) {
  if (!out) {
    *count = static_cast<std::int64_t>(from.size());
    return CUDNN_STATUS_SUCCESS;
  }
  const std::int64_t n = std::min<std::int64_t>(requested, static_cast<std::int64_t>(from.size()));
  auto* targets = static_cast<void**>(out);
  for (std::int64_t i = 0; i < n; ++i) {
    descriptor* t = live_descriptor(targets[i]);
    if (!t || t->type != type)
      return fail(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE, "get attribute: element " + std::to_string(i) +
                                                              " is not a live descriptor of the right type");
    t->engine = std::make_shared<const engine_info>(from[static_cast<std::size_t>(i)]);
    t->finalized = true;
  }
  *count = n;
  return CUDNN_STATUS_SUCCESS;
}

template <class T>
cudnnStatus_t give(const std::vector<T>& v, std::int64_t requested, std::int64_t* count, void* out) {
  const std::int64_t n = out ? std::min<std::int64_t>(requested, static_cast<std::int64_t>(v.size()))
                             : static_cast<std::int64_t>(v.size());
  if (out && n > 0) std::memcpy(out, v.data(), static_cast<std::size_t>(n) * sizeof(T));
  *count = n;
  return CUDNN_STATUS_SUCCESS;
}

}  // namespace
}  // namespace ambiseg_emu

using namespace ambiseg_emu;

extern "C" {

size_t cudnnGetVersion(void) { return CUDNN_VERSION; }

const char* cudnnGetErrorString(cudnnStatus_t status) {
  switch (status) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_BAD_PARAM_NULL_POINTER: return "CUDNN_STATUS_BAD_PARAM_NULL_POINTER";
    case CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER: return "CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER";
    case CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED: return "CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED";
    case CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND: return "CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND";
    case CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH: return "CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH";
    case CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES: return "CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES";
    case CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE: return "CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE";
    case CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE: return "CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN: return "CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN";
    case CUDNN_STATUS_NOT_SUPPORTED_SHAPE: return "CUDNN_STATUS_NOT_SUPPORTED_SHAPE";
    case CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE: return "CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE";
    case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    default: return "CUDNN_STATUS_UNKNOWN";
  }
}

void cudnnGetLastErrorString(char* message, size_t max_size) {
  if (!message || max_size == 0) return;
  std::snprintf(message, max_size, "%s", last_message.c_str());
  last_message.clear();
}

cudnnStatus_t cudnnCreate(cudnnHandle_t* handle) {
  if (!handle) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "cudnnCreate: null handle pointer");
  *handle = new cudnnContext{};
  std::lock_guard lock(registry_mutex);
  handles.insert(*handle);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  std::lock_guard lock(registry_mutex);
  if (!handles.erase(handle)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnDestroy: not a live handle");
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!live_handle(handle)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream: not a live handle");
  if (!valid_stream(stream)) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream: no such stream");
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t* stream) {
  if (!live_handle(handle) || !stream) return fail(CUDNN_STATUS_BAD_PARAM, "cudnnGetStream: bad arguments");
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendCreateDescriptor(cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t* out) {
  if (!out) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, "create descriptor: null result pointer");
  switch (type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR: case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR:
    case CUDNN_BACKEND_ENGINE_DESCRIPTOR: case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR:
      break;
    default:
      return fail(CUDNN_STATUS_NOT_SUPPORTED, "create descriptor: type " + std::to_string(type) + " is not emulated");
  }
  auto* d = new descriptor();
  d->type = type;
  std::lock_guard lock(registry_mutex);
  descriptors.insert(d);
  *out = d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendDestroyDescriptor(cudnnBackendDescriptor_t desc) {
  std::lock_guard lock(registry_mutex);
  auto* d = static_cast<descriptor*>(desc);
  if (!descriptors.erase(d)) return fail(CUDNN_STATUS_BAD_PARAM, "destroy descriptor: not a live descriptor");
  delete d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendSetAttribute(cudnnBackendDescriptor_t desc, cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t count, const void* elements) {
  descriptor* d = live_descriptor(desc);
  const std::string what = "set attribute " + std::to_string(name);
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM, what + ": not a live descriptor");
  if (d->finalized) return fail(CUDNN_STATUS_BAD_PARAM, what + ": the descriptor is already finalised");
  const auto s = schema(d->type, name);
  if (!s) return fail(CUDNN_STATUS_BAD_PARAM, what + ": not an attribute of descriptor type " + std::to_string(d->type));
  const bool type_ok = s->alpha_beta ? (type == CUDNN_TYPE_FLOAT || type == CUDNN_TYPE_DOUBLE) : type == s->type;
  if (!type_ok) return fail(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE, what + ": wrong attribute type " + std::to_string(type));
  if (count < 0 || (count > 0 && !elements))
    return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, what + ": bad element count or null elements");
  attribute at{type, count, std::vector<unsigned char>(static_cast<std::size_t>(count) * element_size(type))};
  if (!at.bytes.empty()) std::memcpy(at.bytes.data(), elements, at.bytes.size());
  if (type == CUDNN_TYPE_BACKEND_DESCRIPTOR)
    for (void* p : values<void*>(at)) {
      descriptor* r = live_descriptor(p);
      const bool kind_ok = r && (name == CUDNN_ATTR_OPERATIONGRAPH_OPS ? is_operation(r->type) : r->type == s->refers_to);
      if (!kind_ok) return fail(CUDNN_STATUS_BAD_PARAM_DESCRIPTOR_TYPE, what + ": references a descriptor of the wrong type");
      if (!r->finalized) return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, what + ": references a descriptor not finalised");
    }
  if (type == CUDNN_TYPE_HANDLE)
    for (cudnnHandle_t h : values<cudnnHandle_t>(at))
      if (!live_handle(h)) return fail(CUDNN_STATUS_BAD_PARAM, what + ": not a live cuDNN handle");
  d->attributes[name] = std::move(at);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendFinalize(cudnnBackendDescriptor_t desc) {
  descriptor* d = live_descriptor(desc);
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM, "finalize: not a live descriptor");
  if (d->finalized) return fail(CUDNN_STATUS_BAD_PARAM, "finalize: already finalised");
  try {
    finalize(*d);
  } catch (const finalize_error& e) {
    return fail(e.status, "finalize (descriptor type " + std::to_string(d->type) + "): " + e.message);
  }
  d->finalized = true;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendGetAttribute(cudnnBackendDescriptor_t const desc, cudnnBackendAttributeName_t name,
                                       cudnnBackendAttributeType_t type, int64_t requested, int64_t* count,
                                       void* elements) {
  descriptor* d = live_descriptor(desc);
  const std::string what = "get attribute " + std::to_string(name);
  if (!d) return fail(CUDNN_STATUS_BAD_PARAM, what + ": not a live descriptor");
  if (!count) return fail(CUDNN_STATUS_BAD_PARAM_NULL_POINTER, what + ": null element count");
  if (requested < 0) return fail(CUDNN_STATUS_BAD_PARAM, what + ": negative requested count");
  auto expect = [&](cudnnBackendAttributeType_t t) { return type == t; };
  switch (name) {
    case CUDNN_ATTR_ENGINEHEUR_RESULTS:
    case CUDNN_ATTR_ENGINECFG_ENGINE:
    case CUDNN_ATTR_ENGINE_NUMERICAL_NOTE:
    case CUDNN_ATTR_ENGINE_GLOBAL_INDEX:
    case CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE:
      if (!d->finalized) return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, what + ": the descriptor is not finalised");
      break;
    default:
      break;
  }
  if (name == CUDNN_ATTR_ENGINEHEUR_RESULTS && d->type == CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR &&
      expect(CUDNN_TYPE_BACKEND_DESCRIPTOR))
    return fill_descriptors(d->results, CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, requested, count, elements);
  if (name == CUDNN_ATTR_ENGINECFG_ENGINE && d->type == CUDNN_BACKEND_ENGINECFG_DESCRIPTOR &&
      expect(CUDNN_TYPE_BACKEND_DESCRIPTOR))
    return fill_descriptors({*d->engine}, CUDNN_BACKEND_ENGINE_DESCRIPTOR, requested, count, elements);
  if (name == CUDNN_ATTR_ENGINE_NUMERICAL_NOTE && d->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR &&
      expect(CUDNN_TYPE_NUMERICAL_NOTE))
    return give(engine_notes(d->engine->index), requested, count, elements);
  if (name == CUDNN_ATTR_ENGINE_GLOBAL_INDEX && d->type == CUDNN_BACKEND_ENGINE_DESCRIPTOR &&
      expect(CUDNN_TYPE_INT64))
    return give(std::vector<std::int64_t>{d->engine->index}, requested, count, elements);
  if (name == CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE && d->type == CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR &&
      expect(CUDNN_TYPE_INT64))
    return give(std::vector<std::int64_t>{d->plan->workspace}, requested, count, elements);
  const attribute* at = find(*d, name);
  if (!at) return fail(CUDNN_STATUS_BAD_PARAM, what + ": not set on this descriptor (or not emulated)");
  if (at->type != type || type == CUDNN_TYPE_BACKEND_DESCRIPTOR)
    return fail(CUDNN_STATUS_BAD_PARAM_ATTRIBUTE_TYPE, what + ": wrong attribute type");
  const std::int64_t n = elements ? std::min<std::int64_t>(requested, at->count) : at->count;
  if (elements && n > 0)
    std::memcpy(elements, at->bytes.data(), static_cast<std::size_t>(n) * element_size(type));
  *count = n;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnBackendExecute(cudnnHandle_t handle, cudnnBackendDescriptor_t plan, cudnnBackendDescriptor_t pack) {
  ambiseg_emu::note_work();
  if (!live_handle(handle)) return fail(CUDNN_STATUS_BAD_PARAM, "execute: not a live handle");
  descriptor* p = live_descriptor(plan);
  descriptor* v = live_descriptor(pack);
  if (!p || p->type != CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR || !v || v->type != CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR)
    return fail(CUDNN_STATUS_BAD_PARAM, "execute: needs a live execution plan and variant pack");
  if (!p->finalized || !v->finalized)
    return fail(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, "execute: plan or variant pack not finalised");
  return execute(handle, *p, *v);
}

}  // extern "C"
