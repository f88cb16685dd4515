// ModelDrafter: chain and tree drafting with a model and its own KV cache.
#include "drafters/model_drafter.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/sampling/philox.h"

namespace specdec::drafters {
namespace {

// softmax(logits)[best], best the argmax: 1 / sum(exp(l - l_best)), in double.
double top_probability(std::span<const float> logits, TokenId best) {
  const double mx = logits[best];
  double sum = 0.0;
  for (float l : logits) sum += std::exp(static_cast<double>(l) - mx);
  return 1.0 / sum;
}

}  // namespace

ModelDrafter::ModelDrafter(Model& model, std::shared_ptr<void> keep_alive, const DrafterEnv& env,
                           ModelDrafterParams params)
    : model_(model), keep_alive_(std::move(keep_alive)), env_(env), params_(params) {
  SPECDEC_CHECK(params_.tree_width >= 1 && params_.tree_depth >= 1, "tree_width >= 1 and tree_depth >= 1, got ",
                params_.tree_width, " and ", params_.tree_depth);
  SPECDEC_CHECK(!params_.share_target_kv || &model_ == env_.target,
                "only a drafter running the target itself "
                "(early exit) can share the target's KV cache");
  if (!params_.share_target_kv) {
    const int ctx = model_.config().max_seq_len;
    const int cap = env_.max_context > 0 ? std::min(ctx, env_.max_context) : ctx;
    own_cache_ = model_.new_cache(cap, params_.n_layers);
    cache_ = own_cache_.get();
  }
}

void ModelDrafter::share_target_cache(KVCache* cache) {
  if (params_.share_target_kv) cache_ = cache;
}

void ModelDrafter::begin(std::span<const TokenId> prompt, const TargetFeatures&) {
  SPECDEC_CHECK(cache_ != nullptr,
                "early exit sharing the target's KV cache: the decode loop handed over none "
                "(Drafter::share_target_cache)");
  step_ = 0;
  last_ = {};
  slot_.clear();
  if (params_.share_target_kv) {  // the target's cache holds the prompt but its last token
    pending_.assign(prompt.end() - 1, prompt.end());
    return;
  }
  cache_->truncate(0);
  pending_.assign(prompt.begin(), prompt.end());
  committed_ = 0;
}

// Forwards the pending tokens (a chain) and returns the logits after the last of them.
void ModelDrafter::forward_pending(std::vector<float>& last_logits) {
  SPECDEC_CHECK(!pending_.empty(), "a drafter step after accept() (no pending token to continue from)");
  ForwardResult fr;
  model_.forward(*cache_, {.tokens = pending_, .n_logits = 1, .n_layers = params_.n_layers}, fr);
  committed_ = cache_->size();
  pending_.clear();
  last_logits = std::move(fr.logits);
}

// The draft length a proposal of max_tokens can take: never past the draft cache either.
int ModelDrafter::draft_room(int max_tokens) const {
  const int room = cache_->capacity() - cache_->size() - static_cast<int>(pending_.size());
  return std::min(max_tokens, room);
}

// What every proposal ends with: the target's cache handed back as it was (sharing), or the pending tokens
// forwarded when nothing was drafted (own cache); the step counted.
DraftProposal ModelDrafter::finish_proposal(DraftProposal p, int k, int n_target) {
  last_ = std::move(p);
  if (params_.share_target_kv) {
    cache_->truncate(n_target);  // the target's cache as it was; the next step re-reads only its last token
  } else if (k <= 0 && !pending_.empty()) {
    std::vector<float> unused;
    forward_pending(unused);
  }
  ++step_;
  return last_;
}

int ModelDrafter::proposal_depth(int max_tokens) const {
  if (params_.tree_width <= 1) return std::max(0, max_tokens);
  const std::vector<int> branching(params_.tree_depth, params_.tree_width);
  return breadth_first_depth(branching, max_tokens);
}

DraftProposal ModelDrafter::propose(int max_tokens) {
  const int n_target = cache_->size();  // sharing: the slots to hand back
  const int k = draft_room(max_tokens);
  DraftProposal p = (k <= 0) ? DraftProposal{} : (params_.tree_width > 1 ? propose_tree(k) : propose_chain(k));
  return finish_proposal(std::move(p), k, n_target);
}

// Position i of a chain, from the draft's logits after its parent: false where the chain stops instead.
// The decision to stop looks at the draft distribution only, never at the token drawn from it: the token of
// a position that is drafted is then drawn from exactly the q reported to the verifier. (A rule on the drawn
// token's own probability would draft from q restricted to likely tokens while reporting q, which the
// chi-square test of test_statistical catches: chi2 = 807.)
bool ModelDrafter::chain_token(int i, std::span<const float> logits, DraftProposal& p) {
  const int V = model_.config().vocab_size;
  TokenId t;
  if (!env_.sampling.greedy()) {
    probs_.resize(V);
    logits_to_probs(logits, env_.sampling, probs_);
    if (params_.min_confidence > 0 && *std::max_element(probs_.begin(), probs_.end()) < params_.min_confidence)
      return false;  // an unsure draft: stop the chain here
    t = sample_from_probs(probs_, uniform(drafter_seed(env_.seed), env_.request, step_, static_cast<uint32_t>(i)));
    p.q.insert(p.q.end(), probs_.begin(), probs_.end());
  } else {
    t = argmax(logits);
    if (params_.min_confidence > 0 && top_probability(logits, t) < params_.min_confidence) return false;
  }
  p.tokens.push_back(t);
  return true;
}

DraftProposal ModelDrafter::propose_chain(int k) {
  DraftProposal p;
  std::vector<float> logits;
  forward_pending(logits);
  for (int i = 0; i < k; ++i) {
    if (!chain_token(i, logits, p)) break;
    if (i + 1 < k) {
      ForwardResult fr;
      model_.forward(*cache_, {.tokens = {&p.tokens.back(), 1}, .n_layers = params_.n_layers}, fr);
      logits = std::move(fr.logits);
    }
  }
  slot_.assign(p.tokens.size(), 0);
  std::iota(slot_.begin(), slot_.end(), 0);
  return p;
}

// Chains draft in lockstep, one forward_batch per position over every member still drafting whose cache has
// the same layers (each member's rows are its own: the forward is batch-invariant); trees and members with
// nothing to draft propose alone.
void ModelDrafter::propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                                 std::span<DraftProposal> out) {
  check_batch("model drafter", group, max_tokens, out);
  struct Member {
    ModelDrafter* d;
    size_t index;
    int k, n_target;
    DraftProposal p;
    ForwardResult fr;
    bool drafting = true;
  };
  std::map<std::pair<int, int>, std::vector<Member>> chains;  // (cache layers, forward layers) -> members
  for (size_t i = 0; i < group.size(); ++i) {
    auto* d = static_cast<ModelDrafter*>(group[i]);
    SPECDEC_CHECK(&d->model_ == &model_, "propose_batch over drafters of other models");
    const int k = d->draft_room(max_tokens[i]);
    if (k <= 0 || d->params_.tree_width > 1) {
      out[i] = d->propose(max_tokens[i]);
      continue;
    }
    SPECDEC_CHECK(!d->pending_.empty(), "a drafter step after accept() (no pending token to continue from)");
    const ForwardRequest probe{.n_layers = d->params_.n_layers};
    chains[{d->cache_->n_layers(), forward_layers(probe, *d->cache_)}].push_back({d, i, k, d->cache_->size(), {}, {}});
  }
  std::vector<KVCache*> caches;
  std::vector<ForwardRequest> reqs;
  std::vector<ForwardResult> results;
  std::vector<Member*> live;
  for (auto& [layers, members] : chains) {
    // Position 0 reads the pending tokens; position i + 1 the token drafted at i.
    for (int i = 0;; ++i) {
      live.clear();
      caches.clear();
      reqs.clear();
      for (Member& m : members) {
        if (!m.drafting) continue;
        live.push_back(&m);
        caches.push_back(m.d->cache_);
        const std::span<const TokenId> toks =
            i == 0 ? std::span<const TokenId>(m.d->pending_) : std::span<const TokenId>(&m.p.tokens.back(), 1);
        reqs.push_back({.tokens = toks, .n_logits = 1, .n_layers = m.d->params_.n_layers});
      }
      if (live.empty()) break;
      results.resize(live.size());
      model_.forward_batch(caches, reqs, results);
      for (size_t j = 0; j < live.size(); ++j) {
        Member& m = *live[j];
        if (i == 0) {
          m.d->committed_ = m.d->cache_->size();
          m.d->pending_.clear();
        }
        const int V = model_.config().vocab_size;
        const std::span<const float> logits(results[j].logits.data() + results[j].logits.size() - V, V);
        m.drafting = m.d->chain_token(i, logits, m.p) && i + 1 < m.k;
      }
    }
    for (Member& m : members) {
      m.d->slot_.assign(m.p.tokens.size(), 0);
      std::iota(m.d->slot_.begin(), m.d->slot_.end(), 0);
      out[m.index] = m.d->finish_proposal(std::move(m.p), m.k, m.n_target);
    }
  }
}

DraftProposal ModelDrafter::propose_tree(int k) {
  const int V = model_.config().vocab_size;
  DraftProposal p;
  std::vector<float> root_logits;
  forward_pending(root_logits);
  const int b = params_.tree_width;
  // Level by level: the frontier's logits give each node's top-b children (deterministic: q one-hot).
  std::vector<int> frontier = {-1};  // proposal indices; -1 = the root
  std::vector<std::vector<float>> frontier_logits = {root_logits};
  std::vector<int32_t> order(V);
  slot_.clear();
  for (int depth = 1; depth <= params_.tree_depth && p.size() < k; ++depth) {
    std::vector<int> level;
    for (size_t f = 0; f < frontier.size() && p.size() < k; ++f) {
      const auto& lg = frontier_logits[f];
      std::iota(order.begin(), order.end(), 0);
      const int take = std::min(b, V);
      std::partial_sort(order.begin(), order.begin() + take, order.end(),
                        [&](int a, int c) { return lg[a] > lg[c] || (lg[a] == lg[c] && a < c); });
      for (int j = 0; j < take && p.size() < k; ++j) {
        p.tokens.push_back(order[j]);
        p.parents.push_back(frontier[f]);
        level.push_back(p.size() - 1);
      }
    }
    if (depth == params_.tree_depth || p.size() >= k || level.empty()) break;
    // Forward this level with a mask over the committed prefix, the level's ancestors and itself.
    const int base = committed_, n_nodes = p.size(), first = n_nodes - static_cast<int>(level.size());
    // Slots so far hold nodes [0, first) in order; this level goes after them.
    const int S = base + n_nodes;
    std::vector<uint8_t> mask(level.size() * S, 0);
    std::vector<int32_t> pos(level.size());
    std::vector<TokenId> toks(level.size());
    for (size_t li = 0; li < level.size(); ++li) {
      uint8_t* row = mask.data() + li * S;
      std::fill_n(row, base, 1);
      int d = 0;
      for (int a = level[li]; a >= 0; a = p.parents[a], ++d) row[base + a] = 1;
      pos[li] = base + d - 1;
      toks[li] = p.tokens[level[li]];
    }
    SPECDEC_CHECK(cache_->size() == base + first, "draft tree levels forwarded in order");
    ForwardResult fr;
    model_.forward(*cache_, {.tokens = toks, .positions = pos, .mask = mask, .n_layers = params_.n_layers}, fr);
    frontier.assign(level.begin(), level.end());
    frontier_logits.clear();
    for (size_t li = 0; li < level.size(); ++li)
      frontier_logits.emplace_back(fr.logits.begin() + li * V, fr.logits.begin() + (li + 1) * V);
  }
  slot_.resize(p.tokens.size());
  std::iota(slot_.begin(), slot_.end(), 0);  // node i sits at slot committed_ + i once forwarded
  return p;
}

void ModelDrafter::accept(std::span<const TokenId> emitted, const TargetFeatures&) {
  if (params_.share_target_kv) {  // the target's verification wrote the accepted tokens' keys and values
    pending_.assign(emitted.end() - 1, emitted.end());
    return;
  }
  // All but the last emitted token are accepted draft nodes; keep the ones already in the cache.
  std::vector<int32_t> keep;
  int node = -1;
  size_t i = 0;
  const int in_cache = cache_->size() - committed_;
  for (; i + 1 < emitted.size(); ++i) {
    int found = -1;
    for (int c = 0; c < last_.size(); ++c)
      if (last_.parent(c) == node && last_.tokens[c] == emitted[i]) {
        found = c;
        break;
      }
    if (found < 0 || slot_[found] >= in_cache) break;
    keep.push_back(slot_[found]);
    node = found;
  }
  cache_->compact(committed_, keep);
  committed_ = cache_->size();
  pending_.insert(pending_.end(), emitted.begin() + static_cast<ptrdiff_t>(i), emitted.end());
}

}  // namespace specdec::drafters
