// What bounds the AVX2 quantized matmul's cost per extra row (BENCHMARKS.md, AVX2 section): the
// throughput of vpmaddubsw alone (12 independent chains), and of the kernel's inner step for one 8-row
// block and one token (8 x vpmaddubsw + vpaddw + 1 vpmaddwd) with the activations broadcast from
// memory as the kernel does, and with them already in a register. Thread CPU time, best of 5 passes.
//   avx2_port_bench
#include <immintrin.h>
#include <time.h>

#include <algorithm>
#include <cstdio>

namespace {

double now() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

alignas(64) int mem[4096];

#define KEEP(...) __asm__ volatile("" : __VA_ARGS__)

double maddubs_ns(long n) {
  __m256i a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11;
  a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = _mm256_set1_epi8(1);
  const __m256i b = _mm256_set1_epi8(3);
  const double t0 = now();
  for (long i = 0; i < n; ++i) {
    a0 = _mm256_maddubs_epi16(a0, b), a1 = _mm256_maddubs_epi16(a1, b), a2 = _mm256_maddubs_epi16(a2, b);
    a3 = _mm256_maddubs_epi16(a3, b), a4 = _mm256_maddubs_epi16(a4, b), a5 = _mm256_maddubs_epi16(a5, b);
    a6 = _mm256_maddubs_epi16(a6, b), a7 = _mm256_maddubs_epi16(a7, b), a8 = _mm256_maddubs_epi16(a8, b);
    a9 = _mm256_maddubs_epi16(a9, b), a10 = _mm256_maddubs_epi16(a10, b), a11 = _mm256_maddubs_epi16(a11, b);
    KEEP("+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10),
         "+x"(a11));
  }
  return (now() - t0) / n / 12 * 1e9;
}

template <bool FromMemory>
double group_ns(long n) {
  __m256i w[8];
  for (int r = 0; r < 8; ++r) w[r] = _mm256_set1_epi8(static_cast<char>(r + 1));
  KEEP("+x"(w[0]), "+x"(w[1]), "+x"(w[2]), "+x"(w[3]), "+x"(w[4]), "+x"(w[5]), "+x"(w[6]), "+x"(w[7]));
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256(), reg = _mm256_set1_epi32(3);
  const double t0 = now();
  for (long i = 0; i < n; ++i) {
    const int* q = mem + ((i * 8) & 4088);
    KEEP("+x"(reg));
    const auto A = [&](int r) { return FromMemory ? _mm256_set1_epi32(q[r]) : reg; };
    __m256i p = _mm256_maddubs_epi16(w[0], A(0)), p2 = _mm256_maddubs_epi16(w[1], A(1));
    for (int r = 2; r < 8; r += 2) {
      p = _mm256_add_epi16(p, _mm256_maddubs_epi16(w[r], A(r)));
      p2 = _mm256_add_epi16(p2, _mm256_maddubs_epi16(w[r + 1], A(r + 1)));
    }
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_add_epi16(p, p2), ones));
  }
  const double t = (now() - t0) / n * 1e9;
  KEEP("+x"(acc));
  return t;
}

}  // namespace

int main() {
  for (int i = 0; i < 4096; ++i) mem[i] = static_cast<int>(i * 2654435761u);
  double m = 1e9, gm = 1e9, gr = 1e9;
  for (int pass = 0; pass < 5; ++pass) {
    m = std::min(m, maddubs_ns(20000000));
    gm = std::min(gm, group_ns<true>(20000000));
    gr = std::min(gr, group_ns<false>(20000000));
  }
  std::printf("vpmaddubsw throughput: %.3f ns each\n", m);
  std::printf(
      "8-row block x 1 token (8 maddubs + adds + 1 madd): %.3f ns with broadcast loads, %.3f ns from registers\n", gm,
      gr);
  return 0;
}
