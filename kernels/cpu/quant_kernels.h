// Internal interface of the quantized matmul: GGML block structs, the quantized-activation buffer, and
// the per-ISA kernels (quant_scalar.cpp is the bit-identical reference twin of quant_avx2.cpp,
// quant_avxvnni.cpp and quant_avx512.cpp).
// Only plain structs, constants and declarations live here: the SIMD translation units are compiled
// with wider ISA flags, so an inline function shared with them could be merged by the linker into a
// copy that faults on a machine without AVX-512.
#pragma once

#include <cstddef>
#include <cstdint>

namespace specdec::cpu::qk {

constexpr int kQK = 32;     // elements per block of Q8_0 / Q4_0 / Q4_1 and of the activations
constexpr int kTileT = 16;  // tokens processed together per weight row by one kernel call

// GGML block layouts (ggml-common.h); scales are IEEE half bit patterns.
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[32];
};
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[16];  // element j in the low nibble of qs[j], element j+16 in the high nibble
};
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
struct BlockQ4K {
  uint16_t d, dmin;
  uint8_t scales[12];  // 8 six-bit scales and 8 six-bit mins, packed
  uint8_t qs[128];
};
struct BlockQ5K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qh[32];
  uint8_t qs[128];
};
struct BlockQ6K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ8_0) == 34 && sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ4K) == 144 && sizeof(BlockQ5K) == 176 && sizeof(BlockQ6K) == 210);

// Weight formats with a fast matmul.
enum class WKind : uint8_t { Q8_0, Q4_0, Q4_1 };

// Activations x (T,K) quantized once per call to 8 bits in blocks of 32, as llama.cpp's CPU backend
// does (quantize_row_q8_0 / q8_1 on x86): amax = max|x|, d = amax/127, q = round_half_even(x*127/amax),
// the stored d rounded to fp16. nb = K/32 blocks per token, natural order at every level.
struct ActQ {
  int8_t* q;      // (T, nb*32) quants; 64-byte aligned
  float* d;       // (T, nb) fp16-rounded block scale
  float* s;       // (T, nb) fp16(d * sum(q)): Q8_1's s, used with Q4_1 weights
  int32_t* bias;  // (T, nb) -c * sum(q), c chosen by the level for the weight kind: folded into its
                  // integer dots (Q4_0: c = 8 for nibbles n = q+8; Q8_0 with
                  // VNNI, avx512 or avxvnni: c = 128 for q^0x80)
  int T;
  int nb;
};

// SIMD layout of the work ("lane = row"): a register of L int32 lanes (L = 16 for avx512, 8 for avx2)
// holds L weight rows. The 32 quants of block j of those rows are transposed into 8 registers, register
// r holding elements 4r..4r+3 of every row; each is dotted with the same four activation quants
// broadcast to all lanes, so 8 dot-product steps leave row n's integer block dot in lane n. Scales are
// applied per lane (row) and block in float; lanes are the outputs, so no horizontal sums are needed.

// Per level: the activation quantizer x (T, nb*32) -> a for blocks [b0, b1) of the T*nb blocks, and
// the row kernel: out (T_all, N) rows [n0, n1) for tokens [t0, t1), t1 - t0 <= kTileT.
// Scalar reference twin: plain loops.
void quantize_act_scalar(const ActQ& a, const float* x, WKind w, int64_t b0, int64_t b1);
void matmul_rows_scalar(float* out, const ActQ& a, const void* W, WKind w, int N, int n0, int n1, int t0, int t1);

// AVX2 + FMA + F16C (quant_avx2.cpp).
void quantize_act_avx2(const ActQ& a, const float* x, WKind w, int64_t b0, int64_t b1);
void matmul_rows_avx2(float* out, const ActQ& a, const void* W, WKind w, int N, int n0, int n1, int t0, int t1);

// AVX2 + FMA + F16C + AVX-VNNI (quant_avxvnni.cpp: quant_avx2.cpp's kernel with vpdpbusd on ymm).
void quantize_act_avxvnni(const ActQ& a, const float* x, WKind w, int64_t b0, int64_t b1);
void matmul_rows_avxvnni(float* out, const ActQ& a, const void* W, WKind w, int N, int n0, int n1, int t0, int t1);

// AVX-512 F/BW/VL + VNNI (quant_avx512.cpp).
void quantize_act_avx512(const ActQ& a, const float* x, WKind w, int64_t b0, int64_t b1);
void matmul_rows_avx512(float* out, const ActQ& a, const void* W, WKind w, int N, int n0, int n1, int t0, int t1);

}  // namespace specdec::cpu::qk
