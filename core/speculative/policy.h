// Speculation policies: what decides a sequence's draft length k at each step (fixed, a batch-size table,
// an acceptance switch-off, adaptive tiers, and a cost model maximising expected tokens per second), the
// measured cost table the cost model and the oracle (core/speculative/oracle.h) read, and the registry that
// makes policies by name. docs/policies.md states every rule and the estimator.
#pragma once

#include <climits>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/speculative/drafter.h"

namespace specdec {

// ---- the cost table --------------------------------------------------------------------------------

// Measured costs in microseconds. forward_us(T, B, C): one target forward (verification pass) of a batch of
// B sequences, each verifying T tokens over a cached context of C tokens. drafter_us(name, k, B): one drafter
// step proposing k tokens for one sequence (k = 0: the drafter is not called; usually 0) in a batch of B
// sequences: drafters that draft batched (Drafter::batch_key) cost less per sequence as B grows.
// Lookup: T exact when on its grid, else the nearest grid point (a tie takes the larger: the costlier, the
// conservative choice); B and C linear between grid points (bilinear in B and C) and clamped to the ends
// outside their grids (no extrapolation). B was the nearest point until 2026-12-05: a batch of 5 priced at
// B = 4 ran 16-31% above its price (BENCHMARKS.md, sweep 21). JSON layout (docs/policies.md):
//   {"version": 1, "source": "...",
//    "forward": {"tokens": [1, 2, ...], "batch": [1, 4, ...], "context": [128, 1024, ...],
//                "us": [[[..C..] for each B] for each T]},
//    "drafters": {"ngram": [us at k = 0, 1, ..., K], ...},
//    "drafters_batched": {"medusa": {"2": [us at k = 0 .. K], "8": [...]}, ...},   (optional)
//    "drafters_backlog": {"eagle": us per token, ...}}                              (optional)
// drafters is the cost at B = 1; drafters_batched the per-sequence cost at other batch sizes (B >= 2, each
// row as long as the drafter's B = 1 row). Lookup at B: the row of the largest measured batch size <= B (a
// drafter's per-sequence cost falls with B, so this never reads a cheaper row than B's own).
// drafters_backlog: what a drafter's proposal spends per token of its backlog (Drafter::backlog, the tokens it
// was handed and has not read yet: EAGLE's queued prompt and accepts) on top of its row; absent = 0.
// Every grid strictly increasing and >= 1 (context >= 0); every cost finite and >= 0.
struct CostTable {
  std::string source;                                   // free text: the machine, the model, the date
  std::vector<int> tokens, batch, context;              // the grids of T, B, C
  std::vector<double> forward;                          // T x B x C, C fastest
  std::map<std::string, std::vector<double>> drafters;  // name -> cost at k = 0 .. size - 1 (at B = 1)
  std::map<std::string, std::map<int, std::vector<double>>> drafters_batched;  // name -> B >= 2 -> cost at k
  std::map<std::string, double> drafters_backlog;                              // name -> us per backlog token
  // name -> a_1 .. a_K: the drafter's per-position acceptance (position j accepted given it was reached),
  // measured by `specdec bench costs --acceptance-prompts` on training prompts (never an evaluation set);
  // the cost_model policy's prior with prior = table (docs/policies.md "A measured prior").
  std::map<std::string, std::vector<double>> acceptance;
  std::string acceptance_source;  // free text: the prompt files, how many prompts and drafted steps

  double forward_us(int T, int B, int C) const;
  // name "" = no drafter cost (0). Throws for an unknown name (listing the known ones) or a k past its row.
  double drafter_us(const std::string& name, int k, int B = 1) const;
  int drafter_k_max(const std::string& name) const;  // the largest k of its row; INT_MAX for ""
  // The one-time cost of reading a backlog of n tokens before a proposal: n x drafters_backlog[name] (0 for a
  // drafter without the entry, or n = 0).
  double backlog_us(const std::string& name, int n) const;
  // The backlog's charge on a step that drafts (k > 0) and is expected to emit `emitted` tokens, with
  // `remaining` tokens of the output still to come: backlog_us(name, n) x emitted / remaining. The backlog is
  // read once and serves every later drafting step, so it is charged per emitted token of the output still
  // to come, as if the sequence went on drafting (docs/policies.md "The backlog").
  double backlog_charge_us(const std::string& name, int n, double emitted, int remaining) const;
  // forward_us(k + 1, B, C) + drafter_us(drafter, k, B): what one step of one sequence drafting k tokens costs
  // in the model the cost_model policy and the oracle share.
  double step_us(const std::string& drafter, int k, int B, int C) const;
  // A ragged batch: B sequences verifying n_tokens in all (blocks of different lengths) over C cached tokens
  // each (a mean). The cost at T = n_tokens / B tokens per sequence, linear between forward_us at the two
  // integers around T (equal to forward_us(T, B, C) when T is an integer): the matmuls, most of a forward on
  // both backends, cost by the batch's total tokens.
  double ragged_forward_us(int n_tokens, int B, int C) const;

  // The table nearest to this one (least squares over every point, equal weights) whose forward cost never
  // falls as T, B or C grows and whose drafter rows never fall as k grows: a measured table's noise (a point
  // costlier than its neighbour with more tokens) removed with no model of the cost's shape. The forward grid:
  // Dykstra's alternating projections onto the three monotone cones (each an exact isotonic regression along
  // one axis, pool adjacent violators), which converge to that projection; stops when a cycle moves no point by
  // more than tol_us. Each drafter row: one isotonic regression along k. A monotone table comes back unchanged.
  CostTable monotone(double tol_us = 1e-6) const;

  // Throws a one-line specdec::Error naming `where` (a file) and the offending key.
  void validate(const std::string& where = "cost table") const;
  std::string to_json() const;
  static CostTable from_json(const std::string& text, const std::string& where = "cost table");
  void save(const std::string& path) const;
  static CostTable load(const std::string& path);
};

// ---- policies ----------------------------------------------------------------------------------------

class AcceptanceEstimator;
using AcceptancePool = AcceptanceEstimator;  // see below

// What the loop knows about the step it asks a policy about.
struct PolicyStep {
  int batch_size = 1;       // B: sequences verified together in this step
  int context_len = 0;      // C: tokens in the sequence's target cache before the pass (StepRecord::context_len)
  int k_limit = INT_MAX;    // the largest k the loop can apply (its draft budget less the output left); >= 0
  int backlog = 0;          // the drafter's backlog (Drafter::backlog): tokens its next proposal reads first
  int remaining = INT_MAX;  // output tokens still to come (>= 1)
  // depth[k]: the deepest position a proposal of k nodes reaches (Drafter::proposal_depth), for k = 0 ..
  // k_limit at least; empty = a chain (depth k). The sequence's own vector, valid during decide().
  std::span<const int> depth;
};

// One decision, small enough to log per sequence per step.
struct PolicyDecision {
  int k = 0;  // draft tokens to propose, in [0, k_limit]; 0 = an AR step
  // cost_model only (empty otherwise), per candidate k = 0 .. size - 1: E[emitted | k] and the expected
  // tokens per second E[emitted | k] / step cost.
  std::vector<double> expected_emitted, expected_tps;
};

// One policy per sequence (like drafters): it sees only its own sequence's history. The loop calls
// decide() before the drafter proposes and observe() after the verification with what was really proposed
// (a drafter may propose fewer than decided; 0 when it proposed nothing) and accepted (the chain's accepted
// prefix; for a tree, the accepted path's depth against its max depth).
// What a policy that can be planned jointly with the rest of its batch exposes (cost_model with plan = batch):
// the model it would score its own choice with. The batched loop then picks the draft lengths of all such
// sequences together (plan_batch) instead of asking each one's decide().
struct JointModel {
  const CostTable* costs = nullptr;  // not owned
  std::string drafter;               // its row in costs->drafters; "" = no drafter cost
  std::vector<double> a;             // a_1 .. a_K: the per-position acceptance the plan is scored with
  int k_max = 0;                     // the policy's largest k (<= a.size())
  // The estimates' posterior means when `a` is optimistic (cost_model explore > 0; empty = `a` itself): what
  // the sequence expects to emit (StepRecord::k_expected) is computed from these.
  std::vector<double> a_mean;
  // cost_model explore_cap: the plan made with `a` is kept only if, scored with a_mean, it gives up at most this
  // fraction of the expected tokens/s of the plan made with a_mean (plan_batch_explore).
  double explore_cap = 1;
  // Filled by the sequence (SequenceDecoder::joint_model), as in PolicyStep.
  int backlog = 0;
  int remaining = INT_MAX;
  std::span<const int> depth;  // the sequence's own vector (PolicyStep::depth), valid while it is planned
};

class Policy {
 public:
  virtual ~Policy() = default;
  virtual PolicyDecision decide(const PolicyStep& step) = 0;
  virtual void observe(int n_proposed, int n_accepted) = 0;
  // True, with `out` filled, for a policy the batched loop may plan jointly; decide() then is not called
  // for the steps it plans (observe() is, as always).
  virtual bool joint_model(JointModel& out) const {
    (void)out;
    return false;
  }
};

// What a policy may use when it is made.
// What the policies of one run's sequences share (one per run, handed to each sequence's policy): cost_model
// pool = run keeps its pooled acceptance evidence here, made by the first policy that needs it.
struct PolicyShared {
  std::shared_ptr<AcceptancePool> pool;
};

struct PolicyEnv {
  const CostTable* costs = nullptr;      // required by cost_model; not owned, outlives the policy
  std::string drafter;                   // the drafter's row in costs->drafters; "" = no drafter cost
  std::shared_ptr<PolicyShared> shared;  // null: nothing shared (every sequence on its own)
};

using PolicyFactory = std::function<std::unique_ptr<Policy>(const PolicyEnv&, const DrafterOptions&)>;

struct PolicyInfo {
  std::string name;
  std::string help;  // one line
  PolicyFactory factory;
};

// Policies by name; built-ins from one list (register_builtin_policies). A duplicate name is an error.
class PolicyRegistry {
 public:
  void add(PolicyInfo info);
  const PolicyInfo& get(const std::string& name) const;  // error lists the known names
  std::vector<const PolicyInfo*> list() const;
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }

 private:
  std::map<std::string, PolicyInfo> by_name_;
};

void register_builtin_policies(PolicyRegistry& registry);
const PolicyRegistry& builtin_policies();  // a registry holding the built-ins, made once

// "name key=value key=value ..." (whitespace-separated), e.g. "batch_table table=1:5,4:3,16:1".
struct PolicySpec {
  std::string name;
  std::map<std::string, std::string> options;
};
PolicySpec parse_policy_spec(const std::string& spec);

// Makes a policy, checking its options: an unknown key is an UnknownOptionError naming the keys the policy
// knows (section "policy <name>").
std::unique_ptr<Policy> make_policy(const PolicyRegistry& registry, const PolicySpec& spec, const PolicyEnv& env);
std::unique_ptr<Policy> make_policy(const std::string& spec, const PolicyEnv& env = {});  // built-ins

// ---- the cost model, exposed for tests and the report --------------------------------------------------

// E[emitted | k] = 1 + sum_{i=1..k} prod_{j<=i} a[j-1]: the expected tokens of a step drafting k tokens
// whose position j is accepted with probability a[j-1] given j-1 was (a.size() >= k).
double expected_emitted(std::span<const double> a, int k);
// The same for a node budget k whose proposal reaches depth[k] (a tree: Drafter::proposal_depth; empty depth: a
// chain, depth k): 1 + sum over the depth[k] positions. A tree's width at one depth is not modelled: a budget
// buys positions only, each a_j estimated over whatever widths were proposed (docs/policies.md).
double expected_emitted(std::span<const double> a, std::span<const int> depth, int k);
// The single-alpha formula: E[emitted | k] with a_j = alpha for all j, (1 - alpha^(k+1)) / (1 - alpha)
// (k + 1 at alpha = 1).
double single_alpha_emitted(double alpha, int k);

// The cost model's choice for one sequence: k in [0, min(k_max, step.k_limit, a.size())] maximising
// E[emitted | k] / costs.step_us(drafter, k, B, C); ties take the smaller k.
PolicyDecision cost_model_choose(const CostTable& costs, const std::string& drafter, const PolicyStep& step,
                                 std::span<const double> a, int k_max);

// ---- planning a batch jointly --------------------------------------------------------------------------

// One sequence of a step's batch, for plan_batch. A sequence planned with the others has its model and a
// range of k; one whose length is already fixed (a decision kept while it waited for room, or a policy
// that is not joint) has k_lo = k_hi, and with no model (a.size() < k_lo) it counts as 1 expected token.
struct PlanMember {
  std::string drafter;    // its row in the cost table; "" = no drafter cost
  std::vector<double> a;  // per-position acceptance estimates a_1 .. (at least k_hi of them, or none)
  int k_lo = 0, k_hi = 0;
  int context_len = 0;         // C of its cache before the pass
  int backlog = 0;             // its drafter's backlog: charged when it drafts (CostTable::backlog_charge_us)
  int remaining = INT_MAX;     // output tokens still to come
  std::span<const int> depth;  // depth[k] of its drafter's proposal of k nodes (PolicyStep::depth); empty = a chain
};

struct BatchPlan {
  std::vector<int> k;           // per member, in [k_lo, k_hi]
  double expected_emitted = 0;  // sum over members of E[emitted | k]
  double step_us = 0;           // ragged_forward_us(sum (k + 1), B, mean C) + sum drafter_us(k, G) + backlog charges
  double expected_tps() const { return step_us > 0 ? expected_emitted * 1e6 / step_us : INFINITY; }
};

// The draft lengths of one step's batch maximising the batch's expected tokens per second,
// sum E[emitted | k_i] / (ragged forward + every drafter's cost), with batch_size sequences in the forward's B
// and a drafter's members that draft costing as one group of their number (docs/policies.md "Planning a
// batch"). A greedy walk from every k at k_lo: each move adds one draft token
// to the member whose move gives the best objective, until every member is at k_hi; the best point seen
// wins, and so does any better uniform plan (every member at min(k, its range) for one k): the plan is never
// worse, under the model, than drafting any one k everywhere. Ties keep the earlier (shorter) plan.
BatchPlan plan_batch(const CostTable& costs, std::span<const PlanMember> members, int batch_size);
// The objective of a given plan (k per member), as plan_batch scores it.
BatchPlan score_plan(const CostTable& costs, std::span<const PlanMember> members, int batch_size, std::vector<int> k);

// Exploration with a bounded price (cost_model explore with explore_cap, docs/policies.md): the plan made with
// the members' optimistic estimates (`optimistic`) if, scored with their posterior means (`mean`: the same
// members, a = the means), its expected tokens/s is at least (1 - cap) of the best plan under the means; that
// plan otherwise. The returned plan is scored with the means.
BatchPlan plan_batch_explore(const CostTable& costs, std::span<const PlanMember> optimistic,
                             std::span<const PlanMember> mean, int batch_size, double cap);
// tps >= (1 - cap) * best_tps: an exploring choice whose price under the means is within the cap.
bool within_explore_cap(double tps, double best_tps, double cap);

// The running per-position acceptance estimate of the cost_model policy (docs/policies.md): decayed counts
// of positions reached and accepted, each position's Beta posterior mean with its prior centred on the
// previous position's estimate (position 1's on prior_a), or, with a pool, on the pool's current estimate of
// that position from the other sequences' evidence (this one's own share of the pool left out).
class AcceptanceEstimator {
 public:
  // pool (may be null, shared by the sequences of a run): fed by every observe of a drafted step (n_proposed >
  // 0); its current estimate is the prior.
  // priors (may be empty): each position's prior centre, a measured profile (CostTable::acceptance; cost_model
  // prior = table) instead of prior_a for position 1 and the previous position's estimate for the others; a
  // position past its end inherits the estimate before it.
  AcceptanceEstimator(int k_max, double prior_a, double prior_n, double decay,
                      std::shared_ptr<AcceptanceEstimator> pool = nullptr, std::vector<double> priors = {});
  void observe(int n_proposed, int n_accepted);
  std::vector<double> estimate() const;  // a_1 .. a_{k_max}
  // An upper confidence bound per position (cost_model explore = z): the posterior mean plus z of its
  // standard deviation, sqrt(a (1 - a) / (prior_n + reached_j + 1)) with reached_j this sequence's own
  // (decayed) evidence at position j, clamped to [0, 1]. A sequence with little evidence of its own is
  // planned as if its drafter were better than the prior says, so it drafts and learns what it accepts;
  // the bonus shrinks as its own evidence grows. z = 0: estimate().
  std::vector<double> optimistic(double z) const;

 private:
  double prior_a_, prior_n_, decay_;
  std::vector<double> priors_;
  std::vector<double> reached_, accepted_;
  std::shared_ptr<AcceptanceEstimator> pool_;
  // With a pool: this sequence's share of the pool's counts, as decayed at the pool's observation pool_clock_,
  // left out of its prior so that its own steps count once.
  std::vector<double> mine_reached_, mine_accepted_;
  uint64_t pool_clock_ = 0;
  uint64_t n_observed_ = 0;  // drafted steps observed (a pool's clock)
  // What the pool's decay has done to this sequence's share since pool_clock_.
  double share_decay() const;
};

// The evidence a run's sequences share under cost_model pool = run: one estimator (the same prior, weight and
// decay per observation) that every sequence's drafted steps feed and whose current estimate is each
// sequence's prior: a sequence starts from what the drafter did for the others instead of prior_a, and its
// estimate drifts back to the run's, not to prior_a, while it sits in AR (the alias AcceptancePool, declared
// above).

}  // namespace specdec
