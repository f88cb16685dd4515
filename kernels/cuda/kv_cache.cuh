// KV-cache compaction on the GPU: keep the accepted path of a verified tree. CPU twin:
// specdec::KVCache::compact (core/model/model.h) on a CPU cache.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace specdec::cuda {

// cache: device, [n_layers][capacity][kv_dim] fp32 (one such array for K, one for V: call twice, or pass
// both). For every layer, slot base + rows[i] moves to slot base + i, i < n_rows; rows (device, n_rows
// entries) strictly increasing, so rows[i] >= i. Correct in place for any such rows (a slot that is
// both a source and a destination is read before it is written). scratch: device, >= n_rows * kv_dim *
// n_layers floats.
void kv_compact(float* cache, int n_layers, int capacity, int kv_dim, int base, const int32_t* rows, int n_rows,
                float* scratch, cudaStream_t stream);

}  // namespace specdec::cuda
