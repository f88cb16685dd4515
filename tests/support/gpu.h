// GPU tests: skip (exit 77, reported by CTest as skipped, never passed) when no CUDA device is usable.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "kernels/cuda/device.h"

namespace specdec::test {

inline void require_gpu_or_skip() {
  if (specdec::cuda::device_count() == 0) {
    std::printf("no CUDA device: skipping GPU tests\n");
    std::exit(77);
  }
}

}  // namespace specdec::test
