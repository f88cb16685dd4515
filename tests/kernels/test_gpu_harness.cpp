// The GPU test harness, on the CPU: (1) the skip rule of every gpu test's main (tests/support/gpu.h), through
// a real gpu test binary with injected cudaGetDeviceCount errors; (2) the NaN-proof error norm and the
// sentinel helpers of tests/support/numeric_checks.h; (3) the attention's caller-owned split-K workspace:
// the size LlamaCuda allocates once at creation covers every launch within its bounds.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/online_softmax.cuh"
#include "tests/support/gpu.h"
#include "tests/support/numeric_checks.h"
#include "tests/support/run.h"

namespace {

using specdec::test::GpuVerdict;

// A gpu test binary, run with the environment `env` and no test selected beyond its own (a skip or a failure
// happens before Catch2 starts; with a device it would run its tests).
// SPECDEC_GPU_TEST_BINARY overrides which (e.g. one built from the old main, to see this test fail).
int run_gpu_binary(const std::string& env) {
  const char* other = std::getenv("SPECDEC_GPU_TEST_BINARY");
  return specdec::test::run("env " + env + " " + (other && *other ? other : SPECDEC_GPU_TEST_BINARY)).exit_code;
}

}  // namespace

TEST_CASE("skip rule: only an absent device skips", "[harness][gpu-skip]") {
  using specdec::test::classify_gpu_probe;
  CHECK(classify_gpu_probe(cudaSuccess, 1, true, false).verdict == GpuVerdict::Run);
  CHECK(classify_gpu_probe(cudaSuccess, 8, true, true).verdict == GpuVerdict::Run);
  CHECK(classify_gpu_probe(cudaErrorNoDevice, 0, true, false).verdict == GpuVerdict::Skip);
  CHECK(classify_gpu_probe(cudaSuccess, 0, true, false).verdict == GpuVerdict::Skip);
  // No driver at all (a CPU machine with the toolkit): no device.
  CHECK(classify_gpu_probe(cudaErrorInsufficientDriver, 0, false, false).verdict == GpuVerdict::Skip);
  // A driver that is there but older than the runtime, an init failure, a stub: failures.
  CHECK(classify_gpu_probe(cudaErrorInsufficientDriver, 0, true, false).verdict == GpuVerdict::Fail);
  CHECK(classify_gpu_probe(cudaErrorInitializationError, 0, true, false).verdict == GpuVerdict::Fail);
  CHECK(classify_gpu_probe(cudaErrorInitializationError, 0, false, false).verdict == GpuVerdict::Fail);
  CHECK(classify_gpu_probe(cudaErrorStubLibrary, 0, true, false).verdict == GpuVerdict::Fail);
  CHECK(classify_gpu_probe(cudaErrorSystemDriverMismatch, 0, true, false).verdict == GpuVerdict::Fail);
  CHECK(classify_gpu_probe(cudaErrorDevicesUnavailable, 0, true, false).verdict == GpuVerdict::Fail);
  // SPECDEC_REQUIRE_GPU=1 (gpu-check): not even an absent device may skip.
  CHECK(classify_gpu_probe(cudaErrorNoDevice, 0, true, true).verdict == GpuVerdict::Fail);
  CHECK(classify_gpu_probe(cudaErrorInsufficientDriver, 0, false, true).verdict == GpuVerdict::Fail);
}

TEST_CASE("a gpu test binary exits 1, not 77, on a device-count error other than no device", "[harness][gpu-skip]") {
  const auto code = [](int err) { return run_gpu_binary("SPECDEC_TEST_FAKE_CUDA_ERROR=" + std::to_string(err)); };
  for (int err : {static_cast<int>(cudaErrorInsufficientDriver), static_cast<int>(cudaErrorInitializationError),
                  static_cast<int>(cudaErrorStubLibrary), static_cast<int>(cudaErrorSystemDriverMismatch)}) {
    INFO("injected cudaGetDeviceCount error " << err);
    CHECK(code(err) == 1);
  }
  CHECK(code(cudaErrorNoDevice) == 77);
  CHECK(run_gpu_binary("SPECDEC_TEST_FAKE_CUDA_ERROR=100 SPECDEC_REQUIRE_GPU=1") == 1);
  // This machine, as it is: a machine without an NVIDIA driver skips; one with a device runs (0 or a
  // test failure, never 77); a broken one fails.
  const auto real = specdec::test::probe_gpu();
  const int got = run_gpu_binary("-u SPECDEC_TEST_FAKE_CUDA_ERROR -u SPECDEC_REQUIRE_GPU");
  INFO("this machine: " << real.why << "; exit code " << got);
  if (real.verdict == GpuVerdict::Skip) CHECK(got == 77);
  if (real.verdict == GpuVerdict::Fail) CHECK(got == 1);
  if (real.verdict == GpuVerdict::Run) CHECK(got != 77);
}

TEST_CASE("error norms fail on any NaN", "[harness][nan]") {
  using specdec::test::error_norm;
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<float> ref = {1.f, -2.f, 3.f, 4.f};
  CHECK(error_norm(ref, ref).normalized() == 0.0);
  const std::vector<float> close = {1.f, -2.f, 3.f, 4.0001f};
  CHECK(error_norm(close, ref).normalized() == Approx(0.0001 / 4).epsilon(1e-2));
  // The old max loop drops NaN: std::max(d, NaN) == d, so a partly-NaN result looked like a perfect one.
  const std::vector<float> partly_nan = {1.f, nan, 3.f, 4.f};
  double old_d = 0;
  for (size_t i = 0; i < ref.size(); ++i)
    old_d = std::max(old_d, std::fabs(static_cast<double>(partly_nan[i]) - ref[i]));
  CHECK(old_d == 0.0);  // what the old check saw
  const auto e = error_norm(partly_nan, ref);
  CHECK(e.non_finite == 1);
  CHECK(e.first_non_finite == 1);
  CHECK(std::isinf(e.normalized()));
  CHECK_FALSE(e.normalized() <= 1e-4);
  CHECK_FALSE(specdec::test::norm_err(std::vector<float>(4, nan), ref) <= 1.0);  // all NaN
  CHECK_FALSE(specdec::test::norm_err(ref, partly_nan) <= 1.0);                  // NaN in the reference
  using V = std::vector<float>;
  CHECK_FALSE(specdec::test::norm_err(V{1.f, -2.f, inf, 4.f}, ref) <= 1.0);  // inf where ref is finite
  CHECK(specdec::test::norm_err(V{1.f, inf}, V{1.f, inf}) == 0.0);           // the same infinity
  CHECK_FALSE(specdec::test::norm_err(V{1.f, 2.f}, V{1.f}) <= 1.0);          // size mismatch
}

TEST_CASE("bit-identity checks cannot pass on unwritten buffers", "[harness][nan]") {
  using specdec::test::bit_equal_finite;
  using specdec::test::fresh_sentinel;
  using specdec::test::unwritten;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> a(16, nan), b(16, nan);
  CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);  // what a plain memcmp said
  CHECK_FALSE(bit_equal_finite(a, b));
  CHECK(bit_equal_finite(std::vector<float>{1.f, 2.f}, std::vector<float>{1.f, 2.f}));
  CHECK_FALSE(bit_equal_finite(std::vector<float>{1.f, 2.f}, std::vector<float>{1.f, 3.f}));
  // Fresh sentinels: NaNs, all different, never the NaNs hardware produces.
  std::vector<uint32_t> seen;
  for (int i = 0; i < 1000; ++i) {
    const float s = fresh_sentinel();
    REQUIRE(std::isnan(s));
    uint32_t bits;
    std::memcpy(&bits, &s, 4);
    REQUIRE(bits != 0x7fc00000u);
    REQUIRE(bits != 0x7fffffffu);
    seen.push_back(bits);
  }
  std::sort(seen.begin(), seen.end());
  CHECK(std::adjacent_find(seen.begin(), seen.end()) == seen.end());
  const float s1 = fresh_sentinel(), s2 = fresh_sentinel();
  std::vector<float> x(10, s1), y(10, s2);
  CHECK(std::memcmp(x.data(), y.data(), x.size() * 4) != 0);  // two unwritten buffers differ
  CHECK(unwritten(x, s1) == 10);
  x[3] = 0.5f;
  x[7] = nan;  // a NaN result is "written" (and then fails the value check)
  CHECK(unwritten(x, s1) == 8);
  CHECK(unwritten(x, s2) == 0);
}

TEST_CASE("the attention workspace sized at model creation covers every launch", "[harness][workspace]") {
  using specdec::cuda::attention_split_plan;
  using specdec::cuda::attention_workspace_bytes;
  struct Shape {
    int Hq, Hkv, D;
  };
  int split_calls = 0;
  for (int sms : {1, 78, 114, 132}) {
    for (Shape sh : {Shape{9, 3, 64}, Shape{32, 8, 64}, Shape{32, 8, 128}, Shape{8, 1, 72}, Shape{4, 4, 256}}) {
      for (int ctx : {256, 512, 2048, 8192, 131072}) {
        const size_t ws = attention_workspace_bytes(ctx, sh.Hq, sh.D, sms);
        if (ctx <= specdec::cuda::kAttentionSplit) CHECK(ws == 0);  // one split: nothing to fold
        CHECK(ws <= (size_t{64} << 20));
        for (int B : {1, 2, 3, 4, 8, 16, 64}) {
          for (int T : {1, 2, 5, 9, 16, 17, 64, 200, 2048}) {
            for (int S : {T, T + 100, ctx}) {
              if (S < T || S > ctx) continue;
              const auto unlimited = attention_split_plan(B, T, S, sh.Hq, sh.Hkv, sh.D, sms, SIZE_MAX);
              const auto sized = attention_split_plan(B, T, S, sh.Hq, sh.Hkv, sh.D, sms, ws);
              INFO("sms " << sms << " Hq " << sh.Hq << " Hkv " << sh.Hkv << " D " << sh.D << " ctx " << ctx << " B "
                          << B << " T " << T << " S " << S << ": wants " << unlimited.bytes << ", has " << ws);
              REQUIRE(sized.split_k == unlimited.split_k);  // the model's workspace never turns split-K off
              if (unlimited.split_k) {
                ++split_calls;
                REQUIRE(unlimited.bytes <= ws);
                REQUIRE(unlimited.splits == specdec::cuda::attention_splits(S));
              }
              // No workspace: never split-K (and the same bits: tests/kernels/test_cuda_attention.cpp).
              REQUIRE_FALSE(attention_split_plan(B, T, S, sh.Hq, sh.Hkv, sh.D, sms, 0).split_k);
            }
          }
        }
      }
    }
  }
  CHECK(split_calls > 100);  // the sweep does reach the split-K path
}
