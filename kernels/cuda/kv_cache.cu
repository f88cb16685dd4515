// KV-cache compaction on the GPU: after a tree verification keep the accepted path, slot base + rows[i]
// moving to base + i in every layer. CPU twin: specdec::KVCache::compact (core/model/model.cpp).
// Two launches on one stream: gather the moving slots into scratch, then write them to their new places;
// the stream orders every read of a slot before any write to it, which makes the in-place move safe for
// any strictly increasing rows (rows = {1, 2, 3} reads slot 2 after slot 1 was read, not written).
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/kv_cache.cuh"

namespace specdec::cuda {
namespace {

// Slot i takes slot rows[i] unless it already holds it. A row out of range (rows[i] < i, or past the
// capacity: a broken precondition the host cannot check on device data) is skipped by both kernels
// rather than read or written out of bounds.
__device__ bool moves(const int32_t* rows, int i, int base, int capacity) {
  const int r = rows[i];
  return r > i && r < capacity - base;
}

// n floats from src to dst; float4 when vec (n % 4 == 0 and both rows 16-byte aligned).
__device__ void copy_row(float* dst, const float* src, int n, bool vec) {
  if (vec) {
    for (int i = threadIdx.x; i < n / 4; i += blockDim.x)
      reinterpret_cast<float4*>(dst)[i] = reinterpret_cast<const float4*>(src)[i];
  } else {
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src[i];
  }
}

// grid (n_rows, n_layers): scratch [layer][i] = cache [layer][base + rows[i]].
__global__ void gather_kernel(float* scratch, const float* cache, int capacity, int kv_dim, int base,
                              const int32_t* rows, int n_rows, bool vec) {
  const int i = blockIdx.x, layer = blockIdx.y;
  if (!moves(rows, i, base, capacity)) return;
  copy_row(scratch + (static_cast<int64_t>(layer) * n_rows + i) * kv_dim,
           cache + (static_cast<int64_t>(layer) * capacity + base + rows[i]) * kv_dim, kv_dim, vec);
}

// grid (n_rows, n_layers): cache [layer][base + i] = scratch [layer][i].
__global__ void scatter_kernel(float* cache, const float* scratch, int capacity, int kv_dim, int base,
                               const int32_t* rows, int n_rows, bool vec) {
  const int i = blockIdx.x, layer = blockIdx.y;
  if (!moves(rows, i, base, capacity)) return;
  copy_row(cache + (static_cast<int64_t>(layer) * capacity + base + i) * kv_dim,
           scratch + (static_cast<int64_t>(layer) * n_rows + i) * kv_dim, kv_dim, vec);
}

}  // namespace

void kv_compact(float* cache, int n_layers, int capacity, int kv_dim, int base, const int32_t* rows, int n_rows,
                float* scratch, cudaStream_t stream) {
  SPECDEC_CHECK(n_layers >= 0 && n_layers <= 65535 && kv_dim > 0 && n_rows >= 0,
                "kv_compact n_layers in 0..65535, kv_dim > 0, n_rows >= 0, got ", n_layers, ", ", kv_dim, ", ", n_rows);
  SPECDEC_CHECK(base >= 0 && base + n_rows <= capacity, "kv_compact base + n_rows <= capacity ", capacity,
                ", got base ", base, " + ", n_rows);
  if (n_layers == 0 || n_rows == 0) return;
  SPECDEC_CHECK(cache && rows && scratch, "kv_compact cache, rows and scratch set");
  const bool vec =
      kv_dim % 4 == 0 && (reinterpret_cast<uintptr_t>(cache) | reinterpret_cast<uintptr_t>(scratch)) % 16 == 0;
  // One block per (row, layer); threads to cover a row in one pass up to 256 (kv_dim = 1024 as float4s).
  const int per_row = vec ? kv_dim / 4 : kv_dim;
  const int threads = per_row >= 256 ? 256 : (per_row + 31) / 32 * 32;
  const dim3 grid(n_rows, n_layers);
  gather_kernel<<<grid, threads, 0, stream>>>(scratch, cache, capacity, kv_dim, base, rows, n_rows, vec);
  SPECDEC_CUDA_CHECK_LAUNCH();
  scatter_kernel<<<grid, threads, 0, stream>>>(cache, scratch, capacity, kv_dim, base, rows, n_rows, vec);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
