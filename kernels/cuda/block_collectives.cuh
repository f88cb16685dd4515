// DeviceBlock: the Block concept of kernels/cuda/sample_row.cuh on one CTA (collectives over shared
// memory), which runs the row and walk algorithms of sample_row.cuh and accept_walk.cuh in the sampling
// and acceptance kernels. Device code only (included by .cu files). The host twin is the test's HostBlock.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "kernels/cuda/sample_row.cuh"

namespace specdec::cuda {

// Shared memory of a block_fold: one partial per warp, values of at most 16 bytes.
struct FoldShared {
  alignas(16) unsigned char red[32 * 16];
};

template <class T>
__device__ T shfl_xor_any(T v, int off) {
  static_assert(sizeof(T) % 4 == 0 && sizeof(T) <= 16, "a value of 4, 8, 12 or 16 bytes");
  uint32_t w[sizeof(T) / 4];
  std::memcpy(w, &v, sizeof(T));
  for (int k = 0; k < static_cast<int>(sizeof(T) / 4); ++k) w[k] = __shfl_xor_sync(0xffffffffu, w[k], off);
  std::memcpy(&v, w, sizeof(T));
  return v;
}

// The op-fold of every thread's acc, returned to every thread; op associative and commutative (the
// grouping is the warps'). red: FoldShared::red of the CTA. Starts with a barrier (red may be in use).
template <class T, class Op>
__device__ T block_fold(unsigned char* red, T acc, Op op) {
  for (int off = 16; off > 0; off >>= 1) acc = op(acc, shfl_xor_any(acc, off));
  __syncthreads();
  const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
  if (threadIdx.x % 32 == 0) std::memcpy(red + warp * sizeof(T), &acc, sizeof(T));
  __syncthreads();
  T r;
  std::memcpy(&r, red, sizeof(T));
  for (int w = 1; w < warps; ++w) {
    T x;
    std::memcpy(&x, red + w * sizeof(T), sizeof(T));
    r = op(r, x);
  }
  return r;
}

// Shared memory of one DeviceBlock (about 38 KiB, under the 48 KiB of static shared memory).
struct BlockShared {
  static constexpr int kTile = 1024;     // doubles produced per round of sequential() / bucket_sums()
  static constexpr int kChunk = 1024;    // keys per gather / sort
  static constexpr int kScratch = 1024;  // f64_scratch / i32_scratch entries
  static constexpr int kBcastBytes = 64;
  double tile[kTile];  // sequential(): doubles; bucket_sums(): kTile / 2 BucketValues
  uint64_t keys[kChunk];
  uint64_t sorted[kChunk];
  double f64[kScratch];
  int32_t i32[kScratch];
  uint32_t hist[256];
  alignas(16) unsigned char red[sizeof(FoldShared)];
  alignas(16) unsigned char bcast[kBcastBytes];
  int count;
  int flag;
};

// All threads of the CTA (blockDim.x a multiple of 32, at most 1024) call every method in the same
// order with the same arguments. Every method that reuses a shared buffer starts with a barrier, so a
// result returned as a pointer stays valid until the next call of that kind.
class DeviceBlock {
 public:
  __device__ explicit DeviceBlock(BlockShared& sh) : sh_(sh) {}

  __device__ bool leader() const { return threadIdx.x == 0; }
  __device__ int chunk() const { return BlockShared::kChunk; }
  __device__ int scratch_len() const { return BlockShared::kScratch; }
  __device__ int cdf_segment() const { return BlockShared::kTile; }
  __device__ double* f64_scratch() const { return sh_.f64; }
  __device__ int32_t* i32_scratch() const { return sh_.i32; }
  __device__ void barrier() const { __syncthreads(); }

  template <class F>
  __device__ void for_each(int n, F f) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) f(i);
    __syncthreads();
  }

  template <class T, class F, class Op>
  __device__ T reduce(int n, T identity, F f, Op op) {
    T acc = identity;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc = op(acc, f(i));
    return block_fold(sh_.red, acc, op);
  }

  // Values are produced in parallel, kTile at a time, into shared memory; the leader consumes them in
  // order. The sequential part is the leader's chain of dependent double additions: about n of them.
  template <class S, class F, class G>
  __device__ S sequential(int n, S s, F value, G step) {
    static_assert(sizeof(S) <= BlockShared::kBcastBytes, "sequential: state too large to broadcast");
    bool stop = false;
    for (int base = 0; base < n && !stop; base += BlockShared::kTile) {
      const int m = n - base < BlockShared::kTile ? n - base : BlockShared::kTile;
      __syncthreads();  // the leader is done with the previous tile
      for (int j = threadIdx.x; j < m; j += blockDim.x) sh_.tile[j] = value(base + j);
      __syncthreads();
      if (threadIdx.x == 0) {
        // Loads in batches ahead of the steps: the issue is in order, so a load per step would put the
        // shared-memory latency on the chain of additions.
        constexpr int kBatch = 8;
        bool stopped = false;
        for (int j0 = 0; j0 < m && !stopped; j0 += kBatch) {
          double v[kBatch];
#pragma unroll
          for (int k = 0; k < kBatch; ++k) v[k] = j0 + k < m ? sh_.tile[j0 + k] : 0.0;
#pragma unroll
          for (int k = 0; k < kBatch; ++k)
            if (!stopped && j0 + k < m) stopped = step(s, base + j0 + k, v[k]);
        }
        sh_.flag = stopped;
      }
      __syncthreads();
      stop = sh_.flag != 0;
    }
    __syncthreads();
    if (threadIdx.x == 0) std::memcpy(sh_.bcast, &s, sizeof(S));
    __syncthreads();
    std::memcpy(&s, sh_.bcast, sizeof(S));
    return s;
  }

  // out[b] = the sum, in index order, of value(i).w over the i with value(i).b == b, for b in [0, nb);
  // returns the sum of every value(i).w in index order. The leader makes all the additions, in order,
  // row::kBucketBatch values at a time (row::add_bucket_batch), so the shared-memory latency of the
  // bucket sums is paid once per batch rather than once per addition.
  template <class F>
  __device__ double bucket_sums(int n, int nb, F value, double* out) {
    static_assert(sizeof(row::BucketValue) == 2 * sizeof(double), "BucketValues fill two tile doubles");
    constexpr int kPairs = BlockShared::kTile / 2;
    auto* pairs = reinterpret_cast<row::BucketValue*>(sh_.tile);
    double total = 0.0;
    __syncthreads();
    for (int b = threadIdx.x; b < nb; b += blockDim.x) out[b] = 0.0;
    for (int base = 0; base < n; base += kPairs) {
      const int m = n - base < kPairs ? n - base : kPairs;
      __syncthreads();  // the leader is done with the previous tile; out is zeroed
      for (int j = threadIdx.x; j < m; j += blockDim.x) pairs[j] = value(base + j);
      __syncthreads();
      if (threadIdx.x == 0) {
        for (int j0 = 0; j0 < m; j0 += row::kBucketBatch) {
          row::BucketValue v[row::kBucketBatch];
#pragma unroll
          for (int k = 0; k < row::kBucketBatch; ++k) v[k] = j0 + k < m ? pairs[j0 + k] : row::BucketValue{0.0, -1};
          row::add_bucket_batch(v, out, total);
        }
      }
    }
    __syncthreads();
    if (threadIdx.x == 0) std::memcpy(sh_.bcast, &total, sizeof total);
    __syncthreads();
    std::memcpy(&total, sh_.bcast, sizeof total);
    return total;
  }

  template <class F>
  __device__ const uint32_t* histogram(int n, F digit) {
    __syncthreads();  // callers have read the previous counts
    for (int j = threadIdx.x; j < 256; j += blockDim.x) sh_.hist[j] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const int d = digit(i);
      if (d >= 0) atomicAdd(&sh_.hist[d], 1u);
    }
    __syncthreads();
    return sh_.hist;
  }

  template <class F>
  __device__ int gather(int n, F key_of) {
    __syncthreads();
    if (threadIdx.x == 0) sh_.count = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      uint64_t key;
      if (key_of(i, key)) {
        const int slot = atomicAdd(&sh_.count, 1);
        if (slot < BlockShared::kChunk) sh_.keys[slot] = key;
      }
    }
    __syncthreads();
    return sh_.count < BlockShared::kChunk ? sh_.count : BlockShared::kChunk;
  }

  // Each key's rank among the gathered ones (they are distinct) is its place in the sorted order.
  __device__ const uint64_t* sort(int count) {
    __syncthreads();  // callers have read the previous sorted keys
    for (int t = threadIdx.x; t < count; t += blockDim.x) sh_.sorted[row::chunk_rank(sh_.keys, count, t)] = sh_.keys[t];
    __syncthreads();
    return sh_.sorted;
  }

 private:
  BlockShared& sh_;
};

// The reduce() of DeviceBlock alone, on FoldShared (for light one-row kernels such as argmax).
class FoldBlock {
 public:
  __device__ explicit FoldBlock(FoldShared& sh) : sh_(sh) {}
  template <class T, class F, class Op>
  __device__ T reduce(int n, T identity, F f, Op op) {
    T acc = identity;
    for (int i = threadIdx.x; i < n; i += blockDim.x) acc = op(acc, f(i));
    return block_fold(sh_.red, acc, op);
  }

 private:
  FoldShared& sh_;
};

}  // namespace specdec::cuda
