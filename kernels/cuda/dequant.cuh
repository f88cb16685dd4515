// Weight dequantization on the GPU (for cuBLAS, which wants f16/bf16/f32 operands).
// CPU twin: specdec::cpu::dequantize_row (kernels/cpu/ops.h), row by row.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/dtype.h"

namespace specdec::cuda {

// out (rows, cols) of type out_t (F32, F16 or BF16; f16/bf16 rounded to nearest even from the exact fp32
// value) = src (rows, cols) of type src_t (F32, F16, BF16, Q8_0, Q4_0, Q4_1; cols a multiple of the block
// size; rows laid out back to back, row_bytes(src_t, cols) each). Device pointers.
void dequantize(void* out, cpu::DType out_t, const void* src, cpu::DType src_t, int64_t rows, int64_t cols,
                cudaStream_t stream);

}  // namespace specdec::cuda
