// SwiGLU on the GPU. CPU twin: specdec::cpu::swiglu (kernels/cpu/ops.h).
#pragma once

#include <cuda_runtime.h>

namespace specdec::cuda {

// out (T,F) = silu(gate) * up; device fp32; out may alias gate.
void swiglu(float* out, const float* gate, const float* up, int T, int F, cudaStream_t stream);

}  // namespace specdec::cuda
