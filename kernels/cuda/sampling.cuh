// Softmax, argmax, top-k and seeded sampling on the GPU. CPU twins: specdec::cpu::softmax
// (kernels/cpu/ops.h); specdec::argmax, logits_to_probs, sample_from_probs and Sampler
// (core/sampling/sampling.h), with the same Philox counter (core/sampling/philox.h), so (seed, request,
// step, draw) gives the same token on both.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace specdec::cuda {

// In place softmax of each of the T rows of length n (max-subtracted, fp32).
void softmax(float* x, int T, int n, cudaStream_t stream);

// out[t] = index of the largest of row t of x (T, n); the lowest index on ties (as specdec::argmax).
void argmax(int32_t* out, const float* x, int T, int n, cudaStream_t stream);

// The k largest of each row of x (T, n), descending, ties by lower index: vals (T, k), idx (T, k).
// 1 <= k <= min(n, 1024).
void top_k(float* vals, int32_t* idx, const float* x, int T, int n, int k, cudaStream_t stream);

struct DeviceSampling {
  float temperature = 0.f;  // 0 = greedy
  int top_k = 0;            // 0 = off
  float top_p = 1.f;        // 1 = off
  uint64_t seed = 0;
};

// One token per row of logits (T, n): row t draws with uniform(seed, request[t], step[t], draw[t]) from
// logits_to_probs(row t, params) exactly as Sampler::sample does (greedy: argmax, no draw).
// request, step, draw: device arrays of T. probs: device scratch (T, n) fp32, left holding each row's
// distribution (the p the acceptance rules read).
void sample(int32_t* out, float* probs, const float* logits, int T, int n, const DeviceSampling& params,
            const uint64_t* request, const uint32_t* step, const uint32_t* draw, cudaStream_t stream);

}  // namespace specdec::cuda
