// Host launchers of the Philox test kernels (philox_device.cu); callers need no CUDA header.
// Synchronous; outputs first, host pointers; throw specdec::Error on a CUDA failure.
#pragma once

#include <cstdint>

namespace specdec::test {

// out (n) = uniform(seed, request, step, first_draw + i) computed on the device.
void uniform_on_device(double* out, int n, uint64_t seed, uint64_t request, uint32_t step, uint32_t first_draw);
// out (n, 4) = philox4x32_10(ctr (n, 4), key (n, 2)) computed on the device.
void philox_on_device(uint32_t* out, const uint32_t* ctr, const uint32_t* key, int n);

}  // namespace specdec::test
