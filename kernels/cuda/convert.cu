// fp32 -> f16/bf16 conversion of activations (the cuBLAS prefill path) and the KV row store, both plain
// grid-stride element-wise kernels.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/convert.cuh"

namespace specdec::cuda {
namespace {

constexpr int kThreads = 256;

int blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<int>(b < 65535 * 8 ? b : 65535 * 8);  // grid-stride loops cover the rest
}

__global__ void to_f16_kernel(__half* out, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float v = x[i];
    if (fabsf(v) > 65504.f) v = copysignf(65504.f, v);  // saturate; NaN compares false and stays NaN
    out[i] = __float2half_rn(v);
  }
}

__global__ void to_bf16_kernel(__nv_bfloat16* out, const float* x, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(x[i]);
}

// One block per row; threads stride over kv_dim.
__global__ void kv_store_kernel(float* const* k_base, float* const* v_base, const float* k, const float* v,
                                const int32_t* row_seq, const int32_t* row_slot, int kv_dim) {
  const int r = blockIdx.x;
  const int b = row_seq[r];
  const int64_t dst = static_cast<int64_t>(row_slot[r]) * kv_dim;
  const int64_t src = static_cast<int64_t>(r) * kv_dim;
  float* kd = k_base[b] + dst;
  float* vd = v_base[b] + dst;
  for (int i = threadIdx.x; i < kv_dim; i += blockDim.x) {
    kd[i] = k[src + i];
    vd[i] = v[src + i];
  }
}

}  // namespace

void convert_f32(void* out, cpu::DType out_t, const float* x, int64_t n, cudaStream_t stream) {
  SPECDEC_CHECK(out_t == cpu::DType::F16 || out_t == cpu::DType::BF16, "convert_f32 to f16 or bf16, got ",
                cpu::dtype_info(out_t).name);
  if (n <= 0) return;
  if (out_t == cpu::DType::F16)
    to_f16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<__half*>(out), x, n);
  else
    to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream>>>(static_cast<__nv_bfloat16*>(out), x, n);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

void kv_store(float* const* k_base, float* const* v_base, const float* k, const float* v, const int32_t* row_seq,
              const int32_t* row_slot, int R, int kv_dim, cudaStream_t stream) {
  if (R <= 0) return;
  kv_store_kernel<<<R, kThreads, 0, stream>>>(k_base, v_base, k, v, row_seq, row_slot, kv_dim);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
