// ambiseg/ops/cpu/concat.hpp — channel concatenation: per image, a's planes then b's.
//   a [N, Ca·S]  b [N, Cb·S]  y [N, (Ca+Cb)·S]  (S = H·W; counts below are per image)
#pragma once

#include <cstdint>
#include <cstring>

namespace ambiseg::ops::cpu_kernels {

template <class T>
void concat_channels_forward(const T* a, const T* b, T* y, std::int64_t n, std::int64_t a_len,
                             std::int64_t b_len) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    T* yi = y + i * (a_len + b_len);
    std::memcpy(yi, a + i * a_len, sizeof(T) * a_len);
    std::memcpy(yi + a_len, b + i * b_len, sizeof(T) * b_len);
  }
}

// da / db may be null (that input needs no gradient).
template <class T>
void concat_channels_backward(const T* dy, T* da, T* db, std::int64_t n, std::int64_t a_len,
                              std::int64_t b_len) {
#pragma omp parallel for schedule(static)
  for (std::int64_t i = 0; i < n; ++i) {
    const T* di = dy + i * (a_len + b_len);
    if (da) std::memcpy(da + i * a_len, di, sizeof(T) * a_len);
    if (db) std::memcpy(db + i * b_len, di + a_len, sizeof(T) * b_len);
  }
}

}  // namespace ambiseg::ops::cpu_kernels
