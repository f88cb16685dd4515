// Context: the device, stream and cuBLAS handle of one CUDA model (device_memory.h).
#include "core/backends/cuda/device_memory.h"

namespace specdec::cuda {

Context::Context(int dev) : device(dev) {
  SPECDEC_CUDA_CHECK(cudaSetDevice(dev));
  // A blocking stream: ordered with the legacy default stream, should any library call use it.
  SPECDEC_CUDA_CHECK(cudaStreamCreate(&stream));
  const cublasStatus_t st = cublasCreate(&cublas);
  if (st != CUBLAS_STATUS_SUCCESS) {
    (void)cudaStreamDestroy(stream);
    SPECDEC_FAIL("cublasCreate failed: ", cublasGetStatusString(st));
  }
  SPECDEC_CUBLAS_CHECK(cublasSetStream(cublas, stream));
  // Default math: no TF32 for fp32 GEMMs unless asked (the fp32 GEMM below is pedantic anyway).
  SPECDEC_CUBLAS_CHECK(cublasSetMathMode(cublas, CUBLAS_DEFAULT_MATH));
}

Context::~Context() {
  if (cublas) (void)cublasDestroy(cublas);
  if (stream) (void)cudaStreamDestroy(stream);
}

}  // namespace specdec::cuda
