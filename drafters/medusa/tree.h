// Sparse candidate trees for Medusa heads, built from the heads' measured accuracies as the Medusa authors
// build theirs: a node is a path of ranks (r_1, ..., r_d), the r_j-th most likely token of head j - 1 at
// depth j; assuming the heads err independently, the node is on the accepted path with probability
// prod_j acc[j-1][r_j], where acc[k][r] is the probability that head k's rank-r candidate is the target's
// token. The expected accepted length of a tree is the sum of its nodes' probabilities, and adding nodes
// in decreasing probability (greedy expansion) maximises it for every node budget: a child's probability
// never exceeds its parent's, so each prefix of that order is a valid tree. Ranks of one head are taken in
// order (rank r + 1 becomes a candidate once rank r is in): exact when a head's per-rank accuracy does not
// increase with the rank, as measured heads' do.
#pragma once

#include <cstdint>
#include <vector>

namespace specdec::medusa {

struct SparseTree {
  // Per node, in the order added (a parent always comes before its children):
  std::vector<int32_t> parent;  // parent node, -1 = the root (the last accepted token)
  std::vector<int32_t> depth;   // 1 = the first draft position (head 0)
  std::vector<int32_t> rank;    // which candidate of head depth - 1 (0 = its most likely token)
  std::vector<double> prob;     // the node's probability of being accepted, as above

  int size() const { return static_cast<int>(parent.size()); }
  double expected_accepted() const;  // sum of prob: expected accepted draft tokens per step
};

// acc[k][r]: probability that head k's rank-r candidate is right (per-rank, not cumulative), r < the
// ranks measured. The greedy tree of at most max_nodes nodes and depth <= acc.size(); ties go to the node
// found first (smaller depth, then smaller ranks), so the tree is deterministic.
SparseTree build_sparse_tree(const std::vector<std::vector<double>>& acc, int max_nodes);

// Per-rank accuracies from cumulative top-i accuracies (topk[k][i] = P(the right token is among head k's
// i + 1 best)): acc[k][r] = topk[k][r] - topk[k][r - 1]. Throws unless each row is non-decreasing in [0, 1].
std::vector<std::vector<double>> per_rank_accuracy(const std::vector<std::vector<double>>& topk);

}  // namespace specdec::medusa
