// The medusa drafter (medusa_drafter.h).
#include "drafters/medusa/medusa_drafter.h"

#include <algorithm>
#include <memory>
#include <numeric>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/sampling/philox.h"
#include "core/sampling/sampling.h"
#include "core/sha256.h"
#include "drafters/medusa/heads.h"
#include "drafters/medusa/tree.h"

namespace specdec::medusa {
namespace {

// What every drafter of a run shares: the heads and the tree built from their accuracies.
struct MedusaAssets {
  MedusaHeads heads;
  SparseTree tree;  // empty: chains
};

// The heads' cumulative top-i accuracies from their metadata (specdec train medusa writes them).
std::vector<std::vector<double>> accuracy_table(const MedusaHeads& h, const std::string& path) {
  if (h.metadata_json.empty()) return {};
  const auto meta = nlohmann::json::parse(h.metadata_json, nullptr, false);
  if (meta.is_discarded() || !meta.contains("accuracy_topk")) return {};
  try {
    return meta["accuracy_topk"].get<std::vector<std::vector<double>>>();
  } catch (const nlohmann::json::exception&) {
    throw Error(path + ": metadata accuracy_topk is not a list of lists of numbers");
  }
}

std::shared_ptr<const MedusaAssets> load_assets(const DrafterEnv& env, const std::string& path, int tree_nodes) {
  auto a = std::make_shared<MedusaAssets>();
  const std::string target_sha = env.target_path.empty() ? "" : sha256_file(env.target_path);
  a->heads = load_medusa_heads(path, env.target->config(), target_sha);
  if (tree_nodes > 0) {
    const auto topk = accuracy_table(a->heads, path);
    SPECDEC_CHECK(!topk.empty(), path,
                  ": tree_nodes > 0 needs the heads' measured accuracies (metadata accuracy_topk, "
                  "written by specdec train medusa); use tree_nodes = 0 (chains) with these heads");
    SPECDEC_CHECK(static_cast<int>(topk.size()) == a->heads.cfg.n_heads, path, ": accuracy_topk has ", topk.size(),
                  " rows for ", a->heads.cfg.n_heads, " heads");
    a->tree = build_sparse_tree(per_rank_accuracy(topk), tree_nodes);
  }
  return a;
}

class MedusaDrafter final : public Drafter {
 public:
  MedusaDrafter(const DrafterEnv& env, std::shared_ptr<const MedusaAssets> assets)
      : env_(env), a_(std::move(assets)), H_(env.target->config().dim), V_(env.target->config().vocab_size) {}

  FeatureSpec features() const override { return {.final_norm = true}; }

  void begin(std::span<const TokenId>, const TargetFeatures& f) override {
    step_ = 0;
    take_state(f);
  }

  void accept(std::span<const TokenId>, const TargetFeatures& f) override { take_state(f); }

  DraftProposal propose(int max_tokens) override {
    Drafter* self = this;
    DraftProposal p;
    propose_batch(std::span<Drafter* const>(&self, 1), std::span<const int>(&max_tokens, 1),
                  std::span<DraftProposal>(&p, 1));
    return p;
  }

  // A group's head states go through the LM head in one pass: its weights are read once for every sequence.
  // Each row's logits do not depend on the other rows (the CPU and CUDA matmuls are row-invariant, as the
  // batch-invariant forward needs), so a member's proposal is the one it makes alone.
  const void* batch_key() const override { return a_.get(); }
  void propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                     std::span<DraftProposal> out) override {
    check_batch("medusa", group, max_tokens, out);
    std::vector<int> first_row(group.size() + 1, 0);
    head_of_row_.clear();
    for (size_t i = 0; i < group.size(); ++i) {
      const auto* d = static_cast<const MedusaDrafter*>(group[i]);
      SPECDEC_CHECK(d->a_ == a_, "medusa: propose_batch over drafters of other heads");
      const int n = d->heads_needed(max_tokens[i]);
      first_row[i + 1] = first_row[i] + n;
      for (int k = 0; k < n; ++k) head_of_row_.push_back(k);
    }
    const int rows = first_row.back();
    states_.resize(static_cast<size_t>(rows) * H_);
    for (size_t i = 0; i < group.size(); ++i) {
      const auto* d = static_cast<const MedusaDrafter*>(group[i]);
      for (int r = first_row[i]; r < first_row[i + 1]; ++r)
        a_->heads.head_state(head_of_row_[r], d->state_.data(), states_.data() + static_cast<size_t>(r) * H_);
    }
    if (rows > 0) readout(rows);
    for (size_t i = 0; i < group.size(); ++i) {
      auto* d = static_cast<MedusaDrafter*>(group[i]);
      out[i] = d->select(max_tokens[i], first_row[i + 1] - first_row[i],
                         logits_.data() + static_cast<size_t>(first_row[i]) * V_);
    }
  }

 private:
  void take_state(const TargetFeatures& f) {
    if (f.rows == 0) {
      state_.clear();
      return;
    }
    SPECDEC_CHECK(f.width == H_, "medusa: features of ", H_, " floats (the final-norm state), got ", f.width);
    const auto last = f.row(f.rows - 1);  // the state that predicts the step's last token
    state_.assign(last.begin(), last.end());
  }

  // The chain's length (at most the heads), or the deepest node of the tree's first max_tokens nodes.
  int proposal_depth(int max_tokens) const override {
    if (max_tokens <= 0) return 0;
    const SparseTree& tree = a_->tree;
    if (tree.size() == 0) return std::min(a_->heads.cfg.n_heads, max_tokens);
    const int n_tree = std::min(tree.size(), max_tokens);
    return *std::max_element(tree.depth.begin(), tree.depth.begin() + n_tree);
  }

  // The heads a proposal of max_tokens reads: its depth; 0 without a state (a one-token prompt).
  int heads_needed(int max_tokens) const { return state_.empty() ? 0 : proposal_depth(max_tokens); }

  // logits_ (rows x V): the LM head over states_'s first rows rows, row r a state of head head_of_row_[r].
  void readout(int rows) {
    const MedusaHeads& h = a_->heads;
    if (!h.cfg.own_lm_head) {
      env_.target->lm_head(std::span<const float>(states_.data(), static_cast<size_t>(rows) * H_), rows, logits_);
      return;
    }
    logits_.resize(static_cast<size_t>(rows) * V_);
    for (int r = 0; r < rows; ++r) {
      const float* x = states_.data() + static_cast<size_t>(r) * H_;
      const std::vector<float>& w = h.lm_head[static_cast<size_t>(head_of_row_[r])];
      for (int v = 0; v < V_; ++v) {
        const float* row = w.data() + static_cast<size_t>(v) * H_;
        float s = 0.f;
        for (int i = 0; i < H_; ++i) s += row[i] * x[i];
        logits_[static_cast<size_t>(r) * V_ + v] = s;
      }
    }
  }

  // The step's proposal from its n_heads heads' logits (n_heads x V). Counts the step (the sampling stream).
  DraftProposal select(int max_tokens, int n_heads, const float* logits) {
    DraftProposal p;
    const uint32_t step = step_++;
    if (n_heads == 0) return p;
    const SparseTree& tree = a_->tree;
    if (tree.size() == 0) {
      const bool sample = !env_.sampling.greedy();
      for (int j = 0; j < n_heads; ++j) {
        const std::span<const float> lg(logits + static_cast<size_t>(j) * V_, V_);
        if (!sample) {
          p.tokens.push_back(argmax(lg));
          continue;
        }
        probs_.resize(V_);
        logits_to_probs(lg, env_.sampling, probs_);
        p.tokens.push_back(
            sample_from_probs(probs_, uniform(drafter_seed(env_.seed), env_.request, step, static_cast<uint32_t>(j))));
        p.q.insert(p.q.end(), probs_.begin(), probs_.end());
      }
      return p;
    }
    // Tree: node i is the rank-th most likely token of head depth - 1 (ties: the lower id).
    const int n_tree = std::min(tree.size(), max_tokens);
    std::vector<int> ranks_needed(n_heads, 0);
    for (int i = 0; i < n_tree; ++i)
      ranks_needed[tree.depth[i] - 1] = std::max(ranks_needed[tree.depth[i] - 1], tree.rank[i] + 1);
    std::vector<std::vector<int32_t>> ranked(n_heads);
    for (int j = 0; j < n_heads; ++j) {
      const float* lg = logits + static_cast<size_t>(j) * V_;
      order_.resize(V_);
      std::iota(order_.begin(), order_.end(), 0);
      const int take = std::min(ranks_needed[j], V_);
      std::partial_sort(order_.begin(), order_.begin() + take, order_.end(),
                        [&](int32_t x, int32_t y) { return lg[x] > lg[y] || (lg[x] == lg[y] && x < y); });
      ranked[j].assign(order_.begin(), order_.begin() + take);
    }
    for (int i = 0; i < n_tree; ++i) {
      p.tokens.push_back(ranked[tree.depth[i] - 1][tree.rank[i]]);
      p.parents.push_back(tree.parent[i]);
    }
    return p;
  }

  DrafterEnv env_;
  std::shared_ptr<const MedusaAssets> a_;
  int H_, V_;
  uint32_t step_ = 0;
  std::vector<float> state_, states_, logits_, probs_;
  std::vector<int32_t> order_;
  std::vector<int> head_of_row_;
};

}  // namespace

DrafterInfo medusa_info() {
  return {
      "medusa",
      "Medusa heads on the target's final-norm state (heads = FILE.safetensors from specdec train medusa, or the "
      "Medusa repository's layout; tree_nodes = N: a sparse tree of N nodes from the heads' measured accuracies, "
      "0 = a chain of one token per head, default 0)",
      [](const DrafterEnv& env, const DrafterOptions& opt) -> std::unique_ptr<Drafter> {
        const std::string path = opt.get("heads", "");
        const int tree_nodes = opt.get_int("tree_nodes", 0);
        opt.check_all_used();
        SPECDEC_CHECK(!path.empty(), "[", opt.section(), "] heads = the heads file (specdec train medusa writes one)");
        SPECDEC_CHECK(tree_nodes >= 0, "[", opt.section(), "] tree_nodes >= 0, got ", tree_nodes);
        SPECDEC_CHECK(env.target != nullptr, "[", opt.section(), "] medusa needs the target model");
        auto assets =
            env.shared ? env.shared->get_or_make<MedusaAssets>(
                             "medusa:" + path + ":" + std::to_string(tree_nodes) + ":" + env.target_path,
                             [&] { return std::const_pointer_cast<MedusaAssets>(load_assets(env, path, tree_nodes)); })
                       : load_assets(env, path, tree_nodes);
        return std::make_unique<MedusaDrafter>(env, std::move(assets));
      }};
}

}  // namespace specdec::medusa
