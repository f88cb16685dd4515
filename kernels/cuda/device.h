// Host-side helpers of the CUDA backend that need no CUDA headers in the caller.
#pragma once

#include <cstddef>
#include <string>

namespace specdec::cuda {

// Number of usable CUDA devices; 0 when there is no driver or no device (cudaGetDeviceCount errors on a
// machine with the toolkit but no GPU, which counts as "no device").
int device_count();
std::string device_name(int device = 0);

// Plain device buffers for tests and the backend (throw specdec::Error on failure).
void* device_alloc(size_t bytes);
void device_free(void* p);
void copy_to_device(void* dst, const void* src, size_t bytes);
void copy_to_host(void* dst, const void* src, size_t bytes);
void device_synchronize();

}  // namespace specdec::cuda
