// Greedy sparse-tree construction (tree.h).
#include "drafters/medusa/tree.h"

#include <algorithm>
#include <queue>
#include <tuple>

#include "core/error.h"

namespace specdec::medusa {

double SparseTree::expected_accepted() const {
  double s = 0.0;
  for (double p : prob) s += p;
  return s;
}

SparseTree build_sparse_tree(const std::vector<std::vector<double>>& acc, int max_nodes) {
  SPECDEC_CHECK(max_nodes >= 0, "a tree of max_nodes >= 0 nodes, got ", max_nodes);
  for (size_t k = 0; k < acc.size(); ++k)
    for (double a : acc[k]) SPECDEC_CHECK(a >= 0.0 && a <= 1.0, "head accuracies in [0, 1], got ", a, " for head ", k);
  // Candidates: (prob, tie-break sequence number, parent node, depth, rank). The frontier holds, for each
  // node in the tree, its next untaken child rank; a max-heap on prob with first-found ties.
  struct Cand {
    double prob;
    int64_t seq;
    int32_t parent, depth, rank;
  };
  auto worse = [](const Cand& a, const Cand& b) { return std::tie(a.prob, b.seq) < std::tie(b.prob, a.seq); };
  std::priority_queue<Cand, std::vector<Cand>, decltype(worse)> heap(worse);
  int64_t seq = 0;
  auto push_child = [&](int32_t parent, double parent_prob, int32_t depth, int32_t rank) {
    if (depth > static_cast<int32_t>(acc.size())) return;
    const auto& row = acc[static_cast<size_t>(depth - 1)];
    if (rank >= static_cast<int32_t>(row.size())) return;
    heap.push({parent_prob * row[static_cast<size_t>(rank)], seq++, parent, depth, rank});
  };
  SparseTree t;
  push_child(-1, 1.0, 1, 0);
  while (t.size() < max_nodes && !heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    const int32_t node = t.size();
    t.parent.push_back(c.parent);
    t.depth.push_back(c.depth);
    t.rank.push_back(c.rank);
    t.prob.push_back(c.prob);
    // Its next sibling (same parent, next rank) and its own first child become candidates.
    const double parent_prob = c.parent < 0 ? 1.0 : t.prob[static_cast<size_t>(c.parent)];
    push_child(c.parent, parent_prob, c.depth, c.rank + 1);
    push_child(node, c.prob, c.depth + 1, 0);
  }
  return t;
}

std::vector<std::vector<double>> per_rank_accuracy(const std::vector<std::vector<double>>& topk) {
  std::vector<std::vector<double>> acc(topk.size());
  for (size_t k = 0; k < topk.size(); ++k) {
    double prev = 0.0;
    for (size_t i = 0; i < topk[k].size(); ++i) {
      const double v = topk[k][i];
      SPECDEC_CHECK(v >= prev - 1e-12 && v <= 1.0 + 1e-12, "cumulative top-i accuracies non-decreasing in [0, 1], got ",
                    v, " after ", prev, " (head ", k, ", i = ", i + 1, ")");
      acc[k].push_back(std::max(0.0, v - prev));
      prev = v;
    }
  }
  return acc;
}

}  // namespace specdec::medusa
