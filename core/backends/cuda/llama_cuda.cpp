// LlamaCuda: the Llama forward on one GPU, the fast twin of LlamaCpu (core/backends/cpu/llama_cpu.cpp), whose
// semantics it follows step for step: projections over all R = sum(T_b) rows of the batch, attention per
// sequence (one launch per layer for the whole batch), early-exit caches, n_logits, hidden states.
//
// Numerics (what equals what):
// - Projections over R <= small_rows rows use cuda::matmul_small on the weights as stored (F32/F16/BF16:
//   fp32 activations and accumulation; Q8_0/Q4_0/Q4_1: activations quantized per 32-block as the CPU
//   does, integer block dots). It is batch-invariant, and so are the other per-row kernels (embedding,
//   RMSNorm, RoPE, SwiGLU, residual), so a verification block of T tokens equals T single steps bit for
//   bit, and greedy speculative decoding equals greedy AR decoding on the GPU token for token. Attention is
//   batch-invariant too (splits at fixed slot positions, kernels/cuda/attention.cu), for any block and batch;
//   the one exception is a tree node against its branch run as a chain when the tree block crosses a
//   256-slot split boundary (the branch's sums group differently: a last-bit difference).
// - More rows (prefill) use cuBLAS: F32 weights run an fp32 GEMM with CUBLAS_COMPUTE_32F_PEDANTIC (no
//   TF32); F16/BF16 weights are used in place and the activations rounded to the same type; quantized
//   weights are dequantized per projection into an f16 scratch (the exact value rounded to nearest even)
//   with f16 activations. Accumulation is fp32. Against the CPU this adds the f16 (2^-11) or bf16 (2^-8)
//   rounding of each operand; the KV entries a prefill writes then differ from a step-by-step prefill's
//   in the last bits, which is harmless (both AR and speculative runs prefill the same way).
// - Q4_K/Q5_K/Q6_K weights are dequantized on the host at load (cpu::dequantize_row, exact) and stored as
//   f16: the GPU runs the f16 path with fp32 activations where the CPU quantizes activations to Q8_K.
//
// Decode (B = 1, T = 1, causal, one logits row) is captured as a CUDA graph (one per layer count: the
// target's step and an early-exit drafter's) after one plain warm-up step, and replayed: every per-step
// value (token, position, cache slot, n_past, the cache's base pointers) is uploaded into one fixed device
// buffer before the launch and read on the device. A scratch buffer that grows (a captured pointer moves)
// re-captures; a failed capture turns graphs off for this model (stats().graph_disabled says why) and the
// step runs as plain launches. SPECDEC_CUDA_GRAPHS=0 turns them off from the start.
#include "core/backends/cuda/llama_cuda.h"

#include <library_types.h>

#include <string>

#include "core/backends/cuda/llama_cuda_impl.h"
#include "core/error.h"
#include "kernels/cuda/device.h"

namespace specdec::cuda {

// ---- LlamaCuda ---------------------------------------------------------------------------------------

LlamaCuda::LlamaCuda(std::shared_ptr<const LoadedModel> model, const CudaModelOptions& options)
    : impl_(std::make_unique<Impl>(std::move(model), options)) {}

LlamaCuda::~LlamaCuda() = default;

const ModelConfig& LlamaCuda::config() const { return impl_->model->config; }

const LoadedModel& LlamaCuda::loaded() const { return *impl_->model; }

CudaModelStats LlamaCuda::stats() const { return impl_->stats; }

void LlamaCuda::forward_batch(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                              std::span<ForwardResult> out) {
  impl_->forward(caches, reqs, out);
}

void LlamaCuda::lm_head(std::span<const float> hidden, int n, std::vector<float>& logits) {
  impl_->lm_head(hidden, n, logits);
}

std::unique_ptr<Model> make_cuda_model(std::shared_ptr<const LoadedModel> model, int device) {
  CudaModelOptions o;
  o.device = device;
  return std::make_unique<LlamaCuda>(std::move(model), o);
}

std::unique_ptr<Model> make_cuda_model(std::shared_ptr<const LoadedModel> model, const CudaModelOptions& options) {
  return std::make_unique<LlamaCuda>(std::move(model), options);
}

CudaDeviceInfo cuda_device_info(int device) {
  CudaDeviceInfo info;
  cudaDeviceProp prop{};
  SPECDEC_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  info.name = prop.name;
  info.memory_bytes = prop.totalGlobalMem;
  auto version = [](int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); };
  int drv = 0, rt = 0;
  SPECDEC_CUDA_CHECK(cudaDriverGetVersion(&drv));
  SPECDEC_CUDA_CHECK(cudaRuntimeGetVersion(&rt));
  info.driver = version(drv);
  info.runtime = version(rt);
  int major = 0, minor = 0, patch = 0;
  SPECDEC_CUBLAS_CHECK(cublasGetProperty(MAJOR_VERSION, &major));
  SPECDEC_CUBLAS_CHECK(cublasGetProperty(MINOR_VERSION, &minor));
  SPECDEC_CUBLAS_CHECK(cublasGetProperty(PATCH_LEVEL, &patch));
  info.cublas = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  return info;
}

BackendInfo cuda_backend_info() {
  BackendInfo b;
  b.name = "cuda";
  b.help = "LlamaCuda: one CUDA GPU (cuda = cuda:0)";
  b.indexed = true;
  b.check = [](int index, const std::string& device, const std::string& where) {
    const int n = device_count();
    SPECDEC_CHECK(n > 0, "no CUDA device found (", where, " ", device, ")");
    SPECDEC_CHECK(index < n, "CUDA device ", index, " not found: this machine has ", n, " (", where, " ", device, ")");
  };
  b.make = [](std::shared_ptr<const LoadedModel> model, int index) { return make_cuda_model(std::move(model), index); };
  b.describe = [](int index) {
    DeviceDescription d;
    if (index >= 0 && index < device_count()) {
      const CudaDeviceInfo info = cuda_device_info(index);
      d.gpu = info.name;
      d.driver = info.driver;
      d.cuda = info.runtime;
      d.cublas = info.cublas;
    }
    return d;
  };
  return b;
}

}  // namespace specdec::cuda
