// CudaKVCache (llama_cuda_impl.h): K and V in device memory, copied, compacted and read back on the owning
// model's stream; LlamaCuda::new_cache and download_kv.
#include <algorithm>

#include "core/backends/cuda/llama_cuda_impl.h"
#include "core/error.h"
#include "core/model/batch_plan.h"
#include "kernels/cuda/kv_cache.cuh"

namespace specdec::cuda {

void CudaKVCache::copy_prefix(const KVCache& src, int n) {
  const auto* s = dynamic_cast<const CudaKVCache*>(&src);
  SPECDEC_CHECK(s != nullptr && s->owner_ == owner_ && s->kv_dim_ == kv_dim_ && s->n_layers_ == n_layers_,
                "a KV cache prefix from a CUDA cache of the same model and layer count");
  SPECDEC_CHECK(n >= 0 && n <= s->size() && n <= capacity_, "a KV cache prefix of 0..", std::min(s->size(), capacity_),
                " slots, got ", n);
  SPECDEC_CUDA_CHECK(cudaSetDevice(ctx_->device));
  const size_t bytes = sizeof(float) * static_cast<size_t>(n) * kv_dim_;
  for (int l = 0; l < n_layers_; ++l) {
    SPECDEC_CUDA_CHECK(cudaMemcpyAsync(k_layer(l), s->k_layer(l), bytes, cudaMemcpyDeviceToDevice, ctx_->stream));
    SPECDEC_CUDA_CHECK(cudaMemcpyAsync(v_layer(l), s->v_layer(l), bytes, cudaMemcpyDeviceToDevice, ctx_->stream));
  }
  n_ = n;
}

void CudaKVCache::compact(int base, std::span<const int32_t> rows) {
  check_compact(base, rows);
  const int n = static_cast<int>(rows.size());
  int first = 0;  // rows[i] == i for i < first: those slots stay where they are
  while (first < n && rows[first] == first) ++first;
  if (first < n) {
    const int m = n - first;
    std::vector<int32_t> shifted(m);
    for (int j = 0; j < m; ++j) shifted[j] = rows[first + j] - first;
    SPECDEC_CUDA_CHECK(cudaSetDevice(ctx_->device));
    const size_t scratch_bytes = static_cast<size_t>(m) * kv_dim_ * n_layers_ * sizeof(float);
    if (scratch_bytes > scratch_.bytes()) {
      SPECDEC_CUDA_CHECK(cudaStreamSynchronize(ctx_->stream));  // an earlier compact may still read it
      scratch_.reserve(scratch_bytes);
    }
    // From pageable memory: the call returns once `shifted` is staged, so it may go out of scope.
    SPECDEC_CUDA_CHECK(
        cudaMemcpyAsync(rows_.get(), shifted.data(), sizeof(int32_t) * m, cudaMemcpyHostToDevice, ctx_->stream));
    kv_compact(k_.get<float>(), n_layers_, capacity_, kv_dim_, base + first, rows_.get<int32_t>(), m,
               scratch_.get<float>(), ctx_->stream);
    kv_compact(v_.get<float>(), n_layers_, capacity_, kv_dim_, base + first, rows_.get<int32_t>(), m,
               scratch_.get<float>(), ctx_->stream);
  }
  n_ = base + n;
}

void CudaKVCache::move_slot(int from, int to) {
  SPECDEC_CUDA_CHECK(cudaSetDevice(ctx_->device));
  const size_t bytes = sizeof(float) * kv_dim_;
  for (int l = 0; l < n_layers_; ++l) {
    SPECDEC_CUDA_CHECK(cudaMemcpyAsync(k_layer(l) + static_cast<size_t>(to) * kv_dim_,
                                       k_layer(l) + static_cast<size_t>(from) * kv_dim_, bytes,
                                       cudaMemcpyDeviceToDevice, ctx_->stream));
    SPECDEC_CUDA_CHECK(cudaMemcpyAsync(v_layer(l) + static_cast<size_t>(to) * kv_dim_,
                                       v_layer(l) + static_cast<size_t>(from) * kv_dim_, bytes,
                                       cudaMemcpyDeviceToDevice, ctx_->stream));
  }
}

std::unique_ptr<KVCache> LlamaCuda::new_cache(int capacity, int n_layers) const {
  const ModelConfig& c = config();
  n_layers = cache_layers(c, capacity, n_layers);
  SPECDEC_CUDA_CHECK(cudaSetDevice(impl_->ctx->device));
  return std::make_unique<CudaKVCache>(impl_.get(), impl_->ctx, capacity, n_layers, c.kv_dim());
}

void download_kv(const KVCache& cache, int layer, std::vector<float>& k, std::vector<float>& v) {
  const auto* c = dynamic_cast<const CudaKVCache*>(&cache);
  SPECDEC_CHECK(c != nullptr, "a KV cache made by a LlamaCuda");
  SPECDEC_CHECK(layer >= 0 && layer < c->n_layers(), "a cache layer in 0..", c->n_layers() - 1, ", got ", layer);
  Context& ctx = c->context();
  const size_t n = static_cast<size_t>(c->size()) * c->kv_dim();
  k.resize(n);
  v.resize(n);
  SPECDEC_CUDA_CHECK(cudaSetDevice(ctx.device));
  SPECDEC_CUDA_CHECK(cudaStreamSynchronize(ctx.stream));  // pending forwards / compactions first
  if (n == 0) return;
  SPECDEC_CUDA_CHECK(cudaMemcpy(k.data(), c->k_layer(layer), sizeof(float) * n, cudaMemcpyDeviceToHost));
  SPECDEC_CUDA_CHECK(cudaMemcpy(v.data(), c->v_layer(layer), sizeof(float) * n, cudaMemcpyDeviceToHost));
}

}  // namespace specdec::cuda
