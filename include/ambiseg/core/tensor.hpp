// ambiseg/core/tensor.hpp — dense row-major tensors (NCHW) on a device.
//
//   tensor<T, D>        owns its memory; move-only, so nothing is ever copied behind the
//                       user's back (clone() and copy_from() are the explicit copies).
//   tensor_view<T, D>   a non-owning (pointer, shape) pair; what ops take and return.
//                       tensor_view<const T, D> is the read-only view.
//
// Ops receive views of preallocated tensors and never allocate: the network sizes its
// activations and workspaces once (see nn/), so a training or sampling step performs no
// allocation in its steady state.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "ambiseg/core/device.hpp"
#include "ambiseg/core/error.hpp"
#include "ambiseg/core/shape.hpp"

namespace ambiseg {

template <class T, class D = cpu>
class tensor_view {
 public:
  using value_type = std::remove_const_t<T>;
  using device_type = D;

  constexpr tensor_view() = default;
  tensor_view(T* data, ambiseg::shape s) : data_(data), shape_(s) {}
  // A mutable view converts to a const view.
  template <class U>
    requires(std::is_const_v<T> && std::same_as<std::remove_const_t<T>, U>)
  tensor_view(const tensor_view<U, D>& other) : data_(other.data()), shape_(other.shape()) {}

  T* data() const { return data_; }
  const ambiseg::shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t size(int axis) const { return shape_[axis]; }
  int rank() const { return shape_.rank(); }
  bool empty() const { return numel() == 0; }

  // Same memory, other extents (the element count must match).
  tensor_view reshaped(ambiseg::shape s) const {
    throw_if<shape_error>(s.numel() != numel(), "reshape: cannot view ", shape_.to_string(),
                          " (", numel(), " elements) as ", s.to_string());
    return tensor_view(data_, s);
  }
  // Items [first, first + count) along axis 0.
  tensor_view slice0(std::int64_t first, std::int64_t count) const {
    throw_if<shape_error>(rank() == 0 || first < 0 || count < 0 || first + count > shape_[0],
                          "slice0: [", first, ", ", first + count, ") out of range for ",
                          shape_.to_string());
    const std::int64_t inner = shape_[0] ? numel() / shape_[0] : 0;
    std::array<std::int64_t, shape::max_rank> d{};
    for (int i = 0; i < rank(); ++i) d[i] = shape_[i];
    d[0] = count;
    return tensor_view(data_ + first * inner, shape::from_range(d.begin(), d.begin() + rank()));
  }

  // Element access: host memory only.
  T& operator[](std::int64_t i) const
    requires std::same_as<D, cpu>
  {
    return data_[i];
  }
  T& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w) const
    requires std::same_as<D, cpu>
  {
    return data_[((n * shape_[1] + c) * shape_[2] + h) * shape_[3] + w];
  }
  T* begin() const requires std::same_as<D, cpu> { return data_; }
  T* end() const requires std::same_as<D, cpu> { return data_ + numel(); }

 private:
  T* data_ = nullptr;
  ambiseg::shape shape_{};
};

// Argument types of functions whose T and D are fixed elsewhere (by a deduced output view
// or by explicit template arguments): non-deduced, so a tensor<T, D>, a tensor_view<T, D>,
// a tensor_view<const T, D> or `{}` (an empty, absent view) converts where one is expected.
template <class T, class D = cpu>
using in_view = std::type_identity_t<tensor_view<const T, D>>;
template <class T, class D = cpu>
using out_view = std::type_identity_t<tensor_view<T, D>>;

template <class T, class D = cpu>
class tensor {
  static_assert(std::is_trivially_copyable_v<T>, "ambiseg::tensor holds trivially copyable types");

 public:
  using value_type = T;
  using device_type = D;
  using memory = device_memory<D>;

  tensor() = default;
  explicit tensor(ambiseg::shape s) : shape_(s), capacity_(s.numel()) {
    data_ = static_cast<T*>(memory::allocate(sizeof(T) * capacity_));
  }
  static tensor zeros(ambiseg::shape s) {
    tensor t(s);
    t.zero();
    return t;
  }
  // Host tensor from values (tests, fixtures).
  static tensor from(ambiseg::shape s, std::initializer_list<T> values)
    requires std::same_as<D, cpu>
  {
    throw_if<shape_error>(static_cast<std::int64_t>(values.size()) != s.numel(),
                          "tensor::from: ", values.size(), " values for shape ", s.to_string());
    tensor t(s);
    std::int64_t i = 0;
    for (T v : values) t.data_[i++] = v;
    return t;
  }

  tensor(const tensor&) = delete;
  tensor& operator=(const tensor&) = delete;
  tensor(tensor&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        shape_(std::exchange(o.shape_, {})),
        capacity_(std::exchange(o.capacity_, 0)) {}
  tensor& operator=(tensor&& o) noexcept {
    if (this != &o) {
      release();
      data_ = std::exchange(o.data_, nullptr);
      shape_ = std::exchange(o.shape_, {});
      capacity_ = std::exchange(o.capacity_, 0);
    }
    return *this;
  }
  ~tensor() { release(); }

  T* data() { return data_; }
  const T* data() const { return data_; }
  const ambiseg::shape& shape() const { return shape_; }
  std::int64_t numel() const { return shape_.numel(); }
  std::int64_t size(int axis) const { return shape_[axis]; }
  int rank() const { return shape_.rank(); }
  std::int64_t capacity() const { return capacity_; }

  tensor_view<T, D> view() { return {data_, shape_}; }
  tensor_view<const T, D> view() const { return {data_, shape_}; }
  tensor_view<const T, D> cview() const { return {data_, shape_}; }
  operator tensor_view<T, D>() { return view(); }
  operator tensor_view<const T, D>() const { return view(); }

  // Changes the extents; reallocates only when the new size exceeds the capacity, so a
  // buffer sized for the largest batch serves every smaller one without allocating.
  void resize(ambiseg::shape s) {
    if (s.numel() > capacity_) {
      release();
      data_ = static_cast<T*>(memory::allocate(sizeof(T) * s.numel()));
      capacity_ = s.numel();
    }
    shape_ = s;
  }
  void reshape(ambiseg::shape s) {
    throw_if<shape_error>(s.numel() != numel(), "reshape: cannot view ", shape_.to_string(),
                          " as ", s.to_string());
    shape_ = s;
  }

  void zero() { memory::zero(data_, sizeof(T) * numel()); }
  void fill(T value)
    requires std::same_as<D, cpu>
  {
    for (std::int64_t i = 0; i < numel(); ++i) data_[i] = value;
  }
  void copy_from(tensor_view<const T, D> src) {
    throw_if<shape_error>(!(src.shape() == shape_), "copy_from: shape ", src.shape().to_string(),
                          " into ", shape_.to_string());
    memory::copy(data_, src.data(), sizeof(T) * numel());
  }
  tensor clone() const {
    tensor t(shape_);
    memory::copy(t.data_, data_, sizeof(T) * numel());
    return t;
  }

  T& operator[](std::int64_t i) requires std::same_as<D, cpu> { return data_[i]; }
  const T& operator[](std::int64_t i) const requires std::same_as<D, cpu> { return data_[i]; }
  T& at(std::int64_t n, std::int64_t c, std::int64_t h, std::int64_t w)
    requires std::same_as<D, cpu>
  {
    return view().at(n, c, h, w);
  }
  T* begin() requires std::same_as<D, cpu> { return data_; }
  T* end() requires std::same_as<D, cpu> { return data_ + numel(); }
  const T* begin() const requires std::same_as<D, cpu> { return data_; }
  const T* end() const requires std::same_as<D, cpu> { return data_ + numel(); }

 private:
  void release() noexcept {
    if (data_) memory::deallocate(data_, sizeof(T) * capacity_);
    data_ = nullptr;
    capacity_ = 0;
  }
  T* data_ = nullptr;
  ambiseg::shape shape_{};
  std::int64_t capacity_ = 0;
};

// Shape checks used by every op: the message names the op, the argument and both shapes.
template <class V>
inline void expect_shape(const char* op, const char* arg, const V& v, const shape& expected) {
  throw_if<shape_error>(!(v.shape() == expected), op, ": ", arg, " has shape ",
                        v.shape().to_string(), ", expected ", expected.to_string());
}
template <class V>
inline void expect_rank(const char* op, const char* arg, const V& v, int rank) {
  throw_if<shape_error>(v.rank() != rank, op, ": ", arg, " must have rank ", rank, ", got ",
                        v.shape().to_string());
}

// Throws value_error naming `what` when a host buffer holds a NaN or an infinity.
template <class T>
inline void expect_finite(const char* what, tensor_view<const T, cpu> v) {
  for (std::int64_t i = 0; i < v.numel(); ++i)
    throw_if<value_error>(!std::isfinite(static_cast<double>(v[i])), what,
                          ": non-finite value ", static_cast<double>(v[i]), " at flat index ", i);
}

}  // namespace ambiseg
