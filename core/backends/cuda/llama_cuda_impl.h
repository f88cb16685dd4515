// The private parts of LlamaCuda (core/backends/cuda/llama_cuda.h), shared by the backend's sources:
// its KV cache (kv_cache.cpp), weight upload (upload.cpp), forward and launches (forward.cpp), decode graph
// (graph.cpp). Device memory and the stream context are in device_memory.h. Not for use outside this folder.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/backends/cuda/device_memory.h"
#include "core/backends/cuda/llama_cuda.h"
#include "core/model/arch.h"
#include "kernels/cpu/ops.h"

namespace specdec::cuda {

using cpu::DType;

inline size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// K and V of every layer in device memory: [layer][slot][kv_dim] fp32 each; capacity fixed at creation.
// Every operation runs on the owning model's stream, so it is ordered with that model's forwards.
class CudaKVCache final : public KVCache {
 public:
  CudaKVCache(const LlamaCuda::Impl* owner, std::shared_ptr<Context> ctx, int capacity, int n_layers, int kv_dim)
      : KVCache(capacity, n_layers),
        owner_(owner),
        ctx_(std::move(ctx)),
        kv_dim_(kv_dim),
        k_(static_cast<size_t>(n_layers) * capacity * kv_dim * sizeof(float)),
        v_(k_.bytes()),
        rows_(static_cast<size_t>(capacity) * sizeof(int32_t)) {}

  const LlamaCuda::Impl* owner() const { return owner_; }
  Context& context() const { return *ctx_; }
  int kv_dim() const { return kv_dim_; }
  float* k_layer(int l) const { return k_.get<float>() + static_cast<size_t>(l) * capacity_ * kv_dim_; }
  float* v_layer(int l) const { return v_.get<float>() + static_cast<size_t>(l) * capacity_ * kv_dim_; }

  // Device-to-device copies of the first n slots of every layer, on the model's stream.
  void copy_prefix(const KVCache& src, int n) override;
  // One kv_compact per tensor for every slot that moves (asynchronous on the model's stream).
  void compact(int base, std::span<const int32_t> rows) override;

 protected:
  void move_slot(int from, int to) override;  // unused by compact() above; kept correct for completeness

 private:
  const LlamaCuda::Impl* owner_;
  std::shared_ptr<Context> ctx_;
  int kv_dim_;
  DeviceMem k_, v_;
  DeviceMem rows_;     // compact's row list (capacity int32)
  DeviceMem scratch_;  // kv_compact's scratch, grown on demand
};

struct DeviceWeight {
  const void* data = nullptr;  // device
  DType dtype = DType::F32;
  int64_t rows = 0, cols = 0;
};

// One DeviceWeight per LayerRole (core/model/arch.h); upload() fills those the architecture has.
struct DeviceLayer {
  std::array<DeviceWeight, kLayerRoleCount> w;
  const DeviceWeight& operator[](LayerRole r) const { return w[static_cast<size_t>(r)]; }
  DeviceWeight& operator[](LayerRole r) { return w[static_cast<size_t>(r)]; }
};

// The device-side arguments of one forward, packed into one buffer: one upload per forward. The offsets
// depend only on (R, B, L, mask bytes), so the decode graph (R = B = 1) always finds its inputs in place.
struct InputLayout {
  size_t tokens = 0, pos = 0, row_seq = 0, row_slot = 0, row0 = 0, n_past = 0, kptr = 0, vptr = 0, maskptr = 0,
         mask = 0, total = 0;
  InputLayout(int R, int B, int L, size_t mask_bytes);
};

// One forward as the launches see it (from its BatchPlan, core/model/batch_plan.h).
struct LaunchPlan {
  int R = 0, B = 0, L = 0, max_T = 0, max_S = 0, n_sel = 0;
  bool head_in_place = true;                // the logits rows are all R rows in order
  std::vector<std::pair<int, int>> gather;  // otherwise (first row, count) per sequence, concatenated
  std::vector<int32_t> capture;             // layers whose outputs some request asked for (sorted, distinct)
  InputLayout lay{0, 0, 0, 0};
};

// SPECDEC_CUDA_GRAPHS=0 in the environment: decode graphs off.
bool graphs_env_off();

struct LlamaCuda::Impl {
  std::shared_ptr<const LoadedModel> model;
  CudaModelOptions opts;
  std::shared_ptr<Context> ctx;

  DeviceMem arena;  // every weight, back to back (256-byte aligned)
  DeviceWeight tok_emb, final_norm, output;
  std::vector<DeviceLayer> layers;
  int64_t max_weight_elems = 0;  // the largest matrix: the f16 dequantization scratch of the GEMM path
  int kmax = 0;                  // the largest in_features of any projection

  // Scratch, sized for rows_cap rows (sel_cap logits rows); grown on demand.
  int rows_cap = 0, sel_cap = 0;
  DeviceMem x, xb, q, k, v, att, gate, up, mm, head_rows, logits;
  DeviceMem w16, act16;  // GEMM path only (never inside the decode graph)
  DeviceMem ones;        // rows_cap 1.0f: the q/k/v bias broadcast (add_bias), only when the model has biases
  DeviceMem in_d;        // the packed per-forward inputs (InputLayout)
  // The attention's split-K workspace (attention.cuh: caller-owned): sized once here, at model creation, for
  // the model's context (the max_S of every launch) and this GPU; never reallocated, so every captured decode
  // graph holds the same pointer and no allocation; freed with the model, after its stream's work (every
  // forward ends with a stream synchronisation, and ~Impl synchronises once more before any buffer goes).
  DeviceMem attn_ws;
  PinnedMem in_h, logits_h, hidden_h;
  DeviceMem layer_out;  // captured layer outputs, (capture.size(), R, H); grown on demand
  PinnedMem layer_out_h;
  uint64_t epoch = 0;  // bumped whenever a buffer the decode graph uses moves

  // Decode graphs by layer count: the target's step and an early-exit drafter's step (same model, fewer
  // layers) alternate during speculative decoding, so each keeps its own.
  struct Graph {
    cudaGraphExec_t exec = nullptr;
    int max_S = -1;
    uint64_t epoch = 0;
    bool warmed = false;  // one plain run first: lazy module loading and attributes happen outside capture
  };
  std::map<int, Graph> graphs;
  bool graphs_on = true;
  CudaModelStats stats;

  Impl(std::shared_ptr<const LoadedModel> m, const CudaModelOptions& o);
  ~Impl() {
    if (ctx && ctx->stream) (void)cudaStreamSynchronize(ctx->stream);  // nothing in flight uses attn_ws & co.
    for (auto& [L, g] : graphs)
      if (g.exec) (void)cudaGraphExecDestroy(g.exec);
  }

  void upload();
  void ensure_scratch(int R, int n_sel, bool hidden);
  void lm_head(std::span<const float> hidden, int n, std::vector<float>& logits_out);
  void proj(float* out, const float* x, const DeviceWeight& w, int R, int N, int K);
  void add_bias(float* out, const DeviceWeight& b, int R, int N);
  void enqueue(const LaunchPlan& p);
  bool launch_graph(const LaunchPlan& p);
  void forward(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs, std::span<ForwardResult> out);
};

}  // namespace specdec::cuda
