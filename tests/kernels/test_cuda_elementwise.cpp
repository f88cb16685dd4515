// The CUDA elementwise kernels against their CPU twins over awkward shapes: embedding (every table dtype;
// exact), rope, swiglu (within stated ulp bounds), add (exact). gpu label: skipped without a device.
#include <catch2/catch.hpp>

#include <cmath>
#include <iterator>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/embedding.cuh"
#include "kernels/cuda/residual.cuh"
#include "kernels/cuda/rope.cuh"
#include "kernels/cuda/swiglu.cuh"
#include "tests/support/cuda_buffer.h"
#include "tests/support/errors.h"
#include "tests/support/quant_blocks.h"
#include "tests/support/shapes.h"

namespace {

using specdec::cpu::DType;
using namespace specdec::test;
namespace cpu = specdec::cpu;
namespace cuda = specdec::cuda;

constexpr auto& kTs = shapes::kBlockRows;

std::vector<int32_t> random_tokens(int T, int V, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<int32_t> tok(T);
  for (auto& t : tok) t = static_cast<int32_t>(g() % V);
  tok[0] = V - 1;  // the last row too
  if (T > 1) tok[T - 1] = 0;
  return tok;
}

}  // namespace

// Exact: a gather plus the decode of cpu::dequantize_row (same operations, no FMA), so the same bits.
TEST_CASE("cuda embedding equals cpu::dequantize_row of each token's row, every table dtype",
          "[gpu][kernels][elementwise]") {
  const int V = 37;
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const bool quant = cpu::dtype_info(t).block > 1;
    const std::vector<int> Hs = quant ? std::vector<int>{32, 64, 576, 1536} : std::vector<int>{1, 3, 37, 576, 1002};
    for (int H : Hs) {
      // table (V, H) of dtype t from random data
      const auto table = random_row(t, static_cast<int64_t>(V) * H, static_cast<uint32_t>(H));
      const DeviceBuffer<uint8_t> dtable(table);
      for (int T : kTs) {
        const auto tok = random_tokens(T, V, static_cast<uint32_t>(T + H));
        std::vector<float> ref(static_cast<size_t>(T) * H);
        for (int i = 0; i < T; ++i)
          cpu::dequantize_row(&ref[static_cast<size_t>(i) * H],
                              table.data() + cpu::row_bytes(t, static_cast<int64_t>(tok[i]) * H), t, H);
        const DeviceBuffer<int32_t> dtok(tok);
        // out at offset 0 (vector stores when H % 4 == 0) and 1 float (element stores)
        for (size_t shift : {size_t{0}, size_t{1}}) {
          DeviceBuffer<float> dout(ref.size() + shift);
          cuda::embedding(dout.get() + shift, dtok.get(), dtable.get(), t, T, H, nullptr);
          cuda::device_synchronize();
          const auto got = dout.download();
          for (size_t i = 0; i < ref.size(); ++i) {
            INFO(cpu::dtype_info(t).name << " H=" << H << " T=" << T << " shift=" << shift << " i=" << i);
            REQUIRE(bits(got[i + shift]) == bits(ref[i]));
          }
        }
      }
    }
  }
}

TEST_CASE("cuda embedding: T = 0 is a no-op; unsupported tables throw, naming the dtype",
          "[gpu][kernels][elementwise]") {
  DeviceBuffer<float> out(std::vector<float>(4, 3.f));
  DeviceBuffer<int32_t> tok(std::vector<int32_t>{0});
  DeviceBuffer<uint8_t> table(1024);
  cuda::embedding(out.get(), tok.get(), table.get(), DType::Q8_0, 0, 32, nullptr);
  cuda::device_synchronize();
  for (float v : out.download()) REQUIRE(v == 3.f);
  using Catch::Matchers::Contains;
  const auto call = [&](DType t, int H) {
    return specdec::test::error_of([&] { cuda::embedding(out.get(), tok.get(), table.get(), t, 1, H, nullptr); });
  };
  CHECK_THAT(call(DType::Q6_K, 256), Contains("q6_k"));
  CHECK_THAT(call(DType::Q4_0, 48), Contains("multiple of 32"));
}

// Tolerance: the frequencies are the CPU's own (computed on the host with its expression) and the angle
// pos * freq is the same float product, so only cos / sin can differ: glibc's cosf / sinf and the GPU's
// double sincos rounded to float are each within 1 ulp (<= 2^-24 for |v| < 1) of the exact value of that
// angle, so |dc|, |ds| <= 2^-23 (in practice both are correctly rounded and equal). Then a*c - b*s moves
// by <= 2^-23 (|a| + |b|), and the roundings of the two products and of the result, no longer shared,
// add <= 2 * 2^-24 (|a| + |b|) on each side: |gpu - cpu| <= 3 * 2^-23 (|a| + |b|) < 2^-21 (|a| + |b|).
// Heads wider than 256 compute the frequency on the device (pow in double, rounded), possibly 1 ulp off
// the CPU's powf: the angle then moves by up to 2^-22 |angle|, hence 2^-21 (1 + |angle|) (|a| + |b|).
TEST_CASE("cuda rope equals cpu::rope within 2^-21 (|a| + |b|) per pair", "[gpu][kernels][elementwise]") {
  struct Shape {
    int n_heads, head_dim;
  };
  for (Shape s : {Shape{1, 2}, Shape{3, 64}, Shape{9, 6}, Shape{4, 128}, Shape{2, 256}, Shape{2, 600}}) {
    for (float theta : {10000.f, 500000.f}) {
      for (int T : kTs) {
        const int D = s.n_heads * s.head_dim;
        const auto x = randn(static_cast<size_t>(T) * D, static_cast<uint32_t>(T * 31 + D));
        std::mt19937 g(static_cast<uint32_t>(T + D));
        std::vector<int32_t> pos(T);
        for (auto& p : pos) p = static_cast<int32_t>(g() % 8192);
        pos[0] = 0;
        if (T > 2) pos[1] = 100000;
        auto ref = x;
        cpu::rope(ref.data(), pos.data(), T, s.n_heads, s.head_dim, theta);
        DeviceBuffer<float> dx(x);
        const DeviceBuffer<int32_t> dpos(pos);
        cuda::rope(dx.get(), dpos.get(), T, s.n_heads, s.head_dim, theta, nullptr);
        cuda::device_synchronize();
        const auto got = dx.download();
        for (int t = 0; t < T; ++t)
          for (int h = 0; h < s.n_heads; ++h)
            for (int i = 0; i < s.head_dim; i += 2) {
              const size_t k = static_cast<size_t>(t) * D + static_cast<size_t>(h) * s.head_dim + i;
              const double ab = std::fabs(x[k]) + std::fabs(x[k + 1]);
              const double angle = static_cast<double>(pos[t]) * std::pow(theta, -static_cast<double>(i) / s.head_dim);
              const double tol = 0x1p-21 * ab * (s.head_dim > 256 ? 1.0 + angle : 1.0);
              INFO("heads " << s.n_heads << " dim " << s.head_dim << " theta " << theta << " t=" << t << " pos "
                            << pos[t] << " i=" << i);
              REQUIRE(std::fabs(static_cast<double>(got[k]) - ref[k]) <= tol);
              REQUIRE(std::fabs(static_cast<double>(got[k + 1]) - ref[k + 1]) <= tol);
            }
      }
    }
  }
}

// Tolerance: the same operations in the same order except expf (CUDA <= 2 ulp, glibc < 1 ulp): the
// relative error of g / (1 + e) * u is <= 3.5 * 2^-23 on the GPU and <= 2.5 * 2^-23 on the CPU, so
// |gpu - cpu| <= 2^-20 |cpu| (+ 1e-30 for results that underflow, e.g. g < -88 where exp(-g) overflows).
TEST_CASE("cuda swiglu equals cpu::swiglu within 2^-20 relative; out may alias gate", "[gpu][kernels][elementwise]") {
  for (int F : {1, 3, 37, 1536, 4099}) {
    for (int T : kTs) {
      const size_t n = static_cast<size_t>(T) * F;
      auto gate = randn(n, static_cast<uint32_t>(F + T), 4.f);
      const auto up = randn(n, static_cast<uint32_t>(F * T + 1));
      const float specials[] = {0.f, -0.f, 1e-3f, -1e-3f, 20.f, -20.f, 88.f, -88.f, 89.f, -89.f, 100.f, -100.f};
      for (size_t i = 0; i < std::size(specials) && i < n; ++i) gate[i] = specials[i];
      std::vector<float> ref(n);
      cpu::swiglu(ref.data(), gate.data(), up.data(), T, F);
      const auto check = [&](const std::vector<float>& got) {
        for (size_t i = 0; i < n; ++i) {
          INFO("F=" << F << " T=" << T << " i=" << i << " gate " << gate[i]);
          REQUIRE(std::fabs(static_cast<double>(got[i]) - ref[i]) <= 0x1p-20 * std::fabs(ref[i]) + 1e-30);
        }
      };
      // dout starts as NaN: an element left unwritten fails the tolerance check (NaN compares false).
      DeviceBuffer<float> dg(gate), du(up), dout(std::vector<float>(n, std::nanf("")));
      cuda::swiglu(dout.get(), dg.get(), du.get(), T, F, nullptr);
      cuda::device_synchronize();
      check(dout.download());
      cuda::swiglu(dg.get(), dg.get(), du.get(), T, F, nullptr);  // in place over gate
      cuda::device_synchronize();
      check(dg.download());
    }
  }
}

// Exact: one rounding per element on both sides.
TEST_CASE("cuda add equals cpu::add bit for bit, aligned or not", "[gpu][kernels][elementwise]") {
  for (int64_t n : {1, 3, 4, 37, 1002, 4099, (1 << 20) + 3}) {
    const auto x = randn(static_cast<size_t>(n) + 1, static_cast<uint32_t>(n));
    const auto y = randn(static_cast<size_t>(n) + 1, 7);
    for (int64_t shift : {int64_t{0}, int64_t{1}}) {
      std::vector<float> ref(x.begin() + shift, x.begin() + shift + n);
      cpu::add(ref.data(), y.data() + shift, n);
      DeviceBuffer<float> dx(x), dy(y);
      cuda::add(dx.get() + shift, dy.get() + shift, n, nullptr);
      cuda::device_synchronize();
      const auto got = dx.download();
      for (int64_t i = 0; i < n; ++i) REQUIRE(bits(got[shift + i]) == bits(ref[i]));
      REQUIRE(bits(got[shift == 0 ? n : 0]) == bits(x[shift == 0 ? n : 0]));  // the element outside untouched
    }
  }
  DeviceBuffer<float> dx(std::vector<float>{1.f});
  cuda::add(dx.get(), dx.get(), 0, nullptr);
  cuda::device_synchronize();
  REQUIRE(dx.download()[0] == 1.f);
}
