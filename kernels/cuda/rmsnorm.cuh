// RMSNorm on the GPU. CPU twin: specdec::cpu::rmsnorm (kernels/cpu/ops.h), same argument order.
#pragma once

#include <cuda_runtime.h>

namespace specdec::cuda {

// out (T,H) = x (T,H) / sqrt(mean(x^2) + eps) * w (H); device pointers, fp32; out may alias x.
// One block per row; enqueued on `stream`.
void rmsnorm(float* out, const float* x, const float* w, int T, int H, float eps, cudaStream_t stream);

}  // namespace specdec::cuda
