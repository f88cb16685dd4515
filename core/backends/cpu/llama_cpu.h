// LlamaCpu: the Llama-family forward on the CPU (fp32 compute; weights f32/f16/bf16 or GGML-quantized,
// read in place). The reference backend: the CUDA backend (core/backends/cuda) is checked against it.
#pragma once

#include <memory>
#include <vector>

#include "core/backends/registry.h"
#include "core/model/loader.h"
#include "core/model/model.h"

namespace specdec {

class LlamaCpu final : public Model {
 public:
  explicit LlamaCpu(std::shared_ptr<const LoadedModel> model);

  const ModelConfig& config() const override { return model_->config; }
  const char* device() const override { return "cpu"; }
  std::unique_ptr<KVCache> new_cache(int capacity, int n_layers = -1) const override;
  // Not thread-safe: one forward at a time per LlamaCpu (it reuses scratch buffers).
  void forward_batch(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                     std::span<ForwardResult> out) override;
  void lm_head(std::span<const float> hidden, int n, std::vector<float>& logits) override;

  const LoadedModel& loaded() const { return *model_; }

 private:
  void capture_layer_outputs(int l, std::span<const ForwardRequest> reqs, std::span<const int> row0,
                             std::span<ForwardResult> out) const;

  std::shared_ptr<const LoadedModel> model_;
  // Scratch, (R, ...) with R the tokens of the whole batch.
  std::vector<float> x_, xb_, q_, k_, v_, att_, gate_, up_, rows_;
  std::vector<float> logits_;   // (selected rows, V) of a batch of B > 1 sequences
  std::vector<float> rope_cs_;  // (R, head_dim): RoPE (cos, sin) pairs of each row's position
  std::vector<uint8_t> mask_;
};

// The "cpu" entry of the backend registry (core/backends/registry.h).
BackendInfo cpu_backend_info();

}  // namespace specdec
