// CPU kernels against obvious double-precision references (the fast paths must match the simple ones).
#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cpu/parallel.h"
#include "tests/support/random.h"
#include "tests/support/shapes.h"

#include <omp.h>

namespace shapes = specdec::test::shapes;

using namespace specdec::cpu;
using specdec::test::randn;

namespace {

// The CPU kernel levels this machine runs (every kernel dispatched by cpu_level() is checked at each).
std::vector<CpuLevel> levels_here() {
  std::vector<CpuLevel> levels;
  for (CpuLevel l : {CpuLevel::Scalar, CpuLevel::Avx2, CpuLevel::AvxVnni, CpuLevel::Avx512})
    if (cpu_level_supported(l)) levels.push_back(l);
  return levels;
}

// Runs f at each level this machine has (set_cpu_level), then restores the level.
template <typename F>
void at_each_level(F&& f) {
  const CpuLevel before = cpu_level();
  for (CpuLevel l : levels_here()) {
    INFO("CPU level " << cpu_level_name(l));
    set_cpu_level(l);
    f(l);
  }
  set_cpu_level(before);
}

}  // namespace

TEST_CASE("rmsnorm matches the double-precision reference over awkward sizes", "[kernels]") {
  for (int H : shapes::kWidths) {
    for (int T : {1, 3}) {
      auto x = randn(static_cast<size_t>(T) * H, 1 + H);
      auto w = randn(H, 2 + H);
      std::vector<float> a(x.size()), b(x.size());
      rmsnorm(a.data(), x.data(), w.data(), T, H, 1e-5f);
      rmsnorm_ref(b.data(), x.data(), w.data(), T, H, 1e-5f);
      for (size_t i = 0; i < a.size(); ++i) REQUIRE(a[i] == Approx(b[i]).margin(1e-5).epsilon(1e-5));
    }
  }
}

TEST_CASE("fp16 conversion round-trips every finite half exactly", "[kernels]") {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const uint16_t hv = static_cast<uint16_t>(h);
    if (((hv >> 10) & 0x1f) == 0x1f) continue;  // inf/nan
    const float f = fp16_to_fp32(hv);
    REQUIRE(fp32_to_fp16(f) == hv);
  }
  REQUIRE(fp16_to_fp32(0x3c00) == 1.0f);
  REQUIRE(fp16_to_fp32(0xc000) == -2.0f);
  REQUIRE(fp32_to_fp16(65520.f) == 0x7c00);                         // rounds to +inf
  REQUIRE(fp16_to_fp32(fp32_to_fp16(1.0f + 1.0f / 4096)) == 1.0f);  // ties to even
}

TEST_CASE("f32 matmul equals a naive double loop for T = 1 and T > 1", "[kernels]") {
  for (int T : {1, 5}) {
    const int N = 37, K = 73;
    auto x = randn(static_cast<size_t>(T) * K, 3), W = randn(static_cast<size_t>(N) * K, 4);
    std::vector<float> out(static_cast<size_t>(T) * N);
    matmul(out.data(), x.data(), W.data(), DType::F32, T, N, K);
    for (int t = 0; t < T; ++t)
      for (int n = 0; n < N; ++n) {
        double ref = 0;
        for (int k = 0; k < K; ++k) ref += static_cast<double>(x[t * K + k]) * W[n * K + k];
        REQUIRE(out[t * N + n] == Approx(ref).margin(1e-4));
      }
  }
}

// dot_f32's contract, written out: lane j sums elements j, j+16, ... (a product, then a sum), then the
// fixed tree 8, 4, 2, 1. Every level of the f32 matmul must give exactly these bits.
float dot_contract(const float* a, const float* b, int n) {
  float acc[16] = {};
  for (int i = 0; i < n; ++i) {
    const float p = a[i] * b[i];
    acc[i % 16] = acc[i % 16] + p;
  }
  for (int h = 8; h >= 1; h /= 2)
    for (int j = 0; j < h; ++j) acc[j] = acc[j] + acc[j + h];
  return acc[0];
}

TEST_CASE("f32 matmul: every CPU level gives dot_f32's defined bits, whatever the call's shape", "[kernels]") {
  const std::vector<CpuLevel> levels = levels_here();
  std::string names;
  for (CpuLevel l : levels) names += std::string(cpu_level_name(l)) + " ";
  WARN("f32 matmul levels checked on this machine: " << names);
  for (int K : shapes::kWidths) {
    for (int N : {1, 3, 4, 5, 37}) {
      for (int T : {1, 2, 9}) {
        const auto x = randn(static_cast<size_t>(T) * K, static_cast<uint32_t>(K + T));
        const auto W = randn(static_cast<size_t>(N) * K, static_cast<uint32_t>(K * N + 1));
        std::vector<float> want(static_cast<size_t>(T) * N);
        for (int t = 0; t < T; ++t)
          for (int n = 0; n < N; ++n)
            want[t * N + n] = dot_contract(&x[static_cast<size_t>(t) * K], &W[static_cast<size_t>(n) * K], K);
        for (CpuLevel l : levels) {
          INFO("level " << cpu_level_name(l) << " K=" << K << " N=" << N << " T=" << T);
          std::vector<float> got(want.size(), -1.f);
          matmul_f32_at(l, got.data(), x.data(), W.data(), T, N, K);
          REQUIRE(std::memcmp(got.data(), want.data(), sizeof(float) * want.size()) == 0);
          // Batch invariance: the last token alone gives its row of the block.
          std::vector<float> one(static_cast<size_t>(N));
          matmul_f32_at(l, one.data(), &x[static_cast<size_t>(T - 1) * K], W.data(), 1, N, K);
          REQUIRE(std::memcmp(one.data(), &want[static_cast<size_t>(T - 1) * N], sizeof(float) * N) == 0);
        }
        std::vector<float> dispatched(want.size());
        matmul(dispatched.data(), x.data(), W.data(), DType::F32, T, N, K);
        REQUIRE(std::memcmp(dispatched.data(), want.data(), sizeof(float) * want.size()) == 0);
        REQUIRE(dot_f32(x.data(), W.data(), K) == want[0]);
      }
    }
  }
}

TEST_CASE("rope rotates adjacent pairs by pos * theta^(-i/D) and preserves norms", "[kernels]") {
  const int H = 2, D = 8;
  auto x = randn(static_cast<size_t>(2) * H * D, 5);
  auto y = x;
  const int32_t pos[2] = {0, 13};
  rope(y.data(), pos, 2, H, D, 10000.f);
  for (int i = 0; i < H * D; ++i) REQUIRE(y[i] == x[i]);  // position 0 is the identity
  for (int h = 0; h < H; ++h)
    for (int i = 0; i < D; i += 2) {
      const int o = (1 * H + h) * D + i;
      const double ang = 13.0 * std::pow(10000.0, -static_cast<double>(i) / D);
      REQUIRE(y[o] == Approx(x[o] * std::cos(ang) - x[o + 1] * std::sin(ang)).margin(1e-5));
      REQUIRE(y[o + 1] == Approx(x[o] * std::sin(ang) + x[o + 1] * std::cos(ang)).margin(1e-5));
    }
}

TEST_CASE("masked GQA attention equals a naive reference, masked slots have no influence", "[kernels]") {
  const int T = 3, S = 7, Hq = 4, Hkv = 2, D = 5, ld = Hkv * D;
  auto q = randn(static_cast<size_t>(T) * Hq * D, 6), k = randn(static_cast<size_t>(S) * ld, 7),
       v = randn(static_cast<size_t>(S) * ld, 8);
  std::vector<uint8_t> mask(T * S, 1);
  mask[0 * S + 5] = mask[0 * S + 6] = mask[1 * S + 6] = 0;
  mask[2 * S + 4] = 0;  // a tree: token 2 does not see token 0 of the block
  std::vector<float> out(static_cast<size_t>(T) * Hq * D);
  attention(out.data(), q.data(), k.data(), v.data(), mask.data(), T, S, Hq, Hkv, D, ld);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < Hq; ++h) {
      const int kh = h / (Hq / Hkv);
      std::vector<double> w(S, 0.0);
      double mx = -1e300, sum = 0;
      for (int s = 0; s < S; ++s) {
        if (!mask[t * S + s]) continue;
        double d = 0;
        for (int i = 0; i < D; ++i) d += static_cast<double>(q[(t * Hq + h) * D + i]) * k[s * ld + kh * D + i];
        w[s] = d / std::sqrt(static_cast<double>(D));
        mx = std::max(mx, w[s]);
      }
      for (int s = 0; s < S; ++s)
        if (mask[t * S + s]) sum += (w[s] = std::exp(w[s] - mx));
      for (int i = 0; i < D; ++i) {
        double ref = 0;
        for (int s = 0; s < S; ++s)
          if (mask[t * S + s]) ref += w[s] / sum * v[s * ld + kh * D + i];
        REQUIRE(out[(t * Hq + h) * D + i] == Approx(ref).margin(1e-5));
      }
    }
  // Changing a masked-out value must not change the output.
  auto v2 = v;
  v2[6 * ld + 0] += 100.f;
  std::vector<float> out2(out.size());
  attention(out2.data(), q.data(), k.data(), v2.data(), mask.data(), T, S, Hq, Hkv, D, ld);
  for (int i = 0; i < Hq * D; ++i) REQUIRE(out2[i] == out[i]);  // token 0 masks slot 6
}

TEST_CASE("fast attention equals the plain-loop reference bit for bit, for any T, thread count and CPU level",
          "[kernels]") {
  // Shapes: head dims that are not multiples of the vector width, GQA groups of 1..9, key counts around
  // the 16-slot tile, causal blocks and random tree-like masks, a row stride wider than the kv heads.
  struct Shape {
    int T, n_past, Hq, Hkv, D;
  };
  std::mt19937 g(11);
  for (const Shape sh : {Shape{1, 0, 1, 1, 5}, Shape{1, 40, 9, 3, 64}, Shape{5, 11, 4, 2, 8}, Shape{9, 17, 9, 1, 72},
                         Shape{33, 0, 6, 3, 16}, Shape{7, 100, 8, 8, 128}, Shape{3, 1, 2, 2, 3}}) {
    CAPTURE(sh.T, sh.n_past, sh.Hq, sh.Hkv, sh.D);
    const int S = sh.n_past + sh.T;
    const int64_t ld = sh.Hkv * sh.D + 3;
    auto q = randn(static_cast<size_t>(sh.T) * sh.Hq * sh.D, 21), k = randn(static_cast<size_t>(S) * ld, 22),
         v = randn(static_cast<size_t>(S) * ld, 23);
    for (bool tree : {false, true}) {
      std::vector<uint8_t> mask(static_cast<size_t>(sh.T) * S, 0);
      for (int t = 0; t < sh.T; ++t)
        for (int s = 0; s < sh.n_past + t + 1; ++s)
          mask[static_cast<size_t>(t) * S + s] = s < sh.n_past || s == sh.n_past + t || !tree || (g() % 2);
      std::vector<float> ref(q.size()), fast(q.size());
      attention_ref(ref.data(), q.data(), k.data(), v.data(), mask.data(), sh.T, S, sh.Hq, sh.Hkv, sh.D, ld);
      at_each_level([&](CpuLevel) {
        for (int threads : {1, 2}) {
          omp_set_num_threads(threads);
          attention(fast.data(), q.data(), k.data(), v.data(), mask.data(), sh.T, S, sh.Hq, sh.Hkv, sh.D, ld);
          REQUIRE(std::memcmp(fast.data(), ref.data(), ref.size() * sizeof(float)) == 0);
        }
      });
      // Batch invariance: each row alone (T = 1, its own mask row, the keys up to its own slot) gives the
      // same bits as the block.
      for (int t = 0; t < sh.T; ++t) {
        const int St = sh.n_past + t + 1;
        std::vector<uint8_t> m1(mask.begin() + static_cast<ptrdiff_t>(t) * S,
                                mask.begin() + static_cast<ptrdiff_t>(t) * S + St);
        std::vector<float> one(static_cast<size_t>(sh.Hq) * sh.D);
        attention(one.data(), q.data() + static_cast<size_t>(t) * sh.Hq * sh.D, k.data(), v.data(), m1.data(), 1, St,
                  sh.Hq, sh.Hkv, sh.D, ld);
        REQUIRE(std::memcmp(one.data(), ref.data() + static_cast<size_t>(t) * sh.Hq * sh.D,
                            one.size() * sizeof(float)) == 0);
      }
    }
  }
  omp_set_num_threads(1);
}

TEST_CASE("attention: a row's bits do not depend on where masked slots sit (tree branch == chain)", "[kernels]") {
  // Row 0 of a block attends to scattered slots of a long cache; the same keys and values packed into a
  // short cache (a chain) must give the same bits: scores, the exps, the sum (lanes by rank) and the
  // weighted sum all ignore the gaps.
  const int Hq = 9, Hkv = 3, D = 64, S = 203, ld = Hkv * D;
  auto q = randn(static_cast<size_t>(Hq) * D, 31), k = randn(static_cast<size_t>(S) * ld, 32),
       v = randn(static_cast<size_t>(S) * ld, 33);
  std::mt19937 g(34);
  std::vector<uint8_t> mask(S, 0);
  std::vector<int> kept;
  for (int s = 0; s < S; ++s)
    if (s == S - 1 || g() % 3 == 0) mask[s] = 1, kept.push_back(s);
  const int n = static_cast<int>(kept.size());
  std::vector<float> kp(static_cast<size_t>(n) * ld), vp(kp.size());
  for (int i = 0; i < n; ++i) {
    std::memcpy(&kp[static_cast<size_t>(i) * ld], &k[static_cast<size_t>(kept[i]) * ld], ld * sizeof(float));
    std::memcpy(&vp[static_cast<size_t>(i) * ld], &v[static_cast<size_t>(kept[i]) * ld], ld * sizeof(float));
  }
  std::vector<uint8_t> all(n, 1);
  std::vector<float> tree(static_cast<size_t>(Hq) * D), chain(tree.size()), ref(tree.size());
  at_each_level([&](CpuLevel) {
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      attention(tree.data(), q.data(), k.data(), v.data(), mask.data(), 1, S, Hq, Hkv, D, ld);
      attention(chain.data(), q.data(), kp.data(), vp.data(), all.data(), 1, n, Hq, Hkv, D, ld);
      REQUIRE(std::memcmp(tree.data(), chain.data(), tree.size() * sizeof(float)) == 0);
    }
  });
  attention_ref(ref.data(), q.data(), k.data(), v.data(), mask.data(), 1, S, Hq, Hkv, D, ld);
  REQUIRE(std::memcmp(tree.data(), ref.data(), tree.size() * sizeof(float)) == 0);
  omp_set_num_threads(1);
}

TEST_CASE("exp_f32 is std::exp to 1 ulp (nearly always exactly), its loop gives the same bits at every level",
          "[kernels]") {
  std::mt19937 g(41);
  std::uniform_real_distribution<float> u(-104.f, 88.7f);
  const int n = 1 << 20;
  std::vector<float> x(n), y(n);
  for (float& e : x) e = u(g);
  for (int i = 0; i < 4096; ++i) x[i] = -static_cast<float>(i) / 256;  // softmax's range, densely
  at_each_level([&](CpuLevel) {
    std::vector<float> z(n);
    exp_f32_n(z.data(), x.data(), n);
    for (int i = 0; i < n; ++i) {
      const float one = exp_f32(x[i]);
      REQUIRE(std::memcmp(&z[i], &one, sizeof one) == 0);  // the level's loop == the scalar function
    }
    y = z;
  });
  int differ = 0;
  for (int i = 0; i < n; ++i) {
    const float want = std::exp(x[i]);
    if (y[i] != want) {
      ++differ;
      // one ulp (at the smaller of the two, also for subnormal results)
      REQUIRE(std::fabs(y[i] - want) <= std::nextafter(std::min(y[i], want), INFINITY) - std::min(y[i], want));
    }
  }
  INFO(differ << " of " << n << " differ from std::exp by one ulp");
  REQUIRE(differ < n / 500);
  REQUIRE(exp_f32(0.f) == 1.f);
  REQUIRE(exp_f32(-200.f) == 0.f);
  REQUIRE(exp_f32(-INFINITY) == 0.f);
  REQUIRE(std::isinf(exp_f32(100.f)));
  REQUIRE(exp_f32(1.f) == std::exp(1.f));
}

TEST_CASE("softmax rows sum to one and swiglu is silu(g)*u", "[kernels]") {
  auto x = randn(2 * 11, 9, 5.f);
  softmax(x.data(), 2, 11);
  for (int t = 0; t < 2; ++t) {
    double s = 0;
    for (int i = 0; i < 11; ++i) s += x[t * 11 + i];
    REQUIRE(s == Approx(1.0).margin(1e-6));
  }
  std::vector<float> g{-2.f, 0.f, 3.f}, u{1.f, 2.f, -1.f}, o(3);
  swiglu(o.data(), g.data(), u.data(), 1, 3);
  for (int i = 0; i < 3; ++i) REQUIRE(o[i] == Approx(g[i] / (1 + std::exp(-g[i])) * u[i]));
  // a block of rows (split over threads) gives the same bits at every level and thread count
  const int T = 9, F = 1536;
  const auto gb = randn(static_cast<size_t>(T) * F, 12, 6.f), ub = randn(gb.size(), 13);
  std::vector<float> want(gb.size());
  const CpuLevel before = cpu_level();
  set_cpu_level(CpuLevel::Scalar);
  omp_set_num_threads(1);
  swiglu(want.data(), gb.data(), ub.data(), T, F);
  set_cpu_level(before);
  at_each_level([&](CpuLevel) {
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      std::vector<float> got(gb.size(), -1.f);
      swiglu(got.data(), gb.data(), ub.data(), T, F);
      REQUIRE(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0);
    }
  });
  omp_set_num_threads(1);
}

TEST_CASE("parallel_for runs every task exactly once, nested and concurrent calls included", "[kernels]") {
  for (int threads : {1, 2, 3, 8}) {
    for (int n : {0, 1, 2, 7, 64, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      for (int rep = 0; rep < 20; ++rep)
        parallel_for(
            n, [&](int i) { hits[static_cast<size_t>(i)]++; }, threads);
      for (int i = 0; i < n; ++i) REQUIRE(hits[static_cast<size_t>(i)].load() == 20);
    }
  }
  // a task that calls parallel_for runs the inner call serially on its own thread
  std::vector<std::atomic<int>> inner(64);
  parallel_for(
      8,
      [&](int i) {
        parallel_for(
            8, [&](int j) { inner[static_cast<size_t>(i * 8 + j)]++; }, 2);
      },
      2);
  for (auto& h : inner) REQUIRE(h.load() == 1);
  // two threads calling at once: one of them runs serially, both complete
  std::vector<std::atomic<int>> a(500), b(500);
  std::thread other([&] {
    for (int rep = 0; rep < 50; ++rep)
      parallel_for(
          500, [&](int i) { a[static_cast<size_t>(i)]++; }, 2);
  });
  for (int rep = 0; rep < 50; ++rep)
    parallel_for(
        500, [&](int i) { b[static_cast<size_t>(i)]++; }, 2);
  other.join();
  for (int i = 0; i < 500; ++i)
    REQUIRE((a[static_cast<size_t>(i)].load() == 50 && b[static_cast<size_t>(i)].load() == 50));
  REQUIRE(parallel_workers() >= 1);
}
