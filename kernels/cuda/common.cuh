// CUDA error checking for specdec: every CUDA / cuBLAS failure becomes a specdec::Error naming the call.
#pragma once

#include <cuda_runtime.h>

#include "core/error.h"

#define SPECDEC_CUDA_CHECK(call)                                                      \
  do {                                                                                \
    const cudaError_t err_ = (call);                                                  \
    SPECDEC_CHECK(err_ == cudaSuccess, #call, " failed: ", cudaGetErrorString(err_)); \
  } while (0)

// After a kernel launch: launch-configuration errors surface here, not at the next sync.
#define SPECDEC_CUDA_CHECK_LAUNCH() SPECDEC_CUDA_CHECK(cudaGetLastError())
