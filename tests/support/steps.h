// require_same_steps(a, b): two decodes that must agree step by step (a batched run and the same request alone,
// a drafter reading the target's KV cache and the same drafter with its own). kEverything compares every field
// of every StepRecord and its nodes bit for bit (the same logits and the same draws); kProposals only the output
// tokens and, per step, the proposal (each node's token, parent and q_draft) and how much was accepted.
#pragma once

#include <catch2/catch.hpp>

#include "core/speculative/decoder.h"

namespace specdec::test {

enum class SameSteps { kProposals, kEverything };

inline void require_same_steps(const DecodeResult& a, const DecodeResult& b, SameSteps what = SameSteps::kEverything) {
  const bool all = what == SameSteps::kEverything;
  REQUIRE(a.tokens == b.tokens);
  if (all) {
    REQUIRE(a.stopped == b.stopped);
    REQUIRE(a.prompt_tokens == b.prompt_tokens);
  }
  REQUIRE(a.steps.size() == b.steps.size());
  for (size_t i = 0; i < a.steps.size(); ++i) {
    CAPTURE(i);
    const StepRecord& x = a.steps[i];
    const StepRecord& y = b.steps[i];
    if (all) REQUIRE(x.step == y.step);
    REQUIRE(x.n_proposed == y.n_proposed);
    REQUIRE(x.n_accepted == y.n_accepted);
    if (all) {
      REQUIRE(x.n_emitted == y.n_emitted);
      REQUIRE(x.max_depth == y.max_depth);
      REQUIRE(x.context_len == y.context_len);
    }
    REQUIRE(x.nodes.size() == y.nodes.size());
    for (size_t j = 0; j < x.nodes.size(); ++j) {
      const DraftTokenRecord& p = x.nodes[j];
      const DraftTokenRecord& q = y.nodes[j];
      REQUIRE(p.token == q.token);
      REQUIRE(p.parent == q.parent);
      REQUIRE(p.q_draft == q.q_draft);
      if (all) {
        REQUIRE(p.depth == q.depth);
        REQUIRE(p.p_target == q.p_target);
        REQUIRE(p.p_test == q.p_test);
        REQUIRE(p.u == q.u);
        REQUIRE((p.visited == q.visited && p.passed == q.passed && p.accepted == q.accepted));
      }
    }
  }
}

}  // namespace specdec::test
