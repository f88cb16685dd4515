// The 256-bit quantized matmul, included once by quant_avx2.cpp (AVX2 + FMA + F16C: maddubs/madd integer
// dots) and once by quant_avxvnni.cpp (the same plus AVX-VNNI: vpdpbusd on ymm), each under its own ISA
// flags and entered only after a runtime check. Eight weight rows per ymm (lane = row, quant_kernels.h),
// integer dots against broadcast activation quants. The fast versions of quant_scalar.cpp, bit-identical
// to it; the activation quantizer is in quant_x86_impl.h. Everything here has internal linkage.
#pragma once

#include "kernels/cpu/quant_x86_impl.h"

#if SPECDEC_QK_VNNI256
#define SPECDEC_QK_FN(name) name##_avxvnni
#else
#define SPECDEC_QK_FN(name) name##_avx2
#endif

namespace specdec::cpu::qk {

namespace {

// 4x4 transpose of dwords inside each 128-bit lane.
inline void transpose4(__m256i& a, __m256i& b, __m256i& c, __m256i& d) {
  const __m256i t0 = _mm256_unpacklo_epi32(a, b), t1 = _mm256_unpackhi_epi32(a, b);
  const __m256i t2 = _mm256_unpacklo_epi32(c, d), t3 = _mm256_unpackhi_epi32(c, d);
  a = _mm256_unpacklo_epi64(t0, t2);
  b = _mm256_unpackhi_epi64(t0, t2);
  c = _mm256_unpacklo_epi64(t1, t3);
  d = _mm256_unpackhi_epi64(t1, t3);
}

inline __m256i load_2x128(const uint8_t* lo, const uint8_t* hi) {
  const __m128i l = _mm_loadu_si128(reinterpret_cast<const __m128i*>(lo));
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(hi));
  return _mm256_inserti128_si256(_mm256_castsi128_si256(l), h, 1);
}

// Block j of rows 0..7 (p0 = row 0's block j, row stride rs) -> w[r] with lane k = elements 4r..4r+3 of
// row k (nibbles for Q4_*, signed q for Q8_0), dw and mw (Q4_1 min) per lane.
template <WKind W, bool Partial>
inline void decode8(const uint8_t* p0, int64_t rs, int last, __m256i w[8], __m256& dw, __m256& mw) {
  constexpr int O = Fmt<W>::kQs;
  const auto P = [&](int k) { return row_ptr<Partial>(p0, rs, k, last) + O; };
  __m256i y0 = load_2x128(P(0), P(4)), y1 = load_2x128(P(1), P(5));
  __m256i y2 = load_2x128(P(2), P(6)), y3 = load_2x128(P(3), P(7));
  transpose4(y0, y1, y2, y3);
  if constexpr (W == WKind::Q8_0) {
    __m256i z0 = load_2x128(P(0) + 16, P(4) + 16), z1 = load_2x128(P(1) + 16, P(5) + 16);
    __m256i z2 = load_2x128(P(2) + 16, P(6) + 16), z3 = load_2x128(P(3) + 16, P(7) + 16);
    transpose4(z0, z1, z2, z3);
    w[0] = y0, w[1] = y1, w[2] = y2, w[3] = y3, w[4] = z0, w[5] = z1, w[6] = z2, w[7] = z3;
#if SPECDEC_QK_VNNI256
    // vpdpbusd multiplies unsigned by signed bytes: q + 128 (xor 0x80), the bias subtracts 128*sum(a)
    for (int r = 0; r < 8; ++r) w[r] = _mm256_xor_si256(w[r], _mm256_set1_epi8(static_cast<char>(0x80)));
#endif
  } else {
    const __m256i lo = _mm256_set1_epi8(0x0F);
    w[0] = _mm256_and_si256(y0, lo), w[4] = _mm256_and_si256(_mm256_srli_epi16(y0, 4), lo);
    w[1] = _mm256_and_si256(y1, lo), w[5] = _mm256_and_si256(_mm256_srli_epi16(y1, 4), lo);
    w[2] = _mm256_and_si256(y2, lo), w[6] = _mm256_and_si256(_mm256_srli_epi16(y2, 4), lo);
    w[3] = _mm256_and_si256(y3, lo), w[7] = _mm256_and_si256(_mm256_srli_epi16(y3, 4), lo);
  }
  // the first dword of each block holds d (and m for Q4_1): load them (scalar loads beat vpgatherdd on
  // Zen 4), then keep the wanted halves
  const auto D = [&](int k) {
    int32_t v;
    std::memcpy(&v, row_ptr<Partial>(p0, rs, k, last), 4);
    return v;
  };
  const __m256i dm = _mm256_setr_epi32(D(0), D(1), D(2), D(3), D(4), D(5), D(6), D(7));
  const __m256i pick_d = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, 0, 1, 4, 5, 8, 9,
                                          12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
  const auto halves = [](__m256i v) {  // halves in the low 8 bytes of each lane -> 8 floats
    return _mm256_cvtph_ps(_mm256_castsi256_si128(_mm256_permute4x64_epi64(v, 0x08)));
  };
  dw = halves(_mm256_shuffle_epi8(dm, pick_d));
  if constexpr (W == WKind::Q4_1) mw = halves(_mm256_shuffle_epi8(_mm256_srli_epi32(dm, 16), pick_d));
}

// Per-row integer block dots of decoded weights w with one activation block q (32 quants, broadcast).
// wabs = |w|, used by the Q8_0 sign trick only.
template <WKind W>
inline __m256i dots8(const __m256i w[8], const __m256i wabs[8], const int8_t* q, int32_t bias) {
  const auto A = [q](int r) { return _mm256_set1_epi32(load_i32(q + 4 * r)); };
#if SPECDEC_QK_VNNI256
  // unsigned weight bytes (nibbles, or q^0x80 for Q8_0) times signed activation bytes, four per lane per
  // instruction, accumulated in int32: the bias (-8 or -128 times sum(a); 0 for Q4_1) starts the sum
  (void)wabs;
  __m256i s0 = W == WKind::Q4_1 ? _mm256_setzero_si256() : _mm256_set1_epi32(bias);
  __m256i s1 = _mm256_setzero_si256();
  for (int r = 0; r < 8; r += 2) {
    s0 = _mm256_dpbusd_avx_epi32(s0, w[r], A(r));
    s1 = _mm256_dpbusd_avx_epi32(s1, w[r + 1], A(r + 1));
  }
  return _mm256_add_epi32(s0, s1);
#else
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (W == WKind::Q8_0) {
    // |w| * (a with w's sign): |w| <= 128, |a| <= 127, so each int16 pair sum stays < 2^15.
    __m256i s = _mm256_setzero_si256();
    for (int r = 0; r < 8; ++r) {
      const __m256i p = _mm256_maddubs_epi16(wabs[r], _mm256_sign_epi8(A(r), w[r]));
      s = _mm256_add_epi32(s, _mm256_madd_epi16(p, ones));
    }
    return s;
  } else {
    // nibble pairs give |p| <= 2*15*127 = 3810 per int16: eight of them still fit in int16.
    __m256i p = _mm256_maddubs_epi16(w[0], A(0));
    for (int r = 1; r < 8; ++r) p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[r], A(r)));
    const __m256i s = _mm256_madd_epi16(p, ones);
    return W == WKind::Q4_0 ? _mm256_add_epi32(s, _mm256_set1_epi32(bias)) : s;
  }
#endif
}

// Eight rows starting at p0 (stride rs; rows past `last` repeat it) for tokens [t0, t0+TT):
// acc[tt] lane k = output (t0+tt, row k).
template <WKind W, bool Partial>
inline void chunk8(__m256* acc, const uint8_t* p0, int64_t rs, int last, const ActQ& a, int t0, int TT) {
  constexpr int S = Fmt<W>::kBytes;
  for (int tt = 0; tt < TT; ++tt) acc[tt] = _mm256_setzero_ps();
  for (int j = 0; j < a.nb; ++j) {
    prefetch_next_chunk(p0, 8 * rs, j, a.nb);
    __m256i w[8], wabs[8];
    __m256 dw, mw = _mm256_setzero_ps();
    decode8<W, Partial>(p0 + static_cast<int64_t>(j) * S, rs, last, w, dw, mw);
    if constexpr (W == WKind::Q8_0 && !SPECDEC_QK_VNNI256)
      for (int r = 0; r < 8; ++r) wabs[r] = _mm256_abs_epi8(w[r]);
    for (int tt = 0; tt < TT; ++tt) {
      const int64_t ab = static_cast<int64_t>(t0 + tt) * a.nb + j;  // block index in a
      const __m256i s = dots8<W>(w, wabs, a.q + ab * kQK, a.bias[ab]);
      const __m256 dd = _mm256_mul_ps(dw, _mm256_set1_ps(a.d[ab]));
      acc[tt] = _mm256_fmadd_ps(dd, _mm256_cvtepi32_ps(s), acc[tt]);
      if constexpr (W == WKind::Q4_1) acc[tt] = _mm256_fmadd_ps(mw, _mm256_set1_ps(a.s[ab]), acc[tt]);
    }
  }
}

template <WKind W>
void rows(float* out, const ActQ& a, const void* Wv, int N, int n0, int n1, int t0, int t1) {
  const int64_t rs = static_cast<int64_t>(a.nb) * Fmt<W>::kBytes;
  const int TT = t1 - t0;
  __m256 acc[kTileT];
  for (int nc = n0; nc < n1; nc += 8) {
    const int R = n1 - nc < 8 ? n1 - nc : 8;
    const uint8_t* p0 = static_cast<const uint8_t*>(Wv) + nc * rs;
    if (R == 8)
      chunk8<W, false>(acc, p0, rs, 7, a, t0, TT);
    else
      chunk8<W, true>(acc, p0, rs, R - 1, a, t0, TT);
    for (int tt = 0; tt < TT; ++tt) {
      float* o = out + static_cast<int64_t>(t0 + tt) * N + nc;
      if (R == 8) {
        _mm256_storeu_ps(o, acc[tt]);
      } else {
        alignas(32) float f[8];
        _mm256_store_ps(f, acc[tt]);
        std::memcpy(o, f, static_cast<size_t>(R) * sizeof(float));
      }
    }
  }
}

}  // namespace

void SPECDEC_QK_FN(quantize_act)(const ActQ& a, const float* x, WKind w, int64_t b0, int64_t b1) {
  quantize_act_x86(a, x, w, b0, b1);
}

void SPECDEC_QK_FN(matmul_rows)(float* out, const ActQ& a, const void* W, WKind w, int N, int n0, int n1, int t0,
                                int t1) {
  switch (w) {
    case WKind::Q8_0:
      return rows<WKind::Q8_0>(out, a, W, N, n0, n1, t0, t1);
    case WKind::Q4_0:
      return rows<WKind::Q4_0>(out, a, W, N, n0, n1, t0, t1);
    case WKind::Q4_1:
      return rows<WKind::Q4_1>(out, a, W, N, n0, n1, t0, t1);
  }
}

}  // namespace specdec::cpu::qk
