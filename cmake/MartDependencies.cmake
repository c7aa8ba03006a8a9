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

# CUDA + NCCL, found from the LibTorch in use (cmake/MartNccl.cmake): the pip wheels beside a
# pip-installed PyTorch, LibTorch's own folders, $NCCL_HOME, the CUDA toolkit. A CUDA LibTorch
# without NCCL stops here (a build without it could not train on GPUs). With a CPU LibTorch, the
# NCCL sources are still built when CUDA and NCCL are installed, so they compile and link on a
# machine without a GPU.
set(MART_HAVE_NCCL OFF)
set(MART_TORCH_CUDA OFF)
if(TORCH_CUDA_LIBRARIES OR C10_CUDA_LIBRARY)
  set(MART_TORCH_CUDA ON)
endif()
if(MART_WITH_CUDA)
  include(MartNccl)
  find_package(CUDAToolkit QUIET)
  mart_find_nccl(TORCH_PREFIX "${TORCH_INSTALL_PREFIX}" CUDA_INCLUDE_DIRS ${CUDAToolkit_INCLUDE_DIRS}
                 CUDA_LIBRARY_DIRS ${CUDAToolkit_LIBRARY_DIR})
  mart_require_nccl(${MART_TORCH_CUDA})
  if(MART_NCCL_LIBRARY AND NOT CUDAToolkit_FOUND AND MART_TORCH_CUDA)
    message(FATAL_ERROR "NCCL was found (${MART_NCCL_FROM}) but no CUDA toolkit for the CUDA headers: install "
                        "the toolkit that matches this PyTorch's CUDA, or point CUDAToolkit_ROOT at it")
  endif()
  if(MART_NCCL_LIBRARY AND CUDAToolkit_FOUND)
    set(MART_HAVE_NCCL ON)
    add_library(mart_nccl INTERFACE)
    target_include_directories(mart_nccl SYSTEM INTERFACE ${MART_NCCL_INCLUDE_DIR} ${CUDAToolkit_INCLUDE_DIRS})
    # One CUDA runtime per process: the one LibTorch loads when it brings its own (a wheel or
    # its lib folder), else the toolkit's.
    if(MART_CUDART_LIBRARY AND MART_TORCH_CUDA)
      target_link_libraries(mart_nccl INTERFACE ${MART_NCCL_LIBRARY} ${MART_CUDART_LIBRARY})
      set(_mart_cudart "${MART_CUDART_LIBRARY}")
    else()
      target_link_libraries(mart_nccl INTERFACE ${MART_NCCL_LIBRARY} CUDA::cudart)
      set(_mart_cudart "CUDA toolkit ${CUDAToolkit_VERSION}")
    endif()
    target_compile_definitions(mart_nccl INTERFACE MART_HAVE_NCCL=1)
    if(MART_TORCH_CUDA)  # c10::cuda's current stream exists only in a CUDA LibTorch
      target_compile_definitions(mart_nccl INTERFACE MART_TORCH_CUDA=1)
    endif()
    message(STATUS "mart: NCCL ${MART_NCCL_VERSION} from ${MART_NCCL_FROM}: ${MART_NCCL_LIBRARY}; cudart: ${_mart_cudart}")
  endif()
endif()
