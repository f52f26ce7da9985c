// cuda_emulator/cudnn_model.hpp — the emulated cuDNN backend descriptors and what a finalised
// one describes; shared by the API (cudnn.cpp), finalisation (cudnn_finalize.cpp) and the
// arithmetic (convolution.cpp).
#pragma once

#include <cudnn.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ambiseg_emu {

struct tensor_info {
  cudnnDataType_t type;
  std::vector<std::int64_t> dims, strides;
  std::int64_t uid, alignment;
};
struct conv_info {
  cudnnDataType_t compute;
  cudnnConvolutionMode_t mode;
  std::vector<std::int64_t> dilation, stride, pre, post;
};
enum class conv_kind { forward, backward_data, backward_filter };
struct op_info {
  conv_kind kind;
  tensor_info x, w, y;  // x/dx, w/dw, y/dy
  conv_info conv;
  double alpha, beta;
};

struct graph_info {
  cudnnHandle_t handle;
  op_info op;
};
struct engine_info {
  std::int64_t index;
  std::shared_ptr<const graph_info> graph;
};
struct plan_info {
  cudnnHandle_t handle;
  engine_info engine;
  std::int64_t workspace;
};
struct pack_info {
  std::vector<std::int64_t> uids;
  std::vector<void*> pointers;
  void* workspace = nullptr;
};


constexpr int engine_count = 3;

struct attribute {
  cudnnBackendAttributeType_t type;
  std::int64_t count;
  std::vector<unsigned char> bytes;
};

struct descriptor {
  cudnnBackendDescriptorType_t type;
  bool finalized = false;
  std::map<cudnnBackendAttributeName_t, attribute> attributes;
  // What finalisation (or filling by a query) established.
  std::shared_ptr<const tensor_info> tensor;
  std::shared_ptr<const conv_info> conv;
  std::shared_ptr<const op_info> op;
  std::shared_ptr<const graph_info> graph;
  std::vector<engine_info> results;            // heuristics
  std::shared_ptr<const engine_info> engine;   // engine, engine config
  std::shared_ptr<const plan_info> plan;
  std::shared_ptr<const pack_info> pack;
};


inline const attribute* find(const descriptor& d, cudnnBackendAttributeName_t a) {
  auto it = d.attributes.find(a);
  return it == d.attributes.end() ? nullptr : &it->second;
}
template <class T>
inline std::vector<T> values(const attribute& at) {
  std::vector<T> v(static_cast<std::size_t>(at.count));
  if (!v.empty()) std::memcpy(v.data(), at.bytes.data(), v.size() * sizeof(T));
  return v;
}

// The registry of live descriptors and handles (cudnn.cpp).
descriptor* live_descriptor(void* d);
bool live_handle(cudnnHandle_t h);
bool is_operation(cudnnBackendDescriptorType_t t);

// Finalisation (cudnn_finalize.cpp): validates d's attributes as cuDNN does and establishes
// what it describes; throws finalize_error (the status cuDNN returns, and why).
struct finalize_error {
  cudnnStatus_t status;
  std::string message;
};
void finalize(descriptor& d);
std::string dims_text(const std::vector<std::int64_t>& v);

// Runs the operation on device pointers (x/dx, w/dw, y/dy by role) with engine `engine`'s
// numerics (0: TF32 operands, 1: channels summed in reverse order, 2: exact FP32); all
// accumulate in float. bfloat16/half tensors are read exactly and the output rounded to its
// type. The pointers were validated by the caller.
void run_convolution(const op_info& op, std::int64_t engine, void* x, void* w, void* y);

}  // namespace ambiseg_emu
