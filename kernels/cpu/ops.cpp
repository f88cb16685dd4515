// CPU kernels of the Llama forward (fp32 compute). Plain loops written so the compiler vectorises them,
// OpenMP across independent rows and heads; every result is independent of the batch shape.
#include "kernels/cpu/ops.h"
#include "kernels/cpu/parallel.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include <omp.h>

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
  if (ax >= 0x477ff000u) return sign | 0x7c00u;                                      // overflow
  if (ax < 0x38800000u) {                                                            // subnormal / 0
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
    for (int i = 0; i < H; ++i)
      out[static_cast<int64_t>(t) * H + i] = static_cast<float>(xr[i] * scale * w[i]);
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

float dot_f32(const float* a, const float* b, int n) {
  // 16 independent lanes (the compiler maps them to vector registers), then a fixed reduction tree:
  // the result depends only on the values, never on pointer alignment or on how many rows a call has.
  float acc[16] = {};
  int i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += a[i + j] * b[i + j];
  for (int j = 0; i < n; ++i, ++j) acc[j] += a[i] * b[i];
  for (int w = 8; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
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
    parallel_for(
        n_tasks,
        [&](int i) {
          int n0, n1;
          rows_of(i, n0, n1);
          for (int n = n0; n < n1; ++n)
            for (int t = 0; t < T; ++t)
              out[static_cast<int64_t>(t) * N + n] =
                  dot_f32(x + static_cast<int64_t>(t) * K, w + static_cast<int64_t>(n) * K, K);
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

void attention_ref(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T,
                   int S, int Hq, int Hkv, int D, int64_t ld_kv) {
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

void attention(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T,
               int S, int Hq, int Hkv, int D, int64_t ld_kv) {
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
