# specdec_results: the HDF5 results log (experiments/results_log.h; schema in docs/hdf5-schema.md).
# Included (once) by the build that wires it, and by tests/results before that; needs find_package(HDF5
# COMPONENTS C) from the top-level CMakeLists.txt. Only the C API is used.
if(NOT TARGET specdec_results)
  add_library(specdec_results STATIC
    ${CMAKE_CURRENT_LIST_DIR}/results_log.cpp
    ${CMAKE_CURRENT_LIST_DIR}/results_read.cpp
    ${CMAKE_CURRENT_LIST_DIR}/results_hdf5.cpp
    ${CMAKE_CURRENT_LIST_DIR}/results_journal.cpp
    ${CMAKE_CURRENT_LIST_DIR}/results_schema.cpp
    ${CMAKE_CURRENT_LIST_DIR}/results_metrics.cpp)
  target_include_directories(specdec_results PUBLIC ${PROJECT_SOURCE_DIR})
  if(TARGET hdf5::hdf5)
    target_link_libraries(specdec_results PUBLIC specdec_core PRIVATE hdf5::hdf5)   # the C library alone
  else()
    target_link_libraries(specdec_results PUBLIC specdec_core PRIVATE HDF5::HDF5)
  endif()
  specdec_warnings(specdec_results)
endif()
