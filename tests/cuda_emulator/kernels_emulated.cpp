// cuda_emulator/kernels_emulated.cpp — the CUDA backend's translation units (src/cuda/*.cu),
// compiled by the host compiler for the emulator: with AMBISEG_CUDA_EMULATION defined,
// core/cuda/launch.cuh pulls in cuda_emulator/device.hpp and AMBISEG_LAUNCH runs kernels
// on the CPU. Same sources, same instantiations.
#include "cuda/diffusion.cu"
#include "cuda/ops.cu"
#include "cuda/optim.cu"
