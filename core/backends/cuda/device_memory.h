// Device memory of the CUDA backend: owning device / pinned buffers and the Context (device, stream, cuBLAS
// handle) every operation of a model and its caches runs on. Private to core/backends/cuda.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <utility>

#include "core/error.h"
#include "kernels/cuda/common.cuh"

#define SPECDEC_CUBLAS_CHECK(call)                                                               \
  do {                                                                                           \
    const cublasStatus_t st_ = (call);                                                           \
    SPECDEC_CHECK(st_ == CUBLAS_STATUS_SUCCESS, #call, " failed: ", cublasGetStatusString(st_)); \
  } while (0)

namespace specdec::cuda {

// Owning CUDA memory from an allocator A: A::alloc(&p, bytes) (throws on failure) and A::free(p) (never
// throws: a free error at process exit is ignored). Movable, not copyable.
template <class A>
class CudaMem {
 public:
  CudaMem() = default;
  explicit CudaMem(size_t bytes) {
    if (bytes) A::alloc(&p_, bytes);
    bytes_ = bytes;
  }
  ~CudaMem() { reset(); }
  CudaMem(CudaMem&& o) noexcept : p_(std::exchange(o.p_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  CudaMem& operator=(CudaMem&& o) noexcept {
    if (this != &o) {
      reset();
      p_ = std::exchange(o.p_, nullptr);
      bytes_ = std::exchange(o.bytes_, 0);
    }
    return *this;
  }
  void reset() noexcept {
    if (p_) A::free(p_);
    p_ = nullptr;
    bytes_ = 0;
  }
  // At least `bytes` (contents lost when it grows). True when the buffer moved.
  bool reserve(size_t bytes) {
    if (bytes <= bytes_) return false;
    reset();
    *this = CudaMem(bytes);
    return true;
  }
  template <typename T = void>
  T* get() const {
    return static_cast<T*>(p_);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

struct DeviceAlloc {
  static void alloc(void** p, size_t bytes) { SPECDEC_CUDA_CHECK(cudaMalloc(p, bytes)); }
  static void free(void* p) noexcept { (void)cudaFree(p); }
};

struct PinnedAlloc {
  static void alloc(void** p, size_t bytes) { SPECDEC_CUDA_CHECK(cudaMallocHost(p, bytes)); }
  static void free(void* p) noexcept { (void)cudaFreeHost(p); }
};

// Owning device memory.
using DeviceMem = CudaMem<DeviceAlloc>;
// Owning page-locked host memory (async copies to and from it overlap nothing else but need no staging).
using PinnedMem = CudaMem<PinnedAlloc>;

// The device, the one stream every operation of a model and its caches runs on, and the cuBLAS handle.
struct Context {
  int device = 0;
  cudaStream_t stream = nullptr;
  cublasHandle_t cublas = nullptr;

  explicit Context(int dev);
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
};

}  // namespace specdec::cuda
