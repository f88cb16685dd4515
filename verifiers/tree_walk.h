// The acceptance rules as templates over the number type and the random source, so that the code that
// runs in production (double + Philox draws) is the very code the exact-enumeration tests run with
// boost::multiprecision::cpp_rational and a branching "random" source (tests/verifiers).
//
// A Tree gives, for node n: children(n) in proposal order, token(n), argmax(n) = the target's most likely
// token after node n (greedy only), target(n) = the target's
// distribution p after node n (V entries), draft(c) = the distribution q that child c was drawn from
// (V entries) or nullptr for a deterministic (one-hot) proposal.
// A Source gives: bool bernoulli(Real a) (true with probability a, a in [0,1]) and
// int categorical(const std::vector<Real>& w) (index i with probability w[i] / sum(w)).
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace specdec::verifiers {

// One test of the walk: the node, its verdict, and the values the verdict was computed from, so a log
// of them reproduces it. speculative: passed = u < min(1, p_test / q) with p_test = the residual r(token)
// at the test (p at the parent for the first sibling); typical: passed = p_test > threshold with p_test =
// p(token) at the parent.
template <class Real>
struct WalkTest {
  int node = 0;
  bool passed = false;
  Real p_test = Real(0);
  double threshold = -1;  // typical only
};

template <class Real>
struct WalkResult {
  std::vector<int> path;               // accepted nodes, root excluded
  int next = -1;                       // emitted token
  std::vector<WalkTest<Real>> tested;  // every test, in the order made
};

// Greedy (temperature 0): at node n the target's token is tree.argmax(n); the first child (in proposal
// order) whose token equals it is accepted and the walk continues there; otherwise the argmax is emitted.
// Each test logs p_test = 1 for the argmax token, 0 otherwise (passed = p_test == 1).
template <class Real, class Tree>
WalkResult<Real> greedy_walk(const Tree& tree) {
  WalkResult<Real> res;
  int node = 0;
  for (;;) {
    const int best = tree.argmax(node);
    int next = -1;
    for (int c : tree.children(node)) {
      const bool ok = tree.token(c) == best;
      res.tested.push_back({c, ok, Real(ok ? 1 : 0)});
      if (ok) {
        next = c;
        break;
      }
    }
    if (next < 0) {
      res.next = best;
      return res;
    }
    res.path.push_back(next);
    node = next;
  }
}

// Speculative sampling (Leviathan et al.; Chen et al.), recursive over the candidates of each node
// (multi-candidate rule, SpecInfer / Medusa-tree style): at node n with residual r = p(n), for each
// child c_j in order accept with probability min(1, r(c_j) / q_j(c_j)); on rejection r = norm(max(0,
// r - q_j)). If none is accepted, emit a token drawn from r and stop. At a leaf reached by acceptance,
// emit a bonus token drawn from p(leaf). A deterministic proposal has q_j = one-hot(c_j).
// A rejection after which max(0, r - q_j) is zero everywhere is impossible for distributions r and q_j
// (it needs r <= q_j pointwise and r != q_j, so sum(q_j) > sum(r) = 1): it throws specdec::Error rather
// than continue from a made-up distribution.
template <class Real, class Tree, class Source>
WalkResult<Real> speculative_walk(const Tree& tree, Source& src) {
  WalkResult<Real> res;
  int node = 0;
  for (;;) {
    std::vector<Real> r = tree.target(node);
    bool moved = false;
    for (int c : tree.children(node)) {
      const int tok = tree.token(c);
      const auto* q = tree.draft(c);  // nullptr = one-hot at tok
      const Real qx = q ? (*q)[tok] : Real(1);
      const Real rx = r[tok];
      Real a = Real(0);
      if (qx > Real(0)) a = rx >= qx ? Real(1) : Real(rx / qx);
      const bool ok = src.bernoulli(a);
      res.tested.push_back({c, ok, rx});
      if (ok) {
        res.path.push_back(c);
        node = c;
        moved = true;
        break;
      }
      // r = norm(max(0, r - q_j)); one-hot q removes tok from r.
      Real sum = Real(0);
      for (size_t v = 0; v < r.size(); ++v) {
        const Real qv = q ? (*q)[v] : Real(static_cast<int>(v) == tok ? 1 : 0);
        r[v] = r[v] > qv ? Real(r[v] - qv) : Real(0);
        sum += r[v];
      }
      if (!(sum > Real(0)))
        SPECDEC_FAIL("speculative rule: draft node ", c, " (token ", tok,
                     ") was rejected although its q covers the residual everywhere (q sums to more than the "
                     "target's distribution): the draft distribution is not a probability distribution");
      for (auto& x : r) x = x / sum;
    }
    if (!moved) {
      res.next = src.categorical(r);
      return res;
    }
    if (tree.children(node).empty()) {
      res.next = src.categorical(tree.target(node));
      return res;
    }
  }
}

// Typical acceptance (Medusa; lossy): a candidate x at node n is acceptable when
// p(n)(x) > min(epsilon, delta * exp(-H(p(n)))). Every root-to-node path whose nodes are all acceptable
// is a candidate; the longest wins, ties broken by the larger product of p along the path. The emitted
// token is drawn from p at the end of the path (argmax when the sampling is greedy: categorical over a
// one-hot p). `tested` holds every acceptability test; `path` the nodes kept.
template <class Real, class Tree, class Source, class Entropy>
WalkResult<Real> typical_walk(const Tree& tree, Source& src, double epsilon, double delta, Entropy entropy) {
  WalkResult<Real> res;
  const int n = tree.size();
  std::vector<int> depth(n, 0), ok(n, 0);
  std::vector<Real> lik(n, Real(1));
  std::vector<int> parent(n, -1);
  ok[0] = 1;
  int best = 0;
  for (int node = 0; node < n; ++node) {
    if (!ok[node]) continue;
    const std::vector<Real> p = tree.target(node);
    const double thr = std::min(epsilon, delta * std::exp(-entropy(p)));
    for (int c : tree.children(node)) {
      const Real px = p[tree.token(c)];
      const bool acc = static_cast<double>(px) > thr;
      res.tested.push_back({c, acc, px, thr});
      if (!acc) continue;
      ok[c] = 1;
      parent[c] = node;
      depth[c] = depth[node] + 1;
      lik[c] = lik[node] * px;
      if (depth[c] > depth[best] || (depth[c] == depth[best] && lik[c] > lik[best])) best = c;
    }
  }
  for (int v = best; v != 0; v = parent[v]) res.path.push_back(v);
  std::reverse(res.path.begin(), res.path.end());
  res.next = src.categorical(tree.target(best));
  return res;
}

}  // namespace specdec::verifiers
