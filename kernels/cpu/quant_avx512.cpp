// AVX-512 (F, BW, VL, VNNI) quantized matmul (compiled with those flags, entered only after a runtime
// check): sixteen weight rows per zmm (lane = row, quant_kernels.h), vpdpbusd integer dots against
// broadcast activation quants. The fast version of quant_scalar.cpp; the activation quantizer and the
// ymm pieces it shares with the AVX2 level are in quant_x86_impl.h.

// GCC 12 flags the _mm512_undefined_* placeholders inside its own AVX-512 intrinsics (unpack, insert)
// as maybe-uninitialized: a known false positive, silenced for this file only.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include "kernels/cpu/quant_x86_impl.h"

#if !SPECDEC_QK_AVX512
#error "quant_avx512.cpp needs -mavx512f -mavx512bw -mavx512vl -mavx512vnni"
#endif

namespace specdec::cpu::qk {

namespace {

// 4x4 transpose of dwords inside each 128-bit lane.
inline void transpose4(__m512i& a, __m512i& b, __m512i& c, __m512i& d) {
  const __m512i t0 = _mm512_unpacklo_epi32(a, b), t1 = _mm512_unpackhi_epi32(a, b);
  const __m512i t2 = _mm512_unpacklo_epi32(c, d), t3 = _mm512_unpackhi_epi32(c, d);
  a = _mm512_unpacklo_epi64(t0, t2);
  b = _mm512_unpackhi_epi64(t0, t2);
  c = _mm512_unpacklo_epi64(t1, t3);
  d = _mm512_unpackhi_epi64(t1, t3);
}

// 16 bytes at each of p0..p3 -> the four 128-bit lanes.
inline __m512i load_4x128(const uint8_t* p0, const uint8_t* p1, const uint8_t* p2, const uint8_t* p3) {
  const auto L = [](const uint8_t* q) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(q)); };
  __m512i v = _mm512_castsi128_si512(L(p0));
  v = _mm512_inserti32x4(v, L(p1), 1);
  v = _mm512_inserti32x4(v, L(p2), 2);
  return _mm512_inserti32x4(v, L(p3), 3);
}

// Block j of rows 0..15 (p0 = row 0's block j, row stride rs) -> w[r] with lane k = elements 4r..4r+3
// of row k as unsigned bytes for dpbusd (nibbles; q^0x80 for Q8_0), dw and mw (Q4_1 min) per lane.
template <WKind W, bool Partial>
inline void decode16(const uint8_t* p0, int64_t rs, int last, __m512i w[8], __m512& dw, __m512& mw) {
  constexpr int O = Fmt<W>::kQs;
  const auto P = [&](int k) { return row_ptr<Partial>(p0, rs, k, last) + O; };
  // y_i holds rows i, i+4, i+8, i+12 in its 128-bit lanes: after the transpose lane 4L+i is row 4L+i
  __m512i y0 = load_4x128(P(0), P(4), P(8), P(12)), y1 = load_4x128(P(1), P(5), P(9), P(13));
  __m512i y2 = load_4x128(P(2), P(6), P(10), P(14)), y3 = load_4x128(P(3), P(7), P(11), P(15));
  transpose4(y0, y1, y2, y3);
  if constexpr (W == WKind::Q8_0) {
    __m512i z0 = load_4x128(P(0) + 16, P(4) + 16, P(8) + 16, P(12) + 16);
    __m512i z1 = load_4x128(P(1) + 16, P(5) + 16, P(9) + 16, P(13) + 16);
    __m512i z2 = load_4x128(P(2) + 16, P(6) + 16, P(10) + 16, P(14) + 16);
    __m512i z3 = load_4x128(P(3) + 16, P(7) + 16, P(11) + 16, P(15) + 16);
    transpose4(z0, z1, z2, z3);
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    w[0] = _mm512_xor_si512(y0, flip), w[1] = _mm512_xor_si512(y1, flip);
    w[2] = _mm512_xor_si512(y2, flip), w[3] = _mm512_xor_si512(y3, flip);
    w[4] = _mm512_xor_si512(z0, flip), w[5] = _mm512_xor_si512(z1, flip);
    w[6] = _mm512_xor_si512(z2, flip), w[7] = _mm512_xor_si512(z3, flip);
  } else {
    const __m512i lo = _mm512_set1_epi8(0x0F);
    w[0] = _mm512_and_si512(y0, lo), w[4] = _mm512_and_si512(_mm512_srli_epi16(y0, 4), lo);
    w[1] = _mm512_and_si512(y1, lo), w[5] = _mm512_and_si512(_mm512_srli_epi16(y1, 4), lo);
    w[2] = _mm512_and_si512(y2, lo), w[6] = _mm512_and_si512(_mm512_srli_epi16(y2, 4), lo);
    w[3] = _mm512_and_si512(y3, lo), w[7] = _mm512_and_si512(_mm512_srli_epi16(y3, 4), lo);
  }
  // the first dword of each block holds d (and m for Q4_1); 16 scalar loads beat vpgatherdd on Zen 4
  const auto D = [&](int k) {
    int32_t v;
    std::memcpy(&v, row_ptr<Partial>(p0, rs, k, last), 4);
    return v;
  };
  const __m512i dm = _mm512_setr_epi32(D(0), D(1), D(2), D(3), D(4), D(5), D(6), D(7), D(8), D(9), D(10), D(11), D(12),
                                       D(13), D(14), D(15));
  dw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dm));
  if constexpr (W == WKind::Q4_1) mw = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(dm, 16)));
}

// One block's integer dot for one token against the decoded weights w, scaled and added to acc in the
// order every level uses: acc = fma(dw * da, float(dot), acc), then for Q4_1 acc = fma(mw, sa, acc).
template <WKind W>
inline __m512 block_token(__m512 acc, const __m512i w[8], __m512 dw, __m512 mw, const ActQ& a, int64_t ab) {
  const int8_t* q = a.q + ab * kQK;
  __m512i s0 = W == WKind::Q4_1 ? _mm512_setzero_si512() : _mm512_set1_epi32(a.bias[ab]);
  __m512i s1 = _mm512_setzero_si512();
  for (int r = 0; r < 8; r += 2) {
    s0 = _mm512_dpbusd_epi32(s0, w[r], _mm512_set1_epi32(load_i32(q + 4 * r)));
    s1 = _mm512_dpbusd_epi32(s1, w[r + 1], _mm512_set1_epi32(load_i32(q + 4 * r + 4)));
  }
  const __m512 dd = _mm512_mul_ps(dw, _mm512_set1_ps(a.d[ab]));
  acc = _mm512_fmadd_ps(dd, _mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), acc);
  if constexpr (W == WKind::Q4_1) acc = _mm512_fmadd_ps(mw, _mm512_set1_ps(a.s[ab]), acc);
  return acc;
}

// Sixteen rows starting at p0 for tokens [t0, t0+TT): acc[tt] lane k = output (t0+tt, row k). Blocks go in
// pairs: both are decoded, then each token takes the two in order (one accumulator load and store per
// pair, two independent dot chains); the arithmetic per lane is the single-block order.
template <WKind W, bool Partial>
inline void chunk16(__m512* acc, const uint8_t* p0, int64_t rs, int last, const ActQ& a, int t0, int TT) {
  constexpr int S = Fmt<W>::kBytes;
  for (int tt = 0; tt < TT; ++tt) acc[tt] = _mm512_setzero_ps();
  int j = 0;
  for (; j + 1 < a.nb; j += 2) {
    prefetch_next_chunk(p0, 16 * rs, j, a.nb);
    prefetch_next_chunk(p0, 16 * rs, j + 1, a.nb);
    __m512i w0[8], w1[8];
    __m512 dw0, dw1, mw0 = _mm512_setzero_ps(), mw1 = _mm512_setzero_ps();
    decode16<W, Partial>(p0 + static_cast<int64_t>(j) * S, rs, last, w0, dw0, mw0);
    decode16<W, Partial>(p0 + static_cast<int64_t>(j + 1) * S, rs, last, w1, dw1, mw1);
    for (int tt = 0; tt < TT; ++tt) {
      const int64_t ab = static_cast<int64_t>(t0 + tt) * a.nb + j;  // block index in a
      acc[tt] = block_token<W>(block_token<W>(acc[tt], w0, dw0, mw0, a, ab), w1, dw1, mw1, a, ab + 1);
    }
  }
  for (; j < a.nb; ++j) {
    prefetch_next_chunk(p0, 16 * rs, j, a.nb);
    __m512i w[8];
    __m512 dw, mw = _mm512_setzero_ps();
    decode16<W, Partial>(p0 + static_cast<int64_t>(j) * S, rs, last, w, dw, mw);
    for (int tt = 0; tt < TT; ++tt)
      acc[tt] = block_token<W>(acc[tt], w, dw, mw, a, static_cast<int64_t>(t0 + tt) * a.nb + j);
  }
}

template <WKind W>
void rows(float* out, const ActQ& a, const void* Wv, int N, int n0, int n1, int t0, int t1) {
  const int64_t rs = static_cast<int64_t>(a.nb) * Fmt<W>::kBytes;
  const int TT = t1 - t0;
  __m512 acc[kTileT];
  for (int nc = n0; nc < n1; nc += 16) {
    const int R = n1 - nc < 16 ? n1 - nc : 16;
    const uint8_t* p0 = static_cast<const uint8_t*>(Wv) + nc * rs;
    if (R == 16)
      chunk16<W, false>(acc, p0, rs, 15, a, t0, TT);
    else
      chunk16<W, true>(acc, p0, rs, R - 1, a, t0, TT);
    const __mmask16 m = static_cast<__mmask16>((1u << R) - 1);
    for (int tt = 0; tt < TT; ++tt) _mm512_mask_storeu_ps(out + static_cast<int64_t>(t0 + tt) * N + nc, m, acc[tt]);
  }
}

}  // namespace

void quantize_act_avx512(const ActQ& a, const float* x, WKind w, int64_t b0, int64_t b1) {
  quantize_act_x86(a, x, w, b0, b1);
}

void matmul_rows_avx512(float* out, const ActQ& a, const void* W, WKind w, int N, int n0, int n1, int t0, int t1) {
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
