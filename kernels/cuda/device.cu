// Device discovery and raw buffer helpers for the CUDA backend.
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/device.h"

namespace specdec::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  SPECDEC_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

void* device_alloc(size_t bytes) {
  void* p = nullptr;
  SPECDEC_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}
void device_free(void* p) { SPECDEC_CUDA_CHECK(cudaFree(p)); }
void copy_to_device(void* dst, const void* src, size_t bytes) {
  SPECDEC_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, size_t bytes) {
  SPECDEC_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void device_synchronize() { SPECDEC_CUDA_CHECK(cudaDeviceSynchronize()); }

}  // namespace specdec::cuda
