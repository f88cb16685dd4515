# CTest fixture (cmake -P): configure and build examples/plugin_drafter out of tree, as its README says,
# plus the wrong-ABI variant. Inputs: SOURCE_DIR, BINARY_DIR, SPECDEC_SOURCE_DIR, GENERATOR, CXX_COMPILER.
execute_process(
  COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR} -G ${GENERATOR}
          -DSPECDEC_SOURCE_DIR=${SPECDEC_SOURCE_DIR} -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
          -DSPECDEC_EXAMPLE_BAD_ABI_VARIANT=ON
  COMMAND_ERROR_IS_FATAL ANY)
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY_DIR} --parallel 2 COMMAND_ERROR_IS_FATAL ANY)
foreach(lib libspecdec_example_drafter.so libspecdec_example_drafter_bad_abi.so)
  if(NOT EXISTS ${BINARY_DIR}/${lib})
    message(FATAL_ERROR "building ${SOURCE_DIR} did not produce ${BINARY_DIR}/${lib}")
  endif()
endforeach()
