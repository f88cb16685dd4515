// SPECDEC_CPU_KERNELS lowers the dispatched CPU kernel level (read once, at the first query).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdlib>

#include "kernels/cpu/quant.h"

using namespace specdec::cpu;

TEST_CASE("SPECDEC_CPU_KERNELS=avx2 caps the level at avx2", "[quant]") {
  // CTest sets the variable for this executable (tests/quant/CMakeLists.txt); set it here too so the
  // binary also checks the same thing when run by hand.
  setenv("SPECDEC_CPU_KERNELS", "avx2", 1);
  const CpuLevel best = cpu_level_supported(CpuLevel::Avx512) ? CpuLevel::Avx512
                        : cpu_level_supported(CpuLevel::Avx2) ? CpuLevel::Avx2
                                                              : CpuLevel::Scalar;
  REQUIRE(cpu_level() == std::min(best, CpuLevel::Avx2));
}
