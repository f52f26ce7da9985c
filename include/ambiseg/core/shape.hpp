// ambiseg/core/shape.hpp — the extents of a tensor, rank 0 to 4 (NCHW at most).
#pragma once

#include <array>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "ambiseg/core/error.hpp"

namespace ambiseg {

class shape {
 public:
  static constexpr int max_rank = 4;

  constexpr shape() = default;
  shape(std::initializer_list<std::int64_t> extents) {
    throw_if<shape_error>(extents.size() > max_rank, "shape: rank ", extents.size(),
                          " exceeds the maximum of ", max_rank);
    for (std::int64_t e : extents) {
      throw_if<shape_error>(e < 0, "shape: negative extent ", e);
      dims_[rank_++] = e;
    }
  }
  template <class It>
  static shape from_range(It first, It last) {
    shape s;
    for (; first != last; ++first) {
      throw_if<shape_error>(s.rank_ >= max_rank, "shape: rank exceeds ", max_rank);
      throw_if<shape_error>(static_cast<std::int64_t>(*first) < 0, "shape: negative extent ",
                            static_cast<std::int64_t>(*first));
      s.dims_[s.rank_++] = static_cast<std::int64_t>(*first);
    }
    return s;
  }

  constexpr int rank() const { return rank_; }
  std::int64_t operator[](int axis) const {
    throw_if<shape_error>(axis < 0 || axis >= rank_, "shape: axis ", axis, " out of range for ",
                          to_string());
    return dims_[axis];
  }
  constexpr std::int64_t numel() const {
    std::int64_t n = 1;
    for (int i = 0; i < rank_; ++i) n *= dims_[i];
    return n;
  }
  constexpr const std::int64_t* begin() const { return dims_.data(); }
  constexpr const std::int64_t* end() const { return dims_.data() + rank_; }

  // NCHW accessors for rank-4 shapes.
  std::int64_t n() const { return (*this)[0]; }
  std::int64_t c() const { return (*this)[1]; }
  std::int64_t h() const { return (*this)[2]; }
  std::int64_t w() const { return (*this)[3]; }

  friend constexpr bool operator==(const shape& a, const shape& b) {
    if (a.rank_ != b.rank_) return false;
    for (int i = 0; i < a.rank_; ++i)
      if (a.dims_[i] != b.dims_[i]) return false;
    return true;
  }

  std::string to_string() const {
    std::string s = "[";
    for (int i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[i]);
    }
    return s + "]";
  }

 private:
  std::array<std::int64_t, max_rank> dims_{};
  int rank_ = 0;
};

inline std::ostream& operator<<(std::ostream& os, const shape& s) { return os << s.to_string(); }

}  // namespace ambiseg
