// Quantized formats: GGML dequantization (the reference for every quantized path), GGML's reference
// quantizers, and the dispatcher of the quantized matmul (activation quantization, then the scalar /
// AVX2 / AVX-VNNI / AVX-512 row kernels of quant_scalar.cpp, quant_avx2.cpp, quant_avxvnni.cpp,
// quant_avx512.cpp over OpenMP threads).
// Compiled with -ffp-contract=off so dequantization rounds exactly as GGML's C source reads.
#include "kernels/cpu/quant.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <iterator>
#include <cmath>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/error.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/quant_kernels.h"

namespace specdec::cpu {

using qk::kQK;

// ---- dequantization ----------------------------------------------------------------------------

namespace {

void dequant_q8_0(float* y, const qk::BlockQ8_0* x, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < kQK; ++j) y[i * kQK + j] = x[i].qs[j] * d;
  }
}

void dequant_q4_0(float* y, const qk::BlockQ4_0* x, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    for (int j = 0; j < kQK / 2; ++j) {
      y[i * kQK + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
      y[i * kQK + j + kQK / 2] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void dequant_q4_1(float* y, const qk::BlockQ4_1* x, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d), m = fp16_to_fp32(x[i].m);
    for (int j = 0; j < kQK / 2; ++j) {
      y[i * kQK + j] = (x[i].qs[j] & 0x0F) * d + m;
      y[i * kQK + j + kQK / 2] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}

// Scale and min j (0..7) of a Q4_K / Q5_K super-block: 6 bits each, packed in 12 bytes. Scales and mins
// 0..3 are the low 6 bits of bytes 0..3 and 4..7; 4..7 take their low 4 bits from bytes 8..11 (low and
// high nibble) and their top 2 bits from the top bits of bytes 0..3 (scales) and 4..7 (mins).
void scale_min_k4(int j, const uint8_t* q, uint8_t& sc, uint8_t& m) {
  if (j < 4) {
    sc = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    sc = static_cast<uint8_t>((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4));
    m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q4_K: 8 sub-blocks of 32; sub-block 2p is the low nibbles and 2p+1 the high nibbles of
// qs[32p..32p+32).
void dequant_q4_k(float* y, const qk::BlockQ4K* x, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* q = x[i].qs;
    for (int p = 0; p < 4; ++p, q += 32) {
      uint8_t sc, m;
      scale_min_k4(2 * p, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(2 * p + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; ++l) *y++ = d1 * (q[l] & 0x0F) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

// Q5_K: Q4_K plus a fifth bit per element: bit 2p of qh[l] for element l of sub-block 2p, bit 2p+1
// for sub-block 2p+1.
void dequant_q5_k(float* y, const qk::BlockQ5K* x, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d), dmin = fp16_to_fp32(x[i].dmin);
    const uint8_t* ql = x[i].qs;
    const uint8_t* qh = x[i].qh;
    for (int p = 0; p < 4; ++p, ql += 32) {
      uint8_t sc, m;
      scale_min_k4(2 * p, x[i].scales, sc, m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(2 * p + 1, x[i].scales, sc, m);
      const float d2 = d * sc, m2 = dmin * m;
      const uint8_t u1 = static_cast<uint8_t>(1u << (2 * p)), u2 = static_cast<uint8_t>(2u << (2 * p));
      for (int l = 0; l < 32; ++l) *y++ = d1 * ((ql[l] & 0x0F) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
  }
}

// Q6_K: two halves of 128. Element l + 32k of a half (k = 0..3) takes its low 4 bits from
// ql[l + 32*(k%2)] (low nibble for k < 2, high nibble for k >= 2) and its high 2 bits from bits 2k..2k+1
// of qh[l]; minus 32, times d * scales[its group of 16].
void dequant_q6_k(float* y, const qk::BlockQ6K* x, int64_t nb) {
  for (int64_t i = 0; i < nb; ++i) {
    const float d = fp16_to_fp32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    for (int half = 0; half < 2; ++half, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = ((ql[l] & 0x0F) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l + 0] = d * sc[is + 0] * q1;
        y[l + 32] = d * sc[is + 2] * q2;
        y[l + 64] = d * sc[is + 4] * q3;
        y[l + 96] = d * sc[is + 6] * q4;
      }
    }
  }
}

}  // namespace

void dequantize_row_quant(float* out, const void* src, DType t, int64_t n) {
  const DTypeInfo info = dtype_info(t);
  SPECDEC_CHECK(info.block > 1, "a quantized dtype, got ", info.name);
  SPECDEC_CHECK(n >= 0 && n % info.block == 0, "n a multiple of ", info.block, " for ", info.name, ", got ", n);
  const int64_t nb = n / info.block;
  switch (t) {
    case DType::Q8_0:
      return dequant_q8_0(out, static_cast<const qk::BlockQ8_0*>(src), nb);
    case DType::Q4_0:
      return dequant_q4_0(out, static_cast<const qk::BlockQ4_0*>(src), nb);
    case DType::Q4_1:
      return dequant_q4_1(out, static_cast<const qk::BlockQ4_1*>(src), nb);
    case DType::Q4_K:
      return dequant_q4_k(out, static_cast<const qk::BlockQ4K*>(src), nb);
    case DType::Q5_K:
      return dequant_q5_k(out, static_cast<const qk::BlockQ5K*>(src), nb);
    case DType::Q6_K:
      return dequant_q6_k(out, static_cast<const qk::BlockQ6K*>(src), nb);
    default:
      SPECDEC_FAIL("dequantization of ", info.name, " is not supported");
  }
}

// ---- reference quantizers ----------------------------------------------------------------------

void quantize_row(void* dst, const float* src, DType t, int64_t n) {
  SPECDEC_CHECK(n >= 0 && n % kQK == 0, "n a multiple of 32, got ", n);
  const int64_t nb = n / kQK;
  switch (t) {
    case DType::Q8_0: {
      auto* y = static_cast<qk::BlockQ8_0*>(dst);
      for (int64_t i = 0; i < nb; ++i) {
        const float* x = src + i * kQK;
        float amax = 0.f;
        for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK; ++j) y[i].qs[j] = static_cast<int8_t>(std::round(x[j] * id));
      }
      return;
    }
    case DType::Q4_0: {
      auto* y = static_cast<qk::BlockQ4_0*>(dst);
      for (int64_t i = 0; i < nb; ++i) {
        const float* x = src + i * kQK;
        float amax = 0.f, max = 0.f;  // the element of largest magnitude, with its sign
        for (int j = 0; j < kQK; ++j) {
          if (amax < std::fabs(x[j])) amax = std::fabs(x[j]), max = x[j];
        }
        const float d = max / -8.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[i].d = fp32_to_fp16(d);
        for (int j = 0; j < kQK / 2; ++j) {
          const int lo = std::min(15, static_cast<int>(static_cast<int8_t>(x[j] * id + 8.5f)));
          const int hi = std::min(15, static_cast<int>(static_cast<int8_t>(x[j + 16] * id + 8.5f)));
          y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
      return;
    }
    case DType::Q4_1: {
      auto* y = static_cast<qk::BlockQ4_1*>(dst);
      for (int64_t i = 0; i < nb; ++i) {
        const float* x = src + i * kQK;
        float mn = x[0], mx = x[0];
        for (int j = 1; j < kQK; ++j) mn = std::min(mn, x[j]), mx = std::max(mx, x[j]);
        const float d = (mx - mn) / 15.f;
        const float id = d != 0.f ? 1.f / d : 0.f;
        y[i].d = fp32_to_fp16(d);
        y[i].m = fp32_to_fp16(mn);
        for (int j = 0; j < kQK / 2; ++j) {
          const int lo = std::min(15, static_cast<int>(static_cast<int8_t>((x[j] - mn) * id + 0.5f)));
          const int hi = std::min(15, static_cast<int>(static_cast<int8_t>((x[j + 16] - mn) * id + 0.5f)));
          y[i].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
        }
      }
      return;
    }
    default:
      SPECDEC_FAIL("quantize_row supports q8_0, q4_0, q4_1, got ", dtype_info(t).name);
  }
}

// ---- level selection ---------------------------------------------------------------------------

namespace {

bool machine_has(CpuLevel l) {
#if SPECDEC_QK_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  switch (l) {
    case CpuLevel::Scalar:
      return true;
    case CpuLevel::Avx2:
      return avx2;
    case CpuLevel::AvxVnni:
      return SPECDEC_QK_AVXVNNI && avx2 && __builtin_cpu_supports("avxvnni");
    case CpuLevel::Avx512:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return l == CpuLevel::Scalar;
#endif
}

constexpr CpuLevel kLevels[] = {CpuLevel::Scalar, CpuLevel::Avx2, CpuLevel::AvxVnni, CpuLevel::Avx512};

// machine_has per level, queried once.
bool has_level(CpuLevel l) {
  static const auto has = [] {
    std::array<bool, std::size(kLevels)> h{};
    for (CpuLevel k : kLevels) h[static_cast<size_t>(k)] = machine_has(k);
    return h;
  }();
  return has[static_cast<size_t>(l)];
}

// The best supported level at or below l (levels are not a chain: see cpu_level_supported).
CpuLevel clamp_level(CpuLevel l) {
  for (int k = static_cast<int>(l); k > 0; --k)
    if (has_level(static_cast<CpuLevel>(k))) return static_cast<CpuLevel>(k);
  return CpuLevel::Scalar;
}

CpuLevel best_level() { return clamp_level(CpuLevel::Avx512); }

CpuLevel initial_level() {
  const char* env = std::getenv("SPECDEC_CPU_KERNELS");
  if (env == nullptr || *env == '\0') return best_level();
  const std::string v(env);
  for (CpuLevel l : kLevels)
    if (v == cpu_level_name(l)) return clamp_level(l);
  SPECDEC_FAIL("SPECDEC_CPU_KERNELS must be scalar, avx2, avxvnni or avx512, got '", v, "'");
}

std::atomic<CpuLevel>& level_slot() {
  static std::atomic<CpuLevel> slot{initial_level()};
  return slot;
}

}  // namespace

std::string_view cpu_level_name(CpuLevel l) {
  switch (l) {
    case CpuLevel::Scalar:
      return "scalar";
    case CpuLevel::Avx2:
      return "avx2";
    case CpuLevel::AvxVnni:
      return "avxvnni";
    case CpuLevel::Avx512:
      return "avx512";
  }
  return "?";
}

bool cpu_level_supported(CpuLevel l) { return static_cast<size_t>(l) < std::size(kLevels) && has_level(l); }

CpuLevel cpu_level() { return level_slot().load(std::memory_order_relaxed); }

void set_cpu_level(CpuLevel l) {
  SPECDEC_CHECK(cpu_level_supported(l), "a CPU kernel level this machine supports (best ", cpu_level_name(best_level()),
                "), got ", cpu_level_name(l));
  level_slot().store(l, std::memory_order_relaxed);
}

// ---- quantized matmul --------------------------------------------------------------------------

#if SPECDEC_QK_X86 && !SPECDEC_QK_AVXVNNI
// A compiler without -mavxvnni: the level is never supported (machine_has), these are never entered.
namespace qk {
void quantize_act_avxvnni(const ActQ&, const float*, WKind, int64_t, int64_t) {
  SPECDEC_FAIL("the avxvnni kernels were not compiled");
}
void matmul_rows_avxvnni(float*, const ActQ&, const void*, WKind, int, int, int, int, int) {
  SPECDEC_FAIL("the avxvnni kernels were not compiled");
}
}  // namespace qk
#endif

namespace {

struct LevelFns {
  void (*quantize)(const qk::ActQ&, const float*, qk::WKind, int64_t, int64_t);
  void (*rows)(float*, const qk::ActQ&, const void*, qk::WKind, int, int, int, int, int);
};

LevelFns level_fns(CpuLevel l) {
#if SPECDEC_QK_X86
  if (l == CpuLevel::Avx512) return {qk::quantize_act_avx512, qk::matmul_rows_avx512};
  if (l == CpuLevel::Avx2) return {qk::quantize_act_avx2, qk::matmul_rows_avx2};
#endif
#if SPECDEC_QK_AVXVNNI
  if (l == CpuLevel::AvxVnni) return {qk::quantize_act_avxvnni, qk::matmul_rows_avxvnni};
#endif
  (void)l;
  return {qk::quantize_act_scalar, qk::matmul_rows_scalar};
}

// Per-thread scratch for the quantized activations, kept between calls (no allocation per matmul).
qk::ActQ act_scratch(int T, int nb) {
  thread_local std::vector<uint8_t> buf;
  const size_t n = static_cast<size_t>(T) * static_cast<size_t>(nb);
  const size_t q_bytes = (n * kQK + 63) / 64 * 64, f_bytes = (n * 4 + 63) / 64 * 64;
  if (buf.size() < q_bytes + 3 * f_bytes + 64) buf.resize(q_bytes + 3 * f_bytes + 64);
  const auto base = (reinterpret_cast<uintptr_t>(buf.data()) + 63) & ~uintptr_t{63};
  auto* p = reinterpret_cast<uint8_t*>(base);
  qk::ActQ a;
  a.q = reinterpret_cast<int8_t*>(p);
  a.d = reinterpret_cast<float*>(p + q_bytes);
  a.s = reinterpret_cast<float*>(p + q_bytes + f_bytes);
  a.bias = reinterpret_cast<int32_t*>(p + q_bytes + 2 * f_bytes);
  a.T = T;
  a.nb = nb;
  return a;
}

bool weight_kind(DType t, qk::WKind& w) {
  switch (t) {
    case DType::Q8_0:
      w = qk::WKind::Q8_0;
      return true;
    case DType::Q4_0:
      w = qk::WKind::Q4_0;
      return true;
    case DType::Q4_1:
      w = qk::WKind::Q4_1;
      return true;
    default:
      return false;
  }
}

// Rows per scheduling unit: a unit's weights stay in L1/L2 while T > 16 tokens are swept in tiles.
constexpr int kRowChunk = 16;
// Below this many block dots (N * K/32 * T) a second thread costs more than it saves.
constexpr int64_t kMinParallelBlockDots = 4096;
// Tasks per thread: claimed dynamically, so a thread slowed by other load leaves its share to the others.
constexpr int kTasksPerThread = 8;

}  // namespace

namespace {

// The quantized matmul of n_parts matrices over one x (all of weight kind w) at a level: the activations
// quantized once on the caller, then every part's 16-row chunks as tasks over parallel_for's threads
// (no barrier waits for a thread that is not running).
void matmul_quant_parts(CpuLevel level, const MatmulPart* parts, int n_parts, qk::WKind w, const float* x, int T,
                        int K) {
  const int nb = K / kQK;
  const LevelFns fns = level_fns(level);
  const qk::ActQ a = act_scratch(T, nb);
  const int64_t n_blocks = static_cast<int64_t>(T) * nb;
  fns.quantize(a, x, w, 0, n_blocks);  // T*nb blocks: microseconds
  constexpr int kMaxParts = 4;
  int chunk0[kMaxParts + 1] = {0};  // part i owns chunks [chunk0[i], chunk0[i+1]) of the pool
  int64_t rows = 0;
  for (int i = 0; i < n_parts; ++i) {
    chunk0[i + 1] = chunk0[i] + (parts[i].N + kRowChunk - 1) / kRowChunk;
    rows += parts[i].N;
  }
  const int n_chunks = chunk0[n_parts];
  const int threads = omp_get_max_threads();
  const bool parallel = n_chunks > 1 && threads > 1 && rows * n_blocks >= kMinParallelBlockDots;
  const int n_tasks = parallel ? std::min(n_chunks, kTasksPerThread * threads) : 1;
  const auto task = [&](int i) {
    const int c0 = static_cast<int>(static_cast<int64_t>(n_chunks) * i / n_tasks);
    const int c1 = static_cast<int>(static_cast<int64_t>(n_chunks) * (i + 1) / n_tasks);
    int part = 0;
    for (int c = c0; c < c1; ++c) {
      while (c >= chunk0[part + 1]) ++part;
      const MatmulPart& m = parts[part];
      const int n0 = (c - chunk0[part]) * kRowChunk, n1 = std::min(m.N, n0 + kRowChunk);
      for (int t0 = 0; t0 < T; t0 += qk::kTileT)
        fns.rows(m.out, a, m.W, w, m.N, n0, n1, t0, std::min(T, t0 + qk::kTileT));
    }
  };
  parallel_for(n_tasks, task, parallel ? threads : 1);
}

void check_shape(DType t, int T, int N, int K) {
  SPECDEC_CHECK(K > 0 && K % kQK == 0, "K a positive multiple of 32 for ", dtype_info(t).name, ", got ", K);
  SPECDEC_CHECK(T >= 0 && N >= 0, "non-negative T and N, got T=", T, " N=", N);
}

}  // namespace

bool matmul_quant_at(CpuLevel level, float* out, const float* x, const void* W, DType t, int T, int N, int K) {
  qk::WKind w;
  if (!weight_kind(t, w)) return false;
  SPECDEC_CHECK(cpu_level_supported(level), "a CPU kernel level this machine supports, got ", cpu_level_name(level));
  check_shape(t, T, N, K);
  if (T == 0 || N == 0) return true;
  const MatmulPart part{out, W, t, N};
  matmul_quant_parts(level, &part, 1, w, x, T, K);
  return true;
}

bool matmul_quant_group(const MatmulPart* parts, int n_parts, const float* x, int T, int K) {
  if (n_parts < 1 || n_parts > 4) return false;
  qk::WKind w;
  if (!weight_kind(parts[0].t, w)) return false;
  for (int i = 0; i < n_parts; ++i) {
    if (parts[i].t != parts[0].t) return false;
    check_shape(parts[i].t, T, parts[i].N, K);
  }
  if (T == 0) return true;
  matmul_quant_parts(cpu_level(), parts, n_parts, w, x, T, K);
  return true;
}

bool matmul_quant(float* out, const float* x, const void* W, DType t, int T, int N, int K) {
  return matmul_quant_at(cpu_level(), out, x, W, t, T, N, K);
}

void quantize_activations(int8_t* q, float* d, float* s, const float* x, int T, int K) {
  SPECDEC_CHECK(K > 0 && K % kQK == 0 && T >= 0, "K a positive multiple of 32, got ", K);
  std::vector<int32_t> bias(static_cast<size_t>(T) * (K / kQK));
  const qk::ActQ a{q, d, s, bias.data(), T, K / kQK};
  qk::quantize_act_scalar(a, x, qk::WKind::Q4_1, 0, static_cast<int64_t>(T) * (K / kQK));
}

}  // namespace specdec::cpu
