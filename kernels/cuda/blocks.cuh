// Per-element and per-block logic shared by the CUDA kernels (embedding, dequant, matmul_quant) and by a
// host test (tests/kernels/test_blocks_host.cpp) that checks it against kernels/cpu: fp16 / bf16
// conversion, GGML block decode (Q8_0, Q4_0, Q4_1; layouts in kernels/cpu/quant_kernels.h), and the 8-bit
// activation blocks of matmul_small with their integer block dots. Every function is __host__ __device__
// and evaluates its floats exactly as kernels/cpu does: mul_rn / add_rn keep nvcc from fusing a product
// into an FMA, so a decoded weight or a block term is the CPU's, bit for bit.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/dtype.h"

#define SPECDEC_BLK_HD __host__ __device__ inline

namespace specdec::cuda::blocks {

constexpr int kQK = 32;  // elements per Q8_0 / Q4_0 / Q4_1 block and per activation block
constexpr int kBytesQ8_0 = 34, kBytesQ4_0 = 18, kBytesQ4_1 = 20;

// ---- bit casts, unaligned-safe loads, IEEE operations that are never contracted -----------------

SPECDEC_BLK_HD uint32_t f32_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

SPECDEC_BLK_HD float bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

// p: 2-byte aligned (every GGML block starts with a half and has even size).
SPECDEC_BLK_HD uint16_t ld_u16(const uint8_t* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const uint16_t*>(p);
#else
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
#endif
}

// Four bytes at a 2-byte aligned address, little endian (byte k in bits 8k..8k+7).
SPECDEC_BLK_HD uint32_t ld_u32_a2(const uint8_t* p) {
  return static_cast<uint32_t>(ld_u16(p)) | (static_cast<uint32_t>(ld_u16(p + 2)) << 16);
}

SPECDEC_BLK_HD float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}

SPECDEC_BLK_HD float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}

SPECDEC_BLK_HD float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}

// ---- fp16 / bf16 ---------------------------------------------------------------------------------

// Exact (every half is a float). Device: the hardware conversion. Host: the half's exponent and mantissa
// placed in a float and rescaled by 2^112, exact for normal and subnormal halves alike.
SPECDEC_BLK_HD float f16_to_f32(uint16_t h) {
#ifdef __CUDA_ARCH__
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
#else
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t em = h & 0x7fffu;
  if (em >= 0x7c00u) return bits_f32(sign | 0x7f800000u | ((em & 0x3ffu) << 13));  // inf / nan
  return bits_f32(f32_bits(bits_f32(em << 13) * 0x1p112f) | sign);
#endif
}

// Round to nearest even; overflow to inf, NaN to a quiet NaN. The same integer steps as
// cpu::fp32_to_fp16 (kernels/cpu/ops.cpp), so host and device give its bits, NaN included.
SPECDEC_BLK_HD uint16_t f32_to_f16(float f) {
  const uint32_t x = f32_bits(f);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);
  if (ax >= 0x477ff000u) return sign | 0x7c00u;
  if (ax < 0x38800000u) {  // result subnormal or zero: round m * 2^(e-150) to a multiple of 2^-24
    if (ax < 0x33000000u) return sign;
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);
  }
  uint32_t r = ax - 0x38000000u;
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return sign | static_cast<uint16_t>(r);
}

SPECDEC_BLK_HD float round_f16(float f) { return f16_to_f32(f32_to_f16(f)); }

SPECDEC_BLK_HD float bf16_to_f32(uint16_t b) { return bits_f32(static_cast<uint32_t>(b) << 16); }

// Round to nearest even (a carry out of the mantissa correctly reaches inf); NaN stays a quiet NaN.
SPECDEC_BLK_HD uint16_t f32_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// ---- element decode: 4 consecutive elements of a row ---------------------------------------------

// The source dtypes decode4 reads (what embedding tables and dequantize sources may be on the GPU).
SPECDEC_BLK_HD constexpr bool decodable(cpu::DType t) {
  switch (t) {
    case cpu::DType::F32:
    case cpu::DType::F16:
    case cpu::DType::BF16:
    case cpu::DType::Q8_0:
    case cpu::DType::Q4_0:
    case cpu::DType::Q4_1:
      return true;
    default:
      return false;
  }
}

// The list in decodable's words, for error messages.
constexpr const char* kDecodableNames = "f32, f16, bf16, q8_0, q4_0 or q4_1";

// v[0..3] = elements j..j+3 of the row starting at `row` (j % 4 == 0; n elements in the row, a multiple
// of 32 for block types). Block types never straddle a block (32 % 4 == 0) and read 2-byte aligned
// halves only. Float types: with kVec, one 16-byte (F32) / 8-byte (F16, BF16) load, which needs
// n % 4 == 0 and an aligned row; without, element loads and zeros past n. Values are cpu::dequantize_row's
// bits (quant.cpp: q * d for Q8_0, (q - 8) * d for Q4_0, q * d + m for Q4_1, no FMA).
template <cpu::DType S, bool kVec>
SPECDEC_BLK_HD void decode4(const uint8_t* row, int64_t j, int64_t n, float v[4]) {
  if constexpr (S == cpu::DType::F32) {
    const float* p = reinterpret_cast<const float*>(row) + j;
    if constexpr (kVec) {
#ifdef __CUDA_ARCH__
      const float4 q = *reinterpret_cast<const float4*>(p);
      v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
#else
      std::memcpy(v, p, 16);
#endif
    } else {
      for (int k = 0; k < 4; ++k) v[k] = j + k < n ? p[k] : 0.f;
    }
  } else if constexpr (S == cpu::DType::F16 || S == cpu::DType::BF16) {
    const uint16_t* p = reinterpret_cast<const uint16_t*>(row) + j;
    uint16_t h[4];
    if constexpr (kVec) {
#ifdef __CUDA_ARCH__
      const uint2 q = *reinterpret_cast<const uint2*>(p);
      h[0] = static_cast<uint16_t>(q.x), h[1] = static_cast<uint16_t>(q.x >> 16);
      h[2] = static_cast<uint16_t>(q.y), h[3] = static_cast<uint16_t>(q.y >> 16);
#else
      std::memcpy(h, p, 8);
#endif
    } else {
      for (int k = 0; k < 4; ++k) h[k] = j + k < n ? p[k] : uint16_t{0};
    }
    for (int k = 0; k < 4; ++k) v[k] = S == cpu::DType::F16 ? f16_to_f32(h[k]) : bf16_to_f32(h[k]);
  } else if constexpr (S == cpu::DType::Q8_0) {
    const uint8_t* b = row + (j / kQK) * kBytesQ8_0;
    const float d = f16_to_f32(ld_u16(b));
    const uint32_t q = ld_u32_a2(b + 2 + j % kQK);
    for (int k = 0; k < 4; ++k) v[k] = mul_rn(static_cast<float>(static_cast<int8_t>(q >> (8 * k))), d);
  } else if constexpr (S == cpu::DType::Q4_0) {
    const uint8_t* b = row + (j / kQK) * kBytesQ4_0;
    const float d = f16_to_f32(ld_u16(b));
    const int r = static_cast<int>(j % kQK);  // element r < 16: low nibble of qs[r]; else high of qs[r-16]
    const uint32_t q = ld_u32_a2(b + 2 + (r & 15)) >> (r < 16 ? 0 : 4);
    for (int k = 0; k < 4; ++k) v[k] = mul_rn(static_cast<float>(static_cast<int>((q >> (8 * k)) & 0xFu) - 8), d);
  } else if constexpr (S == cpu::DType::Q4_1) {
    const uint8_t* b = row + (j / kQK) * kBytesQ4_1;
    const float d = f16_to_f32(ld_u16(b)), m = f16_to_f32(ld_u16(b + 2));
    const int r = static_cast<int>(j % kQK);
    const uint32_t q = ld_u32_a2(b + 4 + (r & 15)) >> (r < 16 ? 0 : 4);
    for (int k = 0; k < 4; ++k) v[k] = add_rn(mul_rn(static_cast<float>((q >> (8 * k)) & 0xFu), d), m);
  } else {
    static_assert(S == cpu::DType::F32, "decode4: no GPU decode for this dtype");
  }
}

// ---- quantized activations (matmul_small's scratch) ----------------------------------------------

// Activations x (T, K) fp32 quantized per block of 32 as cpu::matmul_quant does (quant_scalar.cpp:
// amax = max|x|, d = amax/127, q = round_half_even(x * 127/amax); d stored fp16-rounded, s = fp16(d*sum q)).
struct ActQ8 {
  int8_t* q;     // (T, K): block (t, b) at q + t*K + 32*b, 32-byte aligned (K % 32 == 0)
  float* d;      // (T, K/32) fp16-rounded block scale
  float* s;      // (T, K/32) fp16(d * sum(q)): Q8_1's s, for Q4_1 weights
  int32_t* sum;  // (T, K/32) sum(q): Q4_0's nibble offset, -8 * sum(q), stays an exact integer
};

constexpr size_t kScratchAlign = 256;

SPECDEC_BLK_HD size_t align_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

// Bytes for T rows of K (any base address: the view aligns it up, hence the slack).
SPECDEC_BLK_HD size_t act_q8_bytes(int T, int K) {
  if (T <= 0 || K <= 0) return 0;
  const size_t nq = static_cast<size_t>(T) * static_cast<size_t>(K);
  const size_t nf = static_cast<size_t>(T) * static_cast<size_t>(K / kQK) * 4;
  return kScratchAlign + align_up(nq, kScratchAlign) + 3 * align_up(nf, kScratchAlign);
}

SPECDEC_BLK_HD ActQ8 act_q8_view(void* scratch, int T, int K) {
  const uintptr_t base = align_up(reinterpret_cast<uintptr_t>(scratch), kScratchAlign);
  const size_t nq = static_cast<size_t>(T) * static_cast<size_t>(K);
  const size_t nf = align_up(static_cast<size_t>(T) * static_cast<size_t>(K / kQK) * 4, kScratchAlign);
  uint8_t* p = reinterpret_cast<uint8_t*>(base);
  uint8_t* f = p + align_up(nq, kScratchAlign);
  return {reinterpret_cast<int8_t*>(p), reinterpret_cast<float*>(f), reinterpret_cast<float*>(f + nf),
          reinterpret_cast<int32_t*>(f + 2 * nf)};
}

// 127 / amax (0 for an all-zero block), as the CPU computes it.
SPECDEC_BLK_HD float act_inv_scale(float amax) { return amax != 0.f ? div_rn(127.f, amax) : 0.f; }

// One quant: round half to even of x * id (|x * id| <= 127 by construction).
SPECDEC_BLK_HD int act_quant(float x, float id) {
#ifdef __CUDA_ARCH__
  return __float2int_rn(__fmul_rn(x, id));
#else
  return static_cast<int>(std::nearbyint(x * id));
#endif
}

// The stored scales of a block with this amax and quant sum.
SPECDEC_BLK_HD void act_scales(float amax, int sum, float& d, float& s) {
  const float d0 = div_rn(amax, 127.f);
  d = round_f16(d0);
  s = round_f16(mul_rn(d0, static_cast<float>(sum)));
}

// One block of 32, serially: the same steps the CUDA quantizer runs with one lane per element (a warp
// max and a warp sum, both exact in any order). For the host test.
SPECDEC_BLK_HD void act_quantize_block(const float* x, int8_t* q, float& d, float& s, int& sum) {
  float amax = 0.f;
  for (int j = 0; j < kQK; ++j) amax = fmaxf(amax, fabsf(x[j]));
  const float id = act_inv_scale(amax);
  sum = 0;
  for (int j = 0; j < kQK; ++j) {
    const int v = act_quant(x[j], id);
    q[j] = static_cast<int8_t>(v);
    sum += v;
  }
  act_scales(amax, sum, d, s);
}

// ---- integer block dots (the quantized matmul's per-block term) ----------------------------------

// One activation block in registers: q[i] packs elements 4i..4i+3 (byte k = element 4i+k).
struct ActBlock {
  int32_t q[8];
  float d, s;
  int32_t sum;
};

// Signed 4 x int8 dot plus c, as __dp4a.
SPECDEC_BLK_HD int dp4a(int32_t a, int32_t b, int c) {
#ifdef __CUDA_ARCH__
  return __dp4a(a, b, c);
#else
  for (int k = 0; k < 4; ++k)
    c += static_cast<int>(static_cast<int8_t>(a >> (8 * k))) * static_cast<int>(static_cast<int8_t>(b >> (8 * k)));
  return c;
#endif
}

// Block t, b of the scratch; quants by 16-byte loads (block addresses are 32-byte aligned). Only the
// fields the weight format reads are loaded.
template <bool kNeedS, bool kNeedSum>
SPECDEC_BLK_HD ActBlock load_act(const ActQ8& a, int64_t t, int b, int K) {
  ActBlock r;
  const int8_t* q = a.q + t * K + static_cast<int64_t>(b) * kQK;
#ifdef __CUDA_ARCH__
  const int4 lo = reinterpret_cast<const int4*>(q)[0], hi = reinterpret_cast<const int4*>(q)[1];
  r.q[0] = lo.x, r.q[1] = lo.y, r.q[2] = lo.z, r.q[3] = lo.w;
  r.q[4] = hi.x, r.q[5] = hi.y, r.q[6] = hi.z, r.q[7] = hi.w;
#else
  std::memcpy(r.q, q, 32);
#endif
  const int64_t i = t * (K / kQK) + b;
  r.d = a.d[i];
  r.s = kNeedS ? a.s[i] : 0.f;
  r.sum = kNeedSum ? a.sum[i] : 0;
  return r;
}

// Weight formats of matmul_small. W: one block in registers; load: from its bytes (2-byte aligned);
// sumi: the exact integer dot sum_j qw_j * qa_j; term: the block's contribution to a dot, exactly
// quant_scalar.cpp's (dw * da) * float(sumi) [+ mw * s for Q4_1].
struct FmtQ8_0 {
  static constexpr int kBytes = kBytesQ8_0;
  static constexpr bool kNeedS = false, kNeedSum = false;
  struct W {
    float d;
    int32_t q[8];
  };
  SPECDEC_BLK_HD static W load(const uint8_t* b) {
    W w;
    w.d = f16_to_f32(ld_u16(b));
    for (int i = 0; i < 8; ++i) w.q[i] = static_cast<int32_t>(ld_u32_a2(b + 2 + 4 * i));
    return w;
  }
  SPECDEC_BLK_HD static int sumi(const W& w, const ActBlock& a) {
    int r = 0;
    for (int i = 0; i < 8; ++i) r = dp4a(w.q[i], a.q[i], r);
    return r;
  }
  SPECDEC_BLK_HD static float term(const W& w, const ActBlock& a) {
    return mul_rn(mul_rn(w.d, a.d), static_cast<float>(sumi(w, a)));
  }
};

// sum_j n_j * a_j over the 32 unsigned nibbles of a Q4 block: q[i] packs qs[4i..4i+3], whose low
// nibbles are elements 4i..4i+3 and high nibbles elements 16+4i..16+4i+3.
SPECDEC_BLK_HD int nibble_dot(const int32_t (&q)[4], const ActBlock& a) {
  int r = 0;
  for (int i = 0; i < 4; ++i) {
    r = dp4a(q[i] & 0x0F0F0F0F, a.q[i], r);
    r = dp4a((q[i] >> 4) & 0x0F0F0F0F, a.q[i + 4], r);
  }
  return r;
}

struct FmtQ4_0 {
  static constexpr int kBytes = kBytesQ4_0;
  static constexpr bool kNeedS = false, kNeedSum = true;
  struct W {
    float d;
    int32_t q[4];
  };
  SPECDEC_BLK_HD static W load(const uint8_t* b) {
    W w;
    w.d = f16_to_f32(ld_u16(b));
    for (int i = 0; i < 4; ++i) w.q[i] = static_cast<int32_t>(ld_u32_a2(b + 2 + 4 * i));
    return w;
  }
  // Nibbles n = q + 8 enter the dot unsigned; sum (n - 8) * a = sum n * a - 8 * sum a, exactly.
  SPECDEC_BLK_HD static int sumi(const W& w, const ActBlock& a) { return nibble_dot(w.q, a) - 8 * a.sum; }
  SPECDEC_BLK_HD static float term(const W& w, const ActBlock& a) {
    return mul_rn(mul_rn(w.d, a.d), static_cast<float>(sumi(w, a)));
  }
};

struct FmtQ4_1 {
  static constexpr int kBytes = kBytesQ4_1;
  static constexpr bool kNeedS = true, kNeedSum = false;
  struct W {
    float d, m;
    int32_t q[4];
  };
  SPECDEC_BLK_HD static W load(const uint8_t* b) {
    W w;
    w.d = f16_to_f32(ld_u16(b));
    w.m = f16_to_f32(ld_u16(b + 2));
    for (int i = 0; i < 4; ++i) w.q[i] = static_cast<int32_t>(ld_u32_a2(b + 4 + 4 * i));
    return w;
  }
  SPECDEC_BLK_HD static int sumi(const W& w, const ActBlock& a) { return nibble_dot(w.q, a); }
  SPECDEC_BLK_HD static float term(const W& w, const ActBlock& a) {
    return add_rn(mul_rn(mul_rn(w.d, a.d), static_cast<float>(sumi(w, a))), mul_rn(w.m, a.s));
  }
};

}  // namespace specdec::cuda::blocks
