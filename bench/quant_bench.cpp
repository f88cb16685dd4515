// Benchmark of the quantized matmul (kernels/cpu/quant.h) on the SmolLM2-135M shapes: microseconds per
// call for each CPU kernel level at 1 and 2 OpenMP threads, effective GB/s of weight bytes, and the cost
// of T tokens relative to T = 1. Prints a table and writes a CSV (--out).
//   quant_bench [--out quant_bench.csv] [--min-ms 150] [--hot] [--levels scalar,avx2,avxvnni,avx512]
// Times are the fastest call of each configuration (see time_us). Default "cold": each call reads
// another copy of the matrix from a pool larger than the L3 cache, as a decode step streams the whole
// model; --hot reuses one copy (cache-resident compute throughput).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "kernels/cpu/quant.h"

using namespace specdec::cpu;

namespace {

struct Shape {
  const char* name;
  int N, K;
  DType t;
};

// SmolLM2-135M: hidden 576, 9 heads / 3 kv heads of 64, FFN 1536, vocab 49152 (tied Q8_0 embedding).
const Shape kShapes[] = {
    {"attn_q/o 576x576", 576, 576, DType::Q4_1},      {"attn_k/v 192x576", 192, 576, DType::Q4_1},
    {"ffn_gate/up 1536x576", 1536, 576, DType::Q4_1}, {"ffn_down 576x1536", 576, 1536, DType::Q4_1},
    {"lm_head 49152x576", 49152, 576, DType::Q8_0},
};
constexpr size_t kColdPoolBytes = size_t{96} << 20;  // 3x the L3 of the reference machine

struct Options {
  std::string out = "quant_bench.csv";
  double min_ms = 150;
  bool hot = false;
  std::vector<CpuLevel> levels;
  std::string shapes;  // only shapes whose name contains this
  std::vector<int> threads = {1, 2};
  std::vector<int> ts = {1, 2, 4, 8, 9, 16};
};

std::vector<int> int_list(std::string v) {
  std::vector<int> r;
  v += ",";
  for (size_t p = v.find(','); p != std::string::npos; v.erase(0, p + 1), p = v.find(','))
    if (p > 0) r.push_back(std::atoi(v.substr(0, p).c_str()));
  return r;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "quant_bench: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--out")
      o.out = next();
    else if (a == "--min-ms")
      o.min_ms = std::atof(next().c_str());
    else if (a == "--hot")
      o.hot = true;
    else if (a == "--shapes")
      o.shapes = next();
    else if (a == "--threads")
      o.threads = int_list(next());
    else if (a == "--ts")
      o.ts = int_list(next());
    else if (a == "--levels") {
      std::string v = next() + ",";
      for (size_t p = v.find(','); p != std::string::npos; v.erase(0, p + 1), p = v.find(',')) {
        const std::string n = v.substr(0, p);
        if (n == "scalar")
          o.levels.push_back(CpuLevel::Scalar);
        else if (n == "avx2")
          o.levels.push_back(CpuLevel::Avx2);
        else if (n == "avxvnni")
          o.levels.push_back(CpuLevel::AvxVnni);
        else if (n == "avx512")
          o.levels.push_back(CpuLevel::Avx512);
        else if (!n.empty()) {
          std::fprintf(stderr, "quant_bench: unknown level '%s' (scalar, avx2, avxvnni, avx512)\n", n.c_str());
          std::exit(2);
        }
      }
    } else {
      std::fprintf(stderr,
                   "usage: quant_bench [--out file.csv] [--min-ms ms] [--hot] [--levels a,b] [--shapes substr] "
                   "[--threads 1,2] [--ts 1,2,...]\n");
      std::exit(2);
    }
  }
  if (o.levels.empty()) o.levels = {CpuLevel::Scalar, CpuLevel::Avx2, CpuLevel::AvxVnni, CpuLevel::Avx512};
  return o;
}

// Per-call microseconds over at least min_ms of calls (and 5 calls): {min, median}. Other processes on a
// shared machine only ever slow a call down (a thread of a 2-thread call that loses its core stalls the
// whole call), so the minimum estimates the unloaded time; the median shows the load.
struct Timing {
  double min, median;
};
template <typename F>
Timing time_us(F&& call, double min_ms) {
  call();  // warm up (scratch buffers, threads)
  std::vector<double> us;
  double total = 0;
  while (total < min_ms * 1e3 || us.size() < 5) {
    const auto t0 = std::chrono::steady_clock::now();
    call();
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
    total += us.back();
  }
  std::sort(us.begin(), us.end());
  return {us.front(), us[us.size() / 2]};
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse(argc, argv);
  std::vector<CpuLevel> levels;
  for (CpuLevel l : opt.levels) {
    if (cpu_level_supported(l))
      levels.push_back(l);
    else
      std::printf("# %s not supported on this CPU: skipped\n", std::string(cpu_level_name(l)).c_str());
  }
  std::FILE* csv = std::fopen(opt.out.c_str(), "w");
  if (csv == nullptr) {
    std::fprintf(stderr, "quant_bench: cannot write %s\n", opt.out.c_str());
    return 1;
  }
  std::fprintf(csv, "shape,N,K,dtype,T,level,threads,cache,us_min,us_median,weight_GBps,rel_T1\n");
  std::printf("# quantized matmul, %s weights; us per call (fastest of >= %.0f ms of calls)\n",
              opt.hot ? "hot (one cache-resident copy)" : "cold (rotating copies > L3)", opt.min_ms);
  std::printf("# GB/s = weight bytes / time of the fastest column; xT1 = time / time at T=1 (same column)\n");

  std::mt19937 g(1);
  std::normal_distribution<float> nd(0.f, 1.f);
  for (const Shape& s : kShapes) {
    if (!opt.shapes.empty() && std::string(s.name).find(opt.shapes) == std::string::npos) continue;
    const size_t wb = row_bytes(s.t, s.K) * static_cast<size_t>(s.N);
    const size_t copies = opt.hot ? 1 : std::max<size_t>(2, (kColdPoolBytes + wb - 1) / wb);
    std::vector<uint8_t> pool(wb * copies);
    {
      std::vector<float> row(static_cast<size_t>(s.K));
      for (int n = 0; n < s.N; ++n) {
        for (auto& v : row) v = 0.05f * nd(g);
        quantize_row(pool.data() + row_bytes(s.t, s.K) * n, row.data(), s.t, s.K);
      }
      for (size_t c = 1; c < copies; ++c) std::memcpy(pool.data() + c * wb, pool.data(), wb);
    }
    std::vector<float> x(static_cast<size_t>(16) * s.K), out(static_cast<size_t>(16) * s.N);
    for (auto& v : x) v = nd(g);

    std::printf("\n%-22s %s, %.2f MB of weights\n", s.name, std::string(dtype_info(s.t).name).c_str(), wb / 1e6);
    std::printf("%4s", "T");
    for (CpuLevel l : levels)
      for (int th : opt.threads)
        std::printf(" %9s", (std::string(cpu_level_name(l)) + "/" + std::to_string(th) + "t").c_str());
    std::printf(" %8s %6s %6s\n", "GB/s", "xT1/1t", "xT1/2t");

    const size_t nth = opt.threads.size();
    std::vector<double> t1(levels.size() * nth, 0);
    for (int T : opt.ts) {
      std::printf("%4d", T);
      double best = 1e30;
      std::vector<double> us(levels.size() * nth);
      for (size_t li = 0; li < levels.size(); ++li) {
        for (size_t ti = 0; ti < nth; ++ti) {
          const int th = opt.threads[ti];
          omp_set_num_threads(th);
          size_t c = 0;
          const double min_ms = levels[li] == CpuLevel::Scalar ? opt.min_ms / 3 : opt.min_ms;
          const auto [u, med] = time_us(
              [&] {
                matmul_quant_at(levels[li], out.data(), x.data(), pool.data() + (c++ % copies) * wb, s.t, T, s.N, s.K);
              },
              min_ms);
          const size_t col = li * nth + ti;
          us[col] = u;
          if (T == 1) t1[col] = u;
          best = std::min(best, u);
          std::printf(" %9.1f", u);
          std::fflush(stdout);
          std::fprintf(csv, "%s,%d,%d,%s,%d,%s,%d,%s,%.3f,%.3f,%.3f,%.3f\n", s.name, s.N, s.K,
                       std::string(dtype_info(s.t).name).c_str(), T, std::string(cpu_level_name(levels[li])).c_str(),
                       th, opt.hot ? "hot" : "cold", u, med, wb / (u * 1e3), u / t1[col]);
        }
      }
      const size_t last = (levels.size() - 1) * nth;
      std::printf(" %8.1f %6.2f %6.2f\n", wb / (best * 1e3), us[last] / t1[last],
                  us[last + nth - 1] / t1[last + nth - 1]);
    }
  }
  std::fclose(csv);
  std::printf("\n# wrote %s\n", opt.out.c_str());
  return 0;
}
