// Test-side references for the quantized formats, written independently of kernels/cpu/quant*.cpp from
// the GGML layout descriptions: element-wise decoders of every block type, random block builders, and
// the float reference matmul (double accumulation) with its error bound.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/dtype.h"
#include "tests/support/random.h"  // randn

namespace specdec::test {

using cpu::DType;

inline float half(uint16_t h) { return cpu::fp16_to_fp32(h); }
inline uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Element e (0..31) of a Q8_0 / Q4_0 / Q4_1 block as (integer quant, scale d, offset m): value = q*d +
// m. Q8_0: [d:f16][q:int8 x32]; Q4_0: [d:f16][16 bytes: element j low nibble, j+16 high], q = nibble-8;
// Q4_1: [d:f16][m:f16][nibbles as Q4_0], q = nibble.
struct Elem {
  int q;
  float d, m;
};
inline Elem small_block_elem(const uint8_t* blk, DType t, int e) {
  switch (t) {
    case DType::Q8_0:
      return {static_cast<int8_t>(blk[2 + e]), half(rd16(blk)), 0.f};
    case DType::Q4_0: {
      const uint8_t byte = blk[2 + e % 16];
      return {(e < 16 ? byte & 15 : byte >> 4) - 8, half(rd16(blk)), 0.f};
    }
    case DType::Q4_1: {
      const uint8_t byte = blk[4 + e % 16];
      return {e < 16 ? byte & 15 : byte >> 4, half(rd16(blk)), half(rd16(blk + 2))};
    }
    default:
      return {0, 0.f, 0.f};
  }
}

// Value of element e of a small block, rounded as GGML writes it: q*d for Q8_0/Q4_0, q*d + m for Q4_1.
inline float small_block_value(const uint8_t* blk, DType t, int e) {
  const Elem x = small_block_elem(blk, t, e);
  const float qd = static_cast<float>(x.q) * x.d;
  return t == DType::Q4_1 ? qd + x.m : qd;
}

// 6-bit scale / min number j (0..7) of a Q4_K / Q5_K scales[12] array: j < 4 sit in the low 6 bits of
// bytes j (scale) and j+4 (min); j >= 4 keep 4 low bits in byte j+4 (scale: low nibble, min: high
// nibble) and 2 high bits in the top of bytes j-4 (scale) and j (min).
inline void k4_scale_min(const uint8_t* s, int j, int& sc, int& mn) {
  if (j < 4) {
    sc = s[j] % 64;
    mn = s[j + 4] % 64;
  } else {
    sc = s[j + 4] % 16 + 16 * (s[j - 4] / 64);
    mn = s[j + 4] / 16 + 16 * (s[j] / 64);
  }
}

// Element e (0..255) of a K-quant super-block, computed as GGML does: (d*sc)*q - (dmin*m) for Q4_K and
// Q5_K (q in 0..15 / 0..31), (d*sc)*q for Q6_K (q in -32..31, sc int8).
// Q4_K: [d][dmin][scales 12][qs 128]; sub-block s = e/32 uses byte 32*(s/2) + e%32, low nibble when s
//   is even, high when odd.
// Q5_K: [d][dmin][scales 12][qh 32][qs 128]; as Q4_K plus bit s of qh[e%32] as the value 16.
// Q6_K: [ql 128][qh 64][scales 16 x int8][d]; half h = e/128, r = e%128, k = r/32, l = r%32: low 4 bits
//   from ql[64h + l + 32*(k%2)] (low nibble if k < 2), high 2 bits from qh[32h + l] >> 2k, minus 32;
//   scale scales[8h + r/16].
inline float kquant_value(const uint8_t* blk, DType t, int e) {
  if (t == DType::Q6_K) {
    const int h = e / 128, r = e % 128, k = r / 32, l = r % 32;
    const uint8_t lbyte = blk[64 * h + l + 32 * (k % 2)];
    const int low = k < 2 ? lbyte & 15 : lbyte >> 4;
    const int high = (blk[128 + 32 * h + l] >> (2 * k)) & 3;
    const int q = low + 16 * high - 32;
    const int sc = static_cast<int8_t>(blk[192 + 8 * h + r / 16]);
    const float d = half(rd16(blk + 208));
    return (d * static_cast<float>(sc)) * static_cast<float>(q);
  }
  const float d = half(rd16(blk)), dmin = half(rd16(blk + 2));
  const int s = e / 32;
  int sc, mn;
  k4_scale_min(blk + 4, s, sc, mn);
  const uint8_t* qs = blk + (t == DType::Q5_K ? 48 : 16);
  const uint8_t byte = qs[32 * (s / 2) + e % 32];
  int q = s % 2 == 0 ? byte & 15 : byte >> 4;
  if (t == DType::Q5_K && ((blk[16 + e % 32] >> s) & 1)) q += 16;
  return (d * static_cast<float>(sc)) * static_cast<float>(q) - dmin * static_cast<float>(mn);
}

// Dequantize a row with the references above.
inline std::vector<float> ref_dequant(const std::vector<uint8_t>& row, DType t, int64_t n) {
  const cpu::DTypeInfo info = cpu::dtype_info(t);
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* blk = row.data() + (i / info.block) * info.block_bytes;
    const int e = static_cast<int>(i % info.block);
    out[static_cast<size_t>(i)] = info.block == 32 ? small_block_value(blk, t, e) : kquant_value(blk, t, e);
  }
  return out;
}

// n random blocks: random bytes everywhere, then every fp16 field set to a finite value of moderate size
// (so no inf/nan scales), with both signs.
inline std::vector<uint8_t> random_blocks(DType t, int64_t n_blocks, uint32_t seed) {
  const cpu::DTypeInfo info = cpu::dtype_info(t);
  std::mt19937 g(seed);
  std::vector<uint8_t> b(static_cast<size_t>(n_blocks * info.block_bytes));
  for (auto& x : b) x = static_cast<uint8_t>(g());
  std::uniform_real_distribution<float> u(-2.f, 2.f);
  auto put = [&](uint8_t* p) {
    const uint16_t h = cpu::fp32_to_fp16(u(g));
    std::memcpy(p, &h, 2);
  };
  for (int64_t i = 0; i < n_blocks; ++i) {
    uint8_t* blk = b.data() + i * info.block_bytes;
    switch (t) {
      case DType::Q4_1:
      case DType::Q4_K:
      case DType::Q5_K:
        put(blk), put(blk + 2);
        break;
      case DType::Q6_K:
        put(blk + 208);
        break;
      default:
        put(blk);
    }
  }
  return b;
}

}  // namespace specdec::test
