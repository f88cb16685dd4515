// Production instantiations of the acceptance rules: double arithmetic over the target's filtered
// distributions, Philox draws (seed, request, step, draw) so runs are reproducible on any backend.
#include "verifiers/rules.h"

#include <cmath>
#include <map>

#include "core/error.h"
#include "core/sampling/philox.h"
#include "verifiers/tree_walk.h"

namespace specdec::verifiers {
namespace {

// Adapts a VerifyInput to the Tree concept of tree_walk.h, computing p lazily per node.
class BlockTree {
 public:
  explicit BlockTree(const VerifyInput& in) : in_(in), children_(in.tokens.size()) {
    for (size_t i = 1; i < in.tokens.size(); ++i) children_[in.parents[i]].push_back(static_cast<int>(i));
    scratch_.resize(in.vocab_size);
  }
  int size() const { return static_cast<int>(in_.tokens.size()); }
  const std::vector<int>& children(int n) const { return children_[n]; }
  int token(int n) const { return in_.tokens[n]; }
  const std::vector<double>& target(int n) const {
    auto it = p_.find(n);
    if (it != p_.end()) return it->second;
    const size_t V = in_.vocab_size;
    logits_to_probs(in_.logits.subspan(n * V, V), in_.sampling, scratch_, sampling_scratch_);
    return p_.emplace(n, normalized(scratch_)).first->second;
  }
  const std::vector<double>* draft(int c) const {
    if (in_.q.empty()) return nullptr;
    auto it = q_.find(c);
    if (it != q_.end()) return &it->second;
    const size_t V = in_.vocab_size;
    return &q_.emplace(c, normalized(in_.q.subspan((c - 1) * V, V))).first->second;
  }
  // A row in double, divided by its double sum (index order): p and q then both sum to 1 up to double
  // rounding, which is what makes a zero residual after a rejection impossible (tree_walk.h). It is also
  // the distribution sample_from_probs draws from (u * total), so a drafter that drew its token from
  // its q row with it is verified against exactly that law. kernels/cuda/accept_walk.cuh does the same.
  static std::vector<double> normalized(std::span<const float> row) {
    double sum = 0;
    for (float x : row) sum += x;
    std::vector<double> out(row.size());
    for (size_t v = 0; v < row.size(); ++v) out[v] = static_cast<double>(row[v]) / sum;
    return out;
  }

 private:
  const VerifyInput& in_;
  std::vector<std::vector<int>> children_;
  mutable std::map<int, std::vector<double>> p_, q_;
  mutable std::vector<float> scratch_;
  mutable SamplingScratch sampling_scratch_;
};

// Philox-backed random source (53-bit uniforms); remembers the draw of each Bernoulli test for the log.
class PhiloxSource {
 public:
  explicit PhiloxSource(const VerifyInput& in) : in_(in) {}
  bool bernoulli(double a) {
    draws.push_back(next());
    return draws.back() < a;
  }
  int categorical(const std::vector<double>& w) {
    double sum = 0;
    for (double x : w) sum += x;
    const double target = next() * sum;
    double acc = 0;
    int last_nonzero = -1;
    for (size_t i = 0; i < w.size(); ++i) {
      if (w[i] <= 0) continue;
      acc += w[i];
      last_nonzero = static_cast<int>(i);
      if (target < acc) return last_nonzero;
    }
    return last_nonzero;  // round-off at the end of the CDF
  }
  std::vector<double> draws;  // the uniform of each Bernoulli test, in order

 private:
  double next() { return uniform(in_.seed, in_.request, in_.step, draw_++); }
  const VerifyInput& in_;
  uint32_t draw_ = 0;
};

void check_input(const VerifyInput& in) {
  const size_t T = in.tokens.size(), V = static_cast<size_t>(in.vocab_size);
  SPECDEC_CHECK(T >= 1 && in.parents.size() == T, "a verify block with one parent per token, got ", T, " tokens and ",
                in.parents.size(), " parents");
  SPECDEC_CHECK(in.logits.size() == T * V, "T x V = ", T * V, " target logits, got ", in.logits.size());
  SPECDEC_CHECK(in.q.empty() || in.q.size() == (T - 1) * V, "(T-1) x V = ", (T - 1) * V, " draft probabilities, got ",
                in.q.size());
  SPECDEC_CHECK(in.parents[0] == -1, "the root of a verify block has no parent, got ", in.parents[0]);
  for (size_t i = 1; i < T; ++i)
    SPECDEC_CHECK(in.parents[i] >= 0 && in.parents[i] < static_cast<int32_t>(i), "block parent of node ", i, " in 0..",
                  i - 1, ", got ", in.parents[i]);
}

// Fills the per-node verdicts from a walk: each test's values as the walk used them, and accepted = on
// the returned path. draws: the uniform of each test (speculative), empty when the rule draws none.
template <class Walk>
VerifyOutcome to_outcome(const VerifyInput& in, const BlockTree& tree, const Walk& w,
                         const std::vector<double>& draws) {
  VerifyOutcome out;
  out.path = {w.path.begin(), w.path.end()};
  out.next = w.next;
  out.verdicts.resize(in.tokens.size() - 1);
  for (size_t j = 0; j < w.tested.size(); ++j) {
    const auto& t = w.tested[j];
    NodeVerdict& v = out.verdicts[t.node - 1];
    v.visited = true;
    v.passed = t.passed;
    v.p_target = tree.target(in.parents[t.node])[in.tokens[t.node]];
    v.p_test = t.p_test;
    v.threshold = t.threshold;
    const auto* q = tree.draft(t.node);
    v.q_draft = q ? (*q)[in.tokens[t.node]] : 1.0;
    v.u = j < draws.size() ? draws[j] : -1.0;
  }
  for (int32_t node : out.path) out.verdicts[node - 1].accepted = true;
  return out;
}

// The greedy walk's view of a block: argmax per row of logits, nothing else computed.
class ArgmaxTree {
 public:
  explicit ArgmaxTree(const VerifyInput& in) : in_(in), children_(in.tokens.size()) {
    for (size_t i = 1; i < in.tokens.size(); ++i) children_[in.parents[i]].push_back(static_cast<int>(i));
  }
  const std::vector<int>& children(int n) const { return children_[n]; }
  int token(int n) const { return in_.tokens[n]; }
  int argmax(int n) const {
    const size_t V = in_.vocab_size;
    return specdec::argmax(in_.logits.subspan(n * V, V));
  }

 private:
  const VerifyInput& in_;
  std::vector<std::vector<int>> children_;
};

class GreedyRule final : public AcceptanceRule {
 public:
  std::string name() const override { return "greedy"; }
  bool lossless() const override { return true; }
  void check(const SamplingParams& sampling) const override {
    SPECDEC_CHECK(sampling.greedy(),
                  "rule = greedy decodes at temperature 0 only (it keeps the target's argmax), "
                  "got temperature ",
                  sampling.temperature, "; use rule = speculative for sampling");
  }
  VerifyOutcome verify(const VerifyInput& in) const override {
    check_input(in);
    const size_t V = in.vocab_size;
    const auto w = greedy_walk<double>(ArgmaxTree(in));
    VerifyOutcome out;
    out.path = {w.path.begin(), w.path.end()};
    out.next = w.next;
    out.verdicts.resize(in.tokens.size() - 1);
    for (const auto& t : w.tested) {
      NodeVerdict& v = out.verdicts[t.node - 1];
      v.visited = true;
      v.passed = v.accepted = t.passed;
      v.p_target = v.p_test = t.p_test;
      v.q_draft = in.q.empty() ? 1.0 : in.q[(t.node - 1) * V + in.tokens[t.node]];
    }
    return out;
  }
};

class SpeculativeRule final : public AcceptanceRule {
 public:
  std::string name() const override { return "speculative"; }
  bool lossless() const override { return true; }
  VerifyOutcome verify(const VerifyInput& in) const override {
    check_input(in);
    BlockTree tree(in);
    PhiloxSource src(in);
    const auto walk = speculative_walk<double>(tree, src);
    return to_outcome(in, tree, walk, src.draws);
  }
};

class TypicalRule final : public AcceptanceRule {
 public:
  explicit TypicalRule(TypicalParams p) : p_(p) {}
  std::string name() const override { return "typical"; }
  bool lossless() const override { return false; }
  VerifyOutcome verify(const VerifyInput& in) const override {
    check_input(in);
    BlockTree tree(in);
    PhiloxSource src(in);
    auto entropy = [](const std::vector<double>& p) {
      double h = 0;
      for (double x : p)
        if (x > 0) h -= x * std::log(x);
      return h;
    };
    const auto walk = typical_walk<double>(tree, src, p_.epsilon, p_.delta, entropy);
    return to_outcome(in, tree, walk, {});
  }

 private:
  TypicalParams p_;
};

}  // namespace

std::unique_ptr<AcceptanceRule> make_greedy_rule() { return std::make_unique<GreedyRule>(); }
std::unique_ptr<AcceptanceRule> make_speculative_rule() { return std::make_unique<SpeculativeRule>(); }
std::unique_ptr<AcceptanceRule> make_typical_rule(TypicalParams params) {
  return std::make_unique<TypicalRule>(params);
}

void RuleRegistry::add(RuleInfo info) {
  SPECDEC_CHECK(!info.name.empty() && info.factory, "an acceptance rule with a name and a factory");
  SPECDEC_CHECK(!by_name_.count(info.name), "acceptance rule '", info.name, "' is registered twice");
  order_.push_back(info.name);
  by_name_.emplace(info.name, std::move(info));
}

const RuleInfo& RuleRegistry::get(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it != by_name_.end()) return it->second;
  std::string known;
  for (const auto& n : order_) known += (known.empty() ? "" : ", ") + n;
  SPECDEC_FAIL("acceptance rule '", name, "' is unknown; expected one of: ", known);
}

std::vector<const RuleInfo*> RuleRegistry::list() const {
  std::vector<const RuleInfo*> out;
  for (const auto& n : order_) out.push_back(&by_name_.at(n));
  return out;
}

std::vector<std::string> RuleRegistry::names() const { return order_; }

const RuleRegistry& rule_registry() {
  static const RuleRegistry registry = [] {
    RuleRegistry r;
    r.add({"greedy",
           "exact match with the target's argmax; temperature 0 only; lossless",
           true,
           {},
           [](const DrafterOptions& o) {
             o.check_all_used();
             return make_greedy_rule();
           }});
    r.add({"speculative",
           "rejection sampling with the drafter's q, recursive over tree siblings; lossless at any temperature",
           true,
           {},
           [](const DrafterOptions& o) {
             o.check_all_used();
             return make_speculative_rule();
           }});
    r.add({"typical",
           "Medusa's typical acceptance: p(x) > min(epsilon, delta * exp(-H(p)))",
           false,
           {{"epsilon", "hard threshold (Medusa's posterior_threshold), default 0.09"},
            {"delta", "entropy-scaled threshold factor (Medusa's posterior_alpha), default 0.3"}},
           [](const DrafterOptions& o) {
             TypicalParams p;
             p.epsilon = o.get_double("epsilon", p.epsilon);
             p.delta = o.get_double("delta", p.delta);
             o.check_all_used();
             SPECDEC_CHECK(p.epsilon > 0 && p.epsilon <= 1, "[", o.section(), "] epsilon in (0, 1], got ", p.epsilon);
             SPECDEC_CHECK(p.delta > 0, "[", o.section(), "] delta > 0, got ", p.delta);
             return make_typical_rule(p);
           }});
    return r;
  }();
  return registry;
}

std::unique_ptr<AcceptanceRule> make_acceptance_rule(const std::string& name, const DrafterOptions& options) {
  return rule_registry().get(name).factory(options);
}

}  // namespace specdec::verifiers
