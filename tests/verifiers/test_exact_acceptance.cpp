// Exact losslessness of the acceptance rules: a toy target and drafter over a vocabulary of 4 with
// explicit rational probability tables (Markov in the last token). Every outcome of speculative decoding
// is enumerated with exact arithmetic (boost cpp_rational) — the draft samples and every Bernoulli /
// categorical choice of the very rule code that runs in production (verifiers/tree_walk.h) — until at
// least N tokens are emitted; the law of the first N emitted tokens must equal AR sampling's exactly
// (total variation 0). The lossy typical rule must show a total variation > 0, proving the test can fail.
#include <catch2/catch.hpp>

#include <boost/multiprecision/cpp_int.hpp>
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <vector>

#include "verifiers/tree_walk.h"

using Rational = boost::multiprecision::cpp_rational;
using Dist = std::vector<Rational>;
using Seq = std::vector<int>;

namespace {

constexpr int V = 4;

Dist dist(std::initializer_list<int> w) {
  Rational sum = 0;
  for (int x : w) sum += x;
  Dist d;
  for (int x : w) d.push_back(Rational(x) / sum);
  return d;
}

// p(. | last token) and q(. | last token): deliberately different, with zeros on both sides.
const std::vector<Dist> kP = {dist({5, 3, 2, 0}), dist({1, 1, 1, 1}), dist({0, 2, 7, 1}), dist({3, 0, 0, 5})};
const std::vector<Dist> kQ = {dist({1, 4, 4, 1}), dist({6, 1, 0, 3}), dist({2, 2, 2, 2}), dist({0, 1, 5, 4})};

// A branching random source: replays a script of choices; at the first unscripted choice it throws
// NeedChoice so the enumerator can explore every option, weighting each path by its probability.
struct NeedChoice {
  int n;
};
struct ScriptedSource {
  const Seq& script;
  size_t pos = 0;
  Rational weight = 1;
  int take(int n) {
    if (pos >= script.size()) throw NeedChoice{n};
    return script[pos++];
  }
  bool bernoulli(const Rational& a) {
    const bool ok = take(2) == 1;
    weight *= ok ? a : Rational(1 - a);
    return ok;
  }
  int categorical(const Dist& w) {
    Rational sum = 0;
    for (const auto& x : w) sum += x;
    const int i = take(static_cast<int>(w.size()));
    weight *= w[i] / sum;
    return i;
  }
};

// Runs body(source) over every script; body returns the outcome for a complete script.
template <class Outcome>
void enumerate(const std::function<Outcome(ScriptedSource&)>& body,
               const std::function<void(const Outcome&, const Rational&)>& record) {
  std::vector<Seq> stack = {{}};
  while (!stack.empty()) {
    Seq script = std::move(stack.back());
    stack.pop_back();
    ScriptedSource src{script};
    try {
      Outcome out = body(src);
      if (src.weight != 0) record(out, src.weight);
    } catch (const NeedChoice& need) {
      for (int i = 0; i < need.n; ++i) {
        Seq s = script;
        s.push_back(i);
        stack.push_back(std::move(s));
      }
    }
  }
}

// A proposal tree for the walk: node 0 = root; target(n) = p(. | token(n)); draft(c) = the q that c was
// drawn from (nullptr = deterministic).
struct ToyTree {
  std::vector<int> tokens;              // per node
  std::vector<std::vector<int>> kids;   // per node
  std::vector<const Dist*> drawn_from;  // per node (root: nullptr)
  int size() const { return static_cast<int>(tokens.size()); }
  const std::vector<int>& children(int n) const { return kids[n]; }
  int token(int n) const { return tokens[n]; }
  Dist target(int n) const { return kP[tokens[n]]; }
  int argmax(int n) const {  // ties: the lowest id
    const Dist& p = kP[tokens[n]];
    return static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
  }
  const Dist* draft(int c) const { return drawn_from[c]; }
  int add(int parent, int tok, const Dist* q) {
    tokens.push_back(tok);
    kids.emplace_back();
    drawn_from.push_back(q);
    if (parent >= 0) kids[parent].push_back(size() - 1);
    return size() - 1;
  }
};

Dist renormalised_without(const Dist& q, const std::vector<int>& removed) {
  Dist r = q;
  for (int t : removed) r[t] = 0;
  Rational s = 0;
  for (const auto& x : r) s += x;
  for (auto& x : r) x /= s;
  return r;
}

// Tree shapes of one step, drawn by the drafter through the source (so draft samples are enumerated too).
enum class Shape { kChain1, kChain2, kChain3, kTreeIid, kTreeWithoutReplacement, kTreeDeterministic };

ToyTree draw_tree(Shape shape, int root, ScriptedSource& src, std::vector<Dist>& storage) {
  ToyTree t;
  t.add(-1, root, nullptr);
  storage.clear();
  storage.reserve(8);  // pointers into storage must stay valid
  auto draw = [&](int parent, const Dist& q) {
    storage.push_back(q);
    const Dist* qp = &storage.back();
    return t.add(parent, src.categorical(*qp), qp);
  };
  switch (shape) {
    case Shape::kChain1:
    case Shape::kChain2:
    case Shape::kChain3: {
      const int k = shape == Shape::kChain1 ? 1 : shape == Shape::kChain2 ? 2 : 3;
      int node = 0;
      for (int i = 0; i < k; ++i) node = draw(node, kQ[t.token(node)]);
      break;
    }
    case Shape::kTreeIid: {  // two i.i.d. children of the root; the first has a child
      const int a = draw(0, kQ[root]);
      draw(0, kQ[root]);
      draw(a, kQ[t.token(a)]);
      break;
    }
    case Shape::kTreeWithoutReplacement: {  // second child drawn from q without the first
      const int a = draw(0, kQ[root]);
      draw(0, renormalised_without(kQ[root], {t.token(a)}));
      draw(a, kQ[t.token(a)]);
      break;
    }
    case Shape::kTreeDeterministic: {  // top-2 of q at the root (ties: lower id), top-1 below the first
      std::vector<int> order = {0, 1, 2, 3};
      std::stable_sort(order.begin(), order.end(), [&](int x, int y) { return kQ[root][x] > kQ[root][y]; });
      const int a = t.add(0, order[0], nullptr);
      t.add(0, order[1], nullptr);
      const auto& qa = kQ[order[0]];
      t.add(a, static_cast<int>(std::max_element(qa.begin(), qa.end()) - qa.begin()), nullptr);
      break;
    }
  }
  return t;
}

using Walk = std::function<specdec::verifiers::WalkResult<Rational>(const ToyTree&, ScriptedSource&)>;

// Law of the tokens one speculative step emits from `root` (accepted draft tokens, then the target's).
std::map<Seq, Rational> step_law(Shape shape, const Walk& walk, int root) {
  std::map<Seq, Rational> law;
  enumerate<Seq>(
      [&](ScriptedSource& src) {
        std::vector<Dist> storage;
        const ToyTree tree = draw_tree(shape, root, src, storage);
        const auto res = walk(tree, src);
        Seq out;
        for (int node : res.path) out.push_back(tree.token(node));
        out.push_back(res.next);
        return out;
      },
      [&](const Seq& s, const Rational& w) { law[s] += w; });
  return law;
}

// Law of the first N emitted tokens when decoding from `start`: steps compose (the target is Markov in
// the last token), so each step's law is enumerated once per root and chained.
std::map<Seq, Rational> speculative_law(Shape shape, const Walk& walk, int start, int N) {
  std::map<int, std::map<Seq, Rational>> steps;
  std::function<std::map<Seq, Rational>(int, int)> law_from = [&](int root, int n) {
    if (!steps.count(root)) steps[root] = step_law(shape, walk, root);
    std::map<Seq, Rational> law;
    for (const auto& [seq, w] : steps[root]) {
      if (static_cast<int>(seq.size()) >= n) {
        law[Seq(seq.begin(), seq.begin() + n)] += w;
        continue;
      }
      for (const auto& [rest, w2] : law_from(seq.back(), n - static_cast<int>(seq.size()))) {
        Seq full = seq;
        full.insert(full.end(), rest.begin(), rest.end());
        law[full] += w * w2;
      }
    }
    return law;
  };
  return law_from(start, N);
}

std::map<Seq, Rational> ar_law(int start, int N) {
  std::map<Seq, Rational> law;
  std::function<void(Seq, Rational)> rec = [&](Seq s, Rational w) {
    if (static_cast<int>(s.size()) == N) {
      law[s] += w;
      return;
    }
    const int last = s.empty() ? start : s.back();
    for (int v = 0; v < V; ++v)
      if (kP[last][v] != 0) {
        Seq t = s;
        t.push_back(v);
        rec(t, w * kP[last][v]);
      }
  };
  rec({}, 1);
  return law;
}

Rational total_variation(const std::map<Seq, Rational>& a, const std::map<Seq, Rational>& b) {
  std::map<Seq, Rational> diff = a;
  for (const auto& [s, w] : b) diff[s] -= w;
  Rational tv = 0;
  for (const auto& [s, d] : diff) tv += d < 0 ? Rational(-d) : d;
  return tv / 2;
}

Rational total_mass(const std::map<Seq, Rational>& law) {
  Rational m = 0;
  for (const auto& [s, w] : law) m += w;
  return m;
}

const Walk kSpeculative = [](const ToyTree& t, ScriptedSource& s) {
  return specdec::verifiers::speculative_walk<Rational>(t, s);
};

}  // namespace

TEST_CASE("speculative sampling is exactly lossless for chains k = 1, 2, 3", "[verifiers][exact]") {
  for (Shape shape : {Shape::kChain1, Shape::kChain2, Shape::kChain3}) {
    for (int start = 0; start < V; ++start) {
      const int N = 4;  // longer than any single step's output for k <= 2: steps must compose
      const auto spec = speculative_law(shape, kSpeculative, start, N);
      const auto ar = ar_law(start, N);
      INFO("shape " << static_cast<int>(shape) << " start " << start);
      REQUIRE(total_mass(spec) == 1);
      REQUIRE(total_variation(spec, ar) == 0);
    }
  }
}

TEST_CASE("the recursive rule is exactly lossless for two-branch trees", "[verifiers][exact]") {
  for (Shape shape : {Shape::kTreeIid, Shape::kTreeWithoutReplacement, Shape::kTreeDeterministic}) {
    for (int start = 0; start < V; ++start) {
      const auto spec = speculative_law(shape, kSpeculative, start, 2);
      INFO("shape " << static_cast<int>(shape) << " start " << start);
      REQUIRE(total_mass(spec) == 1);
      REQUIRE(total_variation(spec, ar_law(start, 2)) == 0);
    }
  }
}

TEST_CASE("a wrong residual rule is caught (the test can fail)", "[verifiers][exact]") {
  // Resampling from p instead of norm(max(0, p - q)) after a rejection is a classic bug: not lossless.
  const Walk buggy = [](const ToyTree& t, ScriptedSource& s) {
    specdec::verifiers::WalkResult<Rational> r;
    const int c = t.children(0)[0];
    const Dist p = t.target(0);
    const Rational q = (*t.draft(c))[t.token(c)];
    const Rational a = p[t.token(c)] >= q ? Rational(1) : Rational(p[t.token(c)] / q);
    if (s.bernoulli(a)) {
      r.path.push_back(c);
      r.next = s.categorical(t.target(c));
    } else {
      r.next = s.categorical(p);
    }
    return r;
  };
  const auto spec = speculative_law(Shape::kChain1, buggy, 0, 2);
  const Rational tv = total_variation(spec, ar_law(0, 2));
  WARN("buggy residual rule: exact total variation " << tv << " = " << tv.convert_to<double>());
  REQUIRE(tv > 0);
}

TEST_CASE("typical acceptance is lossy: its exact total variation is > 0", "[verifiers][exact]") {
  const Walk typical = [](const ToyTree& t, ScriptedSource& s) {
    auto entropy = [](const Dist& p) {
      double h = 0;
      for (const auto& x : p) {
        const double d = x.convert_to<double>();
        if (d > 0) h -= d * std::log(d);
      }
      return h;
    };
    return specdec::verifiers::typical_walk<Rational>(t, s, 0.09, 0.3, entropy);
  };
  for (Shape shape : {Shape::kChain2, Shape::kTreeIid}) {
    const auto spec = speculative_law(shape, typical, 0, 2);
    REQUIRE(total_mass(spec) == 1);
    const Rational tv = total_variation(spec, ar_law(0, 2));
    WARN("typical acceptance (epsilon 0.09, delta 0.3), shape " << static_cast<int>(shape) << ": exact total variation "
                                                                << tv << " = " << tv.convert_to<double>());
    REQUIRE(tv > 0);
  }
}

TEST_CASE("greedy is exactly AR greedy for every shape (the production greedy walk)", "[verifiers][exact]") {
  // The law of the first N tokens of speculative steps under greedy_walk must be the point mass on the
  // argmax chain, whatever the drafter proposed (drafts are drawn from q and enumerated).
  const Walk greedy = [](const ToyTree& t, ScriptedSource&) { return specdec::verifiers::greedy_walk<Rational>(t); };
  for (Shape shape : {Shape::kChain1, Shape::kChain2, Shape::kChain3, Shape::kTreeIid, Shape::kTreeWithoutReplacement,
                      Shape::kTreeDeterministic}) {
    for (int start = 0; start < V; ++start) {
      const int N = 3;
      Seq chain;
      for (int i = 0, last = start; i < N; ++i) {
        const Dist& p = kP[last];
        last = static_cast<int>(std::max_element(p.begin(), p.end()) - p.begin());
        chain.push_back(last);
      }
      const auto law = speculative_law(shape, greedy, start, N);
      INFO("shape " << static_cast<int>(shape) << " start " << start);
      REQUIRE(total_mass(law) == 1);
      REQUIRE(total_variation(law, std::map<Seq, Rational>{{chain, Rational(1)}}) == 0);
    }
  }
}
