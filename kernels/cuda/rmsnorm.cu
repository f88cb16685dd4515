// RMSNorm kernel: one block per token row, a block-wide sum of squares (warp shuffles, then shared
// memory across warps), then a scaled copy. Reads each row twice; rows are small (H <= 8192) and hot.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rmsnorm.cuh"

namespace specdec::cuda {
namespace {

constexpr int kThreads = 256;

__device__ float block_sum(float v) {
  __shared__ float warp_sums[kThreads / 32];
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / 32 ? warp_sums[threadIdx.x] : 0.f;
  if (warp == 0)
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;  // valid in thread 0
}

__global__ void rmsnorm_kernel(float* out, const float* x, const float* w, int H, float eps) {
  const float* xr = x + static_cast<int64_t>(blockIdx.x) * H;
  float* o = out + static_cast<int64_t>(blockIdx.x) * H;
  float ss = 0.f;
  for (int i = threadIdx.x; i < H; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss);
  __shared__ float scale;
  if (threadIdx.x == 0) scale = rsqrtf(ss / static_cast<float>(H) + eps);
  __syncthreads();
  for (int i = threadIdx.x; i < H; i += blockDim.x) o[i] = xr[i] * scale * w[i];
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* w, int T, int H, float eps, cudaStream_t stream) {
  if (T == 0) return;
  rmsnorm_kernel<<<T, kThreads, 0, stream>>>(out, x, w, H, eps);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
