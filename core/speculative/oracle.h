// The oracle for speculation policies: for a finished run (its per-step records), the per-step draft
// lengths that would have maximised throughput given what was actually accepted, under the cost table's
// model of a step's cost; a policy's regret is the oracle's throughput over the one it achieved, less 1.
// docs/policies.md states the model and its censoring caveat.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/speculative/batch_decoder.h"
#include "core/speculative/decoder.h"
#include "core/speculative/policy.h"

namespace specdec {

// One step of one sequence, as logged.
struct OracleStep {
  int32_t seq = 0;          // the sequence (request); informational
  int32_t batch_size = 1;   // B: sequences verified in the same forward
  int32_t context_len = 0;  // C: StepRecord::context_len
  int32_t k_proposed = 0;   // StepRecord::n_proposed (chains; for trees the caller passes the max depth)
  int32_t n_accepted = 0;   // StepRecord::n_accepted, <= k_proposed
  int32_t n_emitted = 1;    // StepRecord::n_emitted, <= n_accepted + 1 (less on a step cut by a stop or the limit)
  // The batched step (one forward_batch) that verified it, an id shared by the steps of one forward; -1 = a
  // step on its own (single-sequence runs, logs before schema 3).
  int64_t group = -1;
};

// The steps of a single-sequence run (batch size 1), in order.
std::vector<OracleStep> oracle_steps(const DecodeResult& result, int32_t seq = 0);
// The steps of a batched run: every sequence's step of every BatchStepRecord with that record's batch size
// (n_sequences) and its step as the group, in batch-step then block order. results[ticket] must be the ticket's result
// (batch_decode's order).
std::vector<OracleStep> oracle_steps(const BatchResult& run);

struct OracleResult {
  std::vector<int32_t> k;                       // per step: the oracle's draft length, in [0, k_proposed]
  double achieved_tokens = 0, achieved_us = 0;  // what the run emitted and its modelled cost
  double oracle_tokens = 0, oracle_us = 0;      // the same under the oracle's choices
  double achieved_tps() const { return achieved_us > 0 ? achieved_tokens * 1e6 / achieved_us : 0; }
  double oracle_tps() const { return oracle_us > 0 ? oracle_tokens * 1e6 / oracle_us : 0; }
  double regret() const;  // oracle_tps / achieved_tps - 1 (>= 0); 0 for an empty run
};

// What a step would have emitted had it drafted k: min(n_accepted, k) + 1, capped at n_emitted. For
// k > k_proposed the log cannot say (censored) and this is min(n_accepted, k_proposed) + 1.
int32_t emitted_if(const OracleStep& s, int k);

// The oracle: choices k_s in [0, k_proposed_s] maximising the run's modelled throughput, its emitted tokens
// (sum_s emitted_if(s, k_s)) over the modelled time of its forwards (docs/policies.md "The oracle"):
//  - a batched step (steps sharing a group id, as many as their batch_size) costs one ragged forward of its
//    blocks plus every member's drafter, costs.ragged_forward_us(sum (k + 1), B, mean C) + sum drafter(k, G),
//    G the number of members that draft (they draft as one group): the model of the cost_model policy's
//    joint plan (plan_batch);
//  - a step on its own (group -1, or a group whose size is not its batch_size: a log merged from shards or
//    resumed, where the step's partners are not all known) costs costs.step_us(drafter, k, B, C).
// Exact: Dinkelbach's iteration on the ratio, each batched step's best choices at a given ratio by dynamic
// programming over its members' total draft and how many draft; ties take the smaller k. Longer drafts than were
// proposed are never better under the censored outcome, so they are not candidates. achieved_*: the sums at k_proposed.
OracleResult oracle(std::span<const OracleStep> steps, const CostTable& costs, const std::string& drafter);

}  // namespace specdec
