// GGML block formats: dequantize_row_quant against hand-computed values and an independent element-wise
// decoder (quant_reference.h), quantize_row (GGML's *_ref quantizers) round trips within their error
// bounds, and the activation quantizer's rounding (llama.cpp CPU backend: ties to even).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "tests/quant/quant_reference.h"

using namespace specdec::cpu;
using specdec::test::randn;
using specdec::test::random_blocks;
using specdec::test::ref_dequant;

namespace {
void put16(uint8_t* p, float v) {
  const uint16_t h = fp32_to_fp16(v);
  std::memcpy(p, &h, 2);
}
std::vector<float> dequant(const std::vector<uint8_t>& b, DType t, int64_t n) {
  std::vector<float> y(static_cast<size_t>(n));
  dequantize_row_quant(y.data(), b.data(), t, n);
  return y;
}
}  // namespace

TEST_CASE("Q8_0 / Q4_0 / Q4_1 dequantize to hand-computed values", "[quant]") {
  SECTION("q8_0: q * d") {
    std::vector<uint8_t> b(34);
    put16(b.data(), 0.5f);
    for (int j = 0; j < 32; ++j) b[2 + j] = static_cast<uint8_t>(static_cast<int8_t>(4 * j - 128));
    const auto y = dequant(b, DType::Q8_0, 32);
    REQUIRE(y[0] == -64.f);
    REQUIRE(y[1] == -62.f);
    REQUIRE(y[31] == -2.f);
  }
  SECTION("q4_0: (nibble - 8) * d, element j low nibble, j + 16 high") {
    std::vector<uint8_t> b(18);
    put16(b.data(), 2.f);
    for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
    const auto y = dequant(b, DType::Q4_0, 32);
    REQUIRE(y[0] == -16.f);
    REQUIRE(y[15] == 14.f);
    REQUIRE(y[16] == 14.f);
    REQUIRE(y[31] == -16.f);
  }
  SECTION("q4_1: nibble * d + m") {
    std::vector<uint8_t> b(20);
    put16(b.data(), 0.25f);
    put16(b.data() + 2, -1.f);
    for (int j = 0; j < 16; ++j) b[4 + j] = static_cast<uint8_t>(j | (3 << 4));
    const auto y = dequant(b, DType::Q4_1, 32);
    REQUIRE(y[0] == -1.f);
    REQUIRE(y[4] == 0.f);
    REQUIRE(y[15] == 2.75f);
    REQUIRE(y[20] == -0.25f);
  }
}

TEST_CASE("K-quants dequantize to hand-computed values", "[quant]") {
  SECTION("q4_k: d*sc*q - dmin*m with packed 6-bit scales and mins") {
    std::vector<uint8_t> b(144, 0);
    put16(b.data(), 1.f);       // d
    put16(b.data() + 2, 0.5f);  // dmin
    uint8_t* s = b.data() + 4;
    s[0] = 3 | (1 << 6);                             // sc0 = 3; top bits of sc4 = 1
    s[4] = 2 | (2 << 6);                             // m0 = 2;  top bits of m4 = 2
    s[1] = 5;                                        // sc1
    s[5] = 1;                                        // m1
    s[8] = 0x37;                                     // sc4 low = 7, m4 low = 3  -> sc4 = 23, m4 = 35
    for (int i = 0; i < 128; ++i) b[16 + i] = 0x21;  // low nibble 1, high nibble 2
    const auto y = dequant(b, DType::Q4_K, 256);
    REQUIRE(y[0] == 1.f * 3 * 1 - 0.5f * 2);      // sub-block 0: low nibbles of qs[0..32)
    REQUIRE(y[40] == 1.f * 5 * 2 - 0.5f * 1);     // sub-block 1: high nibbles of qs[0..32)
    REQUIRE(y[130] == 1.f * 23 * 1 - 0.5f * 35);  // sub-block 4: low nibbles of qs[64..96)
    REQUIRE(y[64] == 0.f);                        // sub-block 2: scale 0, min 0
  }
  SECTION("q5_k: the fifth bit of sub-block s is bit s of qh[l]") {
    std::vector<uint8_t> b(176, 0);
    put16(b.data(), 0.5f);
    put16(b.data() + 2, 1.f);
    b[4 + 0] = 4;                                    // sc0
    b[4 + 4] = 1;                                    // m0
    b[4 + 3] = 2;                                    // sc3
    b[4 + 7] = 3;                                    // m3
    b[16 + 5] = 0x01 | 0x08;                         // element 5: high bit for sub-block 0 and sub-block 3
    for (int i = 0; i < 128; ++i) b[48 + i] = 0x97;  // low nibble 7, high nibble 9
    const auto y = dequant(b, DType::Q5_K, 256);
    REQUIRE(y[0] == 0.5f * 4 * 7 - 1.f);
    REQUIRE(y[5] == 0.5f * 4 * (7 + 16) - 1.f);
    REQUIRE(y[96 + 5] == 0.5f * 2 * (9 + 16) - 3.f);  // sub-block 3: high nibbles of qs[32..64)
    REQUIRE(y[96 + 6] == 0.5f * 2 * 9 - 3.f);
  }
  SECTION("q6_k: 4 + 2 bits minus 32, signed 8-bit scales per 16 elements") {
    std::vector<uint8_t> b(210, 0);
    put16(b.data() + 208, 0.25f);
    b[0] = 0x5A;                            // ql[0]: low 0xA (element 0), high 0x5 (element 64)
    b[32] = 0x03;                           // ql[32]: low 0x3 (element 32)
    b[128] = 0b11'10'01'00;                 // qh[0]: element 0 high 0, element 32 high 1, element 64 high 2, 96 high 3
    b[192 + 0] = static_cast<uint8_t>(-3);  // scale of elements 0..15
    b[192 + 2] = 7;                         // scale of elements 32..47
    b[192 + 4] = 2;                         // scale of elements 64..79
    b[192 + 6] = 1;                         // scale of elements 96..111
    const auto y = dequant(b, DType::Q6_K, 256);
    REQUIRE(y[0] == 0.25f * -3 * (0xA - 32));
    REQUIRE(y[32] == 0.25f * 7 * (0x3 + 16 - 32));
    REQUIRE(y[64] == 0.25f * 2 * (0x5 + 32 - 32));
    REQUIRE(y[96] == 0.25f * 1 * (48 - 32));
    REQUIRE(y[1] == 0.25f * -3 * -32);
  }
}

TEST_CASE("dequantize_row_quant equals the independent decoder bit for bit on random blocks", "[quant]") {
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const DTypeInfo info = dtype_info(t);
    for (int64_t nblocks : {1, 3, 37}) {
      const int64_t n = nblocks * info.block;
      const auto b = random_blocks(t, nblocks, static_cast<uint32_t>(7 * nblocks + info.block_bytes));
      const auto y = dequant(b, t, n);
      const auto r = ref_dequant(b, t, n);
      INFO(info.name << " blocks " << nblocks);
      for (int64_t i = 0; i < n; ++i) {
        INFO("element " << i);
        REQUIRE(std::memcmp(&y[i], &r[i], 4) == 0);
      }
      // ops.h's dequantize_row routes quantized dtypes here
      std::vector<float> z(static_cast<size_t>(n));
      dequantize_row(z.data(), b.data(), t, n);
      REQUIRE(std::memcmp(z.data(), y.data(), z.size() * 4) == 0);
    }
  }
}

TEST_CASE("dequantize_row_quant rejects bad sizes and unquantized dtypes", "[quant]") {
  std::vector<uint8_t> b(144);
  std::vector<float> y(256);
  REQUIRE_THROWS(dequantize_row_quant(y.data(), b.data(), DType::Q4_K, 32));
  REQUIRE_THROWS(dequantize_row_quant(y.data(), b.data(), DType::F16, 32));
  REQUIRE_THROWS(quantize_row(b.data(), y.data(), DType::Q6_K, 256));
}

// Round trip bounds (d = the block scale before fp16 rounding, amax = max|x| of the block):
//   q8_0: |x - y| <= d/2 + 127 d 2^-11            (round to nearest, then fp16(d) rel. error 2^-11)
//   q4_0: |x - y| <= |d| + 8 |d| 2^-11, and |d|/2 + 8 |d| 2^-11 where |x| <= amax/2 (the clamp of
//         +8 to 7 costs up to one step only at the top of the range)
//   q4_1: |x - y| <= d/2 + 15 d 2^-11 + |min| 2^-11 + 2^-22 |y|   (fp16(d), fp16(min), final add)
// each plus 1e-4 d for the float rounding of x*id before the integer rounding (a few ulps of q).
TEST_CASE("quantize_row round trips within the format's error bound", "[quant]") {
  constexpr double kH = 1.0 / 2048;  // fp16 relative rounding
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const int64_t n = 32 * 101;
    auto x = randn(static_cast<size_t>(n), 11, 3.f);
    for (int j = 0; j < 32; ++j) x[32 + j] = 0.f;    // an all-zero block
    for (int j = 0; j < 32; ++j) x[64 + j] += 50.f;  // an offset block (Q4_1's min at work)
    std::vector<uint8_t> q(row_bytes(t, n));
    quantize_row(q.data(), x.data(), t, n);
    const auto y = dequant(q, t, n);
    for (int64_t b = 0; b < n / 32; ++b) {
      const float* xb = x.data() + b * 32;
      double amax = 0, mn = xb[0], mx = xb[0];
      for (int j = 0; j < 32; ++j) {
        amax = std::max(amax, static_cast<double>(std::fabs(xb[j])));
        mn = std::min(mn, static_cast<double>(xb[j]));
        mx = std::max(mx, static_cast<double>(xb[j]));
      }
      for (int j = 0; j < 32; ++j) {
        const double err = std::fabs(static_cast<double>(xb[j]) - y[b * 32 + j]);
        double bound = 0;
        if (t == DType::Q8_0) {
          const double d = amax / 127;
          bound = d / 2 + 127 * d * kH + 1e-4 * d;
        } else if (t == DType::Q4_0) {
          const double d = amax / 8;
          bound = (std::fabs(xb[j]) <= amax / 2 ? d / 2 : d) + 8 * d * kH + 1e-4 * d;
        } else {
          const double d = (mx - mn) / 15;
          bound = d / 2 + 15 * d * kH + std::fabs(mn) * kH + std::fabs(y[b * 32 + j]) * 0x1p-22 + 1e-4 * d;
        }
        INFO(dtype_info(t).name << " block " << b << " element " << j << " x " << xb[j]);
        REQUIRE(err <= bound);
      }
    }
  }
}

TEST_CASE("quantize_row follows GGML's *_ref rounding", "[quant]") {
  std::vector<float> x(32, 0.f);
  x[0] = 127.f;  // amax 127: d = 1, id = 1
  x[1] = 2.5f;   // roundf: ties away from zero
  x[2] = -2.5f;
  x[3] = 3.49f;
  std::vector<uint8_t> q8(34);
  quantize_row(q8.data(), x.data(), DType::Q8_0, 32);
  REQUIRE(static_cast<int8_t>(q8[2 + 1]) == 3);
  REQUIRE(static_cast<int8_t>(q8[2 + 2]) == -3);
  REQUIRE(static_cast<int8_t>(q8[2 + 3]) == 3);

  // Q4_0: d = (signed element of largest magnitude) / -8, so that element maps exactly to nibble 0.
  std::vector<float> z(32, 1.f);
  z[5] = -4.f;
  std::vector<uint8_t> q4(18);
  quantize_row(q4.data(), z.data(), DType::Q4_0, 32);
  REQUIRE(fp16_to_fp32(static_cast<uint16_t>(q4[0] | (q4[1] << 8))) == 0.5f);
  REQUIRE((q4[2 + 5] & 15) == 0);   // -4 / 0.5 + 8.5 = 0.5 -> 0
  REQUIRE((q4[2 + 0] & 15) == 10);  // 1 / 0.5 + 8.5 = 10.5 -> 10
}

TEST_CASE("activation quantizer: amax/127 scales, ties to even, Q8_1 block sums", "[quant]") {
  const int K = 64;
  std::vector<float> x(K, 0.f);
  x[0] = 127.f;  // block 0: amax 127 -> d = 1, exact in fp16
  x[1] = 2.5f;
  x[2] = -2.5f;
  x[3] = 3.5f;
  x[4] = -0.5f;
  // block 1 stays zero: d = 0, every quant 0
  std::vector<int8_t> q(K);
  std::vector<float> d(2), s(2);
  quantize_activations(q.data(), d.data(), s.data(), x.data(), 1, K);
  REQUIRE(q[0] == 127);
  REQUIRE(q[1] == 2);  // ties to even, like _mm256_round_ps(_MM_ROUND_NEAREST) in llama.cpp
  REQUIRE(q[2] == -2);
  REQUIRE(q[3] == 4);
  REQUIRE(q[4] == 0);
  REQUIRE(d[0] == 1.f);
  REQUIRE(s[0] == 127.f + 2 - 2 + 4);
  REQUIRE(d[1] == 0.f);
  REQUIRE(s[1] == 0.f);
  for (int j = 32; j < K; ++j) REQUIRE(q[j] == 0);

  // d and s are fp16-rounded: amax 1 gives d = fp16(1/127)
  std::vector<float> y(32, 0.f);
  y[7] = 1.f;
  quantize_activations(q.data(), d.data(), s.data(), y.data(), 1, 32);
  REQUIRE(d[0] == fp16_to_fp32(fp32_to_fp16(1.f / 127.f)));
  REQUIRE(s[0] == fp16_to_fp32(fp32_to_fp16(127.f * (1.f / 127.f))));
}
