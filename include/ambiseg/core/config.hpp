// ambiseg/core/config.hpp — macros shared by host and device code.
#pragma once

// Per-element maths is written once and compiled for both the CPU and, under nvcc, the GPU.
#if defined(__CUDACC__)
#define AMBISEG_HD __host__ __device__ __forceinline__
#else
#define AMBISEG_HD inline
#endif
