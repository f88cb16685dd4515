// eagle: the EAGLE draft layer (eagle.h) on the target's final-norm states. It reads, in its own KV cache, one
// pair (the target's state f_t, the embedding of x_{t+1}) per committed position and predicts the state after
// the last committed token; the target's LM head (or the rows of the layer's reduced draft vocabulary) reads
// the prediction out. Drafted tokens are read as pairs (their parent's predicted state, their embedding):
// a chain (greedy argmax; at T > 0 draws from the filtered draft softmax, reported as q), a static tree of a
// fixed branching, or EAGLE-2's dynamic tree (the best nodes by cumulative draft probability; deterministic
// candidates, q one-hot). accept() drops the draft's slots and reads the target's true states instead.
// With EAGLE-3 weights (eagle.h) the feature read per committed position is the fused low/mid/high layer outputs
// of the target (FeatureSpec::layers, EAGLE-3's defaults or the option layers = a,b,c), fc(concat); drafted
// tokens feed back the layer's own output, and its own head (after its final norm) reads the draft logits.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "core/speculative/drafter.h"
#include "drafters/eagle/eagle.h"

namespace specdec::eagle {

DrafterInfo eagle_info();

struct EagleAssets;  // the layer, the target's embedding and draft LM-head rows: shared by a run's drafters

enum class EagleTree { kChain, kStatic, kDynamic };

struct EagleDrafterOptions {
  EagleTree tree = EagleTree::kChain;
  int depth = 5;                              // dynamic: the deepest draft position
  int topk = 4;                               // dynamic: nodes expanded per level, children per expanded node
  std::vector<int> branching = {4, 2, 2, 1};  // static: children per node at each depth
  // EAGLE-3 weights: the three target layers (outputs, 0-based) fused as low, mid, high; empty: EAGLE-3's
  // defaults for the target's depth (eagle3_default_layers).
  std::vector<int> layers;
};

// The drafter's class, public so that tests can compare its state (cache, predicted state) with a fresh one's.
class EagleDrafter final : public Drafter {
 public:
  EagleDrafter(const DrafterEnv& env, std::shared_ptr<const EagleAssets> assets, EagleDrafterOptions opt);
  ~EagleDrafter() override;

  FeatureSpec features() const override { return spec_; }
  void begin(std::span<const TokenId> prompt, const TargetFeatures& features) override;
  DraftProposal propose(int max_tokens) override;
  void accept(std::span<const TokenId> accepted, const TargetFeatures& features) override;
  // Drafters of the same weights (a run's, which share them) draft batched: each round's readout of every
  // member's states is one GEMM.
  const void* batch_key() const override { return a_.get(); }
  void propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                     std::span<DraftProposal> out) override;
  // The pairs begin() and accept() queued and the layer has not read yet.
  int backlog() const override { return static_cast<int>(pending_tokens_.size()); }
  // A chain: max_tokens; a static tree: its breadth-first depth at that budget; a dynamic tree: as deep as
  // the budget and `depth` allow.
  int proposal_depth(int max_tokens) const override;

  // The layer's cache over the committed pairs (after propose, also the draft's slots; accept drops them,
  // also when it hands no rows), and the predicted state after the last committed token (empty before any
  // pair was read: a one-token prompt). begin() and accept() only queue their pairs; the layer reads them at the next
  // propose (one block for every step since the last), or here.
  const EagleCache& cache() {
    read_pending();
    return cache_;
  }
  std::span<const float> predicted() {
    read_pending();
    return fhat_;
  }

 private:
  struct Node;
  struct Walk;  // a proposal in the making (eagle_drafter.cpp)
  void queue(const TargetFeatures& f, std::span<const TokenId> next_tokens);  // pairs to read at the next propose
  void read_pending();  // the queued pairs of begin() and accept(), read by the layer in one block
  int check_width(const TargetFeatures& f) const;
  void embed(std::span<const TokenId> tokens, std::vector<float>& out) const;
  void read_out(std::span<const float> states, int n, std::vector<float>& logits);
  void row_lse(int n);
  TokenId target_id(int draft_index) const;
  void walk_start(int max_tokens);
  void walk_read_out();
  void walk_take();
  DraftProposal walk_result();
  void expand(std::vector<Node>& nodes, std::span<const int> which);
  void children(std::vector<Node>& nodes, int parent, int row, int count, std::vector<int>& out);
  static DraftProposal emit(const std::vector<Node>& nodes, std::span<const int> keep);

  DrafterEnv env_;
  std::shared_ptr<const EagleAssets> a_;
  EagleDrafterOptions opt_;
  int H_, V_, N_;     // hidden size, the target's vocabulary, the draft vocabulary
  FeatureSpec spec_;  // EAGLE-1: the final-norm state; EAGLE-3: opt_.layers
  uint32_t step_ = 0;
  EagleCache cache_;
  int committed_ = 0;  // cache slots of committed pairs
  int next_pos_ = 0;   // the RoPE position of the next pair (the first draft token's)
  std::vector<float> fhat_;
  // Pairs begin() and accept() queued: consecutive positions from pending_pos_, their feature rows and next tokens.
  int pending_pos_ = 0;
  std::vector<float> pending_feats_;
  std::vector<TokenId> pending_tokens_;
  // Work space.
  std::unique_ptr<Walk> walk_;
  std::vector<float> emb_, feat_, out_, logits_, probs_, node_feat_, head_in_, batch_states_, batch_logits_;
  std::vector<double> lse_;
  std::vector<int32_t> pos_, order_;
  std::vector<uint8_t> mask_;
};

}  // namespace specdec::eagle
