# cmake -DMART_SOURCE_DIR=<repo> -DWORK=<scratch folder> -P test_nccl_discovery.cmake
# The NCCL/cudart discovery of cmake/MartNccl.cmake on a fake tree laid out like a pip-installed
# PyTorch (site-packages/torch beside site-packages/nvidia/{nccl,cuda_runtime}) and a CUDA toolkit
# with another NCCL: which one wins, the version read from nccl.h, and the loud failure when a
# CUDA LibTorch has no NCCL.
cmake_minimum_required(VERSION 3.22)
include(${MART_SOURCE_DIR}/cmake/MartNccl.cmake)
set(CMAKE_FIND_LIBRARY_PREFIXES lib)
set(CMAKE_FIND_LIBRARY_SUFFIXES .so .a)
unset(ENV{NCCL_HOME})
unset(ENV{NCCL_ROOT})

function(expect what got want)
  if(NOT "${got}" STREQUAL "${want}")
    message(FATAL_ERROR "${what}: got '${got}', want '${want}'")
  endif()
  message(STATUS "ok: ${what} = ${got}")
endfunction()
function(fake_nccl inc_dir lib_file major minor patch)
  file(WRITE "${inc_dir}/nccl.h" "#ifndef NCCL_H_\n#define NCCL_MAJOR ${major}\n#define NCCL_MINOR ${minor}\n#define NCCL_PATCH ${patch}\n#endif\n")
  get_filename_component(d "${lib_file}" DIRECTORY)
  file(MAKE_DIRECTORY "${d}")
  file(WRITE "${lib_file}" "")
endfunction()

file(REMOVE_RECURSE "${WORK}")
set(site "${WORK}/venv/lib/python3.11/site-packages")
set(torch "${site}/torch")
file(MAKE_DIRECTORY "${torch}/lib" "${torch}/share/cmake/Torch")
fake_nccl("${site}/nvidia/nccl/include" "${site}/nvidia/nccl/lib/libnccl.so.2" 2 21 5)  # the wheel has no libnccl.so
file(MAKE_DIRECTORY "${site}/nvidia/cuda_runtime/lib")
file(WRITE "${site}/nvidia/cuda_runtime/lib/libcudart.so.12" "")
set(cuda "${WORK}/cuda")
file(MAKE_DIRECTORY "${cuda}/include")
fake_nccl("${cuda}/include" "${cuda}/lib64/libnccl.so" 2 18 1)

# 1. The wheel beside LibTorch wins over the toolkit's NCCL; cudart is the wheel's.
mart_find_nccl(TORCH_PREFIX "${torch}" CUDA_INCLUDE_DIRS "${cuda}/include" CUDA_LIBRARY_DIRS "${cuda}/lib64")
expect("pip: library" "${MART_NCCL_LIBRARY}" "${site}/nvidia/nccl/lib/libnccl.so.2")
expect("pip: include" "${MART_NCCL_INCLUDE_DIR}" "${site}/nvidia/nccl/include")
expect("pip: version" "${MART_NCCL_VERSION}" "2.21.5")
expect("pip: cudart" "${MART_CUDART_LIBRARY}" "${site}/nvidia/cuda_runtime/lib/libcudart.so.12")

# 2. NCCL_HOME is an explicit choice and comes first.
set(ENV{NCCL_HOME} "${WORK}/nccl-home")
fake_nccl("${WORK}/nccl-home/include" "${WORK}/nccl-home/lib/libnccl.so" 2 23 4)
mart_find_nccl(TORCH_PREFIX "${torch}" CUDA_INCLUDE_DIRS "${cuda}/include" CUDA_LIBRARY_DIRS "${cuda}/lib64")
expect("NCCL_HOME: library" "${MART_NCCL_LIBRARY}" "${WORK}/nccl-home/lib/libnccl.so")
expect("NCCL_HOME: version" "${MART_NCCL_VERSION}" "2.23.4")
unset(ENV{NCCL_HOME})

# 3. Without the wheel: the toolkit's NCCL; a header without its library is no find.
file(REMOVE "${site}/nvidia/nccl/lib/libnccl.so.2")
mart_find_nccl(TORCH_PREFIX "${torch}" CUDA_INCLUDE_DIRS "${cuda}/include" CUDA_LIBRARY_DIRS "${cuda}/lib64")
expect("toolkit: library" "${MART_NCCL_LIBRARY}" "${cuda}/lib64/libnccl.so")
expect("toolkit: version" "${MART_NCCL_VERSION}" "2.18.1")

# 4. Nothing anywhere: not found, and every place looked at is listed.
file(REMOVE "${cuda}/lib64/libnccl.so")
mart_find_nccl(TORCH_PREFIX "${torch}" CUDA_INCLUDE_DIRS "${cuda}/include" CUDA_LIBRARY_DIRS "${cuda}/lib64")
expect("none: library" "${MART_NCCL_LIBRARY}" "")
string(FIND "${MART_NCCL_SEARCHED}" "pip wheel beside LibTorch" at)
if(at LESS 0)
  message(FATAL_ERROR "the search list does not name the wheel: ${MART_NCCL_SEARCHED}")
endif()

# 5. A CPU LibTorch without NCCL configures; a CUDA LibTorch without NCCL stops with the fix.
mart_require_nccl(OFF)
file(WRITE "${WORK}/require.cmake" "include(${MART_SOURCE_DIR}/cmake/MartNccl.cmake)\nset(MART_NCCL_LIBRARY \"\")\nset(MART_NCCL_SEARCHED \"\\n    somewhere\")\nmart_require_nccl(ON)\n")
execute_process(COMMAND ${CMAKE_COMMAND} -P "${WORK}/require.cmake" RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "a CUDA LibTorch without NCCL configured without error")
endif()
string(FIND "${err}" "This LibTorch has CUDA but no NCCL was found" at)
string(FIND "${err}" "nvidia-nccl-cu12" fix)
if(at LESS 0 OR fix LESS 0)
  message(FATAL_ERROR "the failure does not say what is missing and how to fix it:\n${err}")
endif()
message(STATUS "ok: a CUDA LibTorch without NCCL stops the configure")
file(REMOVE_RECURSE "${WORK}")
