// Quantized matmul: every SIMD level bit for bit against the scalar twin, batch invariance (a row's bits
// do not depend on the other rows, tokens, threads or level), and the quantized product against the
// float reference (dequantized W times float x in double), over awkward shapes, with stated bounds.
// SIMD levels the machine lacks are skipped with a WARN.
#include <catch2/catch.hpp>

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cpu/quant_kernels.h"
#include "tests/quant/quant_reference.h"

using namespace specdec::cpu;
using specdec::test::randn;
using specdec::test::small_block_elem;

namespace {

constexpr double kU = 0x1p-24;  // float unit roundoff
double gamma_n(double n) { return n * kU / (1 - n * kU); }

// W (N,K) from normal floats through GGML's reference quantizer; for Q8_0 some quants are set to -128
// (the one value the quantizer never writes) to exercise |q| = 128.
std::vector<uint8_t> make_weights(DType t, int N, int K, uint32_t seed) {
  const auto w = randn(static_cast<size_t>(N) * K, seed, 0.05f);
  std::vector<uint8_t> W(row_bytes(t, K) * N);
  for (int n = 0; n < N; ++n) quantize_row(W.data() + row_bytes(t, K) * n, w.data() + static_cast<size_t>(n) * K, t, K);
  if (t == DType::Q8_0)
    for (size_t b = 0; b < W.size() / 34; b += 3) W[b * 34 + 2 + b % 32] = 0x80;
  return W;
}

// x (T,K): normal, with token 1 all zeros (a zero scale) and token 2 with one huge element per block.
std::vector<float> make_x(int T, int K, uint32_t seed) {
  auto x = randn(static_cast<size_t>(T) * K, seed);
  if (T > 1) std::fill(x.begin() + K, x.begin() + 2 * K, 0.f);
  if (T > 2)
    for (int k = 0; k < K; k += 32) x[2 * static_cast<size_t>(K) + k + (k / 32) % 32] = 1e3f;
  return x;
}

// Per output (t, n) of a quantized matmul (every level: they are bit-identical, checked below):
//  The kernel sums the terms tau_b = fl(dw*da) * sumi_b (+ mw*s_b) with exact integer sumi; any
//    evaluation of at most 2*nb products and sums is within gamma(2nb+2) * B of the exact sum,
//    B = sum_b |fl(dw*da) * sumi_b| + |mw * s_b|; we use the looser B' = sum_b |fl(dw*da)| *
//    sum_k c_k |qa_k| + |mw * s_b| (c_k = |q| for Q8_0, nibble + 8 for Q4_0, nibble for Q4_1) and
//    n = 8*nb + 32, so the kernel's own rounding is <= 2 gamma(8nb+32) B'.
//  ref, ref_tol: the float reference sum_k w_k x_k (w dequantized, double accumulation) and the bound
//    on |quantized - ref|: activation rounding |x - qa*da| <= e_b = 0.563 amax_b/127 (half a step, plus
//    fp16(d) costing 127 * 2^-11 steps, plus the float x*id), the Q8_1 sum s = fp16(d*S) vs da*S
//    (<= 2^-9 d |S|), the float rounding of dequantized Q4_1 weights (2u), and the kernel's own
//    summation (gamma(8nb+32) B):
//    ref_tol = sum_b [A_b e_b + |mw| 2^-9 (amax_b/127) |S_b| + 2u A_b amax_b] + 2 gamma(8nb+32) B,
//    A_b = sum_k |q_k dw| + |mw|.
struct Expect {
  std::vector<double> ref, ref_tol;
};

Expect expectations(DType t, const std::vector<uint8_t>& W, const std::vector<float>& x, int T, int N, int K) {
  const int nb = K / 32;
  const size_t rb = row_bytes(t, K), bb = static_cast<size_t>(dtype_info(t).block_bytes);
  std::vector<int8_t> qa(static_cast<size_t>(T) * K);
  std::vector<float> da(static_cast<size_t>(T) * nb), sa(da.size());
  quantize_activations(qa.data(), da.data(), sa.data(), x.data(), T, K);
  // weights, decoded once: dequantized values, c_k, and per block dw, mw, A_b
  std::vector<float> w(static_cast<size_t>(N) * K), dw(static_cast<size_t>(N) * nb), mw(dw.size());
  std::vector<double> A(dw.size());
  std::vector<int> c(w.size());
  for (int n = 0; n < N; ++n) {
    dequantize_row_quant(w.data() + static_cast<size_t>(n) * K, W.data() + rb * n, t, K);
    for (int b = 0; b < nb; ++b) {
      const uint8_t* blk = W.data() + rb * n + bb * b;
      const size_t nbi = static_cast<size_t>(n) * nb + b;
      A[nbi] = 0;
      for (int k = 0; k < 32; ++k) {
        const auto el = small_block_elem(blk, t, k);
        dw[nbi] = el.d, mw[nbi] = el.m;
        c[static_cast<size_t>(n) * K + b * 32 + k] = t == DType::Q4_0 ? el.q + 16 : std::abs(el.q);  // Q4_0: nibble + 8
        A[nbi] += std::fabs(static_cast<double>(el.q) * el.d) + std::fabs(el.m);
      }
    }
  }
  // activations: per block amax and S = sum(q)
  std::vector<double> amax(da.size());
  std::vector<int> S(da.size());
  for (size_t b = 0; b < da.size(); ++b) {
    amax[b] = 0, S[b] = 0;
    for (int k = 0; k < 32; ++k) {
      amax[b] = std::max(amax[b], static_cast<double>(std::fabs(x[b * 32 + k])));
      S[b] += qa[b * 32 + k];
    }
  }

  Expect e;
  e.ref.resize(static_cast<size_t>(T) * N);
  e.ref_tol.resize(e.ref.size());
  const double g = gamma_n(8.0 * nb + 32);
  for (int tk = 0; tk < T; ++tk) {
    const float* xt = x.data() + static_cast<size_t>(tk) * K;
    const int8_t* qt = qa.data() + static_cast<size_t>(tk) * K;
    for (int n = 0; n < N; ++n) {
      const float* wn = w.data() + static_cast<size_t>(n) * K;
      const int* cn = c.data() + static_cast<size_t>(n) * K;
      double B = 0, ref = 0, act_err = 0;
      for (int b = 0; b < nb; ++b) {
        const size_t ab = static_cast<size_t>(tk) * nb + b, nbi = static_cast<size_t>(n) * nb + b;
        int cq = 0;
        for (int k = b * 32; k < b * 32 + 32; ++k) {
          cq += cn[k] * std::abs(qt[k]);
          ref += static_cast<double>(wn[k]) * xt[k];
        }
        B += std::fabs(static_cast<double>(dw[nbi] * da[ab])) * cq + std::fabs(static_cast<double>(mw[nbi]) * sa[ab]);
        act_err += A[nbi] * 0.563 * amax[ab] / 127 + std::fabs(mw[nbi]) * 0x1p-9 * amax[ab] / 127 * std::abs(S[ab]) +
                   2 * kU * A[nbi] * amax[ab];
      }
      const size_t o = static_cast<size_t>(tk) * N + n;
      e.ref[o] = ref;
      e.ref_tol[o] = act_err + 2 * g * B;
    }
  }
  return e;
}

std::vector<float> run(CpuLevel l, DType t, const std::vector<uint8_t>& W, const std::vector<float>& x, int T, int N,
                       int K) {
  std::vector<float> out(static_cast<size_t>(T) * N, -12345.f);
  REQUIRE(matmul_quant_at(l, out.data(), x.data(), W.data(), t, T, N, K));
  return out;
}

std::vector<CpuLevel> simd_levels_here() {
  std::vector<CpuLevel> v;
  for (CpuLevel l : {CpuLevel::Avx2, CpuLevel::AvxVnni, CpuLevel::Avx512}) {
    if (cpu_level_supported(l)) {
      v.push_back(l);
    } else {
      WARN("skipping the " << cpu_level_name(l) << " kernels: this CPU does not support them");
    }
  }
  return v;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace

TEST_CASE("matmul_quant: every SIMD level equals the scalar twin bit for bit, all match the float reference",
          "[quant][matmul]") {
  const auto levels = simd_levels_here();
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    for (int K : {32, 64, 576, 1536, 4096}) {
      for (int N : {1, 3, 7, 37, 1002}) {
        const auto W = make_weights(t, N, K, static_cast<uint32_t>(K * 7 + N));
        for (int T : {1, 2, 5, 9, 16}) {
          const auto x = make_x(T, K, static_cast<uint32_t>(T * 31 + K));
          const Expect e = expectations(t, W, x, T, N, K);
          const auto ref = run(CpuLevel::Scalar, t, W, x, T, N, K);
          INFO(dtype_info(t).name << " T=" << T << " N=" << N << " K=" << K);
          for (size_t i = 0; i < ref.size(); ++i) {
            INFO("output " << i << " scalar " << ref[i] << " float reference " << e.ref[i]);
            REQUIRE(std::fabs(ref[i] - e.ref[i]) <= e.ref_tol[i]);
          }
          for (CpuLevel l : levels) {
            INFO("level " << cpu_level_name(l));
            REQUIRE(same_bits(run(l, t, W, x, T, N, K), ref));
          }
        }
      }
    }
  }
}

TEST_CASE("matmul_quant sweeps more than one 16-token tile and many row chunks", "[quant][matmul]") {
  const auto levels = simd_levels_here();
  for (DType t : {DType::Q8_0, DType::Q4_1}) {
    const int T = 37, N = 133, K = 800;  // 25 blocks: 16 + 8 + 1
    const auto W = make_weights(t, N, K, 5);
    const auto x = make_x(T, K, 6);
    const Expect e = expectations(t, W, x, T, N, K);
    const auto ref = run(CpuLevel::Scalar, t, W, x, T, N, K);
    for (size_t i = 0; i < ref.size(); ++i) REQUIRE(std::fabs(ref[i] - e.ref[i]) <= e.ref_tol[i]);
    for (CpuLevel l : levels) REQUIRE(same_bits(run(l, t, W, x, T, N, K), ref));
  }
}

TEST_CASE("matmul_quant is batch-invariant: a row's result never depends on T, N or threads", "[quant][matmul]") {
  std::vector<CpuLevel> levels = simd_levels_here();
  levels.push_back(CpuLevel::Scalar);
  const int T = 37, N = 53, K = 576;  // T spans three 16-token tiles; N a partial 16-row chunk
  // At least two threads whatever OMP_NUM_THREADS says (CTest runs tests with one): this test is
  // about results that do not depend on the thread count.
  const int max_threads = std::max(2, omp_get_max_threads());
  omp_set_num_threads(max_threads);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const auto W = make_weights(t, N, K, 21);
    const auto x = make_x(T, K, 22);
    const size_t rb = row_bytes(t, K);
    for (CpuLevel l : levels) {
      INFO(dtype_info(t).name << " level " << cpu_level_name(l));
      const auto batch = run(l, t, W, x, T, N, K);
      // one token at a time
      for (int tk = 0; tk < T; ++tk) {
        std::vector<float> one(static_cast<size_t>(N));
        REQUIRE(matmul_quant_at(l, one.data(), x.data() + static_cast<size_t>(tk) * K, W.data(), t, 1, N, K));
        REQUIRE(std::memcmp(one.data(), batch.data() + static_cast<size_t>(tk) * N, one.size() * 4) == 0);
      }
      // rows 5.. on their own (each row lands in another lane of another chunk)
      std::vector<float> sub(static_cast<size_t>(T) * (N - 5));
      REQUIRE(matmul_quant_at(l, sub.data(), x.data(), W.data() + 5 * rb, t, T, N - 5, K));
      for (int tk = 0; tk < T; ++tk)
        REQUIRE(std::memcmp(sub.data() + static_cast<size_t>(tk) * (N - 5),
                            batch.data() + static_cast<size_t>(tk) * N + 5, (N - 5) * 4) == 0);
      // one thread
      omp_set_num_threads(1);
      const auto single = run(l, t, W, x, T, N, K);
      omp_set_num_threads(max_threads);
      REQUIRE(std::memcmp(single.data(), batch.data(), batch.size() * 4) == 0);
    }
  }
}

TEST_CASE(
    "matmul_quant, T = 1..17 rows and row counts off the 8/16 tiles: bit-identical levels, and "
    "row t of a block equals row t computed alone",
    "[quant][matmul]") {
  std::vector<CpuLevel> levels = simd_levels_here();
  const int max_threads = std::max(2, omp_get_max_threads());
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    for (int K : {32, 96, 576}) {
      for (int N : {1, 5, 8, 9, 15, 16, 17, 23, 33, 47}) {
        const auto W = make_weights(t, N, K, static_cast<uint32_t>(N * 13 + K));
        const auto x = make_x(17, K, static_cast<uint32_t>(K + 3));
        // each token alone, scalar: the reference bits of every row
        std::vector<float> alone(static_cast<size_t>(17) * N);
        for (int tk = 0; tk < 17; ++tk)
          REQUIRE(matmul_quant_at(CpuLevel::Scalar, alone.data() + static_cast<size_t>(tk) * N,
                                  x.data() + static_cast<size_t>(tk) * K, W.data(), t, 1, N, K));
        for (int T = 1; T <= 17; ++T) {
          const std::vector<float> want(alone.begin(), alone.begin() + static_cast<ptrdiff_t>(T) * N);
          INFO(dtype_info(t).name << " T=" << T << " N=" << N << " K=" << K);
          REQUIRE(same_bits(run(CpuLevel::Scalar, t, W, x, T, N, K), want));
          for (CpuLevel l : levels) {
            INFO("level " << cpu_level_name(l));
            omp_set_num_threads(T % 2 == 0 ? 1 : max_threads);
            REQUIRE(same_bits(run(l, t, W, x, T, N, K), want));
            omp_set_num_threads(max_threads);
          }
        }
      }
    }
  }
}

TEST_CASE("SIMD activation quantizers equal the scalar one bit for bit", "[quant]") {
  namespace qk = specdec::cpu::qk;
  struct Buf {
    std::vector<int8_t> q;
    std::vector<float> d, s;
    std::vector<int32_t> bias;
    qk::ActQ a;
    Buf(int T, int nb)
        : q(static_cast<size_t>(T) * nb * 32, 99),
          d(static_cast<size_t>(T) * nb, 99.f),
          s(d.size(), 99.f),
          bias(d.size(), 99) {
      a = {q.data(), d.data(), s.data(), bias.data(), T, nb};
    }
  };
  const int T = 3, nb = 43;
  auto x = make_x(T, nb * 32, 77);
  // token 0, block 0: amax 127 makes x*id exact, so j + 0.5 are exact ties (to even)
  x[0] = 127.f;
  for (int j = 1; j < 32; ++j) x[j] = static_cast<float>(j - 16) + 0.5f;
  Buf ref(T, nb);
  qk::quantize_act_scalar(ref.a, x.data(), qk::WKind::Q4_0, 0, T * nb);
  for (CpuLevel l : {CpuLevel::Avx2, CpuLevel::AvxVnni, CpuLevel::Avx512}) {
    if (!cpu_level_supported(l)) {
      WARN("skipping the " << cpu_level_name(l) << " activation quantizer: not supported here");
      continue;
    }
    for (auto w : {qk::WKind::Q8_0, qk::WKind::Q4_0, qk::WKind::Q4_1}) {
      Buf got(T, nb);
      // in two slices, as the threads of matmul_quant do
      for (auto [b0, b1] : {std::pair<int, int>{0, 50}, {50, T * nb}}) {
        if (l == CpuLevel::Avx512)
          qk::quantize_act_avx512(got.a, x.data(), w, b0, b1);
        else if (l == CpuLevel::AvxVnni)
          qk::quantize_act_avxvnni(got.a, x.data(), w, b0, b1);
        else
          qk::quantize_act_avx2(got.a, x.data(), w, b0, b1);
      }
      // bias folds -c * sum(q) into the integer dots: Q4_0 nibbles (c = 8), Q8_0 as q^0x80 with VNNI
      const bool vnni = l == CpuLevel::Avx512 || l == CpuLevel::AvxVnni;
      const int c = w == qk::WKind::Q4_0 ? 8 : (w == qk::WKind::Q8_0 && vnni) ? 128 : 0;
      INFO(cpu_level_name(l) << " kind " << static_cast<int>(w));
      REQUIRE(got.q == ref.q);
      REQUIRE(got.d == ref.d);
      REQUIRE(got.s == ref.s);
      for (size_t b = 0; b < got.bias.size(); ++b) {
        int sum = 0;
        for (int e = 0; e < 32; ++e) sum += ref.q[b * 32 + e];
        REQUIRE(got.bias[b] == -c * sum);
      }
    }
  }
}

TEST_CASE("matmul routes quantized weights through matmul_quant; other dtypes fall back", "[quant]") {
  const int T = 3, N = 37, K = 256;
  const auto x = make_x(T, K, 9);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1}) {
    const auto W = make_weights(t, N, K, 10);
    std::vector<float> a(static_cast<size_t>(T) * N), b(a.size());
    matmul(a.data(), x.data(), W.data(), t, T, N, K);
    REQUIRE(matmul_quant(b.data(), x.data(), W.data(), t, T, N, K));
    REQUIRE(std::memcmp(a.data(), b.data(), a.size() * 4) == 0);
  }
  const auto Wk = specdec::test::random_blocks(DType::Q4_K, static_cast<int64_t>(N) * K / 256, 3);
  std::vector<float> o(static_cast<size_t>(T) * N);
  REQUIRE_FALSE(matmul_quant(o.data(), x.data(), Wk.data(), DType::Q4_K, T, N, K));
  REQUIRE_FALSE(matmul_quant(o.data(), x.data(), Wk.data(), DType::F16, T, N, K));
  // the generic path of matmul dequantizes K-quant rows: compare with the reference decoder
  matmul(o.data(), x.data(), Wk.data(), DType::Q4_K, T, N, K);
  const auto w = specdec::test::ref_dequant(Wk, DType::Q4_K, static_cast<int64_t>(N) * K);
  for (int t = 0; t < T; ++t)
    for (int n = 0; n < N; ++n) {
      double r = 0, m = 0;
      for (int k = 0; k < K; ++k) {
        r += static_cast<double>(w[static_cast<size_t>(n) * K + k]) * x[static_cast<size_t>(t) * K + k];
        m += std::fabs(static_cast<double>(w[static_cast<size_t>(n) * K + k]) * x[static_cast<size_t>(t) * K + k]);
      }
      REQUIRE(std::fabs(o[static_cast<size_t>(t) * N + n] - r) <= 1e-5 * m + 1e-6);
    }
}

TEST_CASE("matmul_quant_group: one call over several matrices gives each part's own bits at every level",
          "[quant][matmul]") {
  const int K = 576;
  const CpuLevel before = cpu_level();
  std::vector<CpuLevel> levels = {CpuLevel::Scalar};
  for (CpuLevel l : simd_levels_here()) levels.push_back(l);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_1})
    for (int T : {1, 5, 17}) {
      CAPTURE(dtype_info(t).name, T);
      const auto x = make_x(T, K, 40 + T);
      const int Ns[] = {576, 192, 40, 0};  // q, k, v-like shapes, a partial chunk, an empty part
      std::vector<std::vector<uint8_t>> W;
      std::vector<std::vector<float>> got, alone;
      std::vector<MatmulPart> parts;
      for (int i = 0; i < 4; ++i) {
        W.push_back(make_weights(t, std::max(Ns[i], 1), K, 50 + i));
        got.emplace_back(static_cast<size_t>(T) * Ns[i], -1.f);
      }
      for (int i = 0; i < 4; ++i) parts.push_back({got[i].data(), W[i].data(), t, Ns[i]});
      for (CpuLevel l : levels) {
        CAPTURE(cpu_level_name(l));
        set_cpu_level(l);
        for (int threads : {1, 2}) {
          omp_set_num_threads(threads);
          REQUIRE(matmul_quant_group(parts.data(), 4, x.data(), T, K));
          for (int i = 0; i < 3; ++i) REQUIRE(same_bits(got[i], run(l, t, W[i], x, T, Ns[i], K)));
        }
      }
      // a group of mixed weight types has no fast path: nothing computed, the caller splits it
      const auto W8 = make_weights(t == DType::Q8_0 ? DType::Q4_0 : DType::Q8_0, 576, K, 60);
      const MatmulPart mixed[] = {parts[0],
                                  {got[0].data(), W8.data(), t == DType::Q8_0 ? DType::Q4_0 : DType::Q8_0, 576}};
      REQUIRE_FALSE(matmul_quant_group(mixed, 2, x.data(), T, K));
    }
  omp_set_num_threads(1);
  set_cpu_level(before);
}

TEST_CASE("matmul_quant argument checks and empty shapes", "[quant]") {
  const auto W = make_weights(DType::Q4_1, 4, 64, 1);
  const auto x = make_x(2, 64, 2);
  std::vector<float> o(8);
  REQUIRE_THROWS(matmul_quant(o.data(), x.data(), W.data(), DType::Q4_1, 2, 4, 48));
  REQUIRE(matmul_quant(o.data(), x.data(), W.data(), DType::Q4_1, 0, 4, 64));
  REQUIRE(matmul_quant(o.data(), x.data(), W.data(), DType::Q4_1, 2, 0, 64));
}

TEST_CASE("cpu level: query, force, restore", "[quant]") {
  const CpuLevel start = cpu_level();
  REQUIRE(cpu_level_supported(CpuLevel::Scalar));
  REQUIRE(cpu_level_supported(start));
  set_cpu_level(CpuLevel::Scalar);
  REQUIRE(cpu_level() == CpuLevel::Scalar);
  for (CpuLevel l : {CpuLevel::Avx2, CpuLevel::AvxVnni, CpuLevel::Avx512}) {
    if (cpu_level_supported(l)) {
      set_cpu_level(l);
      REQUIRE(cpu_level() == l);
    } else {
      REQUIRE_THROWS(set_cpu_level(l));
    }
  }
  set_cpu_level(start);
  REQUIRE(cpu_level_name(CpuLevel::Avx512) == "avx512");
  REQUIRE(cpu_level_name(CpuLevel::AvxVnni) == "avxvnni");
}
