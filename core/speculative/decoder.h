// The speculative decode loop: propose -> verify the whole proposal (chain or tree) in one target
// forward with the tree mask -> acceptance rule -> the target KV cache keeps exactly the accepted path ->
// drafter.accept. Without a drafter it is plain autoregressive decoding through the same code path,
// which is the AR baseline every experiment compares against.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/model/model.h"
#include "core/sampling/sampling.h"
#include "core/speculative/acceptance.h"
#include "core/speculative/drafter.h"
#include "core/speculative/policy.h"
#include "core/speculative/stats.h"

namespace specdec {

struct DecodeOptions {
  int max_new_tokens = 128;
  int k = 4;                // draft budget per step: chain length or tree nodes
  int max_tree_nodes = 64;  // verifier limit; a proposal above it is an error
  SamplingParams sampling;
  uint64_t seed = 0;
  uint64_t request = 0;
  std::function<bool(TokenId)> is_stop = nullptr;
  // A target cache that already holds this prompt's prefill, prompt[0..n-1) (computed once per prompt and
  // shared by the runs of a sweep), and the seconds that prefill took: its slots are copied instead of
  // recomputed (bit-identical: the forward is batch-invariant), and prefill_seconds reports
  // prefilled_seconds plus the copy and the drafter's begin(). Null: prefill here.
  const KVCache* prefilled = nullptr;
  double prefilled_seconds = 0;
  // A speculation policy (docs/policies.md), "NAME key=value ...", e.g. "cost_model k_max=6": one per
  // sequence, it decides each step's draft length in [0, k] (0 = an AR step) and sees what was proposed and
  // accepted. "" = none: k every step. costs (not owned, outlives the decode; cost_model requires it) and
  // cost_drafter (the drafter's row in it, "" = no drafter cost) are its PolicyEnv, with policy_shared: what
  // the policies of one run share (cost_model pool = run; the runner gives each run one), null = nothing.
  std::string policy;
  const CostTable* costs = nullptr;
  std::string cost_drafter;
  std::shared_ptr<PolicyShared> policy_shared;
  // The clock of decode_seconds (seconds; only differences are read): empty = the steady clock. The runner's
  // interleaved load runs give each run its own clock, one that runs only while the run computes.
  std::function<double()> clock;
};

// One draft node as logged (the HDF5 draft_tokens table): the node, and the rule's test of it with every
// value the verdict was computed from (NodeVerdict in core/speculative/acceptance.h says, per rule, how
// passed follows from p_test, q_draft, u and threshold).
struct DraftTokenRecord {
  int32_t node = 0;     // 0-based index in the proposal
  int32_t parent = -1;  // parent node, -1 = root
  int32_t depth = 1;    // 1 = first draft position
  TokenId token = 0;
  double p_target = 0, p_test = 0, q_draft = 1, u = -1, threshold = -1;
  bool visited = false, passed = false, accepted = false;
};

// One target verification pass (the HDF5 steps table).
struct StepRecord {
  int32_t step = 0;
  int32_t n_proposed = 0;  // draft tokens (tree nodes)
  int32_t n_accepted = 0;  // draft tokens accepted (the path length)
  // Tokens this step appended to the output: n_accepted + 1, less what a stop token or the max_new_tokens
  // limit cut off (the last step of a request can emit fewer). Every "tokens emitted" metric counts these.
  int32_t n_emitted = 0;
  int32_t max_depth = 0;    // depth of the proposal (chain length for chains)
  int32_t context_len = 0;  // tokens in the target's cache before the pass
  // draft = the drafter's propose before the forward and its accept of the step's tokens after it (with the
  // gathering of the features it reads); verify = target forward + acceptance + cache compaction.
  double t_draft_us = 0, t_verify_us = 0;
  double t_forward_us = 0;  // the target forward alone (part of t_verify_us; `bench decode`, not in the log)
  int32_t k_policy = -1;    // the policy's draft length for this step (DecodeOptions::policy); -1 = no policy
  // E[emitted | k_policy]: the tokens the policy expected the step to emit, from its acceptance estimates when
  // it decided (cost_model, alone or in a joint plan); -1 = a policy without a model, or none.
  double k_expected = -1;
  // The drafter's backlog when it was asked to propose (Drafter::backlog; 0 for an AR step). Not logged: read
  // by `specdec bench costs` to price a backlog token (CostTable::drafters_backlog).
  int32_t backlog = 0;
  std::vector<DraftTokenRecord> nodes;
};

struct DecodeResult {
  std::vector<TokenId> tokens;  // generated tokens (a stop token included, as the last)
  std::vector<StepRecord> steps;
  int prompt_tokens = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  bool stopped = false;

  // Summary figures, all from SpecStats (core/speculative/stats.h; definitions in docs/metrics.md).
  SpecStats stats() const;
  int accepted_draft_tokens() const;
  int drafted_tokens() const;
  double tau() const;  // tokens emitted (appended to `tokens`) per target pass
};

// One sequence's decode cut into the parts of a step, so that the single loop (speculative_decode) and the
// batched loop (core/speculative/batch_decoder.h) run the same code and give the same bits:
//   SequenceDecoder seq(target, drafter, rule, prompt, opts);  // checks, prefill, drafter->begin
//   while (!seq.done()) {
//     seq.plan_step(B);                           // the policy's draft length for this step, if any
//     const ForwardRequest& req = seq.draft();   // drafter->propose, checked; the block [last, nodes...]
//     forward req over seq.cache() (alone, or as one row of a forward_batch) into fr;
//     seq.finish(fr, forward_us);                // rule, cache compaction, StepRecord, stop, drafter->accept
//   }
//   DecodeResult res = seq.take_result();
// The target's cache holds every emitted token except the last one; the drafter (not owned) must outlive it.
class SequenceDecoder {
 public:
  // Throws what speculative_decode throws for these arguments; prefills the prompt (one forward of its
  // own, or a copy of opts.prefilled) and begins the drafter.
  SequenceDecoder(Model& target, Drafter* drafter, const AcceptanceRule& rule, std::span<const TokenId> prompt,
                  const DecodeOptions& opts, std::function<void(std::span<const TokenId>)> on_tokens = nullptr);
  SequenceDecoder(const SequenceDecoder&) = delete;  // draft()'s request points into its buffers
  SequenceDecoder& operator=(const SequenceDecoder&) = delete;
  // The argument checks of the constructor alone (no cache, no forward): a prompt of n_prompt tokens.
  static void check(const Model& target, bool has_drafter, const AcceptanceRule& rule, int n_prompt,
                    const DecodeOptions& opts);

  // True once the output is complete (max_new_tokens, a stop token, or the context): no more steps.
  bool done() const { return done_; }
  // The most tokens the next block can hold: the last emitted token plus the draft budget (1 for AR), the
  // step budget's cap included; 0 when done.
  int max_block() const;
  // The largest draft the next step can take: min(k, output left - 1, context left - 1), >= 0 (0 without a
  // drafter or when done); the policy's k_limit.
  int k_limit() const;
  // Output tokens still to come (at least 1 while the sequence is not done).
  int remaining() const;
  // Caps the next step's draft at k tokens (0 <= k <= opts.k; 0 = an AR step: the drafter is not asked);
  // max_block() honours it. Cleared by finish(): without a call, a step drafts up to k_limit().
  void set_step_budget(int k);
  // With a policy (DecodeOptions::policy) and no decision yet for the next step: asks it for the step's draft
  // length, with batch_size sequences verified together and this sequence's context, and sets the step budget
  // to it. A decision holds until finish(), so a sequence that waits for room keeps it. Returns the step's
  // budget (k_limit() without a policy). draft() calls plan_step(1) when the loop did not.
  int plan_step(int batch_size);
  // For the batched loop's joint plan (core/speculative/policy.h plan_batch): true, with `out` filled, when the
  // sequence's policy can be planned with its batch (JointModel) and has no decision yet for the next step.
  bool joint_model(JointModel& out) const;
  // Sets the next step's decision from a joint plan, as plan_step would from decide(): 0 <= k <= k_limit();
  // expected: E[emitted | k] under the plan's model (StepRecord::k_expected; -1 = none).
  void apply_plan(int k, double expected = -1);
  // Asks the drafter for this step's proposal (checked: valid, within the budget, the target's cache left
  // as found) and returns the verification forward of the block; it refers to this object's buffers and
  // is valid until finish(). Requires !done().
  const ForwardRequest& draft();
  // draft() in two halves, for a loop that drafts many sequences at once (Drafter::propose_batch):
  // begin_draft() starts the step's record and returns the draft budget the drafter is to be asked with
  // (0: no drafter, an AR step or a zero budget; the drafter must not be asked); end_draft() takes the
  // drafter's proposal (empty when the budget was 0) and the time spent drafting it, checks it as draft()
  // does and returns the verification forward. draft() == end_draft(drafter()->propose(begin_draft()), t).
  int begin_draft();
  const ForwardRequest& end_draft(DraftProposal proposal, double draft_us);
  Drafter* drafter() const { return drafter_; }
  KVCache& cache() { return *cache_; }
  int context_len() const;  // tokens in the target's cache (0 before a cache exists)
  // After the forward of draft()'s request over cache() wrote fr (forward_us: its time, for the record):
  // applies the rule, keeps the accepted path in the cache, records the step, streams the emitted tokens,
  // and hands the drafter the tokens and their features.
  void finish(const ForwardResult& fr, double forward_us);
  const DecodeResult& result() const { return res_; }
  DecodeResult take_result();  // sets decode_seconds (the time since the prefill ended)

 private:
  double now() const;  // seconds on opts.clock (the steady clock without one)
  Model& target_;
  Drafter* drafter_;
  const AcceptanceRule& rule_;
  DecodeOptions opts_;
  std::function<void(std::span<const TokenId>)> on_tokens_;
  int max_new_ = 0, k_ = 0;
  int step_budget_ = -1;  // set_step_budget's cap for the next step; -1 = none
  std::unique_ptr<Policy> policy_;
  int k_policy_ = -1;       // the policy's decision for the next step; -1 = none yet
  double k_expected_ = -1;  // its E[emitted | k]; -1 = no model
  std::vector<int> depth_;  // with a policy: the drafter's proposal_depth(k) for k = 0 .. k_ (PolicyStep::depth)
  bool done_ = false;
  DecodeResult res_;
  std::unique_ptr<KVCache> cache_;
  FeatureSpec spec_;             // the target features the drafter reads
  std::vector<float> features_;  // rows x width, the rows handed to the drafter
  std::vector<int32_t> feature_rows_;
  TokenId last_ = 0;
  uint32_t step_ = 0;
  double t_decode_start_ = 0;  // now() at the end of the prefill
  // This step's state, between draft() and finish().
  DraftProposal prop_;
  int draft_budget_ = 0;  // begin_draft()'s
  StepRecord rec_;
  int n_past_ = 0;
  std::vector<TokenId> block_, emitted_;
  std::vector<int32_t> parents_, positions_, keep_;
  std::vector<uint8_t> mask_;
  ForwardRequest req_;
};

// Decodes one request. drafter == nullptr: AR. Streams each step's new tokens to on_tokens.
// Throws specdec::Error for a prompt that does not fit the context, an invalid proposal, etc.
DecodeResult speculative_decode(Model& target, Drafter* drafter, const AcceptanceRule& rule,
                                std::span<const TokenId> prompt, const DecodeOptions& opts,
                                const std::function<void(std::span<const TokenId>)>& on_tokens = nullptr);

}  // namespace specdec
