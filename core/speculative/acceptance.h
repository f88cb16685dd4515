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
  std::span<const TokenId> tokens;    // T = n + 1
  std::span<const int32_t> parents;   // T; parents[0] = -1, parents[i] < i for i >= 1
  std::span<const float> logits;      // T x V target logits, row i = distribution after node i
  std::span<const float> q;           // n x V draft distributions (row i-1 for node i), or empty = one-hot
  int vocab_size = 0;
  SamplingParams sampling;
  uint64_t seed = 0, request = 0;
  uint32_t step = 0;                  // decoding step: the RNG counter is (seed, request, step, draw)
};

// Per draft node (index i-1 for node i): what was tested and the verdict. Nodes never reached are
// marked visited = false.
struct NodeVerdict {
  float p_target = 0.f;  // target probability of the node's token at its parent (after sampling filters)
  float q_draft = 1.f;   // probability the drafter gave it (1 for a deterministic drafter)
  float u = -1.f;        // the uniform draw of the test; -1 when no draw was needed
  bool visited = false;
  bool accepted = false;
};

struct VerifyOutcome {
  std::vector<int32_t> path;  // accepted draft nodes (block indices >= 1), root to leaf
  TokenId next = -1;          // the target's token after the path (correction or bonus)
  std::vector<NodeVerdict> verdicts;  // n entries
};

class AcceptanceRule {
 public:
  virtual ~AcceptanceRule() = default;
  virtual std::string name() const = 0;
  // True when the emitted tokens follow the target's distribution exactly (greedy, speculative).
  virtual bool lossless() const = 0;
  virtual VerifyOutcome verify(const VerifyInput& in) const = 0;
};

}  // namespace specdec
