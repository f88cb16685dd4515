// Rotary embedding on the GPU. CPU twin: specdec::cpu::rope (kernels/cpu/ops.h), same layout.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace specdec::cuda {

// In place, llama2.c / GGML "normal" layout: adjacent pairs (2i, 2i+1) of each head rotate by
// pos[t] * theta^(-2i/head_dim). x: device (T, n_heads*head_dim) fp32; pos: device (T).
void rope(float* x, const int32_t* pos, int T, int n_heads, int head_dim, float theta, cudaStream_t stream);

}  // namespace specdec::cuda
