// The __host__ __device__ logic of kernels/cuda/blocks.cuh, run on the host against kernels/cpu: fp16 /
// bf16 conversion, GGML block decode, the activation quantizer and the integer block dots of
// matmul_small. The CUDA kernels call these same functions (cpu label: runs without a GPU). Also checks
// that the CPU side of the error bounds used by test_cuda_matmul.cpp holds.
#include <catch2/catch.hpp>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/blocks.cuh"
#include "tests/support/quant_blocks.h"

using specdec::cpu::DType;
namespace bk = specdec::cuda::blocks;
namespace cpu = specdec::cpu;
using namespace specdec::test;

namespace {

constexpr double kU = 0x1p-24;  // unit roundoff of fp32

// Random bytes with a random finite fp16 scale (and min): every nibble / int8 pattern occurs.
std::vector<uint8_t> random_blocks(DType t, int64_t nb, uint32_t seed) {
  const int bytes = cpu::dtype_info(t).block_bytes;
  std::mt19937 g(seed);
  std::vector<uint8_t> b(static_cast<size_t>(nb * bytes));
  for (auto& x : b) x = static_cast<uint8_t>(g());
  std::normal_distribution<float> d(0.f, 0.05f);
  for (int64_t i = 0; i < nb; ++i) {
    const uint16_t h = cpu::fp32_to_fp16(d(g)), m = cpu::fp32_to_fp16(d(g));
    std::memcpy(&b[i * bytes], &h, 2);
    if (t == DType::Q4_1) std::memcpy(&b[i * bytes + 2], &m, 2);
  }
  return b;
}

template <DType S, bool kVec>
std::vector<float> decode_all(const std::vector<uint8_t>& row, int64_t n) {
  std::vector<float> out(static_cast<size_t>((n + 3) / 4 * 4));
  for (int64_t j = 0; j < n; j += 4) bk::decode4<S, kVec>(row.data(), j, n, &out[j]);
  out.resize(n);
  return out;
}

template <DType S>
void require_decode_matches_cpu(const std::vector<uint8_t>& row, int64_t n) {
  std::vector<float> ref(n);
  cpu::dequantize_row(ref.data(), row.data(), S, n);
  const auto got = decode_all<S, false>(row, n);
  for (int64_t j = 0; j < n; ++j) REQUIRE(bits(got[j]) == bits(ref[j]));
  if (n % 4 == 0) {
    const auto vec = decode_all<S, true>(row, n);
    for (int64_t j = 0; j < n; ++j) REQUIRE(bits(vec[j]) == bits(ref[j]));
  }
}

// Host copy of matmul_small's scratch for T rows of K, filled with blocks::act_quantize_block.
struct HostScratch {
  std::vector<uint8_t> mem;
  bk::ActQ8 a;
  HostScratch(const std::vector<float>& x, int T, int K) : mem(bk::act_q8_bytes(T, K)) {
    a = bk::act_q8_view(mem.data(), T, K);
    for (int64_t b = 0; b < static_cast<int64_t>(T) * (K / 32); ++b) {
      int sum;
      bk::act_quantize_block(&x[b * 32], a.q + b * 32, a.d[b], a.s[b], sum);
      a.sum[b] = sum;
    }
  }
};

template <class Fmt>
void check_block_terms(DType t) {
  const int T = 7, N = 41, K = 32;
  const int bytes = cpu::dtype_info(t).block_bytes;
  auto x = randn(static_cast<size_t>(T) * K, 11, 2.f);
  for (int j = 0; j < K; ++j) x[3 * K + j] = 0.f;  // an all-zero activation block
  const auto wf = randn(static_cast<size_t>(N) * K, 12);
  const auto W = encode_row(t, wf);
  const HostScratch hs(x, T, K);
  std::vector<int8_t> q(static_cast<size_t>(T) * K);
  std::vector<float> d(T), s(T);
  cpu::quantize_activations(q.data(), d.data(), s.data(), x.data(), T, K);

  for (cpu::CpuLevel level : {cpu::CpuLevel::Scalar, cpu::CpuLevel::Avx2, cpu::CpuLevel::Avx512}) {
    if (!cpu::cpu_level_supported(level)) continue;
    std::vector<float> ref(static_cast<size_t>(T) * N);
    REQUIRE(cpu::matmul_quant_at(level, ref.data(), x.data(), W.data(), t, T, N, K));
    for (int n = 0; n < N; ++n) {
      const uint8_t* wb = &W[static_cast<size_t>(n) * bytes];
      const typename Fmt::W w = Fmt::load(wb);
      for (int tt = 0; tt < T; ++tt) {
        const bk::ActBlock ab = bk::load_act<true, true>(hs.a, tt, 0, K);
        // the integer dot is exact: equal to the obvious loop on the CPU's quants
        REQUIRE(Fmt::sumi(w, ab) == sumi_ref(t, wb, &q[static_cast<size_t>(tt) * K]));
        // one block: the CPU's output is this term up to its own single rounding (scalar: none; the
        // SIMD levels fuse the scale product into an FMA), so 2 ulps of the term's parts
        const double p = static_cast<double>(cpu::fp16_to_fp32(u16_at(wb))) * d[tt] * Fmt::sumi(w, ab);
        const double e = t == DType::Q4_1 ? static_cast<double>(cpu::fp16_to_fp32(u16_at(wb + 2))) * s[tt] : 0.0;
        const double tol = 4 * kU * (std::fabs(p) + std::fabs(e));
        const float got = Fmt::term(w, ab), want = ref[static_cast<size_t>(tt) * N + n];
        INFO("level " << cpu::cpu_level_name(level) << " n=" << n << " t=" << tt);
        REQUIRE(std::fabs(static_cast<double>(got) - want) <= tol);
        // The scalar level does the same operations in the same order (its acc = 0 + term, hence the
        // 0 + got, which turns a -0 term into +0). Q4_1's term has an add that a compiler allowed to
        // contract (SPECDEC_NATIVE) may fuse on the CPU, so it is held to the bound above only.
        if (level == cpu::CpuLevel::Scalar && t != DType::Q4_1) REQUIRE(bits(0.f + got) == bits(want));
      }
    }
  }
}

}  // namespace

TEST_CASE("blocks: f16_to_f32 equals cpu::fp16_to_fp32 on every half", "[kernels][blocks]") {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const auto hv = static_cast<uint16_t>(h);
    REQUIRE(bits(bk::f16_to_f32(hv)) == bits(cpu::fp16_to_fp32(hv)));
  }
}

TEST_CASE("blocks: f32_to_f16 equals cpu::fp32_to_fp16 (rounding boundaries, subnormals, inf, nan)",
          "[kernels][blocks]") {
  // every sign/exponent/top-mantissa pattern with the low 13 bits at and around the rounding points
  const uint32_t lows[] = {0, 1, 0xfff, 0x1000, 0x1001, 0x1fff, 0x0800, 0x17ff};
  for (uint32_t hi = 0; hi < (1u << 19); ++hi)
    for (uint32_t lo : lows) {
      const float f = from_bits((hi << 13) | lo);
      REQUIRE(bk::f32_to_f16(f) == cpu::fp32_to_fp16(f));
    }
  std::mt19937 g(7);
  for (int i = 0; i < (1 << 22); ++i) {
    const float f = from_bits(static_cast<uint32_t>(g()));
    REQUIRE(bk::f32_to_f16(f) == cpu::fp32_to_fp16(f));
  }
  REQUIRE(bk::round_f16(1.0f + 1.0f / 4096) == 1.0f);  // tie to even
  REQUIRE(bk::f32_to_f16(65520.f) == 0x7c00);          // rounds up to inf
}

TEST_CASE("blocks: f32_to_bf16 rounds to nearest even; bf16_to_f32 is exact", "[kernels][blocks]") {
  const uint32_t lows[] = {0, 1, 0x7fff, 0x8000, 0x8001, 0xffff, 0x4000, 0xc000};
  for (uint32_t hi = 0; hi < 0x10000u; ++hi) {
    REQUIRE(bits(bk::bf16_to_f32(static_cast<uint16_t>(hi))) == hi << 16);
    for (uint32_t lo : lows) {
      const float f = from_bits((hi << 16) | lo);
      if (std::isnan(f)) {
        REQUIRE(std::isnan(bk::bf16_to_f32(bk::f32_to_bf16(f))));
        continue;
      }
      INFO("bits " << ((hi << 16) | lo));
      REQUIRE(bk::f32_to_bf16(f) == bf16_ref(f));
    }
  }
  REQUIRE(bk::f32_to_bf16(FLT_MAX) == 0x7f80);  // past the largest bf16's midpoint: inf
  REQUIRE(bk::f32_to_bf16(1.0f) == 0x3f80);
}

TEST_CASE("blocks: decode4 equals cpu::dequantize_row for every GPU source dtype", "[kernels][blocks]") {
  for (int64_t n : {32, 64, 576, 1536}) {
    const auto w = randn(n, static_cast<uint32_t>(n), 0.7f);
    require_decode_matches_cpu<DType::Q8_0>(encode_row(DType::Q8_0, w), n);
    require_decode_matches_cpu<DType::Q4_0>(encode_row(DType::Q4_0, w), n);
    require_decode_matches_cpu<DType::Q4_1>(encode_row(DType::Q4_1, w), n);
    require_decode_matches_cpu<DType::Q8_0>(random_blocks(DType::Q8_0, n / 32, 1), n);
    require_decode_matches_cpu<DType::Q4_0>(random_blocks(DType::Q4_0, n / 32, 2), n);
    require_decode_matches_cpu<DType::Q4_1>(random_blocks(DType::Q4_1, n / 32, 3), n);
  }
  for (int64_t n : {1, 3, 4, 37, 1002, 4099}) {
    const auto w = randn(n, static_cast<uint32_t>(n));
    std::vector<uint8_t> f32(n * 4), f16(n * 2), b16(n * 2);
    std::memcpy(f32.data(), w.data(), n * 4);
    std::mt19937 g(static_cast<uint32_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      const uint16_t h = cpu::fp32_to_fp16(w[i]), r = static_cast<uint16_t>(g());  // any bf16 pattern
      std::memcpy(&f16[i * 2], &h, 2);
      std::memcpy(&b16[i * 2], &r, 2);
    }
    require_decode_matches_cpu<DType::F32>(f32, n);
    require_decode_matches_cpu<DType::F16>(f16, n);
    // bf16: NaN patterns included, so compare as the CPU does, bit for bit
    require_decode_matches_cpu<DType::BF16>(b16, n);
  }
}

TEST_CASE("blocks: the activation quantizer equals cpu::quantize_activations bit for bit", "[kernels][blocks]") {
  for (int K : {32, 64, 576, 1536}) {
    for (int T : {1, 2, 7, 9}) {
      auto x = randn(static_cast<size_t>(T) * K, static_cast<uint32_t>(K + T), 3.f);
      // awkward blocks: all zero; one outlier; exact ties of x * 127 / amax at k + 0.5 (round half even)
      for (int j = 0; j < 32; ++j) x[j] = 0.f;
      if (K >= 64) {
        for (int j = 32; j < 64; ++j) x[j] = 1e-3f * static_cast<float>(j);
        x[40] = -1e4f;
      }
      if (static_cast<size_t>(K) * T >= 96) {
        x[64] = 127.f;  // amax 127: id = 1, so x = k + 0.5 is a tie
        for (int j = 65; j < 96; ++j) x[j] = static_cast<float>(j % 9) - 4.f + 0.5f;
      }
      std::vector<int8_t> q(x.size());
      const int nb = K / 32;
      std::vector<float> d(static_cast<size_t>(T) * nb), s(d.size());
      cpu::quantize_activations(q.data(), d.data(), s.data(), x.data(), T, K);
      const HostScratch hs(x, T, K);
      for (size_t i = 0; i < x.size(); ++i) REQUIRE(hs.a.q[i] == q[i]);
      for (size_t b = 0; b < d.size(); ++b) {
        REQUIRE(bits(hs.a.d[b]) == bits(d[b]));
        REQUIRE(bits(hs.a.s[b]) == bits(s[b]));
        int sum = 0;
        for (int j = 0; j < 32; ++j) sum += q[b * 32 + j];
        REQUIRE(hs.a.sum[b] == sum);
      }
    }
  }
}

TEST_CASE("blocks: the scratch view fits its byte count, aligned, regions disjoint", "[kernels][blocks]") {
  for (int T : {1, 2, 7, 9, 33, 300}) {
    for (int K : {32, 64, 576, 1536}) {
      const size_t bytes = bk::act_q8_bytes(T, K);
      for (uintptr_t base : {uintptr_t{0x10000}, uintptr_t{0x10004}, uintptr_t{0x100ff}}) {
        const auto* p0 = reinterpret_cast<uint8_t*>(base);
        const bk::ActQ8 a = bk::act_q8_view(reinterpret_cast<void*>(base), T, K);
        const size_t nq = static_cast<size_t>(T) * K, nf = static_cast<size_t>(T) * (K / 32) * 4;
        const auto off = [&](const void* p) { return static_cast<size_t>(static_cast<const uint8_t*>(p) - p0); };
        REQUIRE(reinterpret_cast<uintptr_t>(a.q) % 32 == 0);
        REQUIRE(off(a.q) + nq <= off(a.d));
        REQUIRE(off(a.d) + nf <= off(a.s));
        REQUIRE(off(a.s) + nf <= off(a.sum));
        REQUIRE(off(a.sum) + nf <= bytes);
      }
    }
  }
  REQUIRE(bk::act_q8_bytes(0, 64) == 0);
}

TEST_CASE("blocks: integer block dots and block terms equal the CPU's quantized matmul on one block",
          "[kernels][blocks]") {
  check_block_terms<bk::FmtQ8_0>(DType::Q8_0);
  check_block_terms<bk::FmtQ4_0>(DType::Q4_0);
  check_block_terms<bk::FmtQ4_1>(DType::Q4_1);
}

// test_cuda_matmul.cpp compares the GPU with cpu::matmul within (GPU bound + CPU bound); here the CPU
// half of that claim, against the exact (double) result: quantized, |cpu - exact| <= (nb + 4) u sum|term_b|;
// float weights, |cpu - exact| <= (ceil(K/16) + 6) u sum|x_k w_k| (dot_f32: 16 serial lanes, then a tree).
TEST_CASE("blocks: the CPU side of the GPU matmul test's error bounds holds", "[kernels][blocks]") {
  const int T = 5, N = 23;
  for (int K : {32, 576, 1536, 4160}) {
    const int nb = K / 32;
    const auto x = randn(static_cast<size_t>(T) * K, 21, 1.5f), wf = randn(static_cast<size_t>(N) * K, 22);
    std::vector<int8_t> q(x.size());
    std::vector<float> d(static_cast<size_t>(T) * nb), s(d.size());
    cpu::quantize_activations(q.data(), d.data(), s.data(), x.data(), T, K);
    for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
      const auto W = encode_row(t, wf);
      const int bytes = cpu::dtype_info(t).block_bytes;
      std::vector<float> out(static_cast<size_t>(T) * N);
      cpu::matmul(out.data(), x.data(), W.data(), t, T, N, K);
      for (int tt = 0; tt < T; ++tt)
        for (int n = 0; n < N; ++n) {
          double exact = 0, mag = 0;
          for (int b = 0; b < nb; ++b) {
            const uint8_t* wb = &W[(static_cast<size_t>(n) * nb + b) * bytes];
            const double p = static_cast<double>(cpu::fp16_to_fp32(u16_at(wb))) * d[tt * nb + b] *
                             sumi_ref(t, wb, &q[(static_cast<size_t>(tt) * nb + b) * 32]);
            const double mw = t == DType::Q4_1 ? cpu::fp16_to_fp32(u16_at(wb + 2)) : 0.0;
            const double e = mw * s[tt * nb + b];
            exact += p + e;
            mag += std::fabs(p) + std::fabs(e);
          }
          REQUIRE(std::fabs(out[static_cast<size_t>(tt) * N + n] - exact) <= (nb + 4) * kU * mag);
        }
    }
  }
  for (int K : {1, 37, 576, 4099}) {
    const auto x = randn(static_cast<size_t>(T) * K, 31), w = randn(static_cast<size_t>(N) * K, 32);
    std::vector<float> out(static_cast<size_t>(T) * N);
    cpu::matmul(out.data(), x.data(), w.data(), DType::F32, T, N, K);
    for (int tt = 0; tt < T; ++tt)
      for (int n = 0; n < N; ++n) {
        double exact = 0, mag = 0;
        for (int k = 0; k < K; ++k) {
          const double p = static_cast<double>(x[static_cast<size_t>(tt) * K + k]) * w[static_cast<size_t>(n) * K + k];
          exact += p;
          mag += std::fabs(p);
        }
        REQUIRE(std::fabs(out[static_cast<size_t>(tt) * N + n] - exact) <= ((K + 15) / 16 + 6) * kU * mag);
      }
  }
}
