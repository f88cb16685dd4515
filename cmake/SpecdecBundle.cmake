# Bundle mode (-DSPECDEC_BUNDLE=<dir>, the folder scripts/gpu-bundle writes): the dependencies the Debian
# packages would give, as imported targets over <dir>/include and <dir>/lib, for a machine that has none of
# them and no package registry (the GPU machine). Defines what the top-level find_package calls would:
# Eigen3::Eigen, nlohmann_json::nlohmann_json, Boost::program_options, hdf5::hdf5 (C API, static, with
# szip/aec and zlib), Catch2::Catch2 (tests/CMakeLists.txt skips its find_package when the target exists).
# OpenMP, Threads and CUDA still come from the machine's compiler and toolkit.
set(_b ${SPECDEC_BUNDLE})
foreach(f include/eigen3/Eigen/Core include/nlohmann/json.hpp include/catch2/catch.hpp
          include/boost/program_options.hpp include/hdf5/hdf5.h lib/libboost_program_options.a lib/libhdf5.a
          lib/libsz.a lib/libaec.a lib/libz.a)
  if(NOT EXISTS ${_b}/${f})
    message(FATAL_ERROR "SPECDEC_BUNDLE=${_b} lacks ${f}: make it with scripts/gpu-bundle on a machine that "
                        "has the Debian packages (scripts/setup)")
  endif()
endforeach()
message(STATUS "specdec: dependencies from the bundle ${_b} (Eigen, Boost.Program_options, HDF5, nlohmann-json, Catch2)")

find_package(Threads REQUIRED)

add_library(Eigen3::Eigen INTERFACE IMPORTED)
set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${_b}/include/eigen3)

add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
set_target_properties(nlohmann_json::nlohmann_json PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${_b}/include)

add_library(Catch2::Catch2 INTERFACE IMPORTED)
set_target_properties(Catch2::Catch2 PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${_b}/include)

add_library(Boost::program_options STATIC IMPORTED)
set_target_properties(Boost::program_options PROPERTIES
  IMPORTED_LOCATION ${_b}/lib/libboost_program_options.a
  INTERFACE_INCLUDE_DIRECTORIES ${_b}/include
  INTERFACE_COMPILE_DEFINITIONS "BOOST_ALL_NO_LIB")

add_library(specdec_bundle_z STATIC IMPORTED)
set_target_properties(specdec_bundle_z PROPERTIES IMPORTED_LOCATION ${_b}/lib/libz.a)
add_library(specdec_bundle_aec STATIC IMPORTED)
set_target_properties(specdec_bundle_aec PROPERTIES IMPORTED_LOCATION ${_b}/lib/libaec.a)
add_library(specdec_bundle_sz STATIC IMPORTED)
set_target_properties(specdec_bundle_sz PROPERTIES IMPORTED_LOCATION ${_b}/lib/libsz.a
  INTERFACE_LINK_LIBRARIES specdec_bundle_aec)
add_library(hdf5::hdf5 STATIC IMPORTED)
set_target_properties(hdf5::hdf5 PROPERTIES
  IMPORTED_LOCATION ${_b}/lib/libhdf5.a
  INTERFACE_INCLUDE_DIRECTORIES ${_b}/include/hdf5
  INTERFACE_LINK_LIBRARIES "specdec_bundle_sz;specdec_bundle_z;Threads::Threads;${CMAKE_DL_LIBS};m")
unset(_b)
