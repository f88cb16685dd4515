// Catch2 main for GPU test executables: exits 77 (CTest: skipped) only where no CUDA device exists, 1 on any
// other device-count error (tests/support/gpu.h states the rule).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "tests/support/gpu.h"

int main(int argc, char** argv) {
  specdec::test::require_gpu_or_skip();
  return Catch::Session().run(argc, argv);
}
