// LlamaCuda: the Llama-family forward on one CUDA GPU behind specdec::Model, with the semantics of
// LlamaCpu (core/backends/cpu/llama_cpu.h, its reference): batched sequences, positions, tree masks, n_logits,
// hidden states, early-exit caches, the same validation and errors. This header includes no CUDA header:
// host code compiled by any C++ compiler makes and uses the model; the CUDA parts live in this folder's sources.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/backends/registry.h"
#include "core/model/loader.h"
#include "core/model/model.h"

namespace specdec::cuda {

struct CudaModelOptions {
  int device = 0;
  // Projections over at most this many token rows (decode, verification blocks, batches of them, short
  // prompts) run cuda::matmul_small on the weights as stored: batch-invariant, so a block equals its single
  // steps bit for bit. More rows (prefill) run cuBLAS on f16/bf16 weights. Must be >= 1.
  int small_rows = 256;
  // Capture the decode step (B = 1, T = 1, causal, one logits row) as a CUDA graph and replay it. The
  // environment variable SPECDEC_CUDA_GRAPHS=0 turns it off whatever this says.
  bool graphs = true;
};

// Counters, for tests and benchmarks.
struct CudaModelStats {
  int64_t forwards = 0;
  int64_t graph_launches = 0;  // decode steps replayed from the captured graph
  int64_t graph_captures = 0;
  int64_t graph_memory_nodes = 0;        // allocation / free nodes in the captured graphs (0: nothing allocates)
  size_t attention_workspace_bytes = 0;  // the split-K workspace the model owns (sized at creation)
  int64_t gemm_calls = 0;                // projections that ran cuBLAS (more than small_rows rows)
  std::string graph_disabled;  // why graphs are off ("" = on): the option, the environment, or a failed capture
};

class LlamaCuda final : public Model {
 public:
  // Uploads every weight once, in its stored dtype (F32, F16, BF16, Q8_0, Q4_0, Q4_1); Q4_K / Q5_K / Q6_K
  // are dequantized on the host to f16 at load (the GPU kernels take no K-quant). Throws specdec::Error
  // (one line) when the device is missing or the weights do not fit.
  explicit LlamaCuda(std::shared_ptr<const LoadedModel> model, const CudaModelOptions& options = {});
  ~LlamaCuda() override;
  LlamaCuda(const LlamaCuda&) = delete;
  LlamaCuda& operator=(const LlamaCuda&) = delete;

  const ModelConfig& config() const override;
  const char* device() const override { return "cuda"; }
  // A cache in device memory, [layer][slot][kv_dim] fp32 for K and for V; capacity fixed at creation.
  std::unique_ptr<KVCache> new_cache(int capacity, int n_layers = -1) const override;
  // Not thread-safe (one forward at a time per model: it reuses device scratch). Returns after the
  // logits / hidden states are on the host. Caches must come from this model's new_cache.
  void forward_batch(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                     std::span<ForwardResult> out) override;
  void lm_head(std::span<const float> hidden, int n, std::vector<float>& logits) override;

  CudaModelStats stats() const;
  const LoadedModel& loaded() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

std::unique_ptr<Model> make_cuda_model(std::shared_ptr<const LoadedModel> model, int device = 0);
std::unique_ptr<Model> make_cuda_model(std::shared_ptr<const LoadedModel> model, const CudaModelOptions& options);

// For tests and debugging: the K and V rows of slots 0..size()-1 of one layer of a cache made by a
// LlamaCuda, copied to the host (size() x kv_dim each).
void download_kv(const KVCache& cache, int layer, std::vector<float>& k, std::vector<float>& v);

// What the logs record about a device.
struct CudaDeviceInfo {
  std::string name;     // e.g. "NVIDIA H100 80GB HBM3"
  std::string driver;   // CUDA driver API version, e.g. "13.0"
  std::string runtime;  // CUDA runtime version
  std::string cublas;   // cuBLAS version, e.g. "13.0.0"
  size_t memory_bytes = 0;
};
CudaDeviceInfo cuda_device_info(int device = 0);

// The "cuda" entry of the backend registry (core/backends/registry.h): devices cuda and cuda:N.
BackendInfo cuda_backend_info();

}  // namespace specdec::cuda
