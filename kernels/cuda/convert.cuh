// Small data-movement kernels of the CUDA model backend (core/backends/cuda): fp32 activations
// rounded to f16/bf16 for cuBLAS, and the store of a forward's new K/V rows into each sequence's cache.
// CPU twins: cpu::fp32_to_fp16 (kernels/cpu/dtype.h) per element; the memcpy of K/V rows into the cache
// in LlamaCpu::forward_batch (core/backends/cpu/llama_cpu.cpp).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernels/cpu/dtype.h"

namespace specdec::cuda {

// out (n) of type out_t (F16 or BF16) = x (n) fp32, rounded to nearest even. F16 saturates: a finite
// |x| > 65504 becomes +-65504 (not inf); NaN stays NaN. Device pointers.
void convert_f32(void* out, cpu::DType out_t, const float* x, int64_t n, cudaStream_t stream);

// For r < R: row r of k and of v (R, kv_dim) fp32 goes to slot row_slot[r] of sequence row_seq[r]'s cache
// of this layer, i.e. to k_base[row_seq[r]] + row_slot[r] * kv_dim (and v_base likewise). k_base, v_base:
// device arrays of device pointers (one per sequence); row_seq, row_slot: device arrays of R. Every index
// is read on the device, so a captured CUDA graph replays it with new slots.
void kv_store(float* const* k_base, float* const* v_base, const float* k, const float* v, const int32_t* row_seq,
              const int32_t* row_slot, int R, int kv_dim, cudaStream_t stream);

}  // namespace specdec::cuda
