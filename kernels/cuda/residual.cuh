// Residual add on the GPU. CPU twin: specdec::cpu::add (kernels/cpu/ops.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace specdec::cuda {

// x[i] += y[i] for i < n; device fp32.
void add(float* x, const float* y, int64_t n, cudaStream_t stream);

}  // namespace specdec::cuda
