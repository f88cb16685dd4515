// A drafter that runs a language model (a separate draft model, or the first layers of the target for
// early exit) with its own KV cache: a chain of k tokens, or a tree of the top-b tokens at each of the
// first d depths. Greedy sampling proposes argmax tokens (q one-hot); at temperature > 0 a chain samples
// each token from q = the draft's filtered distribution and reports that q to the verifier. With
// min_confidence, a chain stops early (possibly at 0 tokens) where the draft is unsure: a decision made
// on the draft's own state alone, so every acceptance rule stays exactly as lossless.
#pragma once

#include <memory>
#include <vector>

#include "core/speculative/drafter.h"

namespace specdec::drafters {

struct ModelDrafterParams {
  int tree_width = 1;  // b: children per node at depths 1..tree_depth; 1 = chain
  int tree_depth = 1;  // d
  int n_layers = -1;   // layers of the model to run (-1 = all; fewer = early exit)
  // Chains only: stop the chain at a position where the draft is unsure, i.e. where the largest
  // probability of its distribution (greedy: softmax(logits); sampling: q after the sampling filters) is
  // below this; decided before drawing, so drafted tokens still follow q exactly. 0 = off.
  // Dynamic draft length, as HF's assistant_confidence_threshold: an unsure draft is not worth verifying.
  double min_confidence = 0.0;
  // Early exit only: run the first n_layers layers in the target's own KV cache (Drafter::share_target_cache)
  // instead of a cache of the drafter's own. The target already holds those layers' keys and values for every
  // token but the last, so a step forwards only that token and the draft; the own cache re-reads every
  // emitted token. Same proposals bit for bit (the forward is batch-invariant).
  bool share_target_kv = false;
};

class ModelDrafter final : public Drafter {
 public:
  // model must outlive the drafter; keep_alive holds it when the drafter owns it.
  ModelDrafter(Model& model, std::shared_ptr<void> keep_alive, const DrafterEnv& env, ModelDrafterParams params);
  void share_target_cache(KVCache* cache) override;
  void begin(std::span<const TokenId> prompt, const TargetFeatures&) override;
  DraftProposal propose(int max_tokens) override;
  // A chain: max_tokens; a tree (tree_width > 1): tree_width children per node, breadth first, tree_depth deep.
  int proposal_depth(int max_tokens) const override;
  void accept(std::span<const TokenId> accepted, const TargetFeatures&) override;
  // Drafters of one model (a run's draft_model drafters share it; early exit runs the target) draft their
  // chains batched: one forward_batch per position (docs/batching.md). Trees propose alone.
  const void* batch_key() const override { return &model_; }
  void propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                     std::span<DraftProposal> out) override;

 private:
  int draft_room(int max_tokens) const;
  DraftProposal finish_proposal(DraftProposal p, int k, int n_target);
  bool chain_token(int i, std::span<const float> logits, DraftProposal& p);
  DraftProposal propose_chain(int k);
  DraftProposal propose_tree(int k);
  void forward_pending(std::vector<float>& last_logits);

  Model& model_;
  std::shared_ptr<void> keep_alive_;
  DrafterEnv env_;
  ModelDrafterParams params_;
  std::unique_ptr<KVCache> own_cache_;  // null when sharing the target's
  KVCache* cache_ = nullptr;            // own_cache_ or the target's
  std::vector<TokenId> pending_;        // emitted tokens not yet in the draft cache
  int committed_ = 0;                   // cache slots that hold the sequence (before any draft node)
  DraftProposal last_;                  // the last proposal
  std::vector<int32_t> slot_;           // cache slot (relative to committed_) of each proposal node
  uint32_t step_ = 0;
  std::vector<float> probs_;
};

}  // namespace specdec::drafters
