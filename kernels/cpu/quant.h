// Quantized weight formats (GGML block layouts): dequantization and quantized matrix products.
#pragma once

#include <cstdint>

#include "kernels/cpu/dtype.h"

namespace specdec::cpu {

// Dequantize n elements (a multiple of the block size) of a quantized dtype.
void dequantize_row_quant(float* out, const void* src, DType t, int64_t n);

// out (T,N) = x (T,K) * W^T for a quantized W (N,K) with a fast path; returns false when this dtype
// has none (the caller then dequantizes row by row).
bool matmul_quant(float* out, const float* x, const void* W, DType t, int T, int N, int K);

}  // namespace specdec::cpu
