// Raw-encoding helpers for the kernel tests: float bit casts, a reference bf16 rounding, and rows of
// random data encoded as any dtype through kernels/cpu.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/dtype.h"
#include "kernels/cpu/quant.h"
#include "tests/support/random.h"

namespace specdec::test {

// The IEEE-754 bits of f.
inline uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// The float whose IEEE-754 bits are u.
inline float from_bits(uint32_t u) { return std::bit_cast<float>(u); }

// fp32 -> bf16 round to nearest even, the obvious way: of the two bf16 values around f (truncation and
// the next one up in magnitude) the nearer in exact (double) arithmetic, on a tie the one with an even
// last bit; inf from the midpoint below it on; NaN to a quiet NaN.
inline uint16_t bf16_ref(float f) {
  const uint32_t u = bits(f);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40u);
  const uint16_t lo = static_cast<uint16_t>(u >> 16), hi = static_cast<uint16_t>(lo + 1);
  if ((u & 0xffffu) == 0) return lo;
  const double dl = std::fabs(static_cast<double>(f) - from_bits(static_cast<uint32_t>(lo) << 16));
  const double dh = std::fabs(static_cast<double>(from_bits(static_cast<uint32_t>(hi) << 16)) - f);
  if (std::isinf(from_bits(static_cast<uint32_t>(hi) << 16))) {
    // the next step up is inf: IEEE rounds to inf from the midpoint on (as if bf16 had one more binade)
    return (u & 0xffffu) >= 0x8000u ? hi : lo;
  }
  if (dl < dh) return lo;
  if (dh < dl) return hi;
  return (lo & 1u) ? hi : lo;
}

// The little-endian uint16 at p (any alignment): a GGML block's fp16 scale or min.
inline uint16_t u16_at(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// w (n elements) as one row of dtype t: F32 as is, F16 by cpu::fp32_to_fp16, BF16 by truncation, GGML
// blocks by cpu::quantize_row (n a multiple of the block size).
inline std::vector<uint8_t> encode_row(cpu::DType t, const std::vector<float>& w) {
  const auto n = static_cast<int64_t>(w.size());
  std::vector<uint8_t> out(cpu::row_bytes(t, n));
  switch (t) {
    case cpu::DType::F32:
      std::memcpy(out.data(), w.data(), out.size());
      break;
    case cpu::DType::F16:
    case cpu::DType::BF16:
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = t == cpu::DType::F16 ? cpu::fp32_to_fp16(w[i]) : static_cast<uint16_t>(bits(w[i]) >> 16);
        std::memcpy(&out[2 * i], &h, 2);
      }
      break;
    default:
      cpu::quantize_row(out.data(), w.data(), t, n);
  }
  return out;
}

// randn(n, seed, scale) encoded as one row of dtype t (encode_row): random weights, tables, sources.
inline std::vector<uint8_t> random_row(cpu::DType t, int64_t n, uint32_t seed, float scale = 1.f) {
  return encode_row(t, randn(static_cast<size_t>(n), seed, scale));
}

// The exact integer dot of Q8_0 / Q4_0 / Q4_1 weight block wb (raw GGML bytes) with 32 activation quants
// qa: the obvious loop.
inline int sumi_ref(cpu::DType t, const uint8_t* wb, const int8_t* qa) {
  int s = 0;
  for (int j = 0; j < 32; ++j) {
    int w;
    if (t == cpu::DType::Q8_0)
      w = static_cast<int8_t>(wb[2 + j]);
    else {
      const uint8_t byte = wb[(t == cpu::DType::Q4_0 ? 2 : 4) + j % 16];
      w = (j < 16 ? byte & 0xF : byte >> 4) - (t == cpu::DType::Q4_0 ? 8 : 0);
    }
    s += w * qa[j];
  }
  return s;
}

}  // namespace specdec::test
