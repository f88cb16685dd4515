// The speculative decode loop (one sequence). The target's cache holds every emitted token except the
// last one; each step forwards [last, draft nodes...] as one block, so the last token's KV and the
// verification of the whole draft cost one pass. AR decoding is the same loop with an empty draft.
#include "core/speculative/decoder.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "core/error.h"

namespace specdec {
namespace {
using Clock = std::chrono::steady_clock;
double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

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

DecodeResult speculative_decode(Model& target, Drafter* drafter, const AcceptanceRule& rule,
                                std::span<const TokenId> prompt, const DecodeOptions& opts,
                                const std::function<void(std::span<const TokenId>)>& on_tokens) {
  const ModelConfig& cfg = target.config();
  const int V = cfg.vocab_size, ctx = cfg.max_seq_len;
  const int n_prompt = static_cast<int>(prompt.size());
  SPECDEC_CHECK(n_prompt >= 1, "a prompt of at least one token (add BOS for an empty prompt)");
  SPECDEC_CHECK(n_prompt < ctx, "a prompt shorter than the model's context of ", ctx, " tokens, got ", n_prompt,
                " tokens");
  SPECDEC_CHECK(opts.k >= 1 || drafter == nullptr, "k >= 1 draft tokens per step, got k = ", opts.k);
  SPECDEC_CHECK(opts.max_tree_nodes >= 1, "max_tree_nodes >= 1, got ", opts.max_tree_nodes);
  SPECDEC_CHECK(drafter == nullptr || opts.k <= opts.max_tree_nodes, "k <= max_tree_nodes (", opts.max_tree_nodes,
                ", the most draft nodes the verifier takes in one pass), got k = ", opts.k);
  SPECDEC_CHECK(opts.max_new_tokens >= 0, "max_new_tokens >= 0, got ", opts.max_new_tokens);
  opts.sampling.validate();
  rule.check(opts.sampling);
  const int max_new = std::min(opts.max_new_tokens, ctx - n_prompt);
  const int k = drafter ? opts.k : 0;

  DecodeResult res;
  res.prompt_tokens = n_prompt;
  if (max_new == 0) return res;
  // Room for the prompt, the output, and one block of draft nodes past it.
  auto cache = target.new_cache(std::min(ctx, n_prompt + max_new + k + 1));

  // The target features the drafter reads (none: nothing extra is computed; the backend checks the layers).
  const FeatureSpec spec = drafter ? drafter->features() : FeatureSpec{};
  const int H = cfg.dim, width = spec.width(H);
  std::vector<float> features;  // rows x width, the rows handed to the drafter next
  std::vector<int32_t> feature_rows;

  // Prefill all prompt tokens but the last: the last one opens the first verification block.
  const auto t0 = Clock::now();
  ForwardResult fr;
  // A shared prefill holds only KV: a drafter that reads the prompt's features gets a prefill of its own.
  const bool copy_prefill = opts.prefilled != nullptr && spec.empty();
  if (copy_prefill) {
    SPECDEC_CHECK(opts.prefilled->size() == n_prompt - 1, "a prefilled cache of the prompt's first ",
                  n_prompt - 1, " tokens, got one of ", opts.prefilled->size());
    cache->copy_prefix(*opts.prefilled, n_prompt - 1);
  } else if (n_prompt > 1) {
    target.forward(*cache, {.tokens = prompt.first(n_prompt - 1), .n_logits = 0, .want_hidden = spec.final_norm,
                            .layer_outputs = spec.layers},
                   fr);
    if (!spec.empty()) {
      feature_rows.resize(n_prompt - 1);
      std::iota(feature_rows.begin(), feature_rows.end(), 0);
      gather_features(spec, fr, H, feature_rows, features);
    }
  }
  if (drafter) {
    drafter->share_target_cache(cache.get());
    drafter->begin(prompt, TargetFeatures{.first_pos = 0, .rows = static_cast<int>(features.size()) / std::max(width, 1),
                                          .width = width, .data = features});
  }
  res.prefill_seconds =
      std::chrono::duration<double>(Clock::now() - t0).count() + (copy_prefill ? opts.prefilled_seconds : 0.0);

  const auto t1 = Clock::now();
  TokenId last = prompt.back();
  std::vector<TokenId> block;
  std::vector<int32_t> parents, positions;
  std::vector<uint8_t> mask;
  std::vector<int32_t> keep;
  std::vector<TokenId> emitted;
  for (uint32_t step = 0; static_cast<int>(res.tokens.size()) < max_new; ++step) {
    StepRecord rec;
    rec.step = static_cast<int32_t>(step);
    rec.context_len = cache->size();
    // Budget: never draft past the output length (the last token always comes from the target) nor
    // past the context.
    const int remaining = max_new - static_cast<int>(res.tokens.size());
    const int budget = std::min({k, remaining - 1, ctx - cache->size() - 1});

    DraftProposal prop;
    const auto td = Clock::now();
    if (drafter && budget > 0) {
      const int n_cached = cache->size();
      prop = drafter->propose(budget);
      SPECDEC_CHECK(cache->size() == n_cached, "a drafter that leaves the target's KV cache as it found it (",
                    n_cached, " slots), got ", cache->size());
      prop.validate(V);
      SPECDEC_CHECK(prop.size() <= budget, "a proposal of at most ", budget, " draft nodes (k = ", k,
                    ", max_tree_nodes = ", opts.max_tree_nodes, ", and the remaining output budget), got ", prop.size());
    }
    rec.t_draft_us = us_since(td);

    const auto tv = Clock::now();
    const int n = prop.size();
    block.assign(1, last);
    block.insert(block.end(), prop.tokens.begin(), prop.tokens.end());
    parents.assign(1, -1);
    for (int i = 0; i < n; ++i) parents.push_back(prop.parent(i) + 1);  // block index: root = 0
    const int n_past = cache->size();
    ForwardRequest req{.tokens = block, .want_hidden = spec.final_norm, .layer_outputs = spec.layers};
    if (!prop.is_chain()) {
      build_tree_mask(parents, n_past, mask, positions);
      req.positions = positions;
      req.mask = mask;
    }
    target.forward(*cache, req, fr);

    VerifyInput vin{.tokens = block, .parents = parents, .logits = fr.logits, .q = prop.q, .vocab_size = V,
                    .sampling = opts.sampling, .seed = opts.seed, .request = opts.request, .step = step};
    const VerifyOutcome out = rule.verify(vin);

    // Keep the root and the accepted path in the cache; the emitted target token is not in it yet.
    if (prop.is_chain()) {
      cache->truncate(n_past + 1 + static_cast<int>(out.path.size()));
    } else {
      keep.assign(1, 0);
      keep.insert(keep.end(), out.path.begin(), out.path.end());
      cache->compact(n_past, keep);
    }
    rec.t_verify_us = us_since(tv);

    emitted.clear();
    for (int32_t node : out.path) emitted.push_back(block[node]);
    emitted.push_back(out.next);
    rec.n_proposed = n;
    rec.n_accepted = static_cast<int32_t>(out.path.size());
    std::vector<int32_t> depth(n + 1, 0);
    for (int i = 1; i <= n; ++i) {
      depth[i] = depth[parents[i]] + 1;
      rec.max_depth = std::max(rec.max_depth, depth[i]);
      const NodeVerdict& v = out.verdicts[i - 1];
      rec.nodes.push_back({.node = i - 1, .parent = parents[i] - 1, .depth = depth[i], .token = block[i],
                           .p_target = v.p_target, .p_test = v.p_test, .q_draft = v.q_draft, .u = v.u,
                           .threshold = v.threshold, .visited = v.visited, .passed = v.passed,
                           .accepted = v.accepted});
    }

    // Stop tokens end the output where AR would have stopped.
    size_t take = emitted.size();
    for (size_t i = 0; i < emitted.size(); ++i)
      if (opts.is_stop && opts.is_stop(emitted[i])) {
        take = i + 1;
        res.stopped = true;
        break;
      }
    take = std::min<size_t>(take, max_new - res.tokens.size());
    rec.n_emitted = static_cast<int32_t>(take);
    res.steps.push_back(std::move(rec));
    res.tokens.insert(res.tokens.end(), emitted.begin(), emitted.begin() + take);
    if (on_tokens) on_tokens(std::span<const TokenId>(emitted.data(), take));
    if (res.stopped) break;
    if (drafter) {
      // The features of the pass's root and accepted nodes: the states that predict each emitted token.
      features.clear();
      if (!spec.empty()) {
        feature_rows.assign(1, 0);
        feature_rows.insert(feature_rows.end(), out.path.begin(), out.path.end());
        gather_features(spec, fr, H, feature_rows, features);
      }
      drafter->accept(emitted, TargetFeatures{.first_pos = n_past,
                                              .rows = spec.empty() ? 0 : static_cast<int>(feature_rows.size()),
                                              .width = width, .data = features});
    }
    last = emitted.back();
  }
  res.decode_seconds = std::chrono::duration<double>(Clock::now() - t1).count();
  return res;
}

}  // namespace specdec
