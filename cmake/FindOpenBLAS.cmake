# FindOpenBLAS: an imported target OpenBLAS::OpenBLAS with cblas.h.
#
# Prefers OpenBLAS built with OpenMP (Debian: libopenblas-openmp-dev). ambiseg runs
# exactly one thread pool: with the OpenMP build, BLAS calls share the OpenMP pool of
# the rest of the library instead of spinning a second pthread pool against it (measured
# on 2 cores: two pools made a PyTorch peer 2.6x slower).
#   OpenBLAS_ROOT            hint
#   OpenBLAS_USES_OPENMP     set to TRUE when the OpenMP build was found
include(FindPackageHandleStandardArgs)
set(_ob_arch_dirs /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu)
set(_ob_inc_dirs /usr/include/${CMAKE_LIBRARY_ARCHITECTURE} /usr/include/x86_64-linux-gnu /usr/include/aarch64-linux-gnu)

find_library(OpenBLAS_LIBRARY NAMES openblas
  HINTS ${OpenBLAS_ROOT}/lib
  PATHS ${_ob_arch_dirs}
  PATH_SUFFIXES openblas-openmp NO_DEFAULT_PATH)
if(OpenBLAS_LIBRARY)
  find_path(OpenBLAS_INCLUDE_DIR cblas.h HINTS ${OpenBLAS_ROOT}/include
    PATHS ${_ob_inc_dirs} PATH_SUFFIXES openblas-openmp NO_DEFAULT_PATH)
  set(OpenBLAS_USES_OPENMP TRUE)
else()
  find_library(OpenBLAS_LIBRARY NAMES openblas HINTS ${OpenBLAS_ROOT}/lib
    PATH_SUFFIXES openblas-pthread openblas)
  find_path(OpenBLAS_INCLUDE_DIR cblas.h HINTS ${OpenBLAS_ROOT}/include
    PATH_SUFFIXES openblas-pthread openblas)
  set(OpenBLAS_USES_OPENMP FALSE)
endif()

find_package_handle_standard_args(OpenBLAS REQUIRED_VARS OpenBLAS_LIBRARY OpenBLAS_INCLUDE_DIR)
if(OpenBLAS_FOUND AND NOT TARGET OpenBLAS::OpenBLAS)
  add_library(OpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::OpenBLAS PROPERTIES
    IMPORTED_LOCATION "${OpenBLAS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OpenBLAS_INCLUDE_DIR}")
  if(OpenBLAS_USES_OPENMP)
    set_property(TARGET OpenBLAS::OpenBLAS APPEND PROPERTY INTERFACE_COMPILE_DEFINITIONS AMBISEG_BLAS_OPENMP=1)
  else()
    message(WARNING "ambiseg: OpenBLAS without OpenMP found (${OpenBLAS_LIBRARY}); install "
                    "libopenblas-openmp-dev so that BLAS and OpenMP share one thread pool.")
  endif()
endif()
mark_as_advanced(OpenBLAS_LIBRARY OpenBLAS_INCLUDE_DIR)
