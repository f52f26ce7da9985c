message(STATUS "ambiseg: CUDA backend requested")
enable_language(CUDA)
find_package(CUDAToolkit REQUIRED)
find_package(CUDNN 9 REQUIRED)
