// Medusa's sparse trees from measured head accuracies (drafters/medusa/tree.h).
#include <catch2/catch.hpp>

#include "core/error.h"
#include "drafters/medusa/tree.h"

using namespace specdec::medusa;

TEST_CASE("greedy expansion on a known accuracy table gives the expected tree", "[medusa]") {
  // Per-rank accuracies: head 0 (0.6, 0.2, 0.1), head 1 (0.5, 0.1), head 2 (0.4).
  const std::vector<std::vector<double>> acc = {{0.6, 0.2, 0.1}, {0.5, 0.1}, {0.4}};
  // Node probabilities: (0)=.6, (0,0)=.3, (1)=.2, (0,0,0)=.12, (2)=.1, (1,0)=.1, (0,1)=.06, ...
  // In order (ties to the node found first): (0) .6, (0,0) .3, (1) .2, (0,0,0) .12, (2) .1, (1,0) .1, (0,1) .06
  const SparseTree t = build_sparse_tree(acc, 7);
  REQUIRE(t.size() == 7);
  const std::vector<int32_t> parent = {-1, 0, -1, 1, -1, 2, 0};
  const std::vector<int32_t> depth = {1, 2, 1, 3, 1, 2, 2};
  const std::vector<int32_t> rank = {0, 0, 1, 0, 2, 0, 1};
  CHECK(t.parent == parent);
  CHECK(t.depth == depth);
  CHECK(t.rank == rank);
  CHECK(t.expected_accepted() == Approx(0.6 + 0.3 + 0.2 + 0.12 + 0.1 + 0.1 + 0.06));
  // Every prefix is a valid tree (parents first) with non-increasing node probabilities.
  for (int i = 0; i < t.size(); ++i) {
    CHECK(t.parent[i] < i);
    if (i > 0) CHECK(t.prob[i] <= t.prob[i - 1] + 1e-15);
  }
  // A budget larger than the table allows stops at every node the table can make: 3 + 3*2 + 3*2*1 = 15.
  CHECK(build_sparse_tree(acc, 100).size() == 15);
  CHECK(build_sparse_tree(acc, 0).size() == 0);
}

TEST_CASE("the greedy tree maximises the expected accepted length for its budget", "[medusa]") {
  const std::vector<std::vector<double>> acc = {{0.7, 0.15, 0.05}, {0.55, 0.2, 0.05}, {0.45, 0.2}};
  // Exhaustive: every set of n nodes of the 30-node universe that is a tree (each node's parent in it).
  std::vector<std::vector<int>> paths;  // rank paths of the universe
  for (int a = 0; a < 3; ++a) {
    paths.push_back({a});
    for (int b = 0; b < 3; ++b) {
      paths.push_back({a, b});
      for (int c = 0; c < 2; ++c) paths.push_back({a, b, c});
    }
  }
  auto prob = [&](const std::vector<int>& p) {
    double v = 1;
    for (size_t j = 0; j < p.size(); ++j) v *= acc[j][p[j]];
    return v;
  };
  const int n = 4;
  double best = 0;
  const int U = static_cast<int>(paths.size());
  for (int m = 0; m < (1 << U); ++m) {
    if (__builtin_popcount(m) != n) continue;
    bool closed = true;  // every node's parent path is in the set
    double e = 0;
    for (int i = 0; i < U && closed; ++i) {
      if (!(m >> i & 1)) continue;
      e += prob(paths[i]);
      if (paths[i].size() > 1) {
        std::vector<int> par(paths[i].begin(), paths[i].end() - 1);
        bool found = false;
        for (int j = 0; j < U; ++j)
          if ((m >> j & 1) && paths[j] == par) found = true;
        closed = found;
      }
    }
    if (closed) best = std::max(best, e);
  }
  CHECK(build_sparse_tree(acc, n).expected_accepted() == Approx(best).epsilon(1e-12));
}

TEST_CASE("per-rank accuracies come from cumulative top-i tables, which must be non-decreasing", "[medusa]") {
  const auto acc = per_rank_accuracy({{0.5, 0.7, 0.75}, {0.3, 0.3}});
  CHECK(acc[0][0] == Approx(0.5));
  CHECK(acc[0][1] == Approx(0.2));
  CHECK(acc[0][2] == Approx(0.05));
  CHECK(acc[1][1] == Approx(0.0));
  REQUIRE_THROWS_WITH(per_rank_accuracy({{0.5, 0.4}}), Catch::Contains("non-decreasing"));
  REQUIRE_THROWS_WITH(build_sparse_tree({{1.5}}, 3), Catch::Contains("[0, 1]"));
}
