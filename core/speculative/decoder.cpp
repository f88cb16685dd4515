// The speculative decode loop (one sequence) and its step in parts (SequenceDecoder), which the batched loop
// runs too. The target's cache holds every emitted token except the last one; each step forwards
// [last, draft nodes...] as one block, so the last token's KV and the verification of the whole draft cost
// one pass. AR decoding is the same loop with an empty draft.
#include "core/speculative/decoder.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/error.h"

namespace specdec {
namespace {
using Clock = std::chrono::steady_clock;
double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }
double seconds_now() { return std::chrono::duration<double>(Clock::now().time_since_epoch()).count(); }

// Feature rows (FeatureSpec's layout) of the given rows of a forward's block, appended to out.
void gather_features(const FeatureSpec& spec, const ForwardResult& fr, int H, std::span<const int32_t> block_rows,
                     std::vector<float>& out) {
  const size_t n_l = spec.layers.size();
  for (int32_t r : block_rows) {
    if (spec.final_norm)
      out.insert(out.end(), fr.hidden.begin() + static_cast<ptrdiff_t>(r) * H,
                 fr.hidden.begin() + static_cast<ptrdiff_t>(r + 1) * H);
    const auto first = fr.layer_outputs.begin() + static_cast<ptrdiff_t>(r * n_l * H);
    out.insert(out.end(), first, first + static_cast<ptrdiff_t>(n_l * H));
  }
}
}  // namespace

SpecStats DecodeResult::stats() const {
  SpecStats st;
  st.add(steps);
  return st;
}
int DecodeResult::accepted_draft_tokens() const { return static_cast<int>(stats().accepted()); }
int DecodeResult::drafted_tokens() const { return static_cast<int>(stats().drafted()); }
double DecodeResult::tau() const { return steps.empty() ? 0.0 : stats().tau(); }

void SequenceDecoder::check(const Model& target, bool has_drafter, const AcceptanceRule& rule, int n_prompt,
                            const DecodeOptions& opts) {
  const int ctx = target.config().max_seq_len;
  SPECDEC_CHECK(n_prompt >= 1, "a prompt of at least one token (add BOS for an empty prompt)");
  SPECDEC_CHECK(n_prompt < ctx, "a prompt shorter than the model's context of ", ctx, " tokens, got ", n_prompt,
                " tokens");
  SPECDEC_CHECK(opts.k >= 1 || !has_drafter, "k >= 1 draft tokens per step, got k = ", opts.k);
  SPECDEC_CHECK(opts.max_tree_nodes >= 1, "max_tree_nodes >= 1, got ", opts.max_tree_nodes);
  SPECDEC_CHECK(!has_drafter || opts.k <= opts.max_tree_nodes, "k <= max_tree_nodes (", opts.max_tree_nodes,
                ", the most draft nodes the verifier takes in one pass), got k = ", opts.k);
  SPECDEC_CHECK(opts.max_new_tokens >= 0, "max_new_tokens >= 0, got ", opts.max_new_tokens);
  opts.sampling.validate();
  rule.check(opts.sampling);
  // Made and dropped: a bad spec, option or cost table is an error before any forward.
  if (!opts.policy.empty()) make_policy(opts.policy, PolicyEnv{.costs = opts.costs, .drafter = opts.cost_drafter});
}

SequenceDecoder::SequenceDecoder(Model& target, Drafter* drafter, const AcceptanceRule& rule,
                                 std::span<const TokenId> prompt, const DecodeOptions& opts,
                                 std::function<void(std::span<const TokenId>)> on_tokens)
    : target_(target), drafter_(drafter), rule_(rule), opts_(opts), on_tokens_(std::move(on_tokens)) {
  const int ctx = target.config().max_seq_len;
  const int n_prompt = static_cast<int>(prompt.size());
  check(target, drafter != nullptr, rule, n_prompt, opts);
  max_new_ = std::min(opts.max_new_tokens, ctx - n_prompt);
  k_ = drafter ? opts.k : 0;
  if (!opts.policy.empty()) {
    policy_ = make_policy(opts.policy,
                          PolicyEnv{.costs = opts.costs, .drafter = opts.cost_drafter, .shared = opts.policy_shared});
    // How deep each node budget reaches (a tree's depth, not its width, is what the cost model scores).
    if (drafter)
      for (int k = 0; k <= k_; ++k) {
        const int d = drafter->proposal_depth(k);
        SPECDEC_CHECK(d >= 0 && d <= k, opts.cost_drafter.empty() ? std::string("the drafter") : opts.cost_drafter,
                      ": proposal_depth(", k, ") must be in 0..", k, " (how deep ", k, " nodes reach), got ", d);
        depth_.push_back(d);
      }
  }
  res_.prompt_tokens = n_prompt;
  t_decode_start_ = now();
  if (max_new_ == 0) {
    done_ = true;
    return;
  }
  // Room for the prompt, the output, and one block of draft nodes past it.
  cache_ = target.new_cache(std::min(ctx, n_prompt + max_new_ + k_ + 1));

  // The target features the drafter reads (none: nothing extra is computed; the backend checks the layers).
  spec_ = drafter ? drafter->features() : FeatureSpec{};
  const int H = target.config().dim, width = spec_.width(H);

  // Prefill all prompt tokens but the last: the last one opens the first verification block.
  const auto t0 = Clock::now();
  // A shared prefill holds only KV: a drafter that reads the prompt's features gets a prefill of its own.
  const bool copy_prefill = opts.prefilled != nullptr && spec_.empty();
  if (copy_prefill) {
    SPECDEC_CHECK(opts.prefilled->size() == n_prompt - 1, "a prefilled cache of the prompt's first ", n_prompt - 1,
                  " tokens, got one of ", opts.prefilled->size());
    cache_->copy_prefix(*opts.prefilled, n_prompt - 1);
  } else if (n_prompt > 1) {
    ForwardResult fr;
    target.forward(*cache_,
                   {.tokens = prompt.first(n_prompt - 1),
                    .n_logits = 0,
                    .want_hidden = spec_.final_norm,
                    .layer_outputs = spec_.layers},
                   fr);
    if (!spec_.empty()) {
      feature_rows_.resize(n_prompt - 1);
      std::iota(feature_rows_.begin(), feature_rows_.end(), 0);
      gather_features(spec_, fr, H, feature_rows_, features_);
    }
  }
  if (drafter) {
    drafter->share_target_cache(cache_.get());
    drafter->begin(prompt, TargetFeatures{.first_pos = 0,
                                          .rows = static_cast<int>(features_.size()) / std::max(width, 1),
                                          .width = width,
                                          .data = features_});
  }
  res_.prefill_seconds =
      std::chrono::duration<double>(Clock::now() - t0).count() + (copy_prefill ? opts.prefilled_seconds : 0.0);
  last_ = prompt.back();
  t_decode_start_ = now();
}

double SequenceDecoder::now() const { return opts_.clock ? opts_.clock() : seconds_now(); }

int SequenceDecoder::k_limit() const {
  if (done_) return 0;
  // Budget: never draft past the output length (the last token always comes from the target) nor past the
  // context.
  return std::max(0, std::min({k_, remaining() - 1, target_.config().max_seq_len - cache_->size() - 1}));
}

int SequenceDecoder::max_block() const {
  if (done_) return 0;
  const int limit = k_limit();
  return 1 + (step_budget_ >= 0 ? std::min(step_budget_, limit) : limit);
}

void SequenceDecoder::set_step_budget(int k) {
  SPECDEC_CHECK(k >= 0 && k <= opts_.k, "a step budget in 0..k = ", opts_.k,
                " draft tokens (the target's cache is sized for k), got ", k);
  step_budget_ = k;
}

int SequenceDecoder::plan_step(int batch_size) {
  if (policy_ && k_policy_ < 0 && !done_) {
    const PolicyDecision d = policy_->decide(PolicyStep{.batch_size = batch_size,
                                                        .context_len = cache_->size(),
                                                        .k_limit = k_limit(),
                                                        .backlog = drafter_ ? drafter_->backlog() : 0,
                                                        .remaining = remaining(),
                                                        .depth = depth_});
    apply_plan(d.k, d.k >= 0 && d.k < static_cast<int>(d.expected_emitted.size()) ? d.expected_emitted[d.k] : -1);
  }
  return max_block() - 1;
}

bool SequenceDecoder::joint_model(JointModel& out) const {
  if (!(policy_ && k_policy_ < 0 && !done_ && policy_->joint_model(out))) return false;
  out.backlog = drafter_ ? drafter_->backlog() : 0;
  out.remaining = remaining();
  out.depth = depth_;
  return true;
}

int SequenceDecoder::remaining() const { return std::max(1, max_new_ - static_cast<int>(res_.tokens.size())); }

void SequenceDecoder::apply_plan(int k, double expected) {
  SPECDEC_CHECK(policy_ != nullptr, "a sequence with a policy to plan its draft length");
  // Policies clamp to k_limit; the check keeps a plugin's slip from reaching the cache.
  SPECDEC_CHECK(k >= 0 && k <= k_limit(), "a policy decision in 0..k_limit = ", k_limit(), ", got k = ", k);
  k_policy_ = k;
  k_expected_ = expected;
  set_step_budget(k);
}

int SequenceDecoder::context_len() const { return cache_ ? cache_->size() : 0; }

int SequenceDecoder::begin_draft() {
  SPECDEC_CHECK(!done_, "draft() on a sequence whose output is complete");
  const int budget = plan_step(1);
  rec_ = StepRecord{};
  rec_.step = static_cast<int32_t>(step_);
  rec_.context_len = cache_->size();
  rec_.k_policy = k_policy_;
  rec_.k_expected = k_expected_;
  prop_ = DraftProposal{};
  draft_budget_ = drafter_ && budget > 0 ? budget : 0;
  rec_.backlog = draft_budget_ > 0 ? drafter_->backlog() : 0;
  return draft_budget_;
}

const ForwardRequest& SequenceDecoder::end_draft(DraftProposal proposal, double draft_us) {
  const int V = target_.config().vocab_size;
  if (draft_budget_ > 0) {
    SPECDEC_CHECK(cache_->size() == rec_.context_len, "a drafter that leaves the target's KV cache as it found it (",
                  rec_.context_len, " slots), got ", cache_->size());
    proposal.validate(V);
    SPECDEC_CHECK(proposal.size() <= draft_budget_, "a proposal of at most ", draft_budget_, " draft nodes (k = ", k_,
                  ", max_tree_nodes = ", opts_.max_tree_nodes, ", and the remaining output budget), got ",
                  proposal.size());
    prop_ = std::move(proposal);
  } else {
    SPECDEC_CHECK(proposal.size() == 0, "no proposal in a step without a draft budget, got ", proposal.size(),
                  " nodes");
  }
  rec_.t_draft_us = draft_us;

  const int n = prop_.size();
  block_.assign(1, last_);
  block_.insert(block_.end(), prop_.tokens.begin(), prop_.tokens.end());
  parents_.assign(1, -1);
  for (int i = 0; i < n; ++i) parents_.push_back(prop_.parent(i) + 1);  // block index: root = 0
  n_past_ = cache_->size();
  req_ = ForwardRequest{.tokens = block_, .want_hidden = spec_.final_norm, .layer_outputs = spec_.layers};
  if (!prop_.is_chain()) {
    build_tree_mask(parents_, n_past_, mask_, positions_);
    req_.positions = positions_;
    req_.mask = mask_;
  }
  return req_;
}

const ForwardRequest& SequenceDecoder::draft() {
  const int budget = begin_draft();
  const auto td = Clock::now();
  DraftProposal p;
  if (budget > 0) p = drafter_->propose(budget);
  return end_draft(std::move(p), us_since(td));
}

void SequenceDecoder::finish(const ForwardResult& fr, double forward_us) {
  const auto tv = Clock::now();
  const int V = target_.config().vocab_size;
  VerifyInput vin{.tokens = block_,
                  .parents = parents_,
                  .logits = fr.logits,
                  .q = prop_.q,
                  .vocab_size = V,
                  .sampling = opts_.sampling,
                  .seed = opts_.seed,
                  .request = opts_.request,
                  .step = step_};
  const VerifyOutcome out = rule_.verify(vin);

  // Keep the root and the accepted path in the cache; the emitted target token is not in it yet.
  if (prop_.is_chain()) {
    cache_->truncate(n_past_ + 1 + static_cast<int>(out.path.size()));
  } else {
    keep_.assign(1, 0);
    keep_.insert(keep_.end(), out.path.begin(), out.path.end());
    cache_->compact(n_past_, keep_);
  }
  rec_.t_forward_us = forward_us;
  rec_.t_verify_us = forward_us + us_since(tv);

  emitted_.clear();
  for (int32_t node : out.path) emitted_.push_back(block_[node]);
  emitted_.push_back(out.next);
  const int n = prop_.size();
  rec_.n_proposed = n;
  rec_.n_accepted = static_cast<int32_t>(out.path.size());
  std::vector<int32_t> depth(n + 1, 0);
  for (int i = 1; i <= n; ++i) {
    depth[i] = depth[parents_[i]] + 1;
    rec_.max_depth = std::max(rec_.max_depth, depth[i]);
    const NodeVerdict& v = out.verdicts[i - 1];
    rec_.nodes.push_back({.node = i - 1,
                          .parent = parents_[i] - 1,
                          .depth = depth[i],
                          .token = block_[i],
                          .p_target = v.p_target,
                          .p_test = v.p_test,
                          .q_draft = v.q_draft,
                          .u = v.u,
                          .threshold = v.threshold,
                          .visited = v.visited,
                          .passed = v.passed,
                          .accepted = v.accepted});
  }

  // Stop tokens end the output where AR would have stopped.
  size_t take = emitted_.size();
  for (size_t i = 0; i < emitted_.size(); ++i)
    if (opts_.is_stop && opts_.is_stop(emitted_[i])) {
      take = i + 1;
      res_.stopped = true;
      break;
    }
  take = std::min<size_t>(take, max_new_ - res_.tokens.size());
  rec_.n_emitted = static_cast<int32_t>(take);
  // A tree's evidence is the accepted path's depth against the proposal's depth (docs/policies.md).
  if (policy_) policy_->observe(prop_.is_chain() ? n : rec_.max_depth, rec_.n_accepted);
  k_policy_ = -1;
  k_expected_ = -1;
  step_budget_ = -1;
  res_.steps.push_back(std::move(rec_));
  res_.tokens.insert(res_.tokens.end(), emitted_.begin(), emitted_.begin() + take);
  if (on_tokens_) on_tokens_(std::span<const TokenId>(emitted_.data(), take));
  ++step_;
  done_ = res_.stopped || static_cast<int>(res_.tokens.size()) >= max_new_;
  if (res_.stopped) return;
  if (drafter_) {
    // The features of the pass's root and accepted nodes: the states that predict each emitted token. The
    // drafter's accept of the step's tokens is the drafter's work of this step: its time goes to t_draft_us.
    const auto ta = Clock::now();
    features_.clear();
    if (!spec_.empty()) {
      feature_rows_.assign(1, 0);
      feature_rows_.insert(feature_rows_.end(), out.path.begin(), out.path.end());
      gather_features(spec_, fr, target_.config().dim, feature_rows_, features_);
    }
    drafter_->accept(emitted_, TargetFeatures{.first_pos = n_past_,
                                              .rows = spec_.empty() ? 0 : static_cast<int>(feature_rows_.size()),
                                              .width = spec_.width(target_.config().dim),
                                              .data = features_});
    res_.steps.back().t_draft_us += us_since(ta);
  }
  last_ = emitted_.back();
}

DecodeResult SequenceDecoder::take_result() {
  res_.decode_seconds = now() - t_decode_start_;
  return std::move(res_);
}

DecodeResult speculative_decode(Model& target, Drafter* drafter, const AcceptanceRule& rule,
                                std::span<const TokenId> prompt, const DecodeOptions& opts,
                                const std::function<void(std::span<const TokenId>)>& on_tokens) {
  SequenceDecoder seq(target, drafter, rule, prompt, opts, on_tokens);
  ForwardResult fr;
  while (!seq.done()) {
    const ForwardRequest& req = seq.draft();
    const auto tf = Clock::now();
    target.forward(seq.cache(), req, fr);
    seq.finish(fr, us_since(tf));
  }
  return seq.take_result();
}

}  // namespace specdec
