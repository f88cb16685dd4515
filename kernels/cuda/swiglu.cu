// SwiGLU, elementwise: out = silu(gate) * up = gate / (1 + exp(-gate)) * up, evaluated in the CPU twin's
// order without contraction; only expf differs (CUDA's: <= 2 ulp, glibc's: < 1 ulp). 4 elements per
// thread and step, as vectors when aligned. CPU twin: cpu::swiglu (kernels/cpu/ops.h).
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/swiglu.cuh"

namespace specdec::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

__device__ __forceinline__ float silu_mul(float g, float u) {
  return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
}

// out (n) = silu(gate) * up; kVec: n % 4 == 0 and every pointer 16-byte aligned. out may alias gate
// (each element is read before it is written, by the same thread).
template <bool kVec>
__global__ void __launch_bounds__(kThreads)
    swiglu_kernel(float* out, const float* gate, const float* __restrict__ up, int64_t n) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t j = 4 * g;
    if constexpr (kVec) {
      const float4 a = *reinterpret_cast<const float4*>(gate + j), b = *reinterpret_cast<const float4*>(up + j);
      *reinterpret_cast<float4*>(out + j) =
          make_float4(silu_mul(a.x, b.x), silu_mul(a.y, b.y), silu_mul(a.z, b.z), silu_mul(a.w, b.w));
    } else {
      for (int64_t k = j; k < j + 4 && k < n; ++k) out[k] = silu_mul(gate[k], up[k]);
    }
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

void swiglu(float* out, const float* gate, const float* up, int T, int F, cudaStream_t stream) {
  SPECDEC_CHECK(T >= 0 && F >= 0, "swiglu: non-negative T and F, got T=", T, " F=", F);
  const int64_t n = static_cast<int64_t>(T) * F;
  if (n == 0) return;
  const int64_t groups = (n + 3) / 4;
  const auto grid = static_cast<unsigned>(std::min<int64_t>((groups + kThreads - 1) / kThreads, kMaxBlocks));
  if (n % 4 == 0 && aligned(out, 16) && aligned(gate, 16) && aligned(up, 16))
    swiglu_kernel<true><<<grid, kThreads, 0, stream>>>(out, gate, up, n);
  else
    swiglu_kernel<false><<<grid, kThreads, 0, stream>>>(out, gate, up, n);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
