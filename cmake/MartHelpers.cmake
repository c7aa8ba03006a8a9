# Compiler warnings for mart's own targets.
function(mart_warnings target)
  target_compile_options(${target} PRIVATE -Wall -Wextra)
  if(MART_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
endfunction()

# mart_add_library(NAME SOURCES... [DEPS ...] [TORCH])
# A layer library: headers in include/mart/<module>, sources in src/<module>. TORCH gives it the
# shared precompiled torch header instead of each file parsing <torch/torch.h> again.
function(mart_add_library name)
  cmake_parse_arguments(A "TORCH" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/include)
  target_link_libraries(${name} PUBLIC ${A_DEPS})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  if(A_TORCH)
    target_link_libraries(${name} PUBLIC mart_torch)
    mart_torch_pch(${name})
    # Every torch unit compiles the same torch inline code again; a unity build compiles a library's
    # torch sources in batches of MART_UNITY_BATCH files (one compiler run each).
    if(MART_UNITY_BATCH GREATER 1)
      set_target_properties(${name} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${MART_UNITY_BATCH})
      # GCC takes an included .cpp for a header and warns about its types that use an anonymous
      # namespace: true of every unity source, and harmless there.
      if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
        target_compile_options(${name} PRIVATE -Wno-subobject-linkage)
      endif()
    endif()
  endif()
  mart_warnings(${name})
endfunction()

# One precompiled <torch/torch.h>, built once and reused by every torch target.
function(mart_torch_pch target)
  if(NOT TARGET mart_torch_pch_host)
    file(WRITE ${PROJECT_BINARY_DIR}/mart_torch_pch_host.cpp "// host of the shared torch pch\n")
    add_library(mart_torch_pch_host OBJECT ${PROJECT_BINARY_DIR}/mart_torch_pch_host.cpp)
    target_link_libraries(mart_torch_pch_host PUBLIC mart_torch)
    target_precompile_headers(mart_torch_pch_host PRIVATE <torch/torch.h>)
    mart_warnings(mart_torch_pch_host)
    set_target_properties(mart_torch_pch_host PROPERTIES POSITION_INDEPENDENT_CODE ON)
  endif()
  target_precompile_headers(${target} REUSE_FROM mart_torch_pch_host)
endfunction()

# mart_add_test(NAME SRC LIBS [MPI_NP n] [LABELS ...] [TORCH] [OWN_MAIN] [TIMEOUT s])
# Builds one GoogleTest binary and registers it with CTest; MPI_NP runs it under mpirun.
# OWN_MAIN: the test defines main() (MPI tests use tests/mpi_main.cpp for that).
function(mart_add_test name)
  cmake_parse_arguments(A "TORCH;OWN_MAIN" "MPI_NP;TIMEOUT" "SRC;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${A_SRC})
  target_link_libraries(${name} PRIVATE ${A_LIBS} GTest::gtest)
  if(NOT A_OWN_MAIN)
    target_link_libraries(${name} PRIVATE GTest::gtest_main)
  endif()
  target_compile_definitions(${name} PRIVATE MART_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
                                             MART_BINARY_DIR="${PROJECT_BINARY_DIR}")
  if(A_TORCH)
    target_link_libraries(${name} PRIVATE mart_torch)
    # The shared pch is built position-independent for the libraries; an executable must be
    # compiled the same way to use it (GCC refuses a pch made with other -fpic/-fpie settings).
    mart_torch_pch(${name})
    target_compile_options(${name} PRIVATE -fPIC)
  endif()
  mart_warnings(${name})
  if(A_MPI_NP)
    add_test(NAME ${name}
             COMMAND ${MPIEXEC_EXECUTABLE} ${MART_MPIEXEC_FLAGS} ${MPIEXEC_NUMPROC_FLAG} ${A_MPI_NP}
                     $<TARGET_FILE:${name}>)
    list(APPEND A_LABELS mpi)
  else()
    add_test(NAME ${name} COMMAND ${name})
  endif()
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES TIMEOUT ${A_TIMEOUT} LABELS "${A_LABELS}"
                       ENVIRONMENT "OMP_NUM_THREADS=1;OPENBLAS_NUM_THREADS=1")
endfunction()

# mpirun flags: root needs --allow-run-as-root; 2 ranks on a 2-core box need --oversubscribe
# only when cores are fewer, harmless otherwise.
set(MART_MPIEXEC_FLAGS --oversubscribe CACHE STRING "Extra flags for mpirun in tests")
execute_process(COMMAND id -u OUTPUT_VARIABLE _uid OUTPUT_STRIP_TRAILING_WHITESPACE)
if(_uid STREQUAL "0")
  list(APPEND MART_MPIEXEC_FLAGS --allow-run-as-root)
endif()

# Tests that start mpirun themselves (through tests/util/proc.h) learn how to call it.
function(mart_test_launches_ranks target)
  string(REPLACE ";" " " _flags "${MART_MPIEXEC_FLAGS}")
  target_compile_definitions(${target} PRIVATE MART_MPIEXEC="${MPIEXEC_EXECUTABLE}" MART_MPIEXEC_FLAGS_STR="${_flags}")
endfunction()
