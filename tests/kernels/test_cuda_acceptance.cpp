// The CUDA acceptance kernels against verifiers' rules (gpu label: skipped without a device): random chains
// and trees, B = 1 and B = 4 sequences in one launch, p from logits_to_probs, q one-hot (null), explicit
// or random; accept_greedy vs make_greedy_rule() and accept_speculative vs make_speculative_rule(): the
// same path and the same next token, exactly.
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "core/sampling/sampling.h"
#include "core/speculative/acceptance.h"
#include "kernels/cuda/acceptance.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/sampling.cuh"
#include "tests/support/cuda_buffer.h"
#include "verifiers/rules.h"

namespace {

using specdec::test::DeviceBuffer;

// One sequence's verify block: parents, tokens, logits (T, V), p = logits_to_probs rows (T, V), q rows
// (T, V) with row 0 unused (empty when one-hot).
struct Block {
  std::vector<int32_t> parents, tokens;
  std::vector<float> logits, p, q;
};

// shape: 0 chain, 1 star, 2 3-ary, 3 random tree. q_mode: 0 one-hot (null q), 1 explicit one-hot,
// 2 random distributions. Tokens lean towards the parent's likely tokens so that paths get long.
Block make_block(int T, int V, int shape, int q_mode, const specdec::SamplingParams& sp, std::mt19937& g) {
  Block b;
  b.parents.assign(static_cast<size_t>(T), -1);
  for (int i = 1; i < T; ++i) {
    const auto iu = static_cast<size_t>(i);
    b.parents[iu] = shape == 0 ? i - 1 : shape == 1 ? 0 : shape == 2 ? (i - 1) / 3 : static_cast<int32_t>(g() % iu);
  }
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<double> ud(0.0, 1.0);
  b.logits.resize(static_cast<size_t>(T) * V);
  for (auto& x : b.logits) x = 3.f * nd(g);
  b.p.resize(b.logits.size());
  for (int n = 0; n < T; ++n) {
    const auto off = static_cast<size_t>(n) * V;
    specdec::logits_to_probs(std::span<const float>(b.logits).subspan(off, static_cast<size_t>(V)), sp,
                             std::span<float>(b.p).subspan(off, static_cast<size_t>(V)));
  }
  auto draw_from = [&](const float* w) {
    double total = 0, acc = 0;
    for (int v = 0; v < V; ++v) total += w[v];
    const double target = ud(g) * total;
    for (int v = 0; v < V; ++v) {
      acc += w[v];
      if (w[v] > 0 && target < acc) return v;
    }
    return V - 1;
  };
  if (q_mode != 0) b.q.assign(static_cast<size_t>(T) * V, 0.f);
  b.tokens.assign(static_cast<size_t>(T), static_cast<int32_t>(g() % static_cast<uint32_t>(V)));
  for (int i = 1; i < T; ++i) {
    const float* pp = &b.p[static_cast<size_t>(b.parents[static_cast<size_t>(i)]) * V];
    float* q = q_mode ? &b.q[static_cast<size_t>(i) * V] : nullptr;
    if (q_mode == 2) {  // a random distribution with zeros
      double s = 0;
      for (int v = 0; v < V; ++v) {
        q[v] = ud(g) < 0.3 ? 0.f : static_cast<float>(ud(g));
        s += q[v];
      }
      if (s == 0) q[0] = 1.f, s = 1;
      for (int v = 0; v < V; ++v) q[v] = static_cast<float>(q[v] / s);
    }
    const int tok = g() % 3 == 0 ? static_cast<int>(g() % static_cast<uint32_t>(V)) : draw_from(q_mode == 2 ? q : pp);
    b.tokens[static_cast<size_t>(i)] = tok;
    if (q_mode == 1) q[tok] = 1.f;
  }
  return b;
}

// Runs both rules on B blocks in one launch each and compares with the CPU rules.
void check_batch(const std::vector<Block>& blocks, int V, int q_mode, const specdec::SamplingParams& sp, uint64_t seed,
                 std::mt19937& g) {
  const int B = static_cast<int>(blocks.size());
  std::vector<int32_t> node0 = {0}, tokens, parents;
  std::vector<float> logits, p, q;
  int max_depth = 1;
  for (const Block& b : blocks) {
    node0.push_back(node0.back() + static_cast<int32_t>(b.tokens.size()));
    tokens.insert(tokens.end(), b.tokens.begin(), b.tokens.end());
    parents.insert(parents.end(), b.parents.begin(), b.parents.end());
    logits.insert(logits.end(), b.logits.begin(), b.logits.end());
    p.insert(p.end(), b.p.begin(), b.p.end());
    q.insert(q.end(), b.q.begin(), b.q.end());
    max_depth = std::max(max_depth, static_cast<int>(b.tokens.size()));
  }
  std::vector<uint64_t> request(static_cast<size_t>(B));
  std::vector<uint32_t> step(static_cast<size_t>(B));
  for (int s = 0; s < B; ++s) {
    request[static_cast<size_t>(s)] = g() % 64;
    step[static_cast<size_t>(s)] = static_cast<uint32_t>(g() % 1000);
  }
  const int n_nodes = node0.back();
  DeviceBuffer<int32_t> dnode0(node0), dtokens(tokens), dparents(parents), dargmax(static_cast<size_t>(n_nodes));
  DeviceBuffer<float> dlogits(logits), dp(p), dq(q_mode ? q : std::vector<float>(1)),
      dscratch(static_cast<size_t>(B) * V);
  DeviceBuffer<uint64_t> dreq(request);
  DeviceBuffer<uint32_t> dstep(step);
  DeviceBuffer<int32_t> dpath(static_cast<size_t>(B) * max_depth), dlen(static_cast<size_t>(B)),
      dnext(static_cast<size_t>(B));
  specdec::cuda::AcceptBatch batch;
  batch.node0 = dnode0.get();
  batch.tokens = dtokens.get();
  batch.parents = dparents.get();

  const auto greedy = specdec::verifiers::make_greedy_rule();
  const auto speculative = specdec::verifiers::make_speculative_rule();
  for (int rule = 0; rule < 2; ++rule) {
    if (rule == 0) {
      specdec::cuda::argmax(dargmax.get(), dlogits.get(), n_nodes, V, nullptr);
      specdec::cuda::accept_greedy(dpath.get(), dlen.get(), dnext.get(), batch, dargmax.get(), B, max_depth, nullptr);
    } else {
      specdec::cuda::accept_speculative(dpath.get(), dlen.get(), dnext.get(), batch, dp.get(),
                                        q_mode ? dq.get() : nullptr, V, seed, dreq.get(), dstep.get(), B, max_depth,
                                        dscratch.get(), nullptr);
    }
    specdec::cuda::device_synchronize();
    const auto path = dpath.download();
    const auto len = dlen.download();
    const auto next = dnext.download();
    for (int s = 0; s < B; ++s) {
      const Block& b = blocks[static_cast<size_t>(s)];
      const auto su = static_cast<size_t>(s);
      const int T = static_cast<int>(b.tokens.size());
      std::vector<float> q_cpu;  // (T-1, V): the device's rows 1..T-1
      if (q_mode) q_cpu.assign(b.q.begin() + V, b.q.end());
      specdec::VerifyInput in{.tokens = b.tokens,
                              .parents = b.parents,
                              .logits = b.logits,
                              .q = q_cpu,
                              .vocab_size = V,
                              .sampling = sp,
                              .seed = seed,
                              .request = request[su],
                              .step = step[su]};
      const auto want = (rule == 0 ? greedy : speculative)->verify(in);
      INFO((rule == 0 ? "greedy" : "speculative") << ": B " << B << " sequence " << s << " T " << T << " V " << V
                                                  << " q_mode " << q_mode << " temperature " << sp.temperature);
      REQUIRE(len[su] == static_cast<int32_t>(want.path.size()));
      REQUIRE(next[su] == want.next);
      for (int d = 0; d < max_depth; ++d) {
        const int32_t expect = d < len[su] ? want.path[static_cast<size_t>(d)] : -1;
        REQUIRE(path[su * max_depth + d] == expect);
      }
    }
  }
}

}  // namespace

TEST_CASE("cuda accept_greedy / accept_speculative equal the CPU rules on chains and trees",
          "[gpu][kernels][acceptance]") {
  std::mt19937 g(5);
  const std::vector<specdec::SamplingParams> params = {
      {0.f, 0, 1.f}, {1.f, 0, 1.f}, {0.7f, 0, 1.f}, {1.f, 20, 1.f}, {1.f, 0, 0.9f}};
  int batches = 0;
  for (int V : {1, 5, 37, 1002, 32000}) {
    for (int B : {1, 4}) {
      for (int q_mode = 0; q_mode < 3; ++q_mode) {
        for (int shape = 0; shape < 4; ++shape) {
          const int reps = V >= 32000 ? 1 : 3;
          for (int rep = 0; rep < reps; ++rep) {
            const auto& sp = params[g() % params.size()];
            std::vector<Block> blocks;
            for (int s = 0; s < B; ++s) {
              const int T = static_cast<int>(std::vector<int>{1, 2, 5, 9, 17}[g() % 5]);
              blocks.push_back(make_block(T, V, shape, q_mode, sp, g));
            }
            check_batch(blocks, V, q_mode, sp, g(), g);
            ++batches;
          }
        }
      }
    }
  }
  WARN("cuda acceptance: " << batches << " launches of each rule compared with the CPU rules");
}
