// The acceptance-rule interface: given the target's logits over a verified block (the root = last
// accepted token, then the draft nodes) decide which draft path is accepted and which token the target
// emits after it. Implementations live in verifiers/ (greedy, speculative, typical).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/sampling/sampling.h"
#include "core/types.h"

namespace specdec {

// The block that was forwarded: node 0 is the root (the last accepted token, whose logits give the
// distribution of the first draft position), nodes 1..n are the draft tokens.
struct VerifyInput {
  std::span<const TokenId> tokens;   // T = n + 1
  std::span<const int32_t> parents;  // T; parents[0] = -1, parents[i] < i for i >= 1
  std::span<const float> logits;     // T x V target logits, row i = distribution after node i
  std::span<const float> q;          // n x V draft distributions (row i-1 for node i), or empty = one-hot
  int vocab_size = 0;
  SamplingParams sampling;
  uint64_t seed = 0, request = 0;
  uint32_t step = 0;  // decoding step: the RNG counter is (seed, request, step, draw)
};

// Per draft node (index i-1 for node i): what was tested and the verdict, with every value the verdict
// was computed from, so that a log reproduces each verdict from its own columns:
//   greedy:      passed = (p_test == 1)                     p_test = 1 if the token is the target's argmax, else 0
//   speculative: passed = (u < min(1, p_test / q_draft))    p_test = the residual r(token) the test used (p at
//                                                           the parent for the first sibling tested)
//   typical:     passed = (p_test > threshold)              p_test = p(token) at the parent
// accepted = on the accepted path (for greedy and speculative the same as passed; for typical a node can
// pass and lose to a longer or likelier path). Nodes never reached are marked visited = false.
struct NodeVerdict {
  double p_target = 0;    // target probability of the node's token at its parent (after sampling filters)
  double p_test = 0;      // the target-side value the rule tested (see above)
  double q_draft = 1;     // probability the drafter gave it (1 for a deterministic drafter)
  double u = -1;          // the uniform draw of the test; -1 when no draw was needed
  double threshold = -1;  // typical: min(epsilon, delta * exp(-H(p))); -1 for the other rules
  bool visited = false;
  bool passed = false;
  bool accepted = false;
};

struct VerifyOutcome {
  std::vector<int32_t> path;          // accepted draft nodes (block indices >= 1), root to leaf
  TokenId next = -1;                  // the target's token after the path (correction or bonus)
  std::vector<NodeVerdict> verdicts;  // n entries
};

class AcceptanceRule {
 public:
  virtual ~AcceptanceRule() = default;
  virtual std::string name() const = 0;
  // True when the emitted tokens follow the target's distribution exactly (greedy, speculative).
  virtual bool lossless() const = 0;
  virtual VerifyOutcome verify(const VerifyInput& in) const = 0;
  // Throws specdec::Error (one line) when the rule cannot decode with these sampling parameters, e.g.
  // greedy at a temperature above 0. The decode loop calls it before the first step.
  virtual void check(const SamplingParams& sampling) const { (void)sampling; }
};

}  // namespace specdec
