// Pieces of the x86 quantized matmul shared by quant_avx2.cpp, quant_avxvnni.cpp and quant_avx512.cpp: the SIMD
// activation quantizer (bit-identical to quant_scalar.cpp's), block formats, row addressing and prefetch. Each TU
// includes it once under its own ISA flags; everything here has internal linkage, so the two compiled
// copies never merge. Layouts and numerics are documented in quant_kernels.h.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/quant_kernels.h"

#if defined(__AVX512VNNI__) && defined(__AVX512VL__) && defined(__AVX512BW__)
#define SPECDEC_QK_AVX512 1
#else
#define SPECDEC_QK_AVX512 0
#endif
// AVX-VNNI (VEX-encoded vpdpbusd on ymm: Alder Lake and later, Zen 5): the avxvnni level's TU
#if defined(__AVXVNNI__) && !SPECDEC_QK_AVX512
#define SPECDEC_QK_VNNI256 1
#else
#define SPECDEC_QK_VNNI256 0
#endif

namespace specdec::cpu::qk {
namespace {

template <WKind W>
struct Fmt;
template <>
struct Fmt<WKind::Q8_0> {
  static constexpr int kBytes = 34, kQs = 2;  // block bytes, offset of the quants
};
template <>
struct Fmt<WKind::Q4_0> {
  static constexpr int kBytes = 18, kQs = 2;
};
template <>
struct Fmt<WKind::Q4_1> {
  static constexpr int kBytes = 20, kQs = 4;
};

// Integer correction per activation block so every weight byte can enter the dot as unsigned:
// Q4_0 nibbles n = q+8 need -8*sum(a); with VNNI (avx512, avxvnni), Q8_0 enters as q+128 (xor 0x80) and
// needs -128*sum(a).
inline int bias_mul(WKind w) {
  if (w == WKind::Q4_0) return 8;
  if (w == WKind::Q8_0 && (SPECDEC_QK_AVX512 || SPECDEC_QK_VNNI256)) return 128;
  return 0;
}

// ---- activations ------------------------------------------------------------------------------

// One block of 32 floats -> 32 int8 in natural order; returns sum(q). amax, d and id are computed as
// in llama.cpp's quantize_row_q8_0 (x86); cvtps_epi32 rounds half to even like _mm256_round_ps.
inline int quant_block(const float* x, int8_t* q, float* d_out, float* s_out) {
  const __m256 v0 = _mm256_loadu_ps(x), v1 = _mm256_loadu_ps(x + 8);
  const __m256 v2 = _mm256_loadu_ps(x + 16), v3 = _mm256_loadu_ps(x + 24);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
  m = _mm256_max_ps(m, _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
  __m128 m4 = _mm_max_ps(_mm256_extractf128_ps(m, 1), _mm256_castps256_ps128(m));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  const float amax = _mm_cvtss_f32(m4);
  const float d = amax / 127.f;
  const float id = amax != 0.f ? 127.f / amax : 0.f;
  const __m256 mul = _mm256_set1_ps(id);
  const __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, mul));
  const __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, mul));
  const __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, mul));
  const __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, mul));
  __m256i s = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
  const int sum = _mm_cvtsi128_si32(s4);
  // packs interleave 128-bit lanes: restore element order with one dword permute
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
  const __m256i q8 = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), q8);
  *d_out = _cvtsh_ss(_cvtss_sh(d, 0));
  *s_out = _cvtsh_ss(_cvtss_sh(d * static_cast<float>(sum), 0));
  return sum;
}

// Blocks [b0, b1) of x (T, nb*32) -> a (natural order).
inline void quantize_act_x86(const ActQ& a, const float* x, WKind w, int64_t b0, int64_t b1) {
  const int c = bias_mul(w);
  for (int64_t b = b0; b < b1; ++b) a.bias[b] = -c * quant_block(x + b * kQK, a.q + b * kQK, a.d + b, a.s + b);
}

inline int32_t load_i32(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// ---- weights --------------------------------------------------------------------------------------

// The rows of a chunk are interleaved streams that the hardware prefetchers follow poorly (a 4x slower
// LM head without this): while working on block j of a chunk of `bytes` bytes at p0, prefetch the j-th
// slice of the next chunk (the next rows, contiguous in W). Prefetches past W are harmless hints.
inline void prefetch_next_chunk(const uint8_t* p0, int64_t bytes, int j, int nb) {
  const int64_t lines = (bytes / 64 + nb - 1) / nb;
  const uint8_t* next = p0 + bytes + 64 * lines * j;
  for (int64_t l = 0; l < lines; ++l) _mm_prefetch(reinterpret_cast<const char*>(next + 64 * l), _MM_HINT_T0);
}

// Row k of a chunk of L rows starting at p0 (row stride rs bytes). In the last, partial chunk rows past
// `last` repeat row `last`, so every load stays inside W; their lanes are never stored.
template <bool Partial>
inline const uint8_t* row_ptr(const uint8_t* p0, int64_t rs, int k, int last) {
  return p0 + (Partial && k > last ? last : k) * rs;
}

}  // namespace
}  // namespace specdec::cpu::qk
