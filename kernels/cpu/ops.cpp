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

// Kernels compiled once per CPU level and chosen by cpu_level() (so tests force each level): the same source
// in functions with the level's target attribute; the always-inline bodies vectorize inside each.
#define SPECDEC_INLINE inline __attribute__((always_inline))
#if defined(__x86_64__) && defined(__GNUC__)
#define SPECDEC_X86_LEVELS 1
#define SPECDEC_TARGET_AVX2 __attribute__((target("avx2")))
#define SPECDEC_TARGET_AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq")))
#else
#define SPECDEC_X86_LEVELS 0
#endif

namespace specdec::cpu {

namespace {

// The float kernels compiled per CPU level (the f32 matmul, attention, exp, swiglu) come in three widths;
// avxvnni adds only integer instructions, so it runs the avx2 ones. The one place this mapping is written.
enum class FloatTier { Scalar, Avx2, Avx512 };
FloatTier float_tier(CpuLevel level) {
#if SPECDEC_X86_LEVELS
  if (level == CpuLevel::Avx512) return FloatTier::Avx512;
  if (level == CpuLevel::Avx2 || level == CpuLevel::AvxVnni) return FloatTier::Avx2;
#endif
  (void)level;
  return FloatTier::Scalar;
}

// exp(x) in float, evaluated in double: x = n ln2 + r (n by the 1.5 * 2^52 rounding trick, which also leaves
// n in the low bits), the degree-9 Taylor polynomial of e^r (|r| <= ln2/2: relative error below 2^-37),
// times 2^n built in the exponent bits, then rounded once to float. So it is std::exp's correctly rounded
// value in all but about 1 in 2,000 arguments (then 1 ulp off), and, being plain arithmetic, one loop of
// it vectorizes for every instruction set with the same bits (ops.cpp has no FMA contraction and no
// trapping math, so the clamps vectorize). Below -103.9 it gives 0, above 88.72 infinity, as std::exp.
SPECDEC_INLINE float exp_impl(float xf) {
  const double x = std::min(std::max(static_cast<double>(xf), -110.0), 90.0);
  const double magic = 6755399441055744.0;
  const double t = x * 1.4426950408889634 + magic;
  const double n = t - magic;
  const double r = x - n * 0.6931471805599453;
  double p = 1.0 / 362880;
  p = p * r + 1.0 / 40320;
  p = p * r + 1.0 / 5040;
  p = p * r + 1.0 / 720;
  p = p * r + 1.0 / 120;
  p = p * r + 1.0 / 24;
  p = p * r + 1.0 / 6;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  int64_t tb, mb;
  std::memcpy(&tb, &t, sizeof tb);
  std::memcpy(&mb, &magic, sizeof mb);
  const int64_t sb = (tb - mb + 1023) * (int64_t{1} << 52);
  double scale;
  std::memcpy(&scale, &sb, sizeof scale);
  return static_cast<float>(p * scale);
}

}  // namespace

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

namespace {

// Rows of an elementwise op split over parallel_for's threads when there are enough of them (a block of
// tokens); each row is computed exactly as on one thread.
template <typename F>
void for_rows(int T, int64_t row_elems, F&& rows) {
  const int threads = omp_get_max_threads();
  if (threads < 2 || T < 2 || static_cast<int64_t>(T) * row_elems < 4096) return rows(0, T);
  const int n_tasks = std::min(T, 2 * threads);
  parallel_for(
      n_tasks,
      [&](int i) {
        rows(static_cast<int>(static_cast<int64_t>(T) * i / n_tasks),
             static_cast<int>(static_cast<int64_t>(T) * (i + 1) / n_tasks));
      },
      threads);
}

}  // namespace

void rmsnorm(float* out, const float* x, const float* w, int T, int H, float eps) {
  for_rows(T, H, [&](int t0, int t1) {
    for (int t = t0; t < t1; ++t) {
      const float* xr = x + static_cast<int64_t>(t) * H;
      float* o = out + static_cast<int64_t>(t) * H;
      float ss = 0.f;
      for (int i = 0; i < H; ++i) ss += xr[i] * xr[i];
      const float scale = 1.f / std::sqrt(ss / static_cast<float>(H) + eps);
      for (int i = 0; i < H; ++i) o[i] = xr[i] * scale * w[i];
    }
  });
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

#if SPECDEC_X86_LEVELS
// GCC 12 flags the _mm512_undefined_* placeholders inside its own AVX-512 intrinsics (the lane shuffles
// of the fold) as maybe-uninitialized: a known false positive, silenced for these kernels only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
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
#pragma GCC diagnostic pop
#endif

using F32Rows = void (*)(float*, const float*, const float*, int, int, int, int, int);

F32Rows f32_rows_at(CpuLevel level) {
#if SPECDEC_X86_LEVELS
  if (float_tier(level) == FloatTier::Avx512) return f32_rows_avx512;
  if (float_tier(level) == FloatTier::Avx2) return f32_rows_avx2;
#endif
  (void)level;
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

void matmul_group(const MatmulPart* parts, int n_parts, const float* x, int T, int K) {
  if (matmul_quant_group(parts, n_parts, x, T, K)) return;
  for (int i = 0; i < n_parts; ++i) matmul(parts[i].out, x, parts[i].W, parts[i].t, T, parts[i].N, K);
}

void rope_table(float* cs, const int32_t* pos, int T, int head_dim, float theta) {
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < head_dim; i += 2) {
      const float freq = 1.0f / std::pow(theta, static_cast<float>(i) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos[t]) * freq;
      float* e = cs + static_cast<int64_t>(t) * head_dim + i;
      e[0] = std::cos(angle);
      e[1] = std::sin(angle);
    }
}

void rope_apply(float* x, const float* cs, int T, int n_heads, int head_dim) {
  for (int t = 0; t < T; ++t) {
    const float* e = cs + static_cast<int64_t>(t) * head_dim;
    for (int h = 0; h < n_heads; ++h) {
      float* p = x + (static_cast<int64_t>(t) * n_heads + h) * head_dim;
      for (int i = 0; i < head_dim; i += 2) {
        const float a = p[i], b = p[i + 1], c = e[i], sn = e[i + 1];
        p[i] = a * c - b * sn;
        p[i + 1] = a * sn + b * c;
      }
    }
  }
}

void rope(float* x, const int32_t* pos, int T, int n_heads, int head_dim, float theta) {
  std::vector<float> cs(static_cast<size_t>(T) * head_dim);
  rope_table(cs.data(), pos, T, head_dim, theta);
  rope_apply(x, cs.data(), T, n_heads, head_dim);
}

void add(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

namespace {

SPECDEC_INLINE void swiglu_n_body(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + exp_impl(-g)) * up[i];
  }
}
SPECDEC_INLINE void exp_n_body(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = exp_impl(x[i]);
}

struct ElemFns {
  void (*swiglu_n)(float*, const float*, const float*, int64_t);
  void (*exp_n)(float*, const float*, int64_t);
};
#define SPECDEC_ELEM_FNS(SUFFIX, TARGET)                                                                            \
  TARGET void swiglu_n_##SUFFIX(float* o, const float* g, const float* u, int64_t n) { swiglu_n_body(o, g, u, n); } \
  TARGET void exp_n_##SUFFIX(float* y, const float* x, int64_t n) { exp_n_body(y, x, n); }
SPECDEC_ELEM_FNS(scalar, )
#if SPECDEC_X86_LEVELS
SPECDEC_ELEM_FNS(avx2, SPECDEC_TARGET_AVX2)
SPECDEC_ELEM_FNS(avx512, SPECDEC_TARGET_AVX512)
#endif
#undef SPECDEC_ELEM_FNS

ElemFns elem_fns(CpuLevel level) {
#if SPECDEC_X86_LEVELS
  if (float_tier(level) == FloatTier::Avx512) return {swiglu_n_avx512, exp_n_avx512};
  if (float_tier(level) == FloatTier::Avx2) return {swiglu_n_avx2, exp_n_avx2};
#endif
  (void)level;
  return {swiglu_n_scalar, exp_n_scalar};
}

}  // namespace

void swiglu(float* out, const float* gate, const float* up, int T, int F) {
  const auto swiglu_n = elem_fns(cpu_level()).swiglu_n;
  for_rows(T, F, [&](int t0, int t1) {
    const int64_t o = static_cast<int64_t>(t0) * F;
    swiglu_n(out + o, gate + o, up + o, static_cast<int64_t>(t1 - t0) * F);
  });
}

void exp_f32_n(float* y, const float* x, int64_t n) { elem_fns(cpu_level()).exp_n(y, x, n); }

float exp_f32(float x) { return exp_impl(x); }

// The sum of n floats in 16 lanes (lane j: elements j, j+16, ... in order), then a fixed tree.
static float sum16(const float* x, int64_t n) {
  float p[16] = {};
  int64_t s = 0;
  for (; s + 16 <= n; s += 16)
    for (int j = 0; j < 16; ++j) p[j] += x[s + j];
  for (int j = 0; s + j < n; ++j) p[j] += x[s + j];
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) p[j] += p[j + w];
  return p[0];
}

// The sum of the unmasked elements of w (m[s] != 0) as sum16 over them packed in order: the lanes go by
// rank among the unmasked slots, not by slot, so a row's sum does not depend on where masked slots sit
// between its own (a tree branch and the same tokens as a chain sum alike).
static float masked_sum16(const float* w, const uint8_t* m, int n) {
  int k = 0;
  bool prefix = true;  // the unmasked slots are exactly [0, k): w packs itself
  for (int s = 0; s < n; ++s)
    if (m[s]) {
      prefix = prefix && k == s;
      ++k;
    }
  if (prefix) return sum16(w, k);
  thread_local std::vector<float> packed;
  packed.resize(static_cast<size_t>(k));
  k = 0;
  for (int s = 0; s < n; ++s)
    if (m[s]) packed[k++] = w[s];
  return sum16(packed.data(), k);
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
    std::fill(att.begin(), att.end(), 0.f);  // masked slots weigh 0 (and add 0 to the sum)
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
      for (int s = 0; s < S; ++s)
        if (m[s]) att[s] = exp_impl(att[s] - mx);
      const float sum = masked_sum16(att.data(), m, S);
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
// softmax's exps and masked 16-lane sum are the same functions, and each output element accumulates its slots
// in increasing order (a masked slot adds an exact +0). Only independent elements share a vector (lanes
// = key slots for the scores, = head dims for the output), never a reduction, so the result is
// bit-identical to the reference, to itself for any T or thread count, and across instruction sets (no
// FMA contraction: ops.cpp is compiled with -ffp-contract=off).
//
// Two passes, each a parallel_for, so that each cached key and value is read once for all T queries:
//   1. scores: items (kv head, range of key slots); each transposes its key tile once and scores every
//      query row of that kv head (T tokens x the head's query group) against it;
//   2. softmax + output: items (kv head, group of kOutRows rows); each row's exps and sum, then the rows
//      of the group accumulate together, every value row loaded once for the group.
constexpr int kKeyTile = 16;    // key slots per score vector
constexpr int kRowTile = 8;     // query rows sharing each transposed key tile column
constexpr int kSlotChunk = 64;  // key slots per pass-1 item (a multiple of kKeyTile)
constexpr int kOutRows = 4;     // rows sharing each value row in pass 2

typedef float v16f __attribute__((vector_size(64)));  // GCC vector extension: plain IEEE lanes, any ISA

struct AttnShape {
  int S, Hq, D, group;
  int64_t ld_kv;
  float scale;
};

// acc[r] (16 slots) = sum over d in order of q[r][d] * kt[d] for NR rows; kt the (D, 16) transposed tile.
template <int NR>
SPECDEC_INLINE void score_rows(float* const* sc, const float* const* qr, const float* kt, int ns, int s0,
                               const AttnShape& a) {
  v16f acc[NR] = {};
  for (int d = 0; d < a.D; ++d) {
    v16f kd;
    std::memcpy(&kd, kt + d * kKeyTile, sizeof kd);
    for (int r = 0; r < NR; ++r) acc[r] += qr[r][d] * kd;
  }
  for (int r = 0; r < NR; ++r)
    for (int j = 0; j < ns; ++j) sc[r][s0 + j] = acc[r][j] * a.scale;
}

// Scores of rows [0, nrows) (query pointers qr, score rows sc) against key slots [s_begin, s_end) of one
// kv head (kbase: slot 0's key, row stride ld_kv). Every slot's score is written, masked or not (pass 2
// never reads a masked one).
SPECDEC_INLINE void scores_tile_body(float* const* sc, const float* const* qr, int nrows, const float* kbase,
                                     int s_begin, int s_end, const AttnShape& a) {
  alignas(64) float kt[256 * kKeyTile];  // D <= 256: (D, kKeyTile) transposed key tile
  for (int s0 = s_begin; s0 < s_end; s0 += kKeyTile) {
    const int ns = std::min(kKeyTile, s_end - s0);
    const float* k0 = kbase + static_cast<int64_t>(s0) * a.ld_kv;
    if (ns == kKeyTile) {  // whole tiles: contiguous stores of strided loads (gathers where the ISA has them)
      for (int d = 0; d < a.D; ++d)
        for (int j = 0; j < kKeyTile; ++j) kt[d * kKeyTile + j] = k0[j * a.ld_kv + d];
    } else {
      for (int j = 0; j < ns; ++j)
        for (int d = 0; d < a.D; ++d) kt[d * kKeyTile + j] = k0[j * a.ld_kv + d];
    }
    for (int j = ns; j < kKeyTile; ++j)
      for (int d = 0; d < a.D; ++d) kt[d * kKeyTile + j] = 0.f;
    for (int r0 = 0; r0 < nrows; r0 += kRowTile) {
      float* const* s = sc + r0;
      const float* const* q = qr + r0;
      switch (std::min(kRowTile, nrows - r0)) {
        case 1:
          score_rows<1>(s, q, kt, ns, s0, a);
          break;
        case 2:
          score_rows<2>(s, q, kt, ns, s0, a);
          break;
        case 3:
          score_rows<3>(s, q, kt, ns, s0, a);
          break;
        case 4:
          score_rows<4>(s, q, kt, ns, s0, a);
          break;
        case 5:
          score_rows<5>(s, q, kt, ns, s0, a);
          break;
        case 6:
          score_rows<6>(s, q, kt, ns, s0, a);
          break;
        case 7:
          score_rows<7>(s, q, kt, ns, s0, a);
          break;
        default:
          score_rows<8>(s, q, kt, ns, s0, a);
          break;
      }
    }
  }
}
static_assert(kRowTile == 8, "scores_tile's switch covers 1..8 rows");

// Row w (slots [0, s_end), mask m) -> softmax weights in place: exp(w - max) over unmasked slots, 0 on
// masked ones, divided by masked_sum16 (as attention_ref).
void softmax_row(float* w, const uint8_t* m, int s_end) {
  float mx = -INFINITY;
  for (int s = 0; s < s_end; ++s)
    if (m[s]) mx = std::max(mx, w[s]);
  for (int s = 0; s < s_end; ++s) w[s] = m[s] ? w[s] - mx : -INFINITY;  // exp(-inf) = 0
  exp_f32_n(w, w, s_end);
  const float inv = 1.f / masked_sum16(w, m, s_end);
  for (int s = 0; s < s_end; ++s) w[s] *= inv;
}

// o[r][d0 .. d0+nd) for NR rows = sum over slots s < s_end, in increasing order, of w[r][s] * value row s
// (nd <= 64: all the rows' sums stay in registers; each value row is read once for all the rows).
template <int NR>
SPECDEC_INLINE void weighted_rows(float* const* o, const float* const* w, const float* vbase, int s_end, int d0, int nd,
                                  const AttnShape& a) {
  v16f acc[NR][4] = {};
  for (int s = 0; s < s_end; ++s) {
    const float* vr = vbase + static_cast<int64_t>(s) * a.ld_kv + d0;
    v16f vv[4];
    if (nd == 64) {
      std::memcpy(vv, vr, sizeof vv);
    } else {
      alignas(64) float tmp[64] = {};
      std::memcpy(tmp, vr, sizeof(float) * nd);
      std::memcpy(vv, tmp, sizeof vv);
    }
    for (int r = 0; r < NR; ++r) {
      const float wr = w[r][s];
      for (int i = 0; i < 4; ++i) acc[r][i] += wr * vv[i];
    }
  }
  for (int r = 0; r < NR; ++r) {
    alignas(64) float tmp[64];
    std::memcpy(tmp, acc[r], sizeof tmp);
    std::memcpy(o[r] + d0, tmp, sizeof(float) * nd);
  }
}

// The weighted sums of nr <= kOutRows rows (masked slots have w = 0: an exact +0 added), 64 dims at a time.
SPECDEC_INLINE void weighted_sum_body(float* const* o, const float* const* w, int nr, const float* vbase, int s_end,
                                      const AttnShape& a) {
  for (int d0 = 0; d0 < a.D; d0 += 64) {
    const int nd = std::min(64, a.D - d0);
    switch (nr) {
      case 1:
        weighted_rows<1>(o, w, vbase, s_end, d0, nd, a);
        break;
      case 2:
        weighted_rows<2>(o, w, vbase, s_end, d0, nd, a);
        break;
      case 3:
        weighted_rows<3>(o, w, vbase, s_end, d0, nd, a);
        break;
      default:
        weighted_rows<4>(o, w, vbase, s_end, d0, nd, a);
        break;
    }
  }
}
static_assert(kOutRows == 4, "weighted_sum's switch covers 1..4 rows");

// The two attention kernels per CPU level (same bits at each: plain IEEE lanes, no contraction).
struct AttnFns {
  void (*scores)(float* const*, const float* const*, int, const float*, int, int, const AttnShape&);
  void (*weighted)(float* const*, const float* const*, int, const float*, int, const AttnShape&);
};
#define SPECDEC_ATTN_FNS(SUFFIX, TARGET)                                                                           \
  TARGET void scores_tile_##SUFFIX(float* const* sc, const float* const* qr, int nrows, const float* kbase,        \
                                   int s_begin, int s_end, const AttnShape& a) {                                   \
    scores_tile_body(sc, qr, nrows, kbase, s_begin, s_end, a);                                                     \
  }                                                                                                                \
  TARGET void weighted_sum_##SUFFIX(float* const* o, const float* const* w, int nr, const float* vbase, int s_end, \
                                    const AttnShape& a) {                                                          \
    weighted_sum_body(o, w, nr, vbase, s_end, a);                                                                  \
  }
SPECDEC_ATTN_FNS(scalar, )
#if SPECDEC_X86_LEVELS
SPECDEC_ATTN_FNS(avx2, SPECDEC_TARGET_AVX2)
SPECDEC_ATTN_FNS(avx512, SPECDEC_TARGET_AVX512)
#endif
#undef SPECDEC_ATTN_FNS

AttnFns attn_fns(CpuLevel level) {
#if SPECDEC_X86_LEVELS
  if (float_tier(level) == FloatTier::Avx512) return {scores_tile_avx512, weighted_sum_avx512};
  if (float_tier(level) == FloatTier::Avx2) return {scores_tile_avx2, weighted_sum_avx2};
#endif
  (void)level;
  return {scores_tile_scalar, weighted_sum_scalar};
}

}  // namespace

void attention(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T, int S, int Hq,
               int Hkv, int D, int64_t ld_kv) {
  SPECDEC_CHECK(Hkv > 0 && Hq % Hkv == 0, "query heads divisible by kv heads, got ", Hq, "/", Hkv);
  SPECDEC_CHECK(D >= 1 && D <= 256, "head_dim in 1..256, got ", D);
  if (T == 0) return;
  const AttnShape a{S, Hq, D, Hq / Hkv, ld_kv, 1.0f / std::sqrt(static_cast<float>(D))};
  const int R = T * a.group;  // query rows per kv head: row r = (token r / group, head g * group + r % group)

  int s_end = 0;  // one past the last slot any token attends to
  for (int t = 0; t < T; ++t) {
    const uint8_t* m = mask + static_cast<int64_t>(t) * S;
    int last = S;
    while (last > 0 && !m[last - 1]) --last;
    s_end = std::max(s_end, last);
  }
  // scores (Hkv, R, s_end) and per-row pointers, reused between calls
  thread_local std::vector<float> scores;
  thread_local std::vector<float*> sc;
  thread_local std::vector<const float*> qr;
  scores.resize(static_cast<size_t>(Hkv) * R * std::max(s_end, 1));
  sc.resize(static_cast<size_t>(Hkv) * R);
  qr.resize(static_cast<size_t>(Hkv) * R);
  for (int g = 0; g < Hkv; ++g)
    for (int r = 0; r < R; ++r) {
      const int i = g * R + r, t = r / a.group, h = g * a.group + r % a.group;
      sc[i] = scores.data() + static_cast<size_t>(i) * s_end;
      qr[i] = q + (static_cast<int64_t>(t) * Hq + h) * D;
    }
  const int threads = omp_get_max_threads();
  const AttnFns fns = attn_fns(cpu_level());
  // decode (T = 1) runs on one thread below ~450 cached tokens: two fork-joins cost more than they save there
  const bool par = static_cast<int64_t>(T) * Hq * s_end * D > (1 << 18);
  float* const* scp = sc.data();  // the caller's thread_local buffers, for the pool's workers
  const float* const* qrp = qr.data();

  // pass 1: scores, items (kv head, chunk of key slots)
  const int n_chunks = (s_end + kSlotChunk - 1) / kSlotChunk;
  const auto score_item = [&](int item) {
    const int g = item / n_chunks, c = item % n_chunks;
    fns.scores(scp + static_cast<size_t>(g) * R, qrp + static_cast<size_t>(g) * R, R, k + static_cast<int64_t>(g) * D,
               c * kSlotChunk, std::min(s_end, (c + 1) * kSlotChunk), a);
  };
  parallel_for(Hkv * n_chunks, score_item, par ? threads : 1);

  // pass 2: softmax and the weighted sum of values, items (kv head, group of rows): groups of kOutRows
  // rows, or single rows when that leaves too few items for the threads (decode: T = 1)
  const int out_rows = par && Hkv * ((R + kOutRows - 1) / kOutRows) < 2 * threads ? 1 : kOutRows;
  const int n_groups = (R + out_rows - 1) / out_rows;
  const auto out_item = [&](int item) {
    const int g = item / n_groups, r0 = (item % n_groups) * out_rows, nr = std::min(out_rows, R - r0);
    float* o[kOutRows];
    const float* w[kOutRows];
    for (int j = 0; j < nr; ++j) {
      const int r = r0 + j, t = r / a.group, h = g * a.group + r % a.group;
      float* row = scp[static_cast<size_t>(g) * R + r];
      softmax_row(row, mask + static_cast<int64_t>(t) * S, s_end);
      o[j] = out + (static_cast<int64_t>(t) * Hq + h) * D;
      w[j] = row;
    }
    fns.weighted(o, w, nr, v + static_cast<int64_t>(g) * D, s_end, a);
  };
  parallel_for(Hkv * n_groups, out_item, par ? threads : 1);
}

}  // namespace specdec::cpu
