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

// The split-K workspace (CUTLASS-style, caller-owned): device memory attention() may use for the partials
// of its split-K path (a CTA per split of 256 key slots, folded by a second kernel) when the grid would
// leave the GPU mostly idle. attention() never allocates. Ownership and lifetime: the caller allocates
// `bytes` of device memory once (LlamaCuda: at model creation, for its context length; freed with the
// model), keeps it alive and untouched by anything else until every attention() launched with it has
// finished on its stream, and passes the same pointer to every call (a captured CUDA graph records it).
// One workspace per stream: two streams running attention at once need two. A call whose partials do not
// fit (or an empty workspace) folds the splits inside each CTA instead; the result is the same bits.
struct AttentionWorkspace {
  void* data = nullptr;  // device memory, 256-byte aligned (cudaMalloc's alignment)
  size_t bytes = 0;
};

// Bytes of workspace that let every call with max_S <= max_S_bound and these Hq, D on a GPU with `sms`
// multiprocessors take the split-K path whenever it would (capped at 64 MiB: larger partials fold inside the
// CTAs anyway). Pure host arithmetic (tests/kernels/test_gpu_harness.cpp checks it against the launch rule).
size_t attention_workspace_bytes(int max_S_bound, int Hq, int D, int sms);
// The same for device `device` (queries its multiprocessor count).
size_t attention_workspace_bytes_for_device(int max_S_bound, int Hq, int D, int device);

// Whether a call takes the split-K path, and the workspace bytes it then uses (0 otherwise): the launch rule,
// exposed for tests. max_T, Hkv and the query-tile rows kM as the launch computes them.
struct AttentionSplitPlan {
  bool split_k = false;
  int splits = 1;
  size_t bytes = 0;
};
AttentionSplitPlan attention_split_plan(int B, int max_T, int max_S, int Hq, int Hkv, int D, int sms,
                                        size_t workspace_bytes);

// out (R, Hq*D) for the R = row0[B] query rows; q (R, Hq*D) already roped. GQA: query head h reads kv head
// h / (Hq/Hkv). Softmax with the max subtracted, scale 1/sqrt(D), fp32 throughout. max_T / max_S bound
// T_b / S_b (launch geometry). Tiled over the key slots (FlashAttention-style online softmax) so S is not
// limited by shared memory. Every query row attends to at least one slot (the caller's contract).
// workspace: see AttentionWorkspace (empty: never split-K).
void attention(float* out, const float* q, const AttentionBatch& batch, int B, int max_T, int max_S, int Hq, int Hkv,
               int D, int64_t ld_kv, cudaStream_t stream, AttentionWorkspace workspace = {});

}  // namespace specdec::cuda
