// Weight-streaming matrix products for small T (decode and verification blocks), reading the weights in
// their stored format. CPU twin: specdec::cpu::matmul (kernels/cpu/ops.h).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/dtype.h"

namespace specdec::cuda {

// Bytes of device scratch that matmul_small needs for T rows of K (the activations quantized to Q8_0 /
// Q8_1 blocks, as the CPU path quantizes them).
size_t matmul_small_scratch_bytes(int T, int K);

// out (T,N) fp32 = x (T,K) fp32 * W^T, W (N,K) row-major of dtype wt: F32, F16, BF16 (fp32 activations,
// fp32 accumulation) or Q8_0, Q4_0, Q4_1 (activations quantized per 32-block exactly as the CPU does:
// Q8_0 for Q8_0/Q4_0 weights, Q8_1 for Q4_1; integer dot products per block, dp4a). Every weight row is
// read once for all T rows. Batch-invariant: row t of out is bit-identical whatever T is (the reduction
// order of a row never depends on T), so a verification block equals T single steps exactly.
// scratch: device, >= matmul_small_scratch_bytes(T, K) (unused for float weights). Any T >= 1 works; the
// backend uses it up to a few hundred rows and cuBLAS above that.
void matmul_small(float* out, const float* x, const void* W, cpu::DType wt, int T, int N, int K, void* scratch,
                  cudaStream_t stream);

}  // namespace specdec::cuda
