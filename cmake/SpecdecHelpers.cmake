# Shared CMake helpers: warnings for our own targets, one Catch2 executable per test file.

function(specdec_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers>)
endfunction()

# Tests run one OpenMP thread each: ctest -j runs several at once, and oversubscribed OpenMP barriers
# (threads spin-waiting for a descheduled peer) slow a test down by orders of magnitude. The kernels'
# own tests force 1 and 2 threads explicitly where threading is what they test.
# GPU test executables exit with this code when no CUDA device is usable; CTest reports "skipped".
set(SPECDEC_SKIP_RETURN_CODE 77)

# specdec_add_test(NAME SOURCES a.cpp [b.cu] LIBS ... LABELS cpu|gpu|slow|stress ... [ARGS catch args])
# Tests labelled gpu get a main that exits 77 (skipped) without a CUDA device.
function(specdec_add_test name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  if("gpu" IN_LIST ARG_LABELS)
    target_link_libraries(${name} PRIVATE specdec_test_main_gpu ${ARG_LIBS})
  else()
    target_link_libraries(${name} PRIVATE specdec_test_main ${ARG_LIBS})
    # Catch2's single header (~18k lines), parsed once per build instead of once per test (tests/CMakeLists.txt).
    if(TARGET specdec_test_pch)
      target_precompile_headers(${name} REUSE_FROM specdec_test_pch)
    endif()
  endif()
  specdec_warnings(${name})
  add_test(NAME ${name} COMMAND ${name} ${ARG_ARGS})
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 600)
  endif()
  set_tests_properties(${name} PROPERTIES
    LABELS "${ARG_LABELS}"
    TIMEOUT ${ARG_TIMEOUT}
    SKIP_RETURN_CODE ${SPECDEC_SKIP_RETURN_CODE}
    ENVIRONMENT "SPECDEC_ASSETS=${SPECDEC_ASSETS_DIR};OMP_NUM_THREADS=1")
endfunction()
