// Benchmark of the CPU attention (kernels/cpu/ops.h) on SmolLM2-135M's head shape (9 query heads, 3 kv
// heads, head_dim 64): the fast loop order against its plain-loop reference (attention_ref, the same
// arithmetic one (token, head) at a time), at decode (T = 1), verification (T = 5, 9) and prefill
// (T = S) shapes, 1 and 2 OpenMP threads. Both give the same bits (checked here too); the table is the
// time per call and per 30 layers, and the speedup of the fast order.
//   attention_bench [--min-ms 200]
#include <omp.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/ops.h"

namespace {

using Fn = void (*)(float*, const float*, const float*, const float*, const uint8_t*, int, int, int, int, int, int64_t);

// Fastest of repeated calls, each timed alone, for at least min_ms in all.
double time_ms(Fn fn, float* out, const float* q, const float* k, const float* v, const uint8_t* m, int T, int S,
               double min_ms) {
  constexpr int Hq = 9, Hkv = 3, D = 64;
  double best = 1e30, total = 0;
  for (int i = 0; i < 3 || total < min_ms; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn(out, q, k, v, m, T, S, Hq, Hkv, D, Hkv * D);
    const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, ms);
    total += ms;
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  double min_ms = 200;
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--min-ms")) min_ms = std::atof(argv[i + 1]);
  struct Case {
    const char* what;
    int T, n_past;
  };
  const Case cases[] = {{"decode", 1, 128},      {"decode", 1, 1024}, {"verify k=4", 5, 1024},
                        {"verify k=8", 9, 1024}, {"prefill", 128, 0}, {"prefill", 1024, 0}};
  std::printf("%-11s %5s %5s %3s %12s %12s %8s %14s\n", "shape", "T", "S", "thr", "ref ms", "fast ms", "speedup",
              "fast ms x30L");
  std::mt19937 g(1);
  std::normal_distribution<float> nd;
  for (const Case& c : cases) {
    const int S = c.n_past + c.T, Hq = 9, Hkv = 3, D = 64;
    std::vector<float> q(static_cast<size_t>(c.T) * Hq * D), k(static_cast<size_t>(S) * Hkv * D), v(k.size());
    for (auto* a : {&q, &k, &v})
      for (float& x : *a) x = nd(g);
    std::vector<uint8_t> mask(static_cast<size_t>(c.T) * S, 0);
    for (int t = 0; t < c.T; ++t) std::fill_n(mask.data() + static_cast<size_t>(t) * S, c.n_past + t + 1, 1);
    std::vector<float> a(q.size()), b(q.size());
    for (int threads : {1, 2}) {
      omp_set_num_threads(threads);
      const double ref =
          time_ms(specdec::cpu::attention_ref, a.data(), q.data(), k.data(), v.data(), mask.data(), c.T, S, min_ms);
      const double fast =
          time_ms(specdec::cpu::attention, b.data(), q.data(), k.data(), v.data(), mask.data(), c.T, S, min_ms);
      if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) {
        std::fprintf(stderr, "attention_bench: fast and reference attention differ at T=%d S=%d\n", c.T, S);
        return 1;
      }
      std::printf("%-11s %5d %5d %3d %12.3f %12.3f %7.2fx %14.1f\n", c.what, c.T, S, threads, ref, fast, ref / fast,
                  fast * 30);
    }
  }
  return 0;
}
