// Speculation policies in the decode loops (DecodeOptions::policy, docs/policies.md): on stories260K, no policy
// and `fixed k=K` give the same tokens and step records; cost_model (on a synthetic cost table) and
// accept_threshold decode losslessly at greedy with ngram and synthetic drafters, and every step's k_policy is
// what a fresh copy of the policy decides when replayed over the run's records; a k = 0 step is an AR step; in
// BatchDecoder (B = 3) each sequence's tokens equal its solo decode under the same policy, and batch_table
// follows the batch size. Bad specs are one-line errors before any forward.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>

#include "core/error.h"
#include "core/speculative/batch_decoder.h"
#include "core/speculative/decoder.h"
#include "core/speculative/policy.h"
#include "drafters/register_builtin.h"
#include "tests/support/errors.h"
#include "tests/support/steps.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

using test::stories;

constexpr int kMaxNew = 48;

// A forward that costs 200 us plus 20 us per verified token and sequence, over a context grid it does not
// depend on; drafters cost 5 us (ngram) and 30 us (synthetic) per drafted token. With acceptance near 1 the
// cost model drafts long, near 0 it drafts nothing (at B = 1: k = 1 pays from an acceptance of about 0.23).
const CostTable& synthetic_costs() {
  static const CostTable t = [] {
    CostTable c;
    c.source = "synthetic (test_policy_decode)";
    c.tokens = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    c.batch = {1, 2, 4, 8};
    c.context = {0, 512};
    for (int T : c.tokens)
      for (int B : c.batch)
        for (size_t i = 0; i < c.context.size(); ++i) c.forward.push_back(200.0 + 20.0 * T * B);
    for (const auto& [name, per_k] : std::map<std::string, double>{{"ngram", 5.0}, {"synthetic", 30.0}}) {
      auto& row = c.drafters[name];
      for (int k = 0; k <= 8; ++k) row.push_back(per_k * k);
    }
    c.validate();
    return c;
  }();
  return t;
}

DecodeOptions options(int k, const std::string& policy = "", const std::string& cost_drafter = "") {
  DecodeOptions d;
  d.max_new_tokens = kMaxNew;
  d.k = k;
  d.policy = policy;
  d.costs = &synthetic_costs();
  d.cost_drafter = cost_drafter;
  return d;
}

const std::vector<TokenId>& ar_reference(const std::vector<TokenId>& prompt) {
  static std::map<std::vector<TokenId>, std::vector<TokenId>> cache;
  auto it = cache.find(prompt);
  if (it == cache.end()) {
    auto rule = verifiers::make_greedy_rule();
    it = cache.emplace(prompt, speculative_decode(stories().model, nullptr, *rule, prompt, options(4)).tokens).first;
  }
  return it->second;
}

// synthetic: acceptance `profile` (per-position conditional) against the AR output.
std::unique_ptr<Drafter> make_drafter(const std::string& name, const std::vector<TokenId>& prompt,
                                      const std::string& profile = "0.9,0.7,0.5,0.3") {
  DrafterEnv env{.target = &stories().model, .tokenizer = stories().tok.get(), .reference = &ar_reference(prompt)};
  std::map<std::string, std::string> opts;
  if (name == "synthetic") opts["acceptance"] = profile;
  return drafters::default_registry().get(name).factory(env, DrafterOptions(opts, name));
}

DecodeResult solo(const std::string& drafter, const std::vector<TokenId>& prompt, const DecodeOptions& d,
                  const std::string& profile = "0.9,0.7,0.5,0.3") {
  auto rule = verifiers::make_greedy_rule();
  auto dr = drafter.empty() ? nullptr : make_drafter(drafter, prompt, profile);
  return speculative_decode(stories().model, dr.get(), *rule, prompt, d);
}

// Replays a fresh copy of the run's policy over its step records (batch size per step from batch_sizes, 1 when
// empty): every k_policy must be its decision, every k_expected its E[emitted | k] (-1 for a policy without a
// model), and no step may propose more than it.
void require_follows_policy(const DecodeResult& res, const DecodeOptions& d, bool has_drafter,
                            const std::vector<int>& batch_sizes = {}, const std::vector<int>& depth = {}) {
  auto p = make_policy(d.policy, PolicyEnv{.costs = d.costs, .drafter = d.cost_drafter});
  const int ctx = stories().model.config().max_seq_len;
  int emitted = 0;
  for (size_t i = 0; i < res.steps.size(); ++i) {
    CAPTURE(i);
    const StepRecord& s = res.steps[i];
    const int limit =
        has_drafter
            ? std::max(0, std::min({d.k, d.max_new_tokens - emitted - 1, ctx - static_cast<int>(s.context_len) - 1}))
            : 0;
    const int B = batch_sizes.empty() ? 1 : batch_sizes[i];
    const PolicyDecision dec =
        p->decide({.batch_size = B, .context_len = s.context_len, .k_limit = limit, .depth = depth});
    REQUIRE(s.k_policy == dec.k);
    if (dec.expected_emitted.empty()) {
      REQUIRE(s.k_expected == -1);
    } else {
      REQUIRE(s.k_expected == dec.expected_emitted[dec.k]);
      REQUIRE(s.k_expected >= 1);
    }
    REQUIRE(s.n_proposed <= s.k_policy);
    if (s.k_policy == 0) {  // an AR step: nothing drafted, one token from the target
      REQUIRE(s.n_proposed == 0);
      REQUIRE(s.nodes.empty());
      REQUIRE(s.n_accepted == 0);
    }
    p->observe(s.n_proposed, s.n_accepted);
    emitted += s.n_emitted;
  }
}

}  // namespace

TEST_CASE("no policy and fixed k=K give the same tokens and step records", "[speculative][policy]") {
  const auto& prompt = stories().prompt;
  for (const std::string drafter : {"ngram", "synthetic"})
    for (int k : {1, 3, 5}) {
      CAPTURE(drafter, k);
      const DecodeResult plain = solo(drafter, prompt, options(k));
      const DecodeOptions fixed = options(k, "fixed k=" + std::to_string(k));
      const DecodeResult with = solo(drafter, prompt, fixed);
      test::require_same_steps(plain, with);
      for (const StepRecord& s : plain.steps) REQUIRE((s.k_policy == -1 && s.k_expected == -1));
      require_follows_policy(with, fixed, true);
      // fixed k=K is K wherever the output left allows it.
      REQUIRE(with.steps.front().k_policy == k);
    }
}

TEST_CASE("cost_model and accept_threshold decode losslessly and the loop follows their decisions",
          "[speculative][policy][lossless]") {
  const std::vector<std::string> prompts = {"Once upon a time", "Lily and Tom went to the park. They saw"};
  const std::vector<std::string> policies = {"cost_model k_max=6", "cost_model k_max=8 prior_a=0.9 decay=0.9",
                                             "accept_threshold k=4 threshold=0.6 window=4 retry=6",
                                             "adaptive tiers=1,2,4,6 window=3", "batch_table table=1:3,4:1"};
  for (const auto& text : prompts) {
    const auto prompt = stories().tok->encode(text, true);
    const auto& ar = ar_reference(prompt);
    for (const std::string drafter : {"ngram", "synthetic"})
      for (const auto& policy : policies) {
        CAPTURE(text, drafter, policy);
        const DecodeOptions d = options(6, policy, drafter);
        const DecodeResult res = solo(drafter, prompt, d);
        REQUIRE(res.tokens == ar);
        require_follows_policy(res, d, true);
      }
    // Without a drafter a policy can only say k = 0: the run is AR.
    const DecodeOptions d = options(6, "cost_model", "");
    const DecodeResult res = solo("", prompt, d);
    REQUIRE(res.tokens == ar);
    for (const StepRecord& s : res.steps) REQUIRE(s.k_policy == 0);
  }
}

TEST_CASE("a tree drafter's budgets are scored by the depth they reach, alone and in a batch",
          "[speculative][policy][lossless]") {
  // early_exit's tree of 3 children per node, 2 deep: budgets 1..3 reach depth 1, 4..6 depth 2. With a prior
  // of 0.9 a chain model would expect 1 + 0.9 + 0.81 + ... tokens of a budget of 3; a proposal one deep
  // emits at most 2.
  auto rule = verifiers::make_greedy_rule();
  const std::map<std::string, std::string> tree = {{"layers", "2"}, {"tree_width", "3"}, {"tree_depth", "2"}};
  auto make_tree = [&] {
    DrafterEnv env{.target = &stories().model, .tokenizer = stories().tok.get()};
    return drafters::default_registry().get("early_exit").factory(env, DrafterOptions(tree, "early_exit"));
  };
  std::vector<int> depth;
  for (int k = 0; k <= 6; ++k) depth.push_back(make_tree()->proposal_depth(k));
  REQUIRE(depth == std::vector<int>{0, 1, 1, 1, 2, 2, 2});
  const std::string policy = "cost_model k_max=6 prior_a=0.9 prior_n=1e9";  // the prior decides: 0.9 throughout
  const std::vector<std::string> texts = {"Once upon a time", "Lily and Tom went to the park. They saw"};
  int wide = 0;  // steps whose budget was wider than one node per depth
  std::vector<BatchRequest> batch;
  for (const auto& text : texts) {
    const auto prompt = stories().tok->encode(text, true);
    const DecodeOptions d = options(6, policy, "");
    auto dr = make_tree();
    const DecodeResult res = speculative_decode(stories().model, dr.get(), *rule, prompt, d);
    REQUIRE(res.tokens == ar_reference(prompt));
    require_follows_policy(res, d, true, {}, depth);  // the decoder handed the drafter's depths to the policy
    for (const StepRecord& s : res.steps) {
      REQUIRE(s.k_expected <= 1 + depth[s.k_policy] + 1e-12);
      wide += s.k_policy > depth[s.k_policy];
    }
    batch.push_back(BatchRequest{.prompt = prompt, .opts = d, .rule = rule.get(), .make_drafter = make_tree});
  }
  CHECK(wide > 0);
  // In the batched loop the joint plan scores the same depths, and logs what it expects by them.
  const BatchResult run = batch_decode(stories().model, batch, BatchLimits{.max_sequences = 2});
  int planned = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    REQUIRE(run.results[i].tokens == ar_reference(batch[i].prompt));
    for (const StepRecord& s : run.results[i].steps) {
      REQUIRE(s.k_policy >= 0);
      REQUIRE(s.k_expected == Approx(expected_emitted(std::vector<double>(6, 0.9), depth, s.k_policy)));
      planned += s.k_policy > 0;
    }
  }
  CHECK(planned > 0);
}

TEST_CASE("the cost model drafts long for a good drafter and not at all when drafting cannot pay",
          "[speculative][policy]") {
  const auto& prompt = stories().prompt;
  // acceptance 0.9, 0.7, ...: the first decision (prior 0.5) already drafts, and the evidence keeps it drafting.
  const DecodeResult good = solo("synthetic", prompt, options(6, "cost_model k_max=6", "synthetic"));
  REQUIRE(good.steps.front().k_policy >= 1);
  REQUIRE(good.tau() > 1.0);
  // A prior of 0.05 that no evidence can move (prior_n huge): E[emitted | k] barely grows while every drafted
  // token costs 20 + 30 us, so every step is AR.
  const DecodeOptions never = options(6, "cost_model k_max=6 prior_a=0.05 prior_n=1000000", "synthetic");
  const DecodeResult res = solo("synthetic", prompt, never);
  REQUIRE(res.tokens == ar_reference(prompt));
  for (const StepRecord& s : res.steps) REQUIRE(s.k_policy == 0);
  REQUIRE(res.drafted_tokens() == 0);
}

TEST_CASE("accept_threshold switches to AR after the first drafting step, and k = 0 steps are AR steps",
          "[speculative][policy]") {
  const auto& prompt = stories().prompt;
  // Thresholds are in [0, 1]; a drafter whose second position is never accepted (acceptance 0.9, 0) accepts at
  // most 1 of 4, below threshold = 1 whatever its draws.
  const DecodeOptions d = options(4, "accept_threshold k=4 threshold=1 window=3 retry=1000", "synthetic");
  const DecodeResult res = solo("synthetic", prompt, d, "0.9,0");
  REQUIRE(res.tokens == ar_reference(prompt));
  require_follows_policy(res, d, true);
  // The first step drafts (synthetic always proposes); accepted / proposed <= 1/4 < 1 turns it off; then AR
  // for the rest of the output (retry = 1000 > the steps left).
  REQUIRE(res.steps.front().k_policy == 4);
  REQUIRE(res.steps.front().n_proposed > 0);
  REQUIRE(res.steps.size() >= 2);
  for (size_t i = 1; i < res.steps.size(); ++i) {
    CAPTURE(i);
    const StepRecord& s = res.steps[i];
    REQUIRE(s.k_policy == 0);
    REQUIRE(s.n_proposed == 0);
    REQUIRE(s.nodes.empty());
    REQUIRE(s.n_emitted == 1);
  }
  REQUIRE(static_cast<int>(res.steps.size()) == kMaxNew - res.steps.front().n_emitted + 1);
}

TEST_CASE("in BatchDecoder each sequence's tokens equal its solo decode under the same policy",
          "[speculative][policy][batch]") {
  struct Req {
    std::string drafter, prompt, policy;
    int max_new;
  };
  const std::vector<Req> reqs = {
      {"ngram", "Lily and Ben went to the park. Lily and Ben", "cost_model k_max=6 plan=sequence", 40},
      {"synthetic", "Once upon a time", "accept_threshold k=4 threshold=0.7 window=2 retry=3", 30},
      {"synthetic", "The little dog was sad because", "batch_table table=1:5,2:3,3:1", 44},
  };
  auto rule = verifiers::make_greedy_rule();
  std::vector<BatchRequest> batch;
  std::vector<DecodeOptions> opts;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto prompt = stories().tok->encode(reqs[i].prompt, true);
    DecodeOptions d = options(6, reqs[i].policy, reqs[i].drafter);
    d.max_new_tokens = reqs[i].max_new;
    d.request = i;
    opts.push_back(d);
    const std::string name = reqs[i].drafter;
    batch.push_back(BatchRequest{.prompt = prompt, .opts = d, .rule = rule.get(), .make_drafter = [name, prompt] {
                                   return make_drafter(name, prompt);
                                 }});
  }
  const BatchResult run = batch_decode(stories().model, batch, BatchLimits{.max_sequences = 3});
  REQUIRE(run.results.size() == reqs.size());
  REQUIRE(run.steps.front().n_sequences == 3);
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i, reqs[i].policy);
    const DecodeResult alone = solo(reqs[i].drafter, batch[i].prompt, opts[i]);
    REQUIRE(run.results[i].tokens == alone.tokens);
    // The batch size each step of the sequence saw (all in flight are verified: no token limit binds here).
    std::vector<int> sizes;
    for (const BatchStepRecord& b : run.steps)
      for (int32_t t : b.tickets)
        if (t == static_cast<int32_t>(i)) sizes.push_back(b.n_in_flight);
    REQUIRE(sizes.size() == run.results[i].steps.size());
    require_follows_policy(run.results[i], opts[i], true, sizes);
  }
  // accept_threshold does not read the batch size: the batched sequence's steps are its solo steps.
  test::require_same_steps(run.results[1], solo(reqs[1].drafter, batch[1].prompt, opts[1]));
  // batch_table: k = 1 while all three are in flight.
  REQUIRE(run.results[2].steps.front().k_policy == 1);
}

TEST_CASE("in BatchDecoder cost_model plans the batch jointly: each step's lengths are plan_batch's",
          "[speculative][policy][batch]") {
  // Three sequences under `cost_model` (plan = batch, the default): prompt lookup, a good synthetic drafter
  // and a poor one. Replayed with fresh policies, every batched step's draft lengths must be plan_batch's
  // over the three estimates, and each sequence's tokens its solo decode's (greedy: lossless whatever k).
  struct Req {
    std::string drafter, prompt, profile;
    int max_new;
  };
  const std::vector<Req> reqs = {{"ngram", "Lily and Ben went to the park. Lily and Ben", "", 40},
                                 {"synthetic", "Once upon a time", "0.95,0.9,0.9,0.9", 44},
                                 {"synthetic", "The little dog was sad because", "0.15,0.1,0.1,0.1", 36}};
  auto rule = verifiers::make_greedy_rule();
  std::vector<BatchRequest> batch;
  std::vector<DecodeOptions> opts;
  for (size_t i = 0; i < reqs.size(); ++i) {
    const auto prompt = stories().tok->encode(reqs[i].prompt, true);
    DecodeOptions d = options(6, "cost_model k_max=6", reqs[i].drafter);
    d.max_new_tokens = reqs[i].max_new;
    d.request = i;
    opts.push_back(d);
    const Req r = reqs[i];
    batch.push_back(BatchRequest{.prompt = prompt, .opts = d, .rule = rule.get(), .make_drafter = [r, prompt] {
                                   return make_drafter(r.drafter, prompt, r.profile);
                                 }});
  }
  const BatchResult run = batch_decode(stories().model, batch, BatchLimits{.max_sequences = 3});
  REQUIRE(run.results.size() == reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    CAPTURE(i);
    auto dr = make_drafter(reqs[i].drafter, batch[i].prompt, reqs[i].profile);
    REQUIRE(run.results[i].tokens ==
            speculative_decode(stories().model, dr.get(), *rule, batch[i].prompt, opts[i]).tokens);
  }

  std::vector<std::unique_ptr<Policy>> pol;
  for (const DecodeOptions& d : opts)
    pol.push_back(make_policy(d.policy, PolicyEnv{.costs = d.costs, .drafter = d.cost_drafter}));
  std::vector<int> emitted(reqs.size(), 0);
  const int ctx = stories().model.config().max_seq_len;
  int differs = 0, drafted_poor = 0, drafted_good = 0;
  for (const BatchStepRecord& b : run.steps) {
    CAPTURE(b.step);
    REQUIRE(b.n_sequences == b.n_in_flight);  // no token limit binds: every sequence in flight is verified
    std::vector<int32_t> tickets = b.tickets;
    std::sort(tickets.begin(), tickets.end());  // the loop plans its sequences in the order they joined
    std::vector<PlanMember> members;
    for (int32_t t : tickets) {
      const StepRecord& s =
          run.results[t].steps[b.seq_steps[std::find(b.tickets.begin(), b.tickets.end(), t) - b.tickets.begin()]];
      JointModel jm;
      REQUIRE(pol[t]->joint_model(jm));
      const int limit = std::max(
          0, std::min({opts[t].k, opts[t].max_new_tokens - emitted[t] - 1, ctx - static_cast<int>(s.context_len) - 1}));
      members.push_back({.drafter = jm.drafter,
                         .a = jm.a,
                         .k_hi = std::min({jm.k_max, limit, static_cast<int>(jm.a.size())}),
                         .context_len = s.context_len});
      if (pol[t]->decide({.batch_size = b.n_in_flight, .context_len = s.context_len, .k_limit = limit}).k != s.k_policy)
        ++differs;
    }
    const BatchPlan plan = plan_batch(synthetic_costs(), members, b.n_in_flight);
    for (size_t i = 0; i < tickets.size(); ++i) {
      const int32_t t = tickets[i];
      const StepRecord& s =
          run.results[t].steps[b.seq_steps[std::find(b.tickets.begin(), b.tickets.end(), t) - b.tickets.begin()]];
      CAPTURE(t);
      REQUIRE(s.k_policy == plan.k[i]);
      REQUIRE(s.k_expected == expected_emitted(members[i].a, plan.k[i]));  // what the plan expected of it
      REQUIRE(s.n_proposed <= s.k_policy);
      pol[t]->observe(s.n_proposed, s.n_accepted);
      emitted[t] += s.n_emitted;
      if (t == 1) drafted_good += s.n_proposed;
      if (t == 2) drafted_poor += s.n_proposed;
    }
  }
  for (size_t i = 0; i < reqs.size(); ++i) REQUIRE(emitted[i] == static_cast<int>(run.results[i].tokens.size()));
  // The joint plan is not each sequence's own choice: it spends the drafts where they pay.
  CHECK(differs > 0);
  CHECK(drafted_good > 3 * drafted_poor);
}

TEST_CASE("cost_model pool = run: a request that joins late starts from the run's evidence",
          "[speculative][policy][batch]") {
  // Five requests one after another (max_sequences = 1) with a synthetic drafter that is never right, the
  // evidence never decayed (decay = 1) and a light prior (prior_n = 1): the first request drafts from
  // prior_a = 0.5 until its evidence says no (k = 1 pays from an acceptance of about 0.23 here); with
  // pool = run every later request starts from that evidence and its first step is AR; with pool = sequence
  // each one starts over.
  auto rule = verifiers::make_greedy_rule();
  for (const std::string pool : {"run", "sequence"}) {
    auto shared = std::make_shared<PolicyShared>();
    std::vector<BatchRequest> batch;
    for (int i = 0; i < 5; ++i) {
      const auto prompt = stories().tok->encode(i % 2 ? "Once upon a time" : "The little dog was sad because", true);
      DecodeOptions d = options(6, "cost_model k_max=6 decay=1 prior_n=1 pool=" + pool, "synthetic");
      d.max_new_tokens = 24;
      d.request = static_cast<uint64_t>(i);
      d.policy_shared = shared;
      batch.push_back(BatchRequest{.prompt = prompt, .opts = d, .rule = rule.get(), .make_drafter = [prompt] {
                                     return make_drafter("synthetic", prompt, "0,0,0,0");
                                   }});
    }
    const std::vector<BatchRequest> copy = batch;
    const BatchResult run = batch_decode(stories().model, batch, BatchLimits{.max_sequences = 1});
    CAPTURE(pool);
    REQUIRE(run.results.front().steps.front().k_policy > 0);
    for (size_t i = 0; i < run.results.size(); ++i) {
      CAPTURE(i);
      const std::vector<TokenId>& ref = ar_reference(copy[i].prompt);
      REQUIRE(run.results[i].tokens == std::vector<TokenId>(ref.begin(), ref.begin() + 24));  // lossless
      if (i > 0) CHECK((run.results[i].steps.front().k_policy == 0) == (pool == "run"));
    }
    CHECK((shared->pool != nullptr) == (pool == "run"));
  }
}

TEST_CASE("a bad policy spec, option or missing cost table is a one-line error before any forward",
          "[speculative][policy]") {
  auto rule = verifiers::make_greedy_rule();
  const auto& prompt = stories().prompt;
  auto ng = make_drafter("ngram", prompt);
  const std::vector<std::pair<DecodeOptions, std::string>> bad = {
      {options(4, "nope"), "nope"},
      {options(4, "fixed k=x"), "k"},
      {options(4, "fixed depth=3"), "depth"},
      {[] {
         DecodeOptions d = options(4, "cost_model");
         d.costs = nullptr;
         return d;
       }(),
       "cost"},
      {options(4, "cost_model", "eagle"), "eagle"},
  };
  for (const auto& [d, needle] : bad) {
    CAPTURE(d.policy, needle);
    const std::string msg =
        test::one_line_error_of([&] { speculative_decode(stories().model, ng.get(), *rule, prompt, d); });
    REQUIRE(msg.find(needle) != std::string::npos);
    BatchDecoder dec(stories().model, BatchLimits{});
    const std::string bmsg =
        test::one_line_error_of([&] { dec.submit(BatchRequest{.prompt = prompt, .opts = d, .rule = rule.get()}); });
    REQUIRE(bmsg.find("request 0") != std::string::npos);
  }
  SequenceDecoder seq(stories().model, ng.get(), *rule, prompt, options(4));
  REQUIRE(test::error_or_empty([&] { seq.set_step_budget(5); }).find("0..k = 4") != std::string::npos);
  REQUIRE(test::error_or_empty([&] { seq.set_step_budget(-1); }) != "");
  seq.set_step_budget(2);
  REQUIRE(seq.max_block() == 3);
  seq.set_step_budget(0);
  REQUIRE(seq.max_block() == 1);
  REQUIRE(seq.k_limit() == 4);
}
