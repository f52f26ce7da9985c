// ambiseg/core/parameters.hpp — every trainable tensor of a model in one flat buffer.
//
// A model registers its parameters by name and shape (the reference state_dict keys, in
// the reference order), then allocate() places all values in one contiguous buffer and
// all gradients in another. Each parameter is a view into them. One flat buffer lets
// AdamW, gradient clipping and zero_grad run as single loops (single launches on CUDA),
// and checkpoints address parameters by name.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ambiseg/core/error.hpp"
#include "ambiseg/core/tensor.hpp"

namespace ambiseg {

template <class T, class D>
class parameter_store;

// One flat buffer laid out like a parameter_store's (an optimiser moment, EMA weights),
// named for checkpoints: saved as one tensor per entry under "<prefix><name>.". The layout
// is the model's parameters unless `layout` names another store (a model's buffers, such
// as BatchNorm running statistics, which are state but not parameters).
template <class T, class D = cpu>
struct named_flat_state {
  std::string name;
  tensor_view<T, D> flat;
  std::string description;  // for messages, e.g. "AdamW second moment"
  const parameter_store<T, D>* layout = nullptr;
};

template <class T, class D = cpu>
class parameter_store {
 public:
  struct entry {
    std::string name;
    ambiseg::shape shape;
    std::int64_t offset;  // in elements, into the flat buffers
  };

  parameter_store() = default;
  parameter_store(const parameter_store&) = delete;
  parameter_store& operator=(const parameter_store&) = delete;
  parameter_store(parameter_store&&) = default;
  parameter_store& operator=(parameter_store&&) = default;

  // Registers a parameter; returns its index. Only before allocate().
  std::size_t add(const std::string& name, ambiseg::shape s) {
    throw_if(allocated_, "parameter_store::add(", name, "): already allocated");
    throw_if(index_.count(name) != 0, "parameter_store::add: duplicate parameter name '", name, "'");
    // Each parameter starts on a 64-byte boundary so per-parameter kernels stay aligned.
    const std::int64_t align = 64 / static_cast<std::int64_t>(sizeof(T)) > 0 ? 64 / sizeof(T) : 1;
    const std::int64_t offset = (total_ + align - 1) / align * align;
    entries_.push_back({name, s, offset});
    index_.emplace(name, entries_.size() - 1);
    total_ = offset + s.numel();
    return entries_.size() - 1;
  }

  void allocate() {
    throw_if(allocated_, "parameter_store::allocate: called twice");
    values_ = tensor<T, D>::zeros(shape{total_});
    grads_ = tensor<T, D>::zeros(shape{total_});
    allocated_ = true;
  }
  bool allocated() const { return allocated_; }

  std::size_t size() const { return entries_.size(); }
  const entry& info(std::size_t i) const { return entries_.at(i); }
  const std::vector<entry>& entries() const { return entries_; }
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  std::size_t index_of(const std::string& name) const {
    auto it = index_.find(name);
    throw_if(it == index_.end(), "parameter_store: no parameter named '", name, "'");
    return it->second;
  }

  // Number of trainable scalars (padding between parameters excluded).
  std::int64_t count() const {
    std::int64_t n = 0;
    for (const auto& e : entries_) n += e.shape.numel();
    return n;
  }

  tensor_view<T, D> value(std::size_t i) { return view_into(values_, i); }
  tensor_view<const T, D> value(std::size_t i) const { return view_into(values_, i); }
  tensor_view<T, D> grad(std::size_t i) { return view_into(grads_, i); }
  tensor_view<const T, D> grad(std::size_t i) const { return view_into(grads_, i); }
  tensor_view<T, D> value(const std::string& name) { return value(index_of(name)); }
  tensor_view<T, D> grad(const std::string& name) { return grad(index_of(name)); }

  // The flat buffers (padding slots are zero in both and stay zero under AdamW).
  tensor_view<T, D> flat_values() { return values_.view(); }
  tensor_view<const T, D> flat_values() const { return values_.view(); }
  tensor_view<T, D> flat_grads() { return grads_.view(); }
  tensor_view<const T, D> flat_grads() const { return grads_.view(); }

  void zero_grad() { grads_.zero(); }

  // Data-parallel training listens for the gradients a backward pass has finished, to sum
  // them over the ranks while the rest of the pass runs: a network calls
  // gradients_final_from(o) once no later part of its backward writes [o, end) of the
  // flat gradients. Without a listener it does nothing; a network that never calls it
  // leaves the whole sum to the end of its backward.
  void set_gradient_listener(std::function<void(std::int64_t)> listener) { listener_ = std::move(listener); }
  void gradients_final_from(std::int64_t offset) {
    if (listener_) listener_(offset);
  }

 private:
  template <class Buf>
  auto view_into(Buf& buf, std::size_t i) const {
    throw_if(!allocated_, "parameter_store: access before allocate()");
    const entry& e = entries_.at(i);
    using elem = std::remove_reference_t<decltype(*buf.data())>;
    return tensor_view<elem, D>(const_cast<elem*>(buf.data()) + e.offset, e.shape);
  }

  std::vector<entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
  std::int64_t total_ = 0;
  bool allocated_ = false;
  tensor<T, D> values_;
  tensor<T, D> grads_;
  std::function<void(std::int64_t)> listener_;
};

}  // namespace ambiseg
