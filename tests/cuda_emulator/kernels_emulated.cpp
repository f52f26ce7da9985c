// cuda_emulator/kernels_emulated.cpp — the CUDA backend's one translation unit
// (ops/cuda/kernels.cu), compiled by the host compiler for the emulator: with
// AMBISEG_CUDA_EMULATION defined, ops/cuda/common.cuh pulls in cuda_emulator/device.hpp
// and AMBISEG_LAUNCH runs kernels on the CPU. Same sources, same instantiations.
#include "ambiseg/ops/cuda/kernels.cu"
