// Device side of test_sampling_philox_gpu: runs core/sampling/philox.h in a kernel so the test can check
// that the GPU computes bit for bit what the CPU does.
#include <cuda_runtime.h>

#include "core/error.h"
#include "core/sampling/philox.h"
#include "tests/sampling/philox_device.h"

namespace specdec::test {
namespace {

// out is (n): out[i] = uniform(seed, request, step, first_draw + i).
__global__ void uniform_kernel(double* out, int n, uint64_t seed, uint64_t request, uint32_t step,
                               uint32_t first_draw) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = uniform(seed, request, step, first_draw + static_cast<uint32_t>(i));
}

// out is (n, 4): the four words of philox4x32_10(ctr[i], key[i]); ctr (n, 4), key (n, 2).
__global__ void philox_kernel(uint32_t* out, const uint32_t* ctr, const uint32_t* key, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const PhiloxCounter c{{ctr[4 * i], ctr[4 * i + 1], ctr[4 * i + 2], ctr[4 * i + 3]}};
  const PhiloxKey k{{key[2 * i], key[2 * i + 1]}};
  const PhiloxCounter r = philox4x32_10(c, k);
  for (int w = 0; w < 4; ++w) out[4 * i + w] = r.v[w];
}

void check(cudaError_t e, const char* what) {
  SPECDEC_CHECK(e == cudaSuccess, what, " failed: ", cudaGetErrorString(e));
}

}  // namespace

void uniform_on_device(double* out, int n, uint64_t seed, uint64_t request, uint32_t step, uint32_t first_draw) {
  double* d = nullptr;
  check(cudaMalloc(&d, sizeof(double) * static_cast<size_t>(n)), "cudaMalloc");
  uniform_kernel<<<(n + 255) / 256, 256>>>(d, n, seed, request, step, first_draw);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaMemcpy(out, d, sizeof(double) * static_cast<size_t>(n), cudaMemcpyDeviceToHost);
  cudaFree(d);
  check(e, "uniform_kernel");
}

void philox_on_device(uint32_t* out, const uint32_t* ctr, const uint32_t* key, int n) {
  uint32_t *d_out = nullptr, *d_ctr = nullptr, *d_key = nullptr;
  const size_t n4 = sizeof(uint32_t) * 4 * static_cast<size_t>(n);
  const size_t n2 = sizeof(uint32_t) * 2 * static_cast<size_t>(n);
  check(cudaMalloc(&d_out, n4), "cudaMalloc");
  check(cudaMalloc(&d_ctr, n4), "cudaMalloc");
  check(cudaMalloc(&d_key, n2), "cudaMalloc");
  cudaError_t e = cudaMemcpy(d_ctr, ctr, n4, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(d_key, key, n2, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) {
    philox_kernel<<<(n + 255) / 256, 256>>>(d_out, d_ctr, d_key, n);
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) e = cudaMemcpy(out, d_out, n4, cudaMemcpyDeviceToHost);
  cudaFree(d_out);
  cudaFree(d_ctr);
  cudaFree(d_key);
  check(e, "philox_kernel");
}

}  // namespace specdec::test
