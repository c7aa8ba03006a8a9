# Finding the NCCL (and the CUDA runtime) that go with the LibTorch in use.
#
# A pip-installed PyTorch loads NCCL and cudart from wheels beside it: site-packages/nvidia/nccl/
# {include/nccl.h, lib/libnccl.so.2} and site-packages/nvidia/cuda_runtime/lib/libcudart.so.N,
# where LibTorch itself is site-packages/torch. mart must link those very files: one NCCL and one
# CUDA runtime per process (a second cudart keeps its own current device and streams).
# Plain functions of paths, so tests run them in script mode (cmake -P) on a fake tree.

# mart_find_nccl(TORCH_PREFIX <LibTorch root> [CUDA_INCLUDE_DIRS ...] [CUDA_LIBRARY_DIRS ...])
# Looks, in this order, in $NCCL_HOME / -DNCCL_ROOT (an explicit choice), the pip wheel beside
# LibTorch, LibTorch's own folders, the CUDA toolkit. Sets in the caller:
#   MART_NCCL_INCLUDE_DIR, MART_NCCL_LIBRARY (empty when not found), MART_NCCL_VERSION (from nccl.h),
#   MART_NCCL_FROM (which place), MART_NCCL_SEARCHED (every place looked at, for messages),
#   MART_CUDART_LIBRARY (the cudart the LibTorch ships or loads from a wheel; empty: use the toolkit's).
function(mart_find_nccl)
  cmake_parse_arguments(A "" "TORCH_PREFIX" "CUDA_INCLUDE_DIRS;CUDA_LIBRARY_DIRS" ${ARGN})
  # Candidate places, in order: _inc_<k>, _lib_<k> (lists of folders) and _label_<k>.
  set(k 0)
  macro(_mart_nccl_candidate label inc_dirs lib_dirs)
    math(EXPR k "${k} + 1")
    set(_label_${k} "${label}")
    set(_inc_${k} ${inc_dirs})
    set(_lib_${k} ${lib_dirs})
  endmacro()
  foreach(explicit "${NCCL_ROOT}" "$ENV{NCCL_ROOT}" "$ENV{NCCL_HOME}")
    if(explicit)
      _mart_nccl_candidate("NCCL_HOME/NCCL_ROOT ${explicit}" "${explicit}/include" "${explicit}/lib;${explicit}/lib64")
    endif()
  endforeach()
  if(A_TORCH_PREFIX)
    get_filename_component(site "${A_TORCH_PREFIX}/.." ABSOLUTE)
    _mart_nccl_candidate("pip wheel beside LibTorch (${site}/nvidia/nccl)" "${site}/nvidia/nccl/include"
                         "${site}/nvidia/nccl/lib")
    _mart_nccl_candidate("LibTorch (${A_TORCH_PREFIX})" "${A_TORCH_PREFIX}/include" "${A_TORCH_PREFIX}/lib")
  endif()
  if(A_CUDA_INCLUDE_DIRS OR A_CUDA_LIBRARY_DIRS)
    _mart_nccl_candidate("CUDA toolkit (${A_CUDA_LIBRARY_DIRS})" "${A_CUDA_INCLUDE_DIRS}" "${A_CUDA_LIBRARY_DIRS}")
  endif()

  set(inc "")
  set(lib "")
  set(from "")
  set(searched "")
  if(k GREATER 0)
    foreach(i RANGE 1 ${k})
      string(APPEND searched "\n    ${_label_${i}}")
      find_path(_mart_nccl_inc nccl.h PATHS ${_inc_${i}} NO_DEFAULT_PATH NO_CACHE)
      find_library(_mart_nccl_lib NAMES nccl libnccl.so.2 libnccl.so PATHS ${_lib_${i}} NO_DEFAULT_PATH NO_CACHE)
      if(_mart_nccl_inc AND _mart_nccl_lib)
        string(REGEX REPLACE "/+$" "" inc "${_mart_nccl_inc}")
        set(lib "${_mart_nccl_lib}")
        set(from "${_label_${i}}")
        break()
      endif()
      unset(_mart_nccl_inc)
      unset(_mart_nccl_lib)
    endforeach()
  endif()

  set(version "")
  if(inc)
    file(STRINGS "${inc}/nccl.h" defs REGEX "^#define NCCL_(MAJOR|MINOR|PATCH) +[0-9]+")
    foreach(part MAJOR MINOR PATCH)
      string(REGEX MATCH "NCCL_${part} +([0-9]+)" _ "${defs}")
      set(v_${part} "${CMAKE_MATCH_1}")
    endforeach()
    set(version "${v_MAJOR}.${v_MINOR}.${v_PATCH}")
  endif()

  # The CUDA runtime LibTorch loads: a wheel beside it, or one bundled in its lib folder.
  set(cudart "")
  if(A_TORCH_PREFIX)
    file(GLOB cudart_candidates "${site}/nvidia/cuda_runtime/lib/libcudart.so.*"
                                "${A_TORCH_PREFIX}/lib/libcudart*.so*")
    if(cudart_candidates)
      list(SORT cudart_candidates)
      list(GET cudart_candidates 0 cudart)
    endif()
  endif()

  set(MART_NCCL_INCLUDE_DIR "${inc}" PARENT_SCOPE)
  set(MART_NCCL_LIBRARY "${lib}" PARENT_SCOPE)
  set(MART_NCCL_VERSION "${version}" PARENT_SCOPE)
  set(MART_NCCL_FROM "${from}" PARENT_SCOPE)
  set(MART_NCCL_SEARCHED "${searched}" PARENT_SCOPE)
  set(MART_CUDART_LIBRARY "${cudart}" PARENT_SCOPE)
endfunction()

# mart_require_nccl(<torch has CUDA: ON|OFF>): after mart_find_nccl, stops the configure when
# the LibTorch has CUDA and no NCCL was found (the build would succeed, and train.device = cuda
# fail at run time).
function(mart_require_nccl torch_cuda)
  if(torch_cuda AND NOT MART_NCCL_LIBRARY)
    message(FATAL_ERROR "This LibTorch has CUDA but no NCCL was found, so mart could not train on GPUs. Looked in:"
      "${MART_NCCL_SEARCHED}\n"
      "Fix: pip install the NCCL wheel this PyTorch depends on (nvidia-nccl-cu12 or -cu13), or set NCCL_HOME to an "
      "NCCL install (include/nccl.h, lib/libnccl.so), or configure with -DMART_WITH_CUDA=OFF for a CPU-only mart.")
  endif()
endfunction()
