// Memory read bandwidth of this machine, the figure the AR decode target is stated against (a decode
// step streams every weight once): GB/s of summing a buffer far larger than the caches, with 1 and 2
// (or --threads) OpenMP threads; the best of --repeats passes.
//   membw_bench [--mb 1024] [--repeats 10]
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

int main(int argc, char** argv) {
  size_t mb = 1024;
  int repeats = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--mb") mb = std::strtoul(argv[i + 1], nullptr, 10);
    if (std::string(argv[i]) == "--repeats") repeats = std::atoi(argv[i + 1]);
  }
  const size_t n = mb * (1u << 20) / sizeof(uint64_t);
  std::vector<uint64_t> buf(n);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; ++i) buf[i] = i;  // first touch by the threads that read it
  std::printf("# membw_bench: read %zu MB, best of %d passes\n", mb, repeats);
  for (int th = 1; th <= omp_get_num_procs() && th <= 2; ++th) {
    double best = 1e30;
    uint64_t sink = 0;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = std::chrono::steady_clock::now();
      uint64_t s = 0;
#pragma omp parallel for schedule(static) num_threads(th) reduction(+ : s)
      for (size_t i = 0; i < n; i += 4) s += buf[i] + buf[i + 1] + buf[i + 2] + buf[i + 3];
      const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      best = std::min(best, dt);
      sink += s;
    }
    std::printf("threads %d: %.1f GB/s (checksum %llu)\n", th, n * sizeof(uint64_t) / best / 1e9,
                static_cast<unsigned long long>(sink % 1000));
  }
  return 0;
}
