// The production acceptance rules on hand-made blocks: greedy walks the argmax path through a tree,
// speculative at temperature 0 makes the same choices, verdicts are logged, bad blocks are errors.
#include <catch2/catch.hpp>

#include <cmath>

#include "core/error.h"
#include "verifiers/rules.h"
#include "verifiers/tree_walk.h"

using namespace specdec;

namespace {
constexpr int V = 5;
// Logits with a clear argmax per row.
std::vector<float> logits_with_argmax(const std::vector<int>& best) {
  std::vector<float> l(best.size() * V, 0.f);
  for (size_t r = 0; r < best.size(); ++r) l[r * V + best[r]] = 5.f;
  return l;
}
// A block drawn from the draft distributions q, verified at temperature 1.
VerifyInput sampled(std::span<const TokenId> tokens, std::span<const int32_t> parents, std::span<const float> logits,
                    std::span<const float> q, uint64_t seed) {
  return {.tokens = tokens,
          .parents = parents,
          .logits = logits,
          .q = q,
          .vocab_size = V,
          .sampling = {.temperature = 1.f},
          .seed = seed};
}
}  // namespace

TEST_CASE("greedy and speculative(T=0) accept the argmax path of a tree", "[verifiers]") {
  // block: 0 root; 1,2 children of root; 3 child of 2; 4 child of 3
  const std::vector<TokenId> tokens = {0, 3, 1, 4, 2};
  const std::vector<int32_t> parents = {-1, 0, 0, 2, 3};
  // argmax after root = 1 (node 2), after node 2 = 4 (node 3), after node 3 = 0 (node 4 has 2: reject)
  const auto logits = logits_with_argmax({1, 2, 4, 0, 3});
  VerifyInput in{.tokens = tokens, .parents = parents, .logits = logits, .vocab_size = V};
  for (const auto& rule : {verifiers::make_greedy_rule(), verifiers::make_speculative_rule()}) {
    const auto out = rule->verify(in);
    INFO(rule->name());
    REQUIRE(out.path == std::vector<int32_t>{2, 3});
    REQUIRE(out.next == 0);
    REQUIRE(out.verdicts.size() == 4);
    CHECK(out.verdicts[0].visited);  // node 1 tested first and rejected
    CHECK_FALSE(out.verdicts[0].accepted);
    CHECK(out.verdicts[1].accepted);
    CHECK(out.verdicts[2].accepted);
    CHECK(out.verdicts[3].visited);
    CHECK_FALSE(out.verdicts[3].accepted);
    CHECK(out.verdicts[1].p_target == Approx(1.0));
  }
}

TEST_CASE("speculative logs p, q and the uniform draw of every test", "[verifiers]") {
  const std::vector<TokenId> tokens = {0, 2, 3};
  const std::vector<int32_t> parents = {-1, 0, 1};
  std::vector<float> logits(3 * V, 0.f);  // uniform target
  std::vector<float> q(2 * V, 0.f);
  q[0 * V + 2] = 1.f;  // node 1 drawn from one-hot q
  q[1 * V + 3] = 0.5f, q[1 * V + 4] = 0.5f;
  VerifyInput in = sampled(tokens, parents, logits, q, 7);
  in.request = 1;
  in.step = 3;
  const auto out = verifiers::make_speculative_rule()->verify(in);
  REQUIRE(out.verdicts[0].visited);
  CHECK(out.verdicts[0].p_target == Approx(0.2));
  CHECK(out.verdicts[0].q_draft == Approx(1.0));
  CHECK(out.verdicts[0].u >= 0.f);
  CHECK(out.verdicts[0].accepted == (out.verdicts[0].u < 0.2f));
  const auto again = verifiers::make_speculative_rule()->verify(in);
  CHECK(again.next == out.next);  // same (seed, request, step): same draws
  CHECK(again.path == out.path);
}

TEST_CASE("typical acceptance keeps the longest typical path and is labelled lossy", "[verifiers]") {
  const std::vector<TokenId> tokens = {0, 1, 2};
  const std::vector<int32_t> parents = {-1, 0, 1};
  const auto logits = logits_with_argmax({1, 2, 3});
  VerifyInput in{
      .tokens = tokens, .parents = parents, .logits = logits, .vocab_size = V, .sampling = {.temperature = 1.f}};
  auto rule = verifiers::make_typical_rule();
  REQUIRE_FALSE(rule->lossless());
  const auto out = rule->verify(in);
  REQUIRE(out.path == std::vector<int32_t>{1, 2});  // p = e^5/(e^5+4) ~ 0.97 > threshold
}

TEST_CASE("malformed blocks and unknown rules are one-line errors", "[verifiers]") {
  const std::vector<TokenId> tokens = {0, 1};
  const std::vector<int32_t> bad_parents = {-1, 1};
  const auto logits = logits_with_argmax({1, 1});
  VerifyInput in{.tokens = tokens, .parents = bad_parents, .logits = logits, .vocab_size = V};
  REQUIRE_THROWS_WITH(verifiers::make_greedy_rule()->verify(in), Catch::Contains("parent of node 1"));
  REQUIRE_THROWS_WITH(verifiers::make_acceptance_rule("lenient"),
                      Catch::Contains("'lenient'") && Catch::Contains("greedy, speculative, typical"));
}

namespace {
// A toy tree for tree_walk.h: root -> one child (token 0) with target p at the root and draft q.
struct OneChild {
  std::vector<double> p, q;
  int size() const { return 2; }
  const std::vector<int>& children(int n) const {
    static const std::vector<int> one = {1}, none;
    return n == 0 ? one : none;
  }
  int token(int) const { return 0; }
  const std::vector<double>& target(int) const { return p; }
  const std::vector<double>* draft(int) const { return &q; }
};
struct Rejecting {  // rejects every test; categorical returns the first positive weight
  bool bernoulli(double) { return false; }
  int categorical(const std::vector<double>& w) {
    for (size_t i = 0; i < w.size(); ++i)
      if (w[i] > 0) return static_cast<int>(i);
    return -1;
  }
};
}  // namespace

TEST_CASE("a rejection that leaves no residual is an error, not a silent fall-back to p", "[verifiers]") {
  // q = (0.6, 0.6) is no distribution: it covers p = (0.5, 0.5) everywhere, so after rejecting token 0
  // max(0, p - q) is zero. The walk used to continue from p; it must throw.
  OneChild t{{0.5, 0.5}, {0.6, 0.6}};
  Rejecting src;
  std::string e;
  try {
    verifiers::speculative_walk<double>(t, src);
  } catch (const Error& err) {
    e = err.what();
  }
  CHECK_THAT(e, Catch::Contains("draft node 1") && Catch::Contains("not a probability distribution"));
  // A valid q leaves a residual: no error.
  OneChild ok{{0.5, 0.5}, {0.6, 0.4}};
  CHECK(verifiers::speculative_walk<double>(ok, src).next == 1);
}

TEST_CASE("p and q rows are used normalised: a q row = p * (1 + 9e-4) is always accepted", "[verifiers]") {
  // q within the tolerance of 1 but above p everywhere. Unnormalised, a = p / q = 1 / 1.0009 < 1 would reject
  // about once in 1100 tests, and the residual max(0, p - q) would be zero (the error above). Normalised,
  // q equals p and every test accepts.
  const std::vector<TokenId> tokens = {0, 2};
  const std::vector<int32_t> parents = {-1, 0};
  std::vector<float> logits(2 * V, 0.f);  // uniform target: p = 0.2 each
  std::vector<float> q(V, 0.2f * 1.0009f);
  int rejected = 0;
  for (uint64_t seed = 0; seed < 5000; ++seed) {
    const VerifyInput in = sampled(tokens, parents, logits, q, seed);
    rejected += verifiers::make_speculative_rule()->verify(in).path.empty() ? 1 : 0;
  }
  CHECK(rejected == 0);
}
