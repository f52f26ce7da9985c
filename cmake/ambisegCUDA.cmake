# The CUDA backend (-DAMBISEG_CUDA=ON): ambiseg::cuda = ambiseg + CUDA runtime, cuBLAS,
# cuDNN 9. Architecture 90 (H100) unless CMAKE_CUDA_ARCHITECTURES is set; "native" would
# fail on the GPU-less machines that build CI.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 90)
endif()
enable_language(CUDA)
set(CMAKE_CUDA_STANDARD 20)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
find_package(CUDAToolkit 12 REQUIRED)
find_package(CUDNN 9 REQUIRED)
message(STATUS "ambiseg: CUDA ${CUDAToolkit_VERSION}, cuDNN ${CUDNN_VERSION}, architectures ${CMAKE_CUDA_ARCHITECTURES}")

add_library(ambiseg_cuda INTERFACE)
add_library(ambiseg::cuda ALIAS ambiseg_cuda)
set_target_properties(ambiseg_cuda PROPERTIES EXPORT_NAME cuda)
target_link_libraries(ambiseg_cuda INTERFACE ambiseg CUDA::cudart CUDA::cublas CUDNN::cudnn)
target_compile_definitions(ambiseg_cuda INTERFACE AMBISEG_WITH_CUDA=1)
install(TARGETS ambiseg_cuda EXPORT ambisegTargets)
