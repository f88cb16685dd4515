// Scalar reference twin of the quantized matmul (quant_avx2.cpp, quant_avxvnni.cpp, quant_avx512.cpp):
// activations quantized to 8-bit blocks exactly as llama.cpp's CPU backend does, then one exact integer
// dot per block and a float sum of the scaled block dots, rounded exactly as the SIMD levels round
// (bit-identical to them). Written for obviousness; natural block order.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/cpu/dtype.h"
#include "kernels/cpu/quant_kernels.h"

namespace specdec::cpu::qk {

namespace {
float round_fp16(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }
}  // namespace

// x (T, nb*32) -> a (natural layout). Round half to even (nearbyint under the default rounding mode),
// as _mm256_round_ps(_MM_ROUND_NEAREST) in llama.cpp's quantize_row_q8_0/q8_1.
void quantize_act_scalar(const ActQ& a, const float* x, WKind /*w: scalar needs no bias*/, int64_t b0, int64_t b1) {
  for (int64_t b = b0; b < b1; ++b) {
    const float* xb = x + b * kQK;
    int8_t* qb = a.q + b * kQK;
    float amax = 0.f;
    for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127.f;
    const float id = amax != 0.f ? 127.f / amax : 0.f;
    int sum = 0;
    for (int j = 0; j < kQK; ++j) {
      qb[j] = static_cast<int8_t>(std::nearbyint(xb[j] * id));
      sum += qb[j];
    }
    a.d[b] = round_fp16(d);
    a.s[b] = round_fp16(d * static_cast<float>(sum));
    a.bias[b] = 0;
  }
}

// out (T_all, N): rows [n0, n1) for tokens [t0, t1). Per block: sumi = sum_j qw_j * qa_j (exact int),
// acc = fma(dw * da, sumi, acc), then acc = fma(mw, s, acc) for Q4_1 (its weights are qw*dw + mw), in
// block order: exactly the operations of every SIMD level, so all levels give the same bits.
void matmul_rows_scalar(float* out, const ActQ& a, const void* W, WKind w, int N, int n0, int n1, int t0, int t1) {
  const int nb = a.nb;
  for (int n = n0; n < n1; ++n) {
    for (int t = t0; t < t1; ++t) {
      const int8_t* qa = a.q + static_cast<int64_t>(t) * a.nb * kQK;
      const float* da = a.d + static_cast<int64_t>(t) * a.nb;
      const float* sa = a.s + static_cast<int64_t>(t) * a.nb;
      float acc = 0.f;
      for (int b = 0; b < nb; ++b) {
        const int8_t* ab = qa + b * kQK;
        int sumi = 0;
        float dw = 0.f, mw = 0.f;
        switch (w) {
          case WKind::Q8_0: {
            const auto& blk = static_cast<const BlockQ8_0*>(W)[static_cast<int64_t>(n) * nb + b];
            for (int j = 0; j < kQK; ++j) sumi += blk.qs[j] * ab[j];
            dw = fp16_to_fp32(blk.d);
            break;
          }
          case WKind::Q4_0: {
            const auto& blk = static_cast<const BlockQ4_0*>(W)[static_cast<int64_t>(n) * nb + b];
            for (int j = 0; j < 16; ++j) {
              sumi += ((blk.qs[j] & 0xF) - 8) * ab[j];
              sumi += ((blk.qs[j] >> 4) - 8) * ab[j + 16];
            }
            dw = fp16_to_fp32(blk.d);
            break;
          }
          case WKind::Q4_1: {
            const auto& blk = static_cast<const BlockQ4_1*>(W)[static_cast<int64_t>(n) * nb + b];
            for (int j = 0; j < 16; ++j) {
              sumi += (blk.qs[j] & 0xF) * ab[j];
              sumi += (blk.qs[j] >> 4) * ab[j + 16];
            }
            dw = fp16_to_fp32(blk.d);
            mw = fp16_to_fp32(blk.m);
            break;
          }
        }
        // the SIMD levels' exact operations: one product, then fused multiply-adds in this order
        acc = std::fma(dw * da[b], static_cast<float>(sumi), acc);
        if (w == WKind::Q4_1) acc = std::fma(mw, sa[b], acc);
      }
      out[static_cast<int64_t>(t) * N + n] = acc;
    }
  }
}

}  // namespace specdec::cpu::qk
