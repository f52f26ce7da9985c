// ambiseg/core/parallel.hpp — the library's single thread pool is OpenMP's.
//
// OpenBLAS is linked in its OpenMP build (cmake/FindOpenBLAS.cmake), so BLAS calls and
// ambiseg's own loops share one pool. set_num_threads() sets both.
#pragma once

#include <omp.h>

extern "C" void openblas_set_num_threads(int);  // provided by OpenBLAS

namespace ambiseg {

inline int num_threads() { return omp_get_max_threads(); }
inline void set_num_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

}  // namespace ambiseg
