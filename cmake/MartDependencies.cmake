# Every external dependency of mart, found once, exposed as imported targets.
find_package(Threads REQUIRED)
find_package(MPI REQUIRED COMPONENTS C CXX)
find_package(HDF5 REQUIRED COMPONENTS C)
find_package(Boost REQUIRED COMPONENTS program_options)
find_package(spdlog REQUIRED)
find_package(nlohmann_json REQUIRED)
find_package(PkgConfig REQUIRED)
pkg_check_modules(SNDFILE REQUIRED IMPORTED_TARGET sndfile)
pkg_check_modules(SOXR REQUIRED IMPORTED_TARGET soxr)
pkg_check_modules(FFTW3F REQUIRED IMPORTED_TARGET fftw3f)

# LibTorch: Debian's libtorch-dev by default; -DTorch_DIR=/path/to/libtorch/share/cmake/Torch
# selects another (e.g. a CUDA LibTorch 2.x on a cluster).
find_package(Torch REQUIRED)
# TORCH_CXX_FLAGS carries the ABI flag of the LibTorch we link; our code must match it.
separate_arguments(MART_TORCH_CXX_FLAGS UNIX_COMMAND "${TORCH_CXX_FLAGS}")
add_library(mart_torch INTERFACE)
target_link_libraries(mart_torch INTERFACE ${TORCH_LIBRARIES})
target_compile_options(mart_torch INTERFACE ${MART_TORCH_CXX_FLAGS})
# Torch's headers are not ours: keep their warnings out of -Werror.
get_target_property(_torch_inc torch INTERFACE_INCLUDE_DIRECTORIES)
if(_torch_inc)
  target_include_directories(mart_torch SYSTEM INTERFACE ${_torch_inc})
endif()

# CUDA + NCCL: optional, auto-detected. Only the GPU backend sources need them; they compile and
# link on a machine without a GPU.
set(MART_HAVE_NCCL OFF)
if(MART_WITH_CUDA)
  find_package(CUDAToolkit QUIET)
  if(CUDAToolkit_FOUND)
    find_path(NCCL_INCLUDE_DIR nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{NCCL_HOME}/include)
    find_library(NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} $ENV{NCCL_HOME}/lib)
    if(NCCL_INCLUDE_DIR AND NCCL_LIBRARY)
      set(MART_HAVE_NCCL ON)
      add_library(mart_nccl INTERFACE)
      target_include_directories(mart_nccl SYSTEM INTERFACE ${NCCL_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
      target_link_libraries(mart_nccl INTERFACE ${NCCL_LIBRARY} CUDA::cudart)
      target_compile_definitions(mart_nccl INTERFACE MART_HAVE_NCCL=1)
    endif()
  endif()
endif()
