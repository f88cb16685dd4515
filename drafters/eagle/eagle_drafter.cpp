// The eagle drafter (eagle_drafter.h): the layer's pairs, its readout and the three draft shapes.
#include "drafters/eagle/eagle_drafter.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "core/error.h"
#include "core/model/loader.h"
#include "core/sampling/philox.h"
#include "core/sampling/sampling.h"
#include "core/sha256.h"
#include "kernels/cpu/ops.h"

namespace specdec::eagle {

struct EagleAssets {
  EagleWeights w;
  std::shared_ptr<const LoadedModel> target;  // the target's file (mapped): its embedding rows, read on demand
  // The target's LM-head rows of w.draft_ids, copied as stored (N rows in the head's dtype: the readout reads
  // N / V of the head's bytes and gives the target's own logits for those ids); empty: the whole head.
  // EAGLE-3: the layer's own head (N x H, f32).
  std::vector<uint8_t> draft_lm;
  cpu::DType draft_lm_dtype = cpu::DType::F32;
};

namespace {

// out (ids.size() x t.cols, f32) = the rows ids of t, dequantized.
void dequantize_rows(const WeightTensor& t, std::span<const int32_t> ids, float* out) {
  const auto* src = static_cast<const uint8_t*>(t.data);
  const size_t stride = cpu::row_bytes(t.dtype, t.cols);
  for (size_t i = 0; i < ids.size(); ++i)
    cpu::dequantize_row(out + i * static_cast<size_t>(t.cols), src + static_cast<size_t>(ids[i]) * stride, t.dtype,
                        t.cols);
}

void check_table(const WeightTensor& t, const char* what, const ModelConfig& cfg, const std::string& path) {
  SPECDEC_CHECK(!t.empty() && t.rows == cfg.vocab_size && t.cols == cfg.dim, path, ": ", what, " of ", cfg.vocab_size,
                " x ", cfg.dim, " like the target, got ", t.rows, " x ", t.cols);
}

std::shared_ptr<const EagleAssets> load_assets(const DrafterEnv& env, const std::string& path, cpu::DType dtype) {
  auto a = std::make_shared<EagleAssets>();
  const ModelConfig& cfg = env.target->config();
  a->w = load_eagle_weights(path, cfg, sha256_file(env.target_path));
  pack_eagle_matrices(a->w, dtype);
  a->target = load_model(env.target_path);
  check_table(a->target->weights.tok_embeddings, "an embedding table", cfg, env.target_path);
  if (a->w.cfg.eagle3()) {
    a->draft_lm.resize(a->w.lm_head.size() * sizeof(float));
    std::memcpy(a->draft_lm.data(), a->w.lm_head.data(), a->draft_lm.size());
    a->draft_lm_dtype = cpu::DType::F32;
  } else if (!a->w.draft_ids.empty()) {
    const WeightTensor& out = a->target->weights.output;
    check_table(out, "an LM head", cfg, env.target_path);
    const size_t stride = cpu::row_bytes(out.dtype, out.cols);
    a->draft_lm.resize(a->w.draft_ids.size() * stride);
    for (size_t d = 0; d < a->w.draft_ids.size(); ++d)
      std::memcpy(a->draft_lm.data() + d * stride,
                  static_cast<const uint8_t*>(out.data) + static_cast<size_t>(a->w.draft_ids[d]) * stride, stride);
    a->draft_lm_dtype = out.dtype;
  }
  return a;
}

}  // namespace

// A draft tree's node: its token, its place in the tree and, once the layer has read its pair, its slot in
// the cache and its predicted state (the state its children are drawn from).
struct EagleDrafter::Node {
  TokenId token;   // a target id
  int32_t parent;  // node index, -1 = the root (the last committed token)
  int depth;       // 1 = the first draft position
  double score;    // cumulative log-probability under the draft softmax
  int slot = -1;   // cache slot of the node's pair, once expanded
  int feat = -1;   // row of node_feat_, once expanded
};

EagleDrafter::EagleDrafter(const DrafterEnv& env, std::shared_ptr<const EagleAssets> assets, EagleDrafterOptions opt)
    : env_(env),
      a_(std::move(assets)),
      opt_(std::move(opt)),
      H_(env.target->config().dim),
      V_(env.target->config().vocab_size),
      N_(a_->w.draft_ids.empty() ? V_ : static_cast<int>(a_->w.draft_ids.size())),
      walk_(std::make_unique<Walk>()) {
  const int L = env.target->config().n_layers;
  if (!a_->w.cfg.eagle3()) {
    SPECDEC_CHECK(opt_.layers.empty(), "eagle: layers = a,b,c applies to EAGLE-3 weights; these are EAGLE-1's");
    spec_ = {.final_norm = true};
    return;
  }
  if (opt_.layers.empty()) opt_.layers = eagle3_default_layers(L);
  SPECDEC_CHECK(opt_.layers.size() == 3, "eagle: layers = three target layers (low, mid, high) for EAGLE-3, got ",
                opt_.layers.size());
  for (const int l : opt_.layers)
    SPECDEC_CHECK(l >= 0 && l < L, "eagle: layers = target layers in [0, ", L, ") (0-based layer outputs), got ", l);
  spec_ = {.layers = opt_.layers};
}

EagleDrafter::~EagleDrafter() = default;

void EagleDrafter::begin(std::span<const TokenId> prompt, const TargetFeatures& f) {
  step_ = 0;
  cache_.truncate(0);
  committed_ = next_pos_ = 0;
  fhat_.clear();
  pending_feats_.clear();
  pending_tokens_.clear();
  if (f.rows == 0) return;  // a one-token prompt: no state until the first accept
  SPECDEC_CHECK(f.first_pos == 0 && f.rows == static_cast<int>(prompt.size()) - 1,
                "eagle: begin's features: rows for "
                "positions 0..",
                prompt.size() - 2, ", got ", f.rows, " from position ", f.first_pos);
  queue(f, prompt.subspan(1));
}

// The pairs are queued, not read: a prompt or a step the policy does not draft in (k = 0) then costs the
// drafter a copy, and the next proposal reads every queued pair in one block, the layer's weights read once
// for all of them. A sequence that never drafts never runs the layer, not even over its prompt (which would
// stall every other sequence of the batch while the request joins). The same states as reading each call's
// pairs at once, bit for bit: the layer's matrices are row-invariant and its attention reads each pair's row
// alone.
void EagleDrafter::accept(std::span<const TokenId> accepted, const TargetFeatures& f) {
  cache_.truncate(committed_);  // drop the last proposal's slots
  if (f.rows == 0) return;
  SPECDEC_CHECK(f.rows == static_cast<int>(accepted.size()), "eagle: accept's features: one row per emitted token (",
                accepted.size(), "), got ", f.rows);
  SPECDEC_CHECK(f.first_pos == pending_pos_ + static_cast<int>(pending_tokens_.size()) || pending_tokens_.empty(),
                "eagle: accept's features from position ", pending_pos_ + pending_tokens_.size(),
                " (the next position), got ", f.first_pos);
  queue(f, accepted);
}

void EagleDrafter::queue(const TargetFeatures& f, std::span<const TokenId> next_tokens) {
  const int width = check_width(f);
  if (pending_tokens_.empty()) pending_pos_ = f.first_pos;
  pending_feats_.insert(pending_feats_.end(), f.data.begin(), f.data.begin() + static_cast<ptrdiff_t>(f.rows) * width);
  pending_tokens_.insert(pending_tokens_.end(), next_tokens.begin(), next_tokens.end());
}

// The width of a feature row this layer reads (checked against f's): the final-norm state, or EAGLE-3's three
// target layers' outputs.
int EagleDrafter::check_width(const TargetFeatures& f) const {
  const int width = spec_.width(H_);
  SPECDEC_CHECK(f.width == width, "eagle: features of ", width, " floats (",
                a_->w.cfg.eagle3() ? "three target layers' outputs" : "the final-norm state", "), got ", f.width);
  return width;
}

// The queued pairs (row i, pending_tokens_[i]) at positions pending_pos_ + i + 1, in one block: row i predicts
// pending_tokens_[i]. EAGLE-3: the pair's feature is fc(low ; mid ; high) of the target's layer outputs.
void EagleDrafter::read_pending() {
  if (pending_tokens_.empty()) return;
  cache_.truncate(committed_);
  const int T = static_cast<int>(pending_tokens_.size());
  embed(pending_tokens_, emb_);
  pos_.resize(T);
  std::iota(pos_.begin(), pos_.end(), pending_pos_ + 1);
  out_.resize(static_cast<size_t>(T) * H_);
  std::span<const float> feat = pending_feats_;  // queue() checked the width
  if (a_->w.cfg.eagle3()) {
    feat_.resize(static_cast<size_t>(T) * H_);
    eagle3_fuse(a_->w, feat, feat_);
    feat = feat_;
  }
  eagle_forward(a_->w, cache_, emb_, feat, pos_, {}, out_);
  fhat_.assign(out_.end() - H_, out_.end());
  committed_ = cache_.n;
  next_pos_ = pending_pos_ + T + 1;
  pending_feats_.clear();
  pending_tokens_.clear();
}

void EagleDrafter::embed(std::span<const TokenId> tokens, std::vector<float>& out) const {
  out.resize(tokens.size() * static_cast<size_t>(H_));
  dequantize_rows(a_->target->weights.tok_embeddings, tokens, out.data());
}

// logits (n x N) = the readout of n predicted states (n x H): the target's LM head (its draft-vocabulary rows
// when the layer has them). EAGLE-3 reads the states through its final norm first. Row-invariant: a row's
// logits do not depend on the others.
void EagleDrafter::read_out(std::span<const float> states, int n, std::vector<float>& logits) {
  states = states.first(static_cast<size_t>(n) * H_);
  if (a_->w.cfg.eagle3()) {
    head_in_.resize(states.size());
    eagle_head_input(a_->w, states, head_in_);
    states = head_in_;
  }
  if (a_->draft_lm.empty()) {
    env_.target->lm_head(states.first(static_cast<size_t>(n) * H_), n, logits);
  } else {
    logits.resize(static_cast<size_t>(n) * N_);
    cpu::matmul(logits.data(), states.data(), a_->draft_lm.data(), a_->draft_lm_dtype, n, N_, H_);
  }
}

// lse_ (n) = the log-sum-exp of each of logits_'s first n rows.
void EagleDrafter::row_lse(int n) {
  lse_.resize(n);
  for (int r = 0; r < n; ++r) {
    const float* z = logits_.data() + static_cast<size_t>(r) * N_;
    const double zmax = *std::max_element(z, z + N_);
    double s = 0;
    for (int d = 0; d < N_; ++d) s += std::exp(static_cast<double>(z[d]) - zmax);
    lse_[r] = zmax + std::log(s);
  }
}

TokenId EagleDrafter::target_id(int draft_index) const {
  return a_->w.draft_ids.empty() ? draft_index : a_->w.draft_ids[draft_index];
}

// A proposal is drafted in rounds: each round reads out some predicted states (the readout, the LM-head
// GEMM, is most of a draft's cost), then the walk takes their logits, chooses tokens and, for the next round,
// runs the layer over the pairs of the tokens that get children. propose() runs one walk alone;
// propose_batch() runs a group's walks in lockstep and reads out each round's states of every member in one
// GEMM (each row's logits do not depend on the other rows, so a member's proposal is its own alone).
struct EagleDrafter::Walk {
  enum class Phase { kRoot, kLevel, kDone };
  Phase phase = Phase::kDone;
  int max_tokens = 0;
  uint32_t step = 0;
  int round = 0;  // chain: the position drafted next; trees: the depth whose children come next
  std::vector<Node> nodes;
  std::vector<int> level, next;  // trees: the nodes whose children the pending round reads
  std::vector<float> state;      // chain: the state read out next
  DraftProposal p;               // chain: the tokens so far
  // The pending round: rows states of H floats to read out (with each row's log-sum-exp for trees).
  std::span<const float> states;
  int rows = 0;

  // Node x before node y: the higher cumulative draft probability; ties go to the node made first.
  bool better(int x, int y) const {
    return nodes[x].score > nodes[y].score || (nodes[x].score == nodes[y].score && x < y);
  }
};

void EagleDrafter::walk_start(int max_tokens) {
  Walk& w = *walk_;
  w = Walk{};
  w.step = step_++;
  cache_.truncate(committed_);
  if (max_tokens > 0) read_pending();  // an AR step (no budget) leaves them queued
  node_feat_.clear();
  if (fhat_.empty() || max_tokens <= 0) return;  // no state yet (a one-token prompt): nothing to propose
  w.max_tokens = max_tokens;
  w.phase = Walk::Phase::kRoot;
  if (opt_.tree == EagleTree::kChain) w.state = fhat_;
  w.states = opt_.tree == EagleTree::kChain ? std::span<const float>(w.state) : std::span<const float>(fhat_);
  w.rows = 1;
}

// The round's readout: logits_ (rows x N) for the pending states and, for trees, lse_.
void EagleDrafter::walk_read_out() {
  const Walk& w = *walk_;
  read_out(w.states, w.rows, logits_);
  if (opt_.tree != EagleTree::kChain) row_lse(w.rows);
}

// Takes the pending round's readout (logits_, lse_) and prepares the next round, or ends the walk.
void EagleDrafter::walk_take() {
  Walk& w = *walk_;
  if (opt_.tree == EagleTree::kChain) {
    // Greedy: each position's argmax. T > 0: a draw from the draft softmax filtered like the target's (zero
    // outside the draft vocabulary), reported as q. Each token's pair (its parent's predicted state, its
    // embedding) gives the next position's state.
    const int j = w.round;
    const std::span<const float> lg(logits_.data(), N_);
    TokenId t;
    if (env_.sampling.greedy()) {
      t = target_id(argmax(lg));
    } else {
      probs_.resize(N_);
      logits_to_probs(lg, env_.sampling, probs_);
      const size_t row = w.p.q.size();
      w.p.q.resize(row + V_, 0.f);
      for (int d = 0; d < N_; ++d) w.p.q[row + target_id(d)] = probs_[d];
      t = sample_from_probs(std::span<const float>(w.p.q.data() + row, V_),
                            uniform(drafter_seed(env_.seed), env_.request, w.step, static_cast<uint32_t>(j)));
    }
    w.p.tokens.push_back(t);
    if (j + 1 == w.max_tokens) {
      w.phase = Walk::Phase::kDone;
      return;
    }
    embed({&t, 1}, emb_);
    const int32_t pos = next_pos_ + j;
    out_.resize(H_);
    eagle_forward(a_->w, cache_, emb_, w.state, {&pos, 1}, {}, out_);
    w.state = out_;
    w.states = w.state;
    w.rows = 1;
    w.round = j + 1;
    return;
  }
  const bool dynamic = opt_.tree == EagleTree::kDynamic;
  const int k = std::min(opt_.topk, w.max_tokens);
  if (w.phase == Walk::Phase::kRoot) {
    // Static: depth d's nodes are the branching[d - 1] most likely children of each node of depth d - 1, cut
    // to max_tokens in breadth-first order. Dynamic (EAGLE-2): per level, the top-k nodes of the newest depth
    // by cumulative probability get their top-k children.
    children(w.nodes, -1, 0, dynamic ? k : std::min(opt_.branching[0], w.max_tokens), w.level);
    w.round = 1;
  } else {
    w.next.clear();
    const int n_parents = w.rows;
    const int room = w.max_tokens - static_cast<int>(w.nodes.size());
    for (int t = 0; t < n_parents; ++t) {
      const int count = dynamic ? k : std::min(opt_.branching[w.round], room - static_cast<int>(w.next.size()));
      children(w.nodes, w.level[t], t, count, w.next);
    }
    w.level.swap(w.next);
    ++w.round;
  }
  // The next round: the nodes that get children, read by the layer (only those).
  int n_parents = 0;
  if (dynamic) {
    // Neither a node deeper than max_tokens nor a rank past max_tokens can be kept, so the depth is cut to
    // max_tokens (same result).
    if (w.round < std::min(opt_.depth, w.max_tokens)) {
      n_parents = std::min(k, static_cast<int>(w.level.size()));
      std::partial_sort(w.level.begin(), w.level.begin() + n_parents, w.level.end(),
                        [&](int x, int y) { return w.better(x, y); });
      w.level.resize(n_parents);
    }
  } else if (w.round < static_cast<int>(opt_.branching.size()) && static_cast<int>(w.nodes.size()) < w.max_tokens &&
             !w.level.empty()) {
    const int room = w.max_tokens - static_cast<int>(w.nodes.size());
    const int b = opt_.branching[w.round];
    n_parents = std::min(static_cast<int>(w.level.size()), (room + b - 1) / b);
  }
  if (n_parents == 0) {
    w.phase = Walk::Phase::kDone;
    return;
  }
  expand(w.nodes, std::span<const int>(w.level).first(n_parents));
  w.phase = Walk::Phase::kLevel;
  w.states = out_;
  w.rows = n_parents;
}

// The walk's proposal. Static: every node made. Dynamic: the best max_tokens nodes of all; a child's
// cumulative probability never exceeds its parent's and ties go to the node made first (an ancestor), so
// the kept set is closed under parents.
DraftProposal EagleDrafter::walk_result() {
  Walk& w = *walk_;
  if (opt_.tree == EagleTree::kChain) return std::move(w.p);
  std::vector<int> keep(w.nodes.size());
  std::iota(keep.begin(), keep.end(), 0);
  if (opt_.tree == EagleTree::kDynamic) {
    const int n_keep = std::min(w.max_tokens, static_cast<int>(keep.size()));
    std::partial_sort(keep.begin(), keep.begin() + n_keep, keep.end(), [&](int x, int y) { return w.better(x, y); });
    keep.resize(n_keep);
    std::sort(keep.begin(), keep.end());
  }
  return emit(w.nodes, keep);
}

int EagleDrafter::proposal_depth(int max_tokens) const {
  switch (opt_.tree) {
    case EagleTree::kChain:
      return std::max(0, max_tokens);
    case EagleTree::kStatic:
      return breadth_first_depth(opt_.branching, max_tokens);
    case EagleTree::kDynamic:
      break;
  }
  return std::clamp(max_tokens, 0, opt_.depth);
}

DraftProposal EagleDrafter::propose(int max_tokens) {
  walk_start(max_tokens);
  while (walk_->phase != Walk::Phase::kDone) {
    walk_read_out();
    walk_take();
  }
  return walk_result();
}

void EagleDrafter::propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                                 std::span<DraftProposal> out) {
  check_batch("eagle", group, max_tokens, out);
  std::vector<EagleDrafter*> g;
  for (Drafter* d : group) {
    g.push_back(static_cast<EagleDrafter*>(d));
    SPECDEC_CHECK(g.back()->a_ == a_, "eagle: propose_batch over drafters of other weights");
  }
  for (size_t i = 0; i < g.size(); ++i) g[i]->walk_start(max_tokens[i]);
  std::vector<float>& states = batch_states_;
  for (;;) {
    // Every pending round's states in one readout, then each member takes its rows.
    states.clear();
    int rows = 0;
    for (EagleDrafter* d : g)
      if (d->walk_->phase != Walk::Phase::kDone) {
        states.insert(states.end(), d->walk_->states.begin(),
                      d->walk_->states.begin() + static_cast<ptrdiff_t>(d->walk_->rows) * H_);
        rows += d->walk_->rows;
      }
    if (rows == 0) break;
    read_out(states, rows, batch_logits_);
    int row = 0;
    for (EagleDrafter* d : g) {
      if (d->walk_->phase == Walk::Phase::kDone) continue;
      const int n = d->walk_->rows;
      d->logits_.assign(batch_logits_.begin() + static_cast<ptrdiff_t>(row) * N_,
                        batch_logits_.begin() + static_cast<ptrdiff_t>(row + n) * N_);
      if (d->opt_.tree != EagleTree::kChain) d->row_lse(n);
      row += n;
      d->walk_take();
    }
  }
  for (size_t i = 0; i < g.size(); ++i) out[i] = g[i]->walk_result();
}

// Appends node `parent`'s `count` most likely children (row `row` of logits_; ties: the lower draft index) to
// nodes and their indices to out.
void EagleDrafter::children(std::vector<Node>& nodes, int parent, int row, int count, std::vector<int>& out) {
  const float* z = logits_.data() + static_cast<size_t>(row) * N_;
  count = std::min(count, N_);
  order_.resize(N_);
  std::iota(order_.begin(), order_.end(), 0);
  std::partial_sort(order_.begin(), order_.begin() + count, order_.end(),
                    [&](int32_t x, int32_t y) { return z[x] > z[y] || (z[x] == z[y] && x < y); });
  const double base = parent < 0 ? 0.0 : nodes[parent].score;
  const int depth = parent < 0 ? 1 : nodes[parent].depth + 1;
  for (int c = 0; c < count; ++c) {
    out.push_back(static_cast<int>(nodes.size()));
    nodes.push_back({target_id(order_[c]), parent, depth, base + (static_cast<double>(z[order_[c]]) - lse_[row])});
  }
}

// The layer over the pairs of nodes `which` (each: its parent's predicted state, its token's embedding), one
// block after the cache's slots; each attends the committed pairs, its ancestors' slots and itself. Records
// their slots and predicted states (out_, row t for which[t]); the next round reads them out.
void EagleDrafter::expand(std::vector<Node>& nodes, std::span<const int> which) {
  const int T = static_cast<int>(which.size()), base = cache_.n, S = base + T;
  emb_.resize(static_cast<size_t>(T) * H_);
  feat_.resize(static_cast<size_t>(T) * H_);
  pos_.resize(T);
  mask_.assign(static_cast<size_t>(T) * S, 0);
  for (int t = 0; t < T; ++t) {
    const Node& nd = nodes[which[t]];
    dequantize_rows(a_->target->weights.tok_embeddings, {&nd.token, 1}, emb_.data() + static_cast<size_t>(t) * H_);
    const float* parent_state =
        nd.parent < 0 ? fhat_.data() : node_feat_.data() + static_cast<size_t>(nodes[nd.parent].feat) * H_;
    std::copy(parent_state, parent_state + H_, feat_.begin() + static_cast<size_t>(t) * H_);
    pos_[t] = next_pos_ + nd.depth - 1;
    uint8_t* m = mask_.data() + static_cast<size_t>(t) * S;
    std::fill(m, m + committed_, 1);
    for (int a = nd.parent; a >= 0; a = nodes[a].parent) m[nodes[a].slot] = 1;
    m[base + t] = 1;
  }
  out_.resize(static_cast<size_t>(T) * H_);
  eagle_forward(a_->w, cache_, emb_, feat_, pos_, mask_, out_);
  const int first_feat = static_cast<int>(node_feat_.size() / H_);
  node_feat_.insert(node_feat_.end(), out_.begin(), out_.end());
  for (int t = 0; t < T; ++t) {
    nodes[which[t]].slot = base + t;
    nodes[which[t]].feat = first_feat + t;
  }
}

// The proposal of nodes `keep` (ascending indices, closed under parents): parents precede children.
DraftProposal EagleDrafter::emit(const std::vector<Node>& nodes, std::span<const int> keep) {
  DraftProposal p;
  std::vector<int32_t> at(nodes.size(), -1);
  for (const int i : keep) {
    const int32_t parent = nodes[i].parent < 0 ? -1 : at[nodes[i].parent];
    SPECDEC_CHECK(nodes[i].parent < 0 || parent >= 0, "eagle: a kept tree node's parent is kept (node ", i, ")");
    at[i] = p.size();
    p.tokens.push_back(nodes[i].token);
    p.parents.push_back(parent);
  }
  return p;
}

DrafterInfo eagle_info() {
  return {
      "eagle",
      "an EAGLE layer on the target's final-norm states (weights = FILE.safetensors from specdec train eagle, or an "
      "EAGLE-1 checkpoint; or an EAGLE-3 checkpoint, on three fused target layers: layers = low,mid,high layer "
      "outputs, 0-based, default EAGLE-3's 1, L/2-1, L-4; tree = chain | static | dynamic (EAGLE-2), default chain; "
      "dynamic: depth = 5, topk = 4; static: branching = 4,2,2,1 children per node at each depth; trees are cut to k "
      "nodes; dtype = f32 | q8_0 | q4_0 | q4_1: the layer's matrices as read when drafting, default f32)",
      [](const DrafterEnv& env, const DrafterOptions& opt) -> std::unique_ptr<Drafter> {
        const std::string path = opt.get("weights", "");
        const std::string tree = opt.get("tree", "chain");
        const std::string dtype_name = opt.get("dtype", "f32");
        EagleDrafterOptions o;
        o.depth = opt.get_int("depth", o.depth);
        o.topk = opt.get_int("topk", o.topk);
        const std::vector<double> branching =
            opt.get_doubles("branching", std::vector<double>(o.branching.begin(), o.branching.end()));
        const std::vector<double> layers = opt.get_doubles("layers", {});
        opt.check_all_used();
        const std::string& sec = opt.section();
        SPECDEC_CHECK(!path.empty(), "[", sec, "] weights = the EAGLE layer's file (specdec train eagle writes one)");
        SPECDEC_CHECK(tree == "chain" || tree == "static" || tree == "dynamic", "[", sec,
                      "] tree = chain, static or dynamic, got '", tree, "'");
        o.tree = tree == "chain" ? EagleTree::kChain : tree == "static" ? EagleTree::kStatic : EagleTree::kDynamic;
        cpu::DType dtype = cpu::DType::F32;
        bool known = false;
        for (const cpu::DType t : {cpu::DType::F32, cpu::DType::Q8_0, cpu::DType::Q4_0, cpu::DType::Q4_1})
          if (dtype_name == cpu::dtype_info(t).name) dtype = t, known = true;
        SPECDEC_CHECK(known, "[", sec, "] dtype = f32, q8_0, q4_0 or q4_1 (the layer's matrices when drafting), got '",
                      dtype_name, "'");
        SPECDEC_CHECK(o.depth >= 1, "[", sec, "] depth >= 1, got ", o.depth);
        SPECDEC_CHECK(o.topk >= 1, "[", sec, "] topk >= 1, got ", o.topk);
        SPECDEC_CHECK(!branching.empty(), "[", sec, "] branching = children per node at each depth (e.g. 4,2,2,1)");
        o.branching.clear();
        for (const double c : branching) {
          SPECDEC_CHECK(c >= 1 && c == std::floor(c) && c <= 1e6, "[", sec,
                        "] branching: whole numbers >= 1 (children per node at each depth), got ", c);
          o.branching.push_back(static_cast<int>(c));
        }
        for (const double l : layers) {
          SPECDEC_CHECK(l >= 0 && l == std::floor(l) && l <= 1e6, "[", sec,
                        "] layers: three whole numbers >= 0 (the target layers EAGLE-3 fuses), got ", l);
          o.layers.push_back(static_cast<int>(l));
        }
        SPECDEC_CHECK(env.target != nullptr, "[", sec, "] eagle needs the target model");
        SPECDEC_CHECK(!env.target_path.empty(), "[", sec,
                      "] eagle reads the target's embedding rows from its model "
                      "file, and the target's path is not known here (DrafterEnv::target_path is empty)");
        auto assets = env.shared
                          ? env.shared->get_or_make<EagleAssets>(
                                "eagle:" + path + ":" + env.target_path + ":" + dtype_name,
                                [&] { return std::const_pointer_cast<EagleAssets>(load_assets(env, path, dtype)); })
                          : load_assets(env, path, dtype);
        return std::make_unique<EagleDrafter>(env, std::move(assets), std::move(o));
      }};
}

}  // namespace specdec::eagle
