# The CUDA backend (-DAMBISEG_CUDA=ON): ambiseg::cuda = ambiseg + CUDA runtime, cuBLAS,
# cuDNN 9. Architecture 90 (H100) unless CMAKE_CUDA_ARCHITECTURES is set; "native" would
# fail on the GPU-less machines that build CI.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()
enable_language(CUDA)
# C++20 for nvcc: CMake < 3.26 has no CUDA20 dialect for NVIDIA's compiler (it fails at
# generation with CUDA_STANDARD 20), so the flag is given directly to the CUDA target below.
find_package(CUDAToolkit 12 REQUIRED)
find_package(CUDNN 9 REQUIRED)
message(STATUS "ambiseg: CUDA ${CUDAToolkit_VERSION}, cuDNN ${CUDNN_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

# The kernels: one nvcc translation unit per module (src/cuda/<module>.cu) that defines every
# function of that module's cuda/api.hpp, so host code compiled by the C++ compiler never
# sees device code.
set(AMBISEG_CUDA_SOURCES
  ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/ops.cu
  ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/diffusion.cu
  ${CMAKE_CURRENT_SOURCE_DIR}/src/cuda/optim.cu)
add_library(ambiseg_cuda_kernels STATIC ${AMBISEG_CUDA_SOURCES})
set_target_properties(ambiseg_cuda_kernels PROPERTIES
  EXPORT_NAME cuda_kernels POSITION_INDEPENDENT_CODE ON CUDA_SEPARABLE_COMPILATION OFF)
target_include_directories(ambiseg_cuda_kernels PUBLIC
  $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
  $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
target_compile_features(ambiseg_cuda_kernels PUBLIC cxx_std_20)
target_link_libraries(ambiseg_cuda_kernels PUBLIC CUDA::cudart CUDA::cublas CUDNN::cudnn)
# Headers shared with host code may carry OpenMP pragmas; nvcc's host pass has no OpenMP.
target_compile_options(ambiseg_cuda_kernels PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 -Xcompiler=-Wall,-Wextra,-Wno-unknown-pragmas>)

add_library(ambiseg_cuda INTERFACE)
add_library(ambiseg::cuda ALIAS ambiseg_cuda)
set_target_properties(ambiseg_cuda PROPERTIES EXPORT_NAME cuda)
# NCCL is not linked: train/nccl_communicator.hpp loads it with dlopen when several GPUs
# train together (hence the dl library).
target_link_libraries(ambiseg_cuda INTERFACE ambiseg ambiseg_cuda_kernels CUDA::cudart CUDA::cublas CUDNN::cudnn
  ${CMAKE_DL_LIBS})
target_compile_definitions(ambiseg_cuda INTERFACE AMBISEG_WITH_CUDA=1)
install(TARGETS ambiseg_cuda ambiseg_cuda_kernels EXPORT ambisegTargets)
