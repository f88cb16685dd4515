// Greedy and speculative acceptance kernels. Greedy: one thread per sequence walks its block (the walk
// reads only tokens, parents and the target argmax). Speculative: one CTA per sequence runs the walk of
// kernels/cuda/accept_walk.cuh on a DeviceBlock, the V-wide residual sums and draws spread over the CTA;
// the host test replays that walk against verifiers/rules.cpp.
#include "kernels/cuda/accept_walk.cuh"
#include "kernels/cuda/acceptance.cuh"
#include "kernels/cuda/block_collectives.cuh"
#include "kernels/cuda/common.cuh"

namespace specdec::cuda {
namespace {

constexpr int kGreedyThreads = 128;
constexpr int kSpecThreads = 512;

// Writes -1 into path[len, max_depth) of one sequence.
__device__ void pad_path(int32_t* path, int len, int max_depth) {
  for (int d = len < 0 ? 0 : len; d < max_depth; ++d) path[d] = -1;
}

// path (B, max_depth), path_len (B), next (B); one thread per sequence.
__global__ void accept_greedy_kernel(int32_t* path, int32_t* path_len, int32_t* next, AcceptBatch batch,
                                     const int32_t* target_argmax, int B, int max_depth) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= B) return;
  const int n0 = batch.node0[b];
  int32_t* out = path + static_cast<int64_t>(b) * max_depth;
  const walk::WalkResult r = walk::greedy_walk(batch.tokens + n0, batch.parents + n0, batch.node0[b + 1] - n0,
                                               target_argmax + n0, out, max_depth);
  pad_path(out, r.len, max_depth);
  path_len[b] = r.len;
  next[b] = r.next;
}

// One CTA per sequence b = blockIdx.x; p, q: (all nodes, V) rows.
__global__ void __launch_bounds__(kSpecThreads)
    accept_speculative_kernel(int32_t* path, int32_t* path_len, int32_t* next, AcceptBatch batch, const float* p,
                              const float* q, int V, uint64_t seed, const uint64_t* request, const uint32_t* step,
                              int max_depth) {
  __shared__ BlockShared sh;
  DeviceBlock blk(sh);
  const int b = blockIdx.x;
  const int n0 = batch.node0[b];
  walk::SpecBlock s;
  s.T = batch.node0[b + 1] - n0;
  s.tokens = batch.tokens + n0;
  s.parents = batch.parents + n0;
  s.p = p + static_cast<int64_t>(n0) * V;
  s.q = q ? q + static_cast<int64_t>(n0) * V : nullptr;
  s.V = V;
  s.seed = seed;
  s.request = request[b];
  s.step = step[b];
  int32_t* out = path + static_cast<int64_t>(b) * max_depth;
  walk::NoObserver observe;
  const walk::WalkResult r = walk::speculative_walk(blk, s, out, max_depth, observe);
  if (blk.leader()) {
    pad_path(out, r.len, max_depth);
    path_len[b] = r.len;
    next[b] = r.next;
  }
}

void check_batch(const char* what, int B, int max_depth) {
  SPECDEC_CHECK(B >= 0, what, ": B >= 0 sequences, got ", B);
  SPECDEC_CHECK(max_depth >= 0, what, ": max_depth >= 0, got ", max_depth);
}

}  // namespace

// A block with no node (node0[b+1] == node0[b]) gives path_len 0 and next -1. A path longer than
// max_depth is cut to its first max_depth nodes; path_len still counts them all.
void accept_greedy(int32_t* path, int32_t* path_len, int32_t* next, const AcceptBatch& batch,
                   const int32_t* target_argmax, int B, int max_depth, cudaStream_t stream) {
  check_batch("accept_greedy", B, max_depth);
  if (B == 0) return;
  accept_greedy_kernel<<<(B + kGreedyThreads - 1) / kGreedyThreads, kGreedyThreads, 0, stream>>>(
      path, path_len, next, batch, target_argmax, B, max_depth);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

// As accept_greedy for empty blocks and long paths. q follows the header's shape, (all nodes, V) with
// row node0[b] + i for node i and each root's row unused (VerifyInput::q has no root row: row i - 1 for
// node i). The residual is recomputed from p and q rather than stored (the CPU keeps it in double, which
// (B, V) floats cannot hold), so `scratch` is not used. A node with more than 512 rejected children
// (since its residual last reset) gives path_len -1, next -1.
void accept_speculative(int32_t* path, int32_t* path_len, int32_t* next, const AcceptBatch& batch, const float* p,
                        const float* q, int V, uint64_t seed, const uint64_t* request, const uint32_t* step, int B,
                        int max_depth, float* scratch, cudaStream_t stream) {
  check_batch("accept_speculative", B, max_depth);
  SPECDEC_CHECK(V >= 1, "accept_speculative: a vocabulary of V >= 1, got ", V);
  (void)scratch;
  if (B == 0) return;
  accept_speculative_kernel<<<B, kSpecThreads, 0, stream>>>(path, path_len, next, batch, p, q, V, seed, request, step,
                                                            max_depth);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
