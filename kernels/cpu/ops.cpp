// CPU kernels of the Llama forward (fp32 compute). Plain loops written so the compiler vectorises them,
// OpenMP across independent rows and heads; every result is independent of the batch shape.
#include "kernels/cpu/ops.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <omp.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "core/error.h"
#include "kernels/cpu/quant.h"

namespace specdec::cpu {

float fp16_to_fp32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: renormalise
      exp = 127 - 15 + 1;
      while ((man & 0x400u) == 0) {
        man <<= 1;
        --exp;
      }
      man &= 0x3ffu;
      bits = sign | (exp << 23) | (man << 13);
    }
  } else if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t fp32_to_fp16(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u);  // inf / nan
  if (ax >= 0x477ff000u) return sign | 0x7c00u;                                     // overflow
  if (ax < 0x38800000u) {                                                           // subnormal / 0
    if (ax < 0x33000000u) return sign;
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // value = m * 2^(e-150) = r * 2^-24
    uint32_t r = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return sign | static_cast<uint16_t>(r);  // a carry into 0x400 is the smallest normal
  }
  // normal: round to nearest even on the 13 dropped bits
  uint32_t r = ax - 0x38000000u;
  const uint32_t rem = r & 0x1fffu;
  r >>= 13;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
  return sign | static_cast<uint16_t>(r);
}

void rmsnorm(float* out, const float* x, const float* w, int T, int H, float eps) {
  for (int t = 0; t < T; ++t) {
    const float* xr = x + static_cast<int64_t>(t) * H;
    float* o = out + static_cast<int64_t>(t) * H;
    float ss = 0.f;
    for (int i = 0; i < H; ++i) ss += xr[i] * xr[i];
    const float scale = 1.f / std::sqrt(ss / static_cast<float>(H) + eps);
    for (int i = 0; i < H; ++i) o[i] = xr[i] * scale * w[i];
  }
}

void rmsnorm_ref(float* out, const float* x, const float* w, int T, int H, float eps) {
  for (int t = 0; t < T; ++t) {
    const float* xr = x + static_cast<int64_t>(t) * H;
    double ss = 0.0;
    for (int i = 0; i < H; ++i) ss += static_cast<double>(xr[i]) * xr[i];
    const double scale = 1.0 / std::sqrt(ss / H + eps);
    for (int i = 0; i < H; ++i) out[static_cast<int64_t>(t) * H + i] = static_cast<float>(xr[i] * scale * w[i]);
  }
}

void dequantize_row(float* out, const void* src, DType t, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(out, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::F16: {
      const auto* h = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(h[i]);
      return;
    }
    case DType::BF16: {
      const auto* b = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) out[i] = bf16_to_fp32(b[i]);
      return;
    }
    default:
      dequantize_row_quant(out, src, t, n);
  }
}

namespace {

// The f32 dot product of every level: 16 independent lanes (lane j takes elements j, j+16, ...), each a
// product then a sum (no FMA: ops.cpp is compiled with -ffp-contract=off and the SIMD levels use separate
// multiplies and adds), then the fixed reduction tree acc[j] += acc[j + h], h = 8, 4, 2, 1. The result
// depends only on the values, never on alignment, on how many rows a call has, or on the level.
float dot16(const float* a, const float* b, int n) {
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  for (int h = 8; h >= 1; h /= 2)
    for (int j = 0; j < h; ++j) acc[j] += acc[j + h];
  return acc[0];
}

// Rows [n0, n1) of out (T, N) = x (T, K) W^T, one dot16 per output (the scalar level).
void f32_rows_scalar(float* out, const float* x, const float* w, int T, int N, int K, int n0, int n1) {
  for (int n = n0; n < n1; ++n)
    for (int t = 0; t < T; ++t)
      out[static_cast<int64_t>(t) * N + n] = dot16(x + static_cast<int64_t>(t) * K, w + static_cast<int64_t>(n) * K, K);
}

#if defined(__x86_64__) && defined(__GNUC__)
// The SIMD levels hold the 16 lanes in registers (avx2: lanes 0-7 and 8-15 in two ymm; avx512: one zmm)
// and fold them with the same tree: 16 -> 8 (acc[j] + acc[j+8]), 8 -> 4, 4 -> 2, 2 -> 1. A block of R
// weight rows shares each load of the token's row. The last K % 16 elements: lane j += x * w for j <
// K % 16 only (avx512: a masked add; avx2: masked loads give 0 * 0 = +0 in the other lanes, and a lane's
// sum is never -0, since it starts at +0 and round-to-nearest never turns a sum into -0, so adding +0
// leaves every bit as it is).
__attribute__((target("avx2"))) inline float fold8(__m256 v) {
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));  // j += j + 4
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));                                         // j += j + 2
  q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));                                     // j += j + 1
  return _mm_cvtss_f32(q);
}

template <int R>
__attribute__((target("avx2"), always_inline)) inline void dots_avx2(float* out, int64_t ld, const float* xr,
                                                                     const float* const* wr, int K) {
  __m256 lo[R], hi[R];
  for (int r = 0; r < R; ++r) lo[r] = hi[r] = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= K; i += 16) {
    const __m256 x0 = _mm256_loadu_ps(xr + i), x1 = _mm256_loadu_ps(xr + i + 8);
    for (int r = 0; r < R; ++r) {
      lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(x0, _mm256_loadu_ps(wr[r] + i)));
      hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(x1, _mm256_loadu_ps(wr[r] + i + 8)));
    }
  }
  if (i < K) {
    alignas(32) int32_t idx[16];
    for (int j = 0; j < 16; ++j) idx[j] = i + j < K ? -1 : 0;
    const __m256i m0 = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx));
    const __m256i m1 = _mm256_load_si256(reinterpret_cast<const __m256i*>(idx + 8));
    const __m256 x0 = _mm256_maskload_ps(xr + i, m0), x1 = _mm256_maskload_ps(xr + i + 8, m1);
    for (int r = 0; r < R; ++r) {
      lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(x0, _mm256_maskload_ps(wr[r] + i, m0)));
      hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(x1, _mm256_maskload_ps(wr[r] + i + 8, m1)));
    }
  }
  for (int r = 0; r < R; ++r) out[r * ld] = fold8(_mm256_add_ps(lo[r], hi[r]));  // j += j + 8
}

template <int R>
__attribute__((target("avx512f"), always_inline)) inline void dots_avx512(float* out, int64_t ld, const float* xr,
                                                                          const float* const* wr, int K) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
  int i = 0;
  for (; i + 16 <= K; i += 16) {
    const __m512 xv = _mm512_loadu_ps(xr + i);
    for (int r = 0; r < R; ++r) acc[r] = _mm512_add_ps(acc[r], _mm512_mul_ps(xv, _mm512_loadu_ps(wr[r] + i)));
  }
  if (i < K) {
    const __mmask16 m = static_cast<__mmask16>((1u << (K - i)) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(m, xr + i);
    for (int r = 0; r < R; ++r)
      acc[r] = _mm512_mask_add_ps(acc[r], m, acc[r], _mm512_mul_ps(xv, _mm512_maskz_loadu_ps(m, wr[r] + i)));
  }
  for (int r = 0; r < R; ++r) {
    const __m256 lo = _mm512_castps512_ps256(acc[r]);
    const __m256 hi = _mm512_castps512_ps256(_mm512_shuffle_f32x4(acc[r], acc[r], _MM_SHUFFLE(3, 2, 3, 2)));
    out[r * ld] = fold8(_mm256_add_ps(lo, hi));  // j += j + 8
  }
}

// Blocks of 4 weight rows, each block dotted with every token's row (the block stays in L1 over the
// tokens); out[t][n..n+3] are the block's outputs of token t (stride 1 between rows).
#define SPECDEC_F32_ROWS(NAME, TARGET, DOTS)                                                                         \
  __attribute__((target(TARGET))) void NAME(float* out, const float* x, const float* w, int T, int N, int K, int n0, \
                                            int n1) {                                                                \
    int n = n0;                                                                                                      \
    for (; n + 4 <= n1; n += 4) {                                                                                    \
      const float* wr[4] = {w + static_cast<int64_t>(n) * K, w + static_cast<int64_t>(n + 1) * K,                    \
                            w + static_cast<int64_t>(n + 2) * K, w + static_cast<int64_t>(n + 3) * K};               \
      for (int t = 0; t < T; ++t)                                                                                    \
        DOTS<4>(out + static_cast<int64_t>(t) * N + n, 1, x + static_cast<int64_t>(t) * K, wr, K);                   \
    }                                                                                                                \
    for (; n < n1; ++n) {                                                                                            \
      const float* wr = w + static_cast<int64_t>(n) * K;                                                             \
      for (int t = 0; t < T; ++t)                                                                                    \
        DOTS<1>(out + static_cast<int64_t>(t) * N + n, 1, x + static_cast<int64_t>(t) * K, &wr, K);                  \
    }                                                                                                                \
  }
SPECDEC_F32_ROWS(f32_rows_avx2, "avx2", dots_avx2)
SPECDEC_F32_ROWS(f32_rows_avx512, "avx512f", dots_avx512)
#undef SPECDEC_F32_ROWS
#endif

using F32Rows = void (*)(float*, const float*, const float*, int, int, int, int, int);

F32Rows f32_rows_at(CpuLevel level) {
#if defined(__x86_64__) && defined(__GNUC__)
  switch (level) {
    case CpuLevel::Avx512:
      return f32_rows_avx512;
    case CpuLevel::Avx2:
    case CpuLevel::AvxVnni:
      return f32_rows_avx2;
    case CpuLevel::Scalar:
      break;
  }
#else
  (void)level;
#endif
  return f32_rows_scalar;
}

}  // namespace

float dot_f32(const float* a, const float* b, int n) { return dot16(a, b, n); }

void matmul_f32_at(CpuLevel level, float* out, const float* x, const float* w, int T, int N, int K) {
  SPECDEC_CHECK(cpu_level_supported(level), "the ", cpu_level_name(level), " CPU kernels on a machine without them");
  f32_rows_at(level)(out, x, w, T, N, K, 0, N);
}

void matmul(float* out, const float* x, const void* W, DType wt, int T, int N, int K) {
  // Batch invariance: out[t][n] is computed the same way whatever T is, so a verification block of
  // T tokens gives bit-identical logits to T single-token steps (greedy speculative == AR, exactly).
  // Rows in parallel_for tasks (a few per thread, claimed dynamically).
  const int threads = static_cast<int64_t>(N) * K * T > (1 << 16) ? omp_get_max_threads() : 1;
  const int n_tasks = std::max(1, std::min(N, 8 * threads));
  const auto rows_of = [&](int i, int& n0, int& n1) {
    n0 = static_cast<int>(static_cast<int64_t>(N) * i / n_tasks);
    n1 = static_cast<int>(static_cast<int64_t>(N) * (i + 1) / n_tasks);
  };
  if (wt == DType::F32) {
    const float* w = static_cast<const float*>(W);
    const F32Rows rows = f32_rows_at(cpu_level());
    parallel_for(
        n_tasks,
        [&](int i) {
          int n0, n1;
          rows_of(i, n0, n1);
          rows(out, x, w, T, N, K, n0, n1);
        },
        threads);
    return;
  }
  if (matmul_quant(out, x, W, wt, T, N, K)) return;
  // Generic path: dequantize one weight row at a time and dot it with every token.
  const size_t rb = row_bytes(wt, K);
  parallel_for(
      n_tasks,
      [&](int i) {
        thread_local std::vector<float> row;
        row.resize(static_cast<size_t>(K));
        int n0, n1;
        rows_of(i, n0, n1);
        for (int n = n0; n < n1; ++n) {
          dequantize_row(row.data(), static_cast<const uint8_t*>(W) + rb * n, wt, K);
          for (int t = 0; t < T; ++t)
            out[static_cast<int64_t>(t) * N + n] = dot_f32(x + static_cast<int64_t>(t) * K, row.data(), K);
        }
      },
      threads);
}

void rope(float* x, const int32_t* pos, int T, int n_heads, int head_dim, float theta) {
  for (int t = 0; t < T; ++t) {
    for (int i = 0; i < head_dim; i += 2) {
      const float freq = 1.0f / std::pow(theta, static_cast<float>(i) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos[t]) * freq;
      const float c = std::cos(angle), s = std::sin(angle);
      for (int h = 0; h < n_heads; ++h) {
        float* p = x + (static_cast<int64_t>(t) * n_heads + h) * head_dim + i;
        const float a = p[0], b = p[1];
        p[0] = a * c - b * s;
        p[1] = a * s + b * c;
      }
    }
  }
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void swiglu(float* out, const float* gate, const float* up, int T, int F) {
  const int64_t n = static_cast<int64_t>(T) * F;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void softmax(float* x, int T, int n) {
  for (int t = 0; t < T; ++t) {
    float* r = x + static_cast<int64_t>(t) * n;
    const float m = *std::max_element(r, r + n);
    float sum = 0.f;
    for (int i = 0; i < n; ++i) {
      r[i] = std::exp(r[i] - m);
      sum += r[i];
    }
    const float inv = 1.f / sum;
    for (int i = 0; i < n; ++i) r[i] *= inv;
  }
}

void attention_ref(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T, int S,
                   int Hq, int Hkv, int D, int64_t ld_kv) {
  SPECDEC_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads divisible by kv heads, got ", Hq, "/", Hkv);
  const int group = Hq / Hkv;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> att(static_cast<size_t>(S));
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < Hq; ++h) {
      const float* qh = q + (static_cast<int64_t>(t) * Hq + h) * D;
      const int64_t kv_off = static_cast<int64_t>(h / group) * D;
      const uint8_t* m = mask + static_cast<int64_t>(t) * S;
      float mx = -INFINITY;
      for (int s = 0; s < S; ++s) {
        if (!m[s]) continue;
        const float* kr = k + s * ld_kv + kv_off;
        float dot = 0.f;
        for (int d = 0; d < D; ++d) dot += qh[d] * kr[d];
        att[s] = dot * scale;
        mx = std::max(mx, att[s]);
      }
      float sum = 0.f;
      for (int s = 0; s < S; ++s) {
        if (!m[s]) continue;
        att[s] = std::exp(att[s] - mx);
        sum += att[s];
      }
      float* o = out + (static_cast<int64_t>(t) * Hq + h) * D;
      std::fill(o, o + D, 0.f);
      const float inv = 1.f / sum;
      for (int s = 0; s < S; ++s) {
        if (!m[s]) continue;
        const float a = att[s] * inv;
        const float* vr = v + s * ld_kv + kv_off;
        for (int d = 0; d < D; ++d) o[d] += a * vr[d];
      }
    }
  }
}

namespace {

// The fast attention does exactly the arithmetic of attention_ref, element by element, in another loop
// order: every score is the sequential sum over d of q[d]*k[d] (as the reference's inner loop), the
// softmax runs over s in increasing order, and each output element accumulates its slots in increasing
// order. Only independent elements share a vector (lanes = key slots for the scores, = head dims for the
// output), never a reduction, so the result is bit-identical to the reference, to itself for any T,
// and across instruction sets (no FMA contraction: ops.cpp is compiled with -ffp-contract=off).
constexpr int kKeyTile = 16;  // key slots per score vector
constexpr int kRowTile = 4;   // query rows (token, head) sharing each transposed key tile

struct AttnShape {
  int S, Hq, D, group;
  int64_t ld_kv;
  float scale;
};

// Rows r of one kv head g: query row pointers qr[r], mask rows mr[r], score rows sc[r] (S floats each).
// Scores of unmasked slots, in slot order; masked slots are left untouched (never read).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("default", "avx2", "arch=x86-64-v4")))
#endif
void scores_tile(float* const* sc, const float* const* qr, const uint8_t* const* mr, int nrows, const float* kbase,
                 int s_end, const AttnShape& a) {
  float kt[256 * kKeyTile];  // D <= 256: (D, kKeyTile) transposed key tile
  for (int s0 = 0; s0 < s_end; s0 += kKeyTile) {
    const int ns = std::min(kKeyTile, s_end - s0);
    for (int j = 0; j < ns; ++j) {
      const float* kr = kbase + static_cast<int64_t>(s0 + j) * a.ld_kv;
      for (int d = 0; d < a.D; ++d) kt[d * kKeyTile + j] = kr[d];
    }
    for (int j = ns; j < kKeyTile; ++j)
      for (int d = 0; d < a.D; ++d) kt[d * kKeyTile + j] = 0.f;
    for (int r0 = 0; r0 < nrows; r0 += kRowTile) {
      const int nr = std::min(kRowTile, nrows - r0);
      float acc[kRowTile][kKeyTile] = {};
      for (int d = 0; d < a.D; ++d) {
        const float* kd = kt + d * kKeyTile;
        for (int r = 0; r < kRowTile; ++r) {
          const float qd = r < nr ? qr[r0 + r][d] : 0.f;
          for (int j = 0; j < kKeyTile; ++j) acc[r][j] += qd * kd[j];
        }
      }
      for (int r = 0; r < nr; ++r)
        for (int j = 0; j < ns; ++j)
          if (mr[r0 + r][s0 + j]) sc[r0 + r][s0 + j] = acc[r][j] * a.scale;
    }
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("default", "avx2", "arch=x86-64-v4")))
#endif
void weighted_sum(float* o, const float* w, const uint8_t* m, const float* vbase, int s_end, const AttnShape& a) {
  std::fill(o, o + a.D, 0.f);
  for (int s = 0; s < s_end; ++s) {
    if (!m[s]) continue;
    const float ws = w[s];
    const float* vr = vbase + static_cast<int64_t>(s) * a.ld_kv;
    for (int d = 0; d < a.D; ++d) o[d] += ws * vr[d];
  }
}

}  // namespace

void attention(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T, int S, int Hq,
               int Hkv, int D, int64_t ld_kv) {
  SPECDEC_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads divisible by kv heads, got ", Hq, "/", Hkv);
  SPECDEC_CHECK(D >= 1 && D <= 256, "head_dim in 1..256, got ", D);
  const AttnShape a{S, Hq, D, Hq / Hkv, ld_kv, 1.0f / std::sqrt(static_cast<float>(D))};
  // Work items: (kv head, block of tokens); each handles its tokens x the kv head's query heads, sharing
  // each transposed key tile among them. Small blocks when T is small, so that every thread has work.
  const int threads = omp_get_max_threads();
  int tok_block = std::max(1, 16 / a.group);
  while (tok_block > 1 && Hkv * ((T + tok_block - 1) / tok_block) < 4 * threads) tok_block /= 2;
  const int n_blocks = (T + tok_block - 1) / tok_block;
  const int n_items = Hkv * n_blocks;
  // items as parallel_for tasks (claimed dynamically; no barrier waits for a thread that is not running)
  const auto run_item = [&](int item) {
    thread_local std::vector<float> scores;
    thread_local std::vector<float*> sc;
    thread_local std::vector<const float*> qr;
    thread_local std::vector<const uint8_t*> mr;
    {
      const int g = item / n_blocks, t0 = (item % n_blocks) * tok_block, t1 = std::min(T, t0 + tok_block);
      const int nrows = (t1 - t0) * a.group;
      scores.resize(static_cast<size_t>(nrows) * S);
      sc.resize(nrows);
      qr.resize(nrows);
      mr.resize(nrows);
      int s_end = 0;  // one past the last slot any row attends to
      for (int t = t0; t < t1; ++t) {
        const uint8_t* m = mask + static_cast<int64_t>(t) * S;
        int last = S;
        while (last > 0 && !m[last - 1]) --last;
        s_end = std::max(s_end, last);
        for (int j = 0; j < a.group; ++j) {
          const int r = (t - t0) * a.group + j, h = g * a.group + j;
          sc[r] = scores.data() + static_cast<size_t>(r) * S;
          qr[r] = q + (static_cast<int64_t>(t) * Hq + h) * D;
          mr[r] = m;
        }
      }
      const float* kbase = k + static_cast<int64_t>(g) * D;
      const float* vbase = v + static_cast<int64_t>(g) * D;
      scores_tile(sc.data(), qr.data(), mr.data(), nrows, kbase, s_end, a);
      for (int r = 0; r < nrows; ++r) {
        float* w = sc[r];
        const uint8_t* m = mr[r];
        float mx = -INFINITY;
        for (int s = 0; s < s_end; ++s)
          if (m[s]) mx = std::max(mx, w[s]);
        float sum = 0.f;
        for (int s = 0; s < s_end; ++s) {
          if (!m[s]) continue;
          w[s] = std::exp(w[s] - mx);
          sum += w[s];
        }
        const float inv = 1.f / sum;
        for (int s = 0; s < s_end; ++s)
          if (m[s]) w[s] *= inv;
        const int t = t0 + r / a.group, h = g * a.group + r % a.group;
        weighted_sum(out + (static_cast<int64_t>(t) * Hq + h) * D, w, m, vbase, s_end, a);
      }
    }
  };
  parallel_for(n_items, run_item, static_cast<int64_t>(T) * Hq * S * D > (1 << 15) ? threads : 1);
}

}  // namespace specdec::cpu
