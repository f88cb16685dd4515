// Token embedding gather on the GPU. CPU twin: specdec::cpu::dequantize_row of each token's row
// (kernels/cpu/ops.h), as LlamaCpu::forward_batch does it.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/dtype.h"

namespace specdec::cuda {

// out (T,H) fp32 = row tokens[t] of table (V,H), stored as wt (F32, F16, BF16, Q8_0, Q4_0 or Q4_1; H a
// multiple of the block size). tokens: device, T ids, already checked to lie in 0..V-1 by the caller.
void embedding(float* out, const int32_t* tokens, const void* table, cpu::DType wt, int T, int H, cudaStream_t stream);

}  // namespace specdec::cuda
