// Draft acceptance on the GPU, so a decode step can verify without copying logits to the host.
// CPU twins: the greedy and speculative rules of verifiers/rules.h (make_greedy_rule,
// make_speculative_rule) on the same block; same path, same next token, same Philox draws.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace specdec::cuda {

// One verified block per sequence b: nodes [node0[b], node0[b+1]) of the arrays below, node 0 of each
// block the root (last accepted token), then its draft nodes; parents are block-local (parents[0] = -1,
// parents[i] < i). Device arrays.
struct AcceptBatch {
  const int32_t* node0 = nullptr;    // B+1
  const int32_t* tokens = nullptr;   // all nodes' tokens
  const int32_t* parents = nullptr;  // all nodes' parents (block-local)
};

// Greedy: walk from the root; at each node take the child whose token equals the argmax of the node's
// row of target_argmax (first such child in block order); stop when none matches.
// path (B, max_depth): accepted block-local node indices, root excluded, -1 padded; path_len (B);
// next (B): target_argmax at the last accepted node (the bonus or correction token).
void accept_greedy(int32_t* path, int32_t* path_len, int32_t* next, const AcceptBatch& batch,
                   const int32_t* target_argmax, int B, int max_depth, cudaStream_t stream);

// Speculative (rejection sampling, recursive over siblings, as verifiers' speculative rule): p (all nodes,
// V) the target distributions after sampling filters (row i = distribution after node i); q (all nodes,
// V) with row i = the draft distribution node i's token was drawn from and the root's row unused (so
// VerifyInput::q's row i-1 is row i here), or null for a deterministic drafter (one-hot at each token).
// Draws with uniform(seed, request[b], step[b], draw) in the same draw order as the CPU rule; residuals
// max(p - q, 0) are recomputed from p, q and stored sums (bit-identical to the CPU's double residual).
// scratch: reserved, unused (may be null).
void accept_speculative(int32_t* path, int32_t* path_len, int32_t* next, const AcceptBatch& batch, const float* p,
                        const float* q, int V, uint64_t seed, const uint64_t* request, const uint32_t* step, int B,
                        int max_depth, float* scratch, cudaStream_t stream);

}  // namespace specdec::cuda
