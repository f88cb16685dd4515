// Attention over the KV cache for B sequences x T_b query tokens with explicit (tree) masks, fp32
// accumulation, one launch per layer. CPU twin: specdec::cpu::attention (kernels/cpu/ops.h), per sequence.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace specdec::cuda {

// Per-sequence arguments; every pointer is a device pointer, and the arrays themselves live in device
// memory (B entries each; row0 has B+1).
struct AttentionBatch {
  const int32_t* row0 = nullptr;         // sequence b owns query rows [row0[b], row0[b+1]) of q and out
  const int32_t* n_past = nullptr;       // cached slots before this block; S_b = n_past[b] + T_b
  const float* const* k = nullptr;       // sequence b's K rows for this layer: slot s at k[b] + s*ld_kv
  const float* const* v = nullptr;       // same for V
  const uint8_t* const* mask = nullptr;  // T_b x S_b bytes, 1 = attend; a null entry = causal
};

// out (R, Hq*D) for the R = row0[B] query rows; q (R, Hq*D) already roped. GQA: query head h reads kv head
// h / (Hq/Hkv). Softmax with the max subtracted, scale 1/sqrt(D), fp32 throughout. max_T / max_S bound
// T_b / S_b (launch geometry). Tiled over the key slots (FlashAttention-style online softmax) so S is not
// limited by shared memory. Every query row attends to at least one slot (the caller's contract).
void attention(float* out, const float* q, const AttentionBatch& batch, int B, int max_T, int max_S, int Hq,
               int Hkv, int D, int64_t ld_kv, cudaStream_t stream);

}  // namespace specdec::cuda
