// cuda_emulator/cudnn_finalize.cpp — finalisation of the emulated cuDNN backend descriptors:
// what real cuDNN requires of each (required attributes and their counts, referenced
// descriptors finalised, tensor dims/strides/uid/alignment, the convolution's fields, the
// operation's shapes, the graph's handle, heuristics mode, plan handle and engine support),
// and what each then describes. See cudnn.cpp for the engines.
#include <string>
#include <vector>

#include "cuda_emulator/cudnn_model.hpp"

namespace ambiseg_emu {
namespace {

// The referenced descriptors, checked live and finalised now (they were at SetAttribute).
std::vector<descriptor*> references(const attribute& at) {
  std::vector<descriptor*> out;
  for (void* p : values<void*>(at)) {
    descriptor* d = live_descriptor(p);
    out.push_back(d && d->finalized ? d : nullptr);
  }
  return out;
}
[[noreturn]] void refuse(cudnnStatus_t status, std::string message) {
  throw finalize_error{status, std::move(message)};
}
const attribute& required(const descriptor& d, cudnnBackendAttributeName_t a, const char* name) {
  const attribute* at = find(d, a);
  if (!at) refuse(CUDNN_STATUS_BAD_PARAM, std::string(name) + " is required but not set");
  return *at;
}
std::vector<std::int64_t> ints(const descriptor& d, cudnnBackendAttributeName_t a, const char* name) {
  return values<std::int64_t>(required(d, a, name));
}
descriptor& reference(const descriptor& d, cudnnBackendAttributeName_t a, const char* name) {
  const auto refs = references(required(d, a, name));
  if (refs.size() != 1 || !refs[0])
    refuse(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED,
           std::string(name) + " must reference one live, finalised descriptor");
  return *refs[0];
}
double scalar(const descriptor& d, cudnnBackendAttributeName_t a, const char* name) {
  const attribute& at = required(d, a, name);
  if (at.count != 1) refuse(CUDNN_STATUS_BAD_PARAM, std::string(name) + " must hold one value");
  return at.type == CUDNN_TYPE_FLOAT ? double(values<float>(at)[0]) : values<double>(at)[0];
}

// ---- finalisation ------------------------------------------------------------------------

tensor_info finalize_tensor(const descriptor& d) {
  tensor_info t;
  t.type = values<cudnnDataType_t>(required(d, CUDNN_ATTR_TENSOR_DATA_TYPE, "CUDNN_ATTR_TENSOR_DATA_TYPE"))[0];
  t.dims = ints(d, CUDNN_ATTR_TENSOR_DIMENSIONS, "CUDNN_ATTR_TENSOR_DIMENSIONS");
  t.strides = ints(d, CUDNN_ATTR_TENSOR_STRIDES, "CUDNN_ATTR_TENSOR_STRIDES");
  const auto uid = ints(d, CUDNN_ATTR_TENSOR_UNIQUE_ID, "CUDNN_ATTR_TENSOR_UNIQUE_ID");
  const auto align = ints(d, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, "CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT");
  if (t.dims.empty() || t.dims.size() > CUDNN_DIM_MAX)
    refuse(CUDNN_STATUS_BAD_PARAM, "tensor: " + std::to_string(t.dims.size()) + " dimensions");
  if (t.strides.size() != t.dims.size())
    refuse(CUDNN_STATUS_BAD_PARAM, "tensor: dimensions " + dims_text(t.dims) + " but strides " +
                                       dims_text(t.strides));
  for (std::size_t i = 0; i < t.dims.size(); ++i)
    if (t.dims[i] < 1 || t.strides[i] < 1)
      refuse(CUDNN_STATUS_BAD_PARAM, "tensor: dimensions " + dims_text(t.dims) + ", strides " +
                                         dims_text(t.strides) + " must be positive");
  if (uid.size() != 1 || align.size() != 1)
    refuse(CUDNN_STATUS_BAD_PARAM, "tensor: unique id and byte alignment hold one value each");
  t.uid = uid[0];
  t.alignment = align[0];
  if (t.alignment < 1 || (t.alignment & (t.alignment - 1)) != 0)
    refuse(CUDNN_STATUS_BAD_PARAM, "tensor: byte alignment " + std::to_string(t.alignment) +
                                       " is not a power of two");
  return t;
}

conv_info finalize_conv(const descriptor& d) {
  conv_info c;
  c.compute = values<cudnnDataType_t>(required(d, CUDNN_ATTR_CONVOLUTION_COMP_TYPE, "CUDNN_ATTR_CONVOLUTION_COMP_TYPE"))[0];
  c.mode = values<cudnnConvolutionMode_t>(required(d, CUDNN_ATTR_CONVOLUTION_CONV_MODE, "CUDNN_ATTR_CONVOLUTION_CONV_MODE"))[0];
  const auto spatial = ints(d, CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS, "CUDNN_ATTR_CONVOLUTION_SPATIAL_DIMS");
  c.dilation = ints(d, CUDNN_ATTR_CONVOLUTION_DILATIONS, "CUDNN_ATTR_CONVOLUTION_DILATIONS");
  c.stride = ints(d, CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES, "CUDNN_ATTR_CONVOLUTION_FILTER_STRIDES");
  c.pre = ints(d, CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS, "CUDNN_ATTR_CONVOLUTION_PRE_PADDINGS");
  c.post = ints(d, CUDNN_ATTR_CONVOLUTION_POST_PADDINGS, "CUDNN_ATTR_CONVOLUTION_POST_PADDINGS");
  if (spatial.size() != 1 || spatial[0] < 1 || spatial[0] > 3)
    refuse(CUDNN_STATUS_BAD_PARAM, "convolution: spatial dims must be one value in [1, 3]");
  const auto n = static_cast<std::size_t>(spatial[0]);
  if (c.dilation.size() != n || c.stride.size() != n || c.pre.size() != n || c.post.size() != n)
    refuse(CUDNN_STATUS_BAD_PARAM, "convolution: dilations, strides and paddings need " +
                                       std::to_string(n) + " values each");
  for (std::size_t i = 0; i < n; ++i)
    if (c.dilation[i] < 1 || c.stride[i] < 1 || c.pre[i] < 0 || c.post[i] < 0)
      refuse(CUDNN_STATUS_BAD_PARAM, "convolution: dilation " + dims_text(c.dilation) + ", stride " +
                                         dims_text(c.stride) + ", padding " + dims_text(c.pre) +
                                         "/" + dims_text(c.post) + " out of range");
  if (c.mode != CUDNN_CONVOLUTION && c.mode != CUDNN_CROSS_CORRELATION)
    refuse(CUDNN_STATUS_BAD_PARAM, "convolution: unknown mode");
  return c;
}

op_info finalize_operation(const descriptor& d) {
  op_info op;
  struct names {
    cudnnBackendAttributeName_t x, w, y, conv, alpha, beta;
  } a{};
  switch (d.type) {
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
      op.kind = conv_kind::forward;
      a = {CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_X, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_W,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_Y, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_CONV_DESC,
           CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_FORWARD_BETA};
      break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
      op.kind = conv_kind::backward_data;
      a = {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DX, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_W,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_CONV_DESC,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_DATA_BETA};
      break;
    default:
      op.kind = conv_kind::backward_filter;
      a = {CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_X, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DW,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_DY, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_CONV_DESC,
           CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_ALPHA, CUDNN_ATTR_OPERATION_CONVOLUTION_BWD_FILTER_BETA};
      break;
  }
  op.x = *reference(d, a.x, "the operation's x/dx tensor").tensor;
  op.w = *reference(d, a.w, "the operation's w/dw tensor").tensor;
  op.y = *reference(d, a.y, "the operation's y/dy tensor").tensor;
  op.conv = *reference(d, a.conv, "the operation's convolution descriptor").conv;
  op.alpha = scalar(d, a.alpha, "the operation's alpha");
  op.beta = scalar(d, a.beta, "the operation's beta");
  if (op.x.uid == op.w.uid || op.x.uid == op.y.uid || op.w.uid == op.y.uid)
    refuse(CUDNN_STATUS_BAD_PARAM_DUPLICATED_ENTRIES, "operation: tensor unique ids must differ");
  if (op.conv.stride.size() != 2 || op.x.dims.size() != 4 || op.w.dims.size() != 4 || op.y.dims.size() != 4)
    refuse(CUDNN_STATUS_NOT_SUPPORTED_SHAPE, "the emulator runs 2-D convolutions of rank-4 tensors only");
  const cudnnDataType_t io = op.x.type;
  if (io != CUDNN_DATA_FLOAT && io != CUDNN_DATA_BFLOAT16 && io != CUDNN_DATA_HALF)
    refuse(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE, "the emulator's engines run float, bfloat16 and half tensors only");
  if (op.w.type != io || op.y.type != io)
    refuse(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE, "the emulator's engines need x, w and y of one data type");
  if (op.conv.compute != CUDNN_DATA_FLOAT)
    refuse(CUDNN_STATUS_NOT_SUPPORTED_DATA_TYPE, "the emulator's engines compute in float only");
  const auto &x = op.x.dims, &w = op.w.dims, &y = op.y.dims;
  std::int64_t expect[4] = {x[0], w[0], 0, 0};
  for (int i = 0; i < 2; ++i) {
    const std::int64_t extent = x[2 + i] + op.conv.pre[i] + op.conv.post[i] -
                                op.conv.dilation[i] * (w[2 + i] - 1) - 1;
    expect[2 + i] = extent < 0 ? 0 : extent / op.conv.stride[i] + 1;
  }
  if (w[1] != x[1] || y[0] != expect[0] || y[1] != expect[1] || y[2] != expect[2] || y[3] != expect[3])
    refuse(CUDNN_STATUS_BAD_PARAM_SHAPE_MISMATCH,
           "operation: x " + dims_text(x) + ", w " + dims_text(w) + " give y " +
               dims_text({expect[0], expect[1], expect[2], expect[3]}) + ", but y is " + dims_text(y));
  return op;
}

std::int64_t workspace_bytes(const op_info& op, std::int64_t engine) {
  if (engine == 0) return 0;
  if (engine == 1) return 1024;
  return 256 + 4 * op.w.dims[0] * op.w.dims[1] * op.w.dims[2] * op.w.dims[3];
}

}  // namespace

void finalize(descriptor& d) {
  switch (d.type) {
    case CUDNN_BACKEND_TENSOR_DESCRIPTOR:
      d.tensor = std::make_shared<const tensor_info>(finalize_tensor(d));
      break;
    case CUDNN_BACKEND_CONVOLUTION_DESCRIPTOR:
      d.conv = std::make_shared<const conv_info>(finalize_conv(d));
      break;
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_FORWARD_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_DATA_DESCRIPTOR:
    case CUDNN_BACKEND_OPERATION_CONVOLUTION_BACKWARD_FILTER_DESCRIPTOR:
      d.op = std::make_shared<const op_info>(finalize_operation(d));
      break;
    case CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR: {
      const auto handle = values<cudnnHandle_t>(required(d, CUDNN_ATTR_OPERATIONGRAPH_HANDLE, "CUDNN_ATTR_OPERATIONGRAPH_HANDLE"));
      if (handle.size() != 1 || !live_handle(handle[0]))
        refuse(CUDNN_STATUS_BAD_PARAM, "operation graph: the handle is not a live cuDNN handle");
      const auto ops = references(required(d, CUDNN_ATTR_OPERATIONGRAPH_OPS, "CUDNN_ATTR_OPERATIONGRAPH_OPS"));
      if (ops.empty()) refuse(CUDNN_STATUS_BAD_PARAM, "operation graph: no operations");
      for (descriptor* o : ops)
        if (!o || !is_operation(o->type))
          refuse(CUDNN_STATUS_BAD_PARAM_NOT_FINALIZED, "operation graph: every op must be a finalised convolution operation");
      if (ops.size() != 1)
        refuse(CUDNN_STATUS_NOT_SUPPORTED_GRAPH_PATTERN, "the emulator runs one-operation graphs only");
      d.graph = std::make_shared<const graph_info>(graph_info{handle[0], *ops[0]->op});
      break;
    }
    case CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR: {
      descriptor& g = reference(d, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, "CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH");
      const auto mode = values<cudnnBackendHeurMode_t>(required(d, CUDNN_ATTR_ENGINEHEUR_MODE, "CUDNN_ATTR_ENGINEHEUR_MODE"));
      if (mode.size() != 1 || mode[0] < CUDNN_HEUR_MODE_INSTANT || mode[0] >= CUDNN_HEUR_MODES_COUNT)
        refuse(CUDNN_STATUS_BAD_PARAM, "heuristics: unknown mode");
      for (std::int64_t e = mode[0] == CUDNN_HEUR_MODE_FALLBACK ? engine_count - 1 : 0; e < engine_count; ++e)
        d.results.push_back(engine_info{e, g.graph});
      break;
    }
    case CUDNN_BACKEND_ENGINE_DESCRIPTOR: {
      descriptor& g = reference(d, CUDNN_ATTR_ENGINE_OPERATION_GRAPH, "CUDNN_ATTR_ENGINE_OPERATION_GRAPH");
      const auto index = ints(d, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, "CUDNN_ATTR_ENGINE_GLOBAL_INDEX");
      if (index.size() != 1 || index[0] < 0 || index[0] >= engine_count)
        refuse(CUDNN_STATUS_BAD_PARAM_OUT_OF_BOUND, "engine: no such global index");
      d.engine = std::make_shared<const engine_info>(engine_info{index[0], g.graph});
      break;
    }
    case CUDNN_BACKEND_ENGINECFG_DESCRIPTOR:
      d.engine = reference(d, CUDNN_ATTR_ENGINECFG_ENGINE, "CUDNN_ATTR_ENGINECFG_ENGINE").engine;
      break;
    case CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR: {
      const auto handle = values<cudnnHandle_t>(required(d, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, "CUDNN_ATTR_EXECUTION_PLAN_HANDLE"));
      if (handle.size() != 1 || !live_handle(handle[0]))
        refuse(CUDNN_STATUS_BAD_PARAM, "execution plan: the handle is not a live cuDNN handle");
      const engine_info& e = *reference(d, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, "CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG").engine;
      if (handle[0] != e.graph->handle)
        refuse(CUDNN_STATUS_BAD_PARAM, "execution plan: the handle differs from the operation graph's");
      const conv_info& c = e.graph->op.conv;
      if (e.index == 1 && (c.stride != std::vector<std::int64_t>{1, 1} || c.dilation != std::vector<std::int64_t>{1, 1}))
        refuse(CUDNN_STATUS_NOT_SUPPORTED, "engine 1 supports unit stride and dilation only");
      d.plan = std::make_shared<const plan_info>(plan_info{handle[0], e, workspace_bytes(e.graph->op, e.index)});
      break;
    }
    case CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR: {
      auto pack = std::make_shared<pack_info>();
      pack->uids = ints(d, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, "CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS");
      pack->pointers = values<void*>(required(d, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, "CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS"));
      if (pack->uids.size() != pack->pointers.size())
        refuse(CUDNN_STATUS_BAD_PARAM, "variant pack: " + std::to_string(pack->uids.size()) + " ids but " +
                                           std::to_string(pack->pointers.size()) + " pointers");
      if (const attribute* ws = find(d, CUDNN_ATTR_VARIANT_PACK_WORKSPACE)) {
        if (ws->count != 1) refuse(CUDNN_STATUS_BAD_PARAM, "variant pack: one workspace pointer");
        pack->workspace = values<void*>(*ws)[0];
      }
      d.pack = std::move(pack);
      break;
    }
    default:
      refuse(CUDNN_STATUS_NOT_SUPPORTED, "descriptor type not emulated");
  }
}


std::string dims_text(const std::vector<std::int64_t>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s + "]";
}

}  // namespace ambiseg_emu
