# Stages are siblings: no stage's sources or headers include another stage's headers. What two
# stages share belongs in a layer below them (core, features, data, model, run, ...).
#   cmake -DROOT=<source tree> -DSTAGES=<stage,stage,...> [-DSTAMP=<file to touch on success>] -P check_stage_includes.cmake
# STAGES comes from MART_STAGES in the top CMakeLists.txt (the one list of stages).
# Fails (non-zero exit) listing every offending file:line and the fix.
cmake_minimum_required(VERSION 3.22)
if(NOT ROOT OR NOT STAGES)
  message(FATAL_ERROR "check_stage_includes: give -DROOT=<source tree> -DSTAGES=<stage,stage,...>")
endif()
string(REPLACE "," ";" _stages "${STAGES}")
set(_bad "")
foreach(stage IN LISTS _stages)
  file(GLOB_RECURSE _files "${ROOT}/src/${stage}/*.cpp" "${ROOT}/src/${stage}/*.h"
                           "${ROOT}/include/mart/${stage}/*.h")
  foreach(f IN LISTS _files)
    file(STRINGS "${f}" _lines REGEX "^[ \t]*#[ \t]*include[ \t]*[<\"]mart/")
    foreach(line IN LISTS _lines)
      if(line MATCHES "include[ \t]*[<\"]mart/([a-z_]+)/")
        set(_to "${CMAKE_MATCH_1}")
        if(NOT _to STREQUAL stage AND _to IN_LIST _stages)
          file(RELATIVE_PATH _rel "${ROOT}" "${f}")
          string(STRIP "${line}" line)
          string(APPEND _bad "  ${_rel} (stage ${stage}): ${line}\n")
        endif()
      endif()
    endforeach()
  endforeach()
endforeach()
if(_bad)
  message(FATAL_ERROR "a stage includes another stage's headers (stages are siblings):\n${_bad}"
                      "move what both use into a layer below the stages (src/core, src/data, src/model, src/run, ...) "
                      "and include it from there")
endif()
if(STAMP)
  file(TOUCH "${STAMP}")
endif()
