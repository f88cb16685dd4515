// The cost of checking every q row of a proposal (DraftProposal::validate: finite, in [0, 1], sums to 1),
// against what it guards: a verification forward of the same block on the target.
//   build/bench/proposal_check_bench [MODEL.gguf] [ROWS]
// Prints the check's time for ROWS (default 8) rows of V = the model's vocabulary (49,152 for SmolLM2;
// without a model V = 49,152), the forward of ROWS + 1 tokens after a 256-token context, and their ratio.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "core/loading.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/speculative/drafter.h"

using namespace specdec;
using Clock = std::chrono::steady_clock;

namespace {
double median_ms(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  const std::string model_path = argc > 1 ? argv[1] : "";
  const int rows = argc > 2 ? std::stoi(argv[2]) : 8;
  std::shared_ptr<const LoadedModel> loaded;
  std::unique_ptr<LlamaCpu> model;
  int V = 49152;
  if (!model_path.empty()) {
    loaded = load_model(model_path);
    model = std::make_unique<LlamaCpu>(loaded);
    V = model->config().vocab_size;
  }

  DraftProposal p;
  std::mt19937 g(1);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  p.q.resize(static_cast<size_t>(rows) * V);
  for (int r = 0; r < rows; ++r) {
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += p.q[static_cast<size_t>(r) * V + v] = ud(g);
    for (int v = 0; v < V; ++v)
      p.q[static_cast<size_t>(r) * V + v] = static_cast<float>(p.q[static_cast<size_t>(r) * V + v] / sum);
    p.tokens.push_back(r);
  }
  std::vector<double> check;
  for (int rep = 0; rep < 200; ++rep) {
    const auto t0 = Clock::now();
    p.validate(V);
    check.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  const double check_ms = median_ms(check);
  std::printf("proposal check: %d rows x V = %d: %.4f ms (median of %zu)\n", rows, V, check_ms, check.size());
  if (!model) return 0;

  // A verification forward of rows + 1 tokens after a 256-token context, as one decode step would run.
  auto cache = model->new_cache(512);
  std::vector<TokenId> ctx(256), block(static_cast<size_t>(rows) + 1);
  for (size_t i = 0; i < ctx.size(); ++i) ctx[i] = static_cast<TokenId>(100 + i);
  for (size_t i = 0; i < block.size(); ++i) block[i] = static_cast<TokenId>(500 + i);
  ForwardResult fr;
  model->forward(*cache, {.tokens = ctx, .n_logits = 0}, fr);
  std::vector<double> fwd;
  for (int rep = 0; rep < 30; ++rep) {
    const auto t0 = Clock::now();
    model->forward(*cache, {.tokens = block}, fr);
    fwd.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    cache->truncate(static_cast<int>(ctx.size()));
  }
  const double fwd_ms = median_ms(fwd);
  std::printf("verification forward of %d tokens (%d threads): %.3f ms (median of %zu)\n", rows + 1,
              omp_get_max_threads(), fwd_ms, fwd.size());
  std::printf("check / forward = %.2f%%\n", 100.0 * check_ms / fwd_ms);
  return 0;
}
