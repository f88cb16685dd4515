// Residual add, elementwise: x += y, one rounding per element, so the bits of the CPU twin. 4 elements
// per thread and step, as vectors when aligned. CPU twin: cpu::add (kernels/cpu/ops.h).
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/residual.cuh"

namespace specdec::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

// x (n) += y (n); kVec: n % 4 == 0 and both pointers 16-byte aligned.
template <bool kVec>
__global__ void __launch_bounds__(kThreads) add_kernel(float* x, const float* y, int64_t n) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t j = 4 * g;
    if constexpr (kVec) {
      float4 a = *reinterpret_cast<const float4*>(x + j);
      const float4 b = *reinterpret_cast<const float4*>(y + j);
      a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
      *reinterpret_cast<float4*>(x + j) = a;
    } else {
      for (int64_t k = j; k < j + 4 && k < n; ++k) x[k] += y[k];
    }
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

}  // namespace

void add(float* x, const float* y, int64_t n, cudaStream_t stream) {
  SPECDEC_CHECK(n >= 0, "add: non-negative n, got ", n);
  if (n == 0) return;
  const int64_t groups = (n + 3) / 4;
  const auto grid = static_cast<unsigned>(std::min<int64_t>((groups + kThreads - 1) / kThreads, kMaxBlocks));
  if (n % 4 == 0 && aligned(x, 16) && aligned(y, 16))
    add_kernel<true><<<grid, kThreads, 0, stream>>>(x, y, n);
  else
    add_kernel<false><<<grid, kThreads, 0, stream>>>(x, y, n);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
