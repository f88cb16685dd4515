// The CUDA matmul_small against cpu::matmul and the exact (double) result over awkward shapes and every
// weight dtype, its batch invariance (T rows in one call == T one-row calls, bit for bit), and its
// quantized activations (== cpu::quantize_activations, bit for bit). gpu label: skipped without a device.
//
// Tolerances (u = 2^-24, per output, from first-order rounding-error bounds of each summation order):
//   quantized weights: terms tau_b = (dw*da)*sumi_b [+ mw*s_b], sumi_b exact integers, so the only error
//     is float rounding of the terms and of their sum:
//       GPU:  each term <= 3 roundings, then <= 4 lane adds, 5 butterfly adds, 1 add per further chunk of
//             128 blocks  ->  |gpu - exact| <= (16 + chunks) u sum|tau_b|
//       CPU:  the scalar / SIMD levels add the nb terms serially  ->  |cpu - exact| <= (nb + 4) u sum|tau_b|
//             (checked on the host by test_blocks_host.cpp)
//     so |gpu - cpu| <= (nb + 20 + chunks) u sum|tau_b|: "near exact", a few ulps of the magnitude sum.
//   float weights (w exactly representable in fp32): GPU: <= 32 lane FMAs, 5 butterfly adds, 1 add per
//     further chunk of 1024 elements  ->  (40 + chunks) u sum|x_k w_k|; CPU dot_f32: ceil(K/16) + 6.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/blocks.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/matmul_quant.cuh"
#include "tests/support/cuda_buffer.h"
#include "tests/support/errors.h"
#include "tests/support/numeric_checks.h"
#include "tests/support/quant_blocks.h"
#include "tests/support/shapes.h"

namespace {

using specdec::cpu::DType;
using namespace specdec::test;
namespace cpu = specdec::cpu;
namespace cuda = specdec::cuda;

constexpr double kU = 0x1p-24;
constexpr auto& kTs = shapes::kBlockRows;
const int kNs[] = {1, 3, 37, 133};

bool is_quant(DType t) { return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_1; }

// W (N, K) of dtype t from random normal data (sd 0.5): quantized with the CPU's own quantizer, f16
// rounded by cpu::fp32_to_fp16, bf16 by truncation (any bf16 is a valid weight).
std::vector<uint8_t> make_weights(DType t, int N, int K, uint32_t seed) {
  return random_row(t, static_cast<int64_t>(N) * K, seed, 0.5f);
}

// Exact result (double) and magnitude sum of every output, for the bounds above.
struct Reference {
  std::vector<double> exact, mag;
};

Reference reference(const std::vector<float>& x, const std::vector<uint8_t>& W, DType t, int T, int N, int K) {
  Reference r{std::vector<double>(static_cast<size_t>(T) * N), std::vector<double>(static_cast<size_t>(T) * N)};
  if (is_quant(t)) {
    const int nb = K / 32, bytes = cpu::dtype_info(t).block_bytes;
    std::vector<int8_t> q(x.size());
    std::vector<float> d(static_cast<size_t>(T) * nb), s(d.size());
    cpu::quantize_activations(q.data(), d.data(), s.data(), x.data(), T, K);
    for (int n = 0; n < N; ++n)
      for (int b = 0; b < nb; ++b) {
        const uint8_t* wb = &W[(static_cast<size_t>(n) * nb + b) * bytes];
        const double dw = cpu::fp16_to_fp32(u16_at(wb));
        const double mw = t == DType::Q4_1 ? cpu::fp16_to_fp32(u16_at(wb + 2)) : 0.0;
        for (int tt = 0; tt < T; ++tt) {
          const size_t ab = static_cast<size_t>(tt) * nb + b;
          const double p = dw * d[ab] * sumi_ref(t, wb, &q[ab * 32]), e = mw * s[ab];
          r.exact[static_cast<size_t>(tt) * N + n] += p + e;
          r.mag[static_cast<size_t>(tt) * N + n] += std::fabs(p) + std::fabs(e);
        }
      }
  } else {
    std::vector<float> row(K);
    for (int n = 0; n < N; ++n) {
      cpu::dequantize_row(row.data(), W.data() + cpu::row_bytes(t, static_cast<int64_t>(n) * K), t, K);
      for (int tt = 0; tt < T; ++tt) {
        double e = 0, m = 0;
        for (int k = 0; k < K; ++k) {
          const double p = static_cast<double>(x[static_cast<size_t>(tt) * K + k]) * row[k];
          e += p;
          m += std::fabs(p);
        }
        r.exact[static_cast<size_t>(tt) * N + n] = e;
        r.mag[static_cast<size_t>(tt) * N + n] = m;
      }
    }
  }
  return r;
}

// (gpu vs exact, gpu vs cpu) bound factors in units of u * mag.
std::pair<double, double> bound_factors(DType t, int K) {
  if (is_quant(t)) {
    const int nb = K / 32, chunks = (nb + 127) / 128;
    return {16.0 + chunks, nb + 20.0 + chunks};
  }
  const int chunks = (K + 1023) / 1024;
  return {40.0 + chunks, 46.0 + chunks + (K + 15) / 16};
}

// out (T, N) from the GPU for x (T, K); scratch sized for T.
std::vector<float> gpu_matmul(const DeviceBuffer<float>& dx, const DeviceBuffer<uint8_t>& dW, DType t, int T, int N,
                              int K) {
  // Output starts as a sentinel NaN no other buffer holds, and must be written everywhere: a launch that
  // wrote nothing cannot equal the CPU or another launch (specdec::test::fresh_sentinel, numeric_checks.h).
  const float sentinel = specdec::test::fresh_sentinel();
  DeviceBuffer<float> dout(std::vector<float>(static_cast<size_t>(T) * N, sentinel));
  DeviceBuffer<uint8_t> scratch(cuda::matmul_small_scratch_bytes(T, K));
  cuda::matmul_small(dout.get(), dx.get(), dW.get(), t, T, N, K, scratch.get(), nullptr);
  cuda::device_synchronize();
  auto out = dout.download();
  REQUIRE(specdec::test::unwritten(out, sentinel) == 0);
  return out;
}

void check_against_cpu(DType t, const std::vector<int>& Ks) {
  for (int K : Ks) {
    for (int N : kNs) {
      const auto Wh = make_weights(t, N, K, static_cast<uint32_t>(K * 131 + N));
      const DeviceBuffer<uint8_t> dW(Wh);
      for (int T : kTs) {
        const auto x = randn(static_cast<size_t>(T) * K, static_cast<uint32_t>(T * 7 + K), 1.5f);
        const DeviceBuffer<float> dx(x);
        const auto got = gpu_matmul(dx, dW, t, T, N, K);
        std::vector<float> cpu_out(got.size());
        cpu::matmul(cpu_out.data(), x.data(), Wh.data(), t, T, N, K);
        const Reference ref = reference(x, Wh, t, T, N, K);
        const auto [f_exact, f_cpu] = bound_factors(t, K);
        for (size_t i = 0; i < got.size(); ++i) {
          INFO(cpu::dtype_info(t).name << " T=" << T << " N=" << N << " K=" << K << " i=" << i << " gpu=" << got[i]
                                       << " cpu=" << cpu_out[i] << " exact=" << ref.exact[i]);
          REQUIRE(std::fabs(got[i] - ref.exact[i]) <= f_exact * kU * ref.mag[i]);
          REQUIRE(std::fabs(static_cast<double>(got[i]) - cpu_out[i]) <= f_cpu * kU * ref.mag[i]);
        }
      }
    }
  }
}

// T rows in one call == T one-row calls (x + t*K, out + t*N), bit for bit; also one column per warp
// (T = 1) against two (T >= 4), and, for float weights with K % 4 == 0, vector loads against element
// loads (x moved off 16-byte alignment).
void check_batch_invariance(DType t, const std::vector<int>& Ks) {
  for (int K : Ks) {
    for (int N : kNs) {
      const auto Wh = make_weights(t, N, K, static_cast<uint32_t>(K * 17 + N));
      const DeviceBuffer<uint8_t> dW(Wh);
      for (int T : kTs) {
        const auto x = randn(static_cast<size_t>(T) * K, static_cast<uint32_t>(T * 3 + K));
        const DeviceBuffer<float> dx(x);
        const auto whole = gpu_matmul(dx, dW, t, T, N, K);
        const float sentinel = specdec::test::fresh_sentinel();
        DeviceBuffer<float> dout(std::vector<float>(static_cast<size_t>(T) * N, sentinel));
        DeviceBuffer<uint8_t> scratch(cuda::matmul_small_scratch_bytes(1, K));
        for (int r = 0; r < T; ++r)
          cuda::matmul_small(dout.get() + static_cast<size_t>(r) * N, dx.get() + static_cast<size_t>(r) * K, dW.get(),
                             t, 1, N, K, scratch.get(), nullptr);
        cuda::device_synchronize();
        const auto rows = dout.download();
        REQUIRE(specdec::test::unwritten(rows, sentinel) == 0);
        for (size_t i = 0; i < whole.size(); ++i) {
          INFO(cpu::dtype_info(t).name << " T=" << T << " N=" << N << " K=" << K << " i=" << i);
          REQUIRE(bits(whole[i]) == bits(rows[i]));
        }
        if (!is_quant(t) && K % 4 == 0) {
          std::vector<float> shifted(x.size() + 1);
          std::copy(x.begin(), x.end(), shifted.begin() + 1);
          const DeviceBuffer<float> ds(shifted);
          const float sentinel2 = specdec::test::fresh_sentinel();
          DeviceBuffer<float> dout2(std::vector<float>(static_cast<size_t>(T) * N, sentinel2));
          cuda::matmul_small(dout2.get(), ds.get() + 1, dW.get(), t, T, N, K, nullptr, nullptr);
          cuda::device_synchronize();
          const auto unaligned = dout2.download();
          REQUIRE(specdec::test::unwritten(unaligned, sentinel2) == 0);
          for (size_t i = 0; i < whole.size(); ++i) REQUIRE(bits(whole[i]) == bits(unaligned[i]));
        }
      }
    }
  }
}

const std::vector<int> kQuantKs = {32, 64, 576, 1536, 4160};        // 4160 = 130 blocks: two chunks
const std::vector<int> kFloatKs = {1, 3, 37, 64, 576, 1536, 4099};  // 4099: five chunks, ragged tail

}  // namespace

TEST_CASE("cuda matmul_small (q8_0, q4_0, q4_1) equals the CPU to a few ulps of the term sum",
          "[gpu][kernels][matmul]") {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) check_against_cpu(t, kQuantKs);
}

TEST_CASE("cuda matmul_small (f32, f16, bf16) equals the CPU within fp32 summation bounds", "[gpu][kernels][matmul]") {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) check_against_cpu(t, kFloatKs);
}

TEST_CASE("cuda matmul_small is batch invariant: T rows == T one-row calls, bit for bit", "[gpu][kernels][matmul]") {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) check_batch_invariance(t, kQuantKs);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) check_batch_invariance(t, kFloatKs);
}

TEST_CASE("cuda matmul_small quantizes activations as cpu::quantize_activations, bit for bit",
          "[gpu][kernels][matmul]") {
  for (int K : {32, 64, 576, 1536}) {
    for (int T : kTs) {
      auto x = randn(static_cast<size_t>(T) * K, static_cast<uint32_t>(K + T), 3.f);
      for (int j = 0; j < 32; ++j) x[j] = 0.f;  // an all-zero block
      const int nb = K / 32, N = 5;
      const auto Wh = make_weights(DType::Q4_1, N, K, 5);
      const DeviceBuffer<uint8_t> dW(Wh);
      const DeviceBuffer<float> dx(x);
      DeviceBuffer<float> dout(static_cast<size_t>(T) * N);
      const size_t bytes = cuda::matmul_small_scratch_bytes(T, K);
      DeviceBuffer<uint8_t> scratch(bytes);
      cuda::matmul_small(dout.get(), dx.get(), dW.get(), DType::Q4_1, T, N, K, scratch.get(), nullptr);
      cuda::device_synchronize();
      const auto raw = scratch.download();
      // the scratch layout is blocks::act_q8_view's; read it back through the same offsets
      const specdec::cuda::blocks::ActQ8 a = specdec::cuda::blocks::act_q8_view(scratch.get(), T, K);
      const auto off = [&](const void* p) {
        return static_cast<size_t>(static_cast<const uint8_t*>(p) - scratch.get());
      };
      std::vector<int8_t> q(x.size());
      std::vector<float> d(static_cast<size_t>(T) * nb), s(d.size());
      cpu::quantize_activations(q.data(), d.data(), s.data(), x.data(), T, K);
      REQUIRE(std::memcmp(&raw[off(a.q)], q.data(), q.size()) == 0);
      REQUIRE(std::memcmp(&raw[off(a.d)], d.data(), d.size() * 4) == 0);
      REQUIRE(std::memcmp(&raw[off(a.s)], s.data(), s.size() * 4) == 0);
      std::vector<int32_t> sum(d.size());
      std::memcpy(sum.data(), &raw[off(a.sum)], sum.size() * 4);
      for (size_t b = 0; b < sum.size(); ++b) {
        int ref = 0;
        for (int j = 0; j < 32; ++j) ref += q[b * 32 + j];
        REQUIRE(sum[b] == ref);
      }
    }
  }
}

TEST_CASE("cuda matmul_small: empty shapes are no-ops, K = 0 gives zeros, bad arguments throw",
          "[gpu][kernels][matmul]") {
  DeviceBuffer<float> out(std::vector<float>(6, 7.f)), x(std::vector<float>(64, 1.f));
  DeviceBuffer<uint8_t> W(4096), scratch(cuda::matmul_small_scratch_bytes(2, 64));
  cuda::matmul_small(out.get(), x.get(), W.get(), DType::Q8_0, 0, 3, 64, scratch.get(), nullptr);
  cuda::matmul_small(out.get(), x.get(), W.get(), DType::F32, 2, 0, 64, nullptr, nullptr);
  cuda::device_synchronize();
  for (float v : out.download()) REQUIRE(v == 7.f);
  cuda::matmul_small(out.get(), x.get(), W.get(), DType::F32, 2, 3, 0, nullptr, nullptr);
  cuda::device_synchronize();
  for (float v : out.download()) REQUIRE(v == 0.f);

  using Catch::Matchers::Contains;
  using specdec::test::error_of;
  const auto call = [&](DType t, int K, void* scr) {
    return error_of([&] { cuda::matmul_small(out.get(), x.get(), W.get(), t, 1, 3, K, scr, nullptr); });
  };
  CHECK_THAT(call(DType::Q4_K, 256, scratch.get()), Contains("q4_k"));
  CHECK_THAT(call(DType::Q8_0, 48, scratch.get()), Contains("multiple of 32"));
  CHECK_THAT(call(DType::Q4_0, 64, nullptr), Contains("scratch"));
}
