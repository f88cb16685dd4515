// Typed device buffers for the GPU tests: allocate, upload a host vector, download it back.
#pragma once

#include <cstddef>
#include <vector>

#include "kernels/cuda/device.h"

namespace specdec::test {

template <typename T>
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t n) : n_(n), p_(static_cast<T*>(cuda::device_alloc((n ? n : 1) * sizeof(T)))) {}
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cuda::device_free(p_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  void upload(const std::vector<T>& host) { cuda::copy_to_device(p_, host.data(), host.size() * sizeof(T)); }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    cuda::copy_to_host(host.data(), p_, n_ * sizeof(T));
    return host;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }

 private:
  size_t n_;
  T* p_;
};

}  // namespace specdec::test
