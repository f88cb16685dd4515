// GPU tests: the rule for when a GPU test may skip (exit 77, reported by CTest as skipped, never passed).
//
// Only a real absence of devices skips: cudaGetDeviceCount says cudaErrorNoDevice (or succeeds with 0), or
// it says cudaErrorInsufficientDriver on a machine with no NVIDIA driver installed at all (libcuda.so.1
// cannot be loaded: a CPU-only machine with the toolkit). Every other error (a driver older than the
// runtime, an initialisation failure, a stub libcuda, ...) is a failure: exit 1 with the error's name, so a
// broken GPU machine never reports "100% tests passed". SPECDEC_REQUIRE_GPU=1 (scripts/gpu-check sets it)
// turns even a real absence into a failure.
//
// Test hook: SPECDEC_TEST_FAKE_CUDA_ERROR=<cudaError_t value> replaces cudaGetDeviceCount's answer with that
// error on a machine whose driver is installed (tests/kernels/test_gpu_harness.cpp checks each verdict
// through a real gpu test binary on the CPU machine).
#pragma once

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace specdec::test {

enum class GpuVerdict { Run, Skip, Fail };

struct GpuProbe {
  GpuVerdict verdict;
  std::string why;
};

// The rule, as a pure function (tested on the CPU): err = cudaGetDeviceCount's status, count its count,
// driver_installed whether libcuda.so.1 loads, require whether a skip must fail instead.
inline GpuProbe classify_gpu_probe(int err, int count, bool driver_installed, bool require) {
  GpuProbe p;
  if (err == cudaSuccess && count > 0) return {GpuVerdict::Run, std::to_string(count) + " CUDA device(s)"};
  const char* name = cudaGetErrorName(static_cast<cudaError_t>(err));
  if (err == cudaSuccess || err == cudaErrorNoDevice) {
    p = {GpuVerdict::Skip, std::string("no CUDA device (cudaGetDeviceCount: ") + name + ")"};
  } else if (err == cudaErrorInsufficientDriver && !driver_installed) {
    p = {GpuVerdict::Skip, "no NVIDIA driver installed (libcuda.so.1 not found): no CUDA device"};
  } else {
    return {GpuVerdict::Fail, std::string("cudaGetDeviceCount failed with ") + name + " (" + std::to_string(err) +
                                  "): a broken driver or runtime, not an absent device"};
  }
  if (require) return {GpuVerdict::Fail, p.why + ", and SPECDEC_REQUIRE_GPU=1"};
  return p;
}

inline bool nvidia_driver_installed() {
  void* h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (h) dlclose(h);
  return h != nullptr;
}

inline GpuProbe probe_gpu() {
  const char* require = std::getenv("SPECDEC_REQUIRE_GPU");
  const bool req = require && std::string_view(require) == "1";
  if (const char* fake = std::getenv("SPECDEC_TEST_FAKE_CUDA_ERROR"); fake && *fake)
    return classify_gpu_probe(std::atoi(fake), 0, true, req);
  int n = 0;
  const cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) (void)cudaGetLastError();  // clear the sticky error
  return classify_gpu_probe(err, err == cudaSuccess ? n : 0, err == cudaSuccess || nvidia_driver_installed(), req);
}

// Called first by every gpu test's main (catch_main_gpu.cpp): returns when a device is usable, else exits
// 77 (skip) or 1 (failure) after one line saying why.
inline void require_gpu_or_skip() {
  const GpuProbe p = probe_gpu();
  if (p.verdict == GpuVerdict::Run) return;
  if (p.verdict == GpuVerdict::Skip) {
    std::printf("skipping GPU tests: %s\n", p.why.c_str());
    std::exit(77);
  }
  std::fprintf(stderr, "GPU tests FAILED before running: %s\n", p.why.c_str());
  std::exit(1);
}

}  // namespace specdec::test
