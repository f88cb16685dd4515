// Speculative sampling is lossless at temperature 1, statistically: on stories260K the joint distribution
// of the first two generated tokens under speculative decoding (draft-model chains whose q differs from p,
// early-exit trees; rule speculative) matches plain AR sampling by a chi-square test of homogeneity. The
// negative control (AR at T = 1 vs T = 1.3) shows the test has the power to see a real difference. The
// exact-enumeration tests prove the rules; this one checks the whole decode loop (caches, RNG streams,
// trees). About 2.5 minutes on a busy 2-core machine: labelled slow.
#include <catch2/catch.hpp>

#include <omp.h>

#include <boost/math/distributions/chi_squared.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>

#include "core/backends/cpu/llama_cpu.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "tests/eagle_drafter/fitted_eagle.h"
#include "tests/support/assets.h"
#include "tests/support/medusa_heads.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

constexpr int kSamples = 20000;     // per arm
constexpr double kLevel = 0.999;    // the test's quantile: a false alarm once in 1000 runs per comparison
constexpr double kMinExpected = 5;  // the usual rule for the chi-square approximation

using test::stories;

using Pair = std::pair<TokenId, TokenId>;

struct Sample {
  std::map<Pair, int> counts;  // (token 1, token 2) -> draws
  int n = 0;
  long drafted = 0, accepted = 0;  // draft tokens over all steps
  double seconds = 0;
};

// One arm: kSamples decodes of the first two tokens. Sample i is request i (the RNG counter is
// (seed, request, step, draw)); each arm has its own seed, so the arms are independent samples.
// make_drafter(i) gives the drafter of request i, or nullptr for AR.
// info: the drafter's registry entry, which decides the verifier's stream as the runner does
// (verify_seed: oracle and synthetic verify on a stream disjoint from their reference's).
Sample draw(float temperature, uint64_t seed, int k, int max_new_tokens,
            const std::function<std::unique_ptr<Drafter>(uint64_t request)>& make_drafter,
            const DrafterInfo* info = nullptr) {
  auto& s = stories();
  auto rule = verifiers::make_speculative_rule();
  Sample out;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kSamples; ++i) {
    DecodeOptions opts;
    opts.sampling.temperature = temperature;
    opts.seed = verify_seed(info, seed);
    opts.request = static_cast<uint64_t>(i);
    opts.k = k;
    // max_new_tokens sets the draft budget (the decoder never drafts past the output: budget = remaining - 1),
    // so it is large enough for the whole proposal; decoding stops as soon as the two tokens are out.
    opts.max_new_tokens = max_new_tokens;
    int emitted = 0;
    opts.is_stop = [&emitted](TokenId) { return ++emitted >= 2; };
    auto drafter = make_drafter ? make_drafter(opts.request) : nullptr;
    const DecodeResult r = speculative_decode(s.model, drafter.get(), *rule, s.prompt, opts);
    if (r.tokens.size() != 2) FAIL("request " << i << " gave " << r.tokens.size() << " tokens, expected 2");
    ++out.counts[{r.tokens[0], r.tokens[1]}];
    ++out.n;
    out.drafted += r.drafted_tokens();
    out.accepted += r.accepted_draft_tokens();
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

struct ChiSquare {
  double statistic = 0, threshold = 0;
  int dof = 0, cells = 0, merged = 0;  // merged: observed (token 1, token 2) pairs pooled into "other"
};

// Chi-square two-sample test of homogeneity on a 2 x C table. Cell rule: a pair is its own cell when its
// expected count is >= 5 in both samples (E_ic = N_i * (a_c + b_c) / (N_a + N_b)); all other pairs are
// merged into one "other" cell, which is kept when it meets the same rule and otherwise folded into the
// smallest kept cell. dof = C - 1; the threshold is the kLevel quantile of chi-square(dof).
ChiSquare homogeneity(const Sample& a, const Sample& b) {
  const double Na = a.n, Nb = b.n, N = Na + Nb;
  std::map<Pair, std::pair<double, double>> pooled;
  for (const auto& [pair, c] : a.counts) pooled[pair].first += c;
  for (const auto& [pair, c] : b.counts) pooled[pair].second += c;
  auto enough = [&](const std::pair<double, double>& c) {
    const double total = c.first + c.second;
    return std::min(Na, Nb) * total / N >= kMinExpected;
  };
  std::vector<std::pair<double, double>> cells;
  std::pair<double, double> other{0, 0};
  ChiSquare res;
  for (const auto& [pair, c] : pooled) {
    if (enough(c)) {
      cells.push_back(c);
    } else {
      other.first += c.first;
      other.second += c.second;
      ++res.merged;
    }
  }
  if (other.first + other.second > 0) {
    if (enough(other) || cells.empty()) {
      cells.push_back(other);
    } else {
      auto smallest = std::min_element(cells.begin(), cells.end(), [](const auto& x, const auto& y) {
        return x.first + x.second < y.first + y.second;
      });
      smallest->first += other.first;
      smallest->second += other.second;
    }
  }
  for (const auto& [ca, cb] : cells) {
    const double total = ca + cb, ea = Na * total / N, eb = Nb * total / N;
    res.statistic += (ca - ea) * (ca - ea) / ea + (cb - eb) * (cb - eb) / eb;
  }
  res.cells = static_cast<int>(cells.size());
  res.dof = res.cells - 1;
  if (res.dof >= 1) res.threshold = boost::math::quantile(boost::math::chi_squared(res.dof), kLevel);
  return res;
}

ChiSquare compare(const char* what, const Sample& a, const Sample& b) {
  const ChiSquare c = homogeneity(a, b);
  std::printf(
      "%-48s chi2 = %8.2f  dof = %3d  threshold(%.3f) = %7.2f  (%d cells, %d rare pairs merged; "
      "N = %d, %d)\n",
      what, c.statistic, c.dof, kLevel, c.threshold, c.cells, c.merged, a.n, b.n);
  std::fflush(stdout);
  REQUIRE(c.dof >= 1);
  return c;
}

void print_arm(const char* what, const Sample& s) {
  std::printf("%-48s %d samples in %.1f s; %ld of %ld draft tokens accepted (%.1f%%)\n", what, s.n, s.seconds,
              s.accepted, s.drafted, s.drafted ? 100.0 * s.accepted / s.drafted : 0.0);
  std::fflush(stdout);
}

}  // namespace

TEST_CASE("speculative sampling at T = 1 matches AR in distribution (chi-square)", "[speculative][statistical]") {
  // stories260K is tiny: a second OpenMP thread only adds synchronisation (14x slower on a busy machine).
  omp_set_num_threads(1);
  auto& s = stories();
  const std::string model_path = test::stories_model();
  auto& registry = drafters::default_registry();

  const Sample ar = draw(1.0f, /*seed=*/1, 1, 2, nullptr);
  print_arm("AR T=1.0", ar);

  // Negative control first: the same test must see the change of temperature.
  const Sample hot = draw(1.3f, /*seed=*/2, 1, 2, nullptr);
  print_arm("AR T=1.3", hot);
  const ChiSquare control = compare("AR T=1.0 vs AR T=1.3 (negative control)", ar, hot);
  CHECK(control.statistic > control.threshold);

  // Drafters whose q differs from p: stories260K run over its first 2 (or 4) of 5 layers. The layers = 2
  // drafts are poor (a few % accepted: mostly the residual norm(max(0, p - q)) is tested); the layers = 4
  // ones get about half accepted, which tests the accept branch, the bonus token (chain k = 1: token 2 is
  // the bonus whenever token 1 is accepted) and both tree levels. Chains sample from q; trees take the
  // top-b (one-hot q), so siblings go through the recursive rejection rule.
  struct Arm {
    const char* label;
    const char* drafter;
    std::map<std::string, std::string> options;
    int k;
  };
  const std::vector<Arm> arms = {
      {"draft_model(layers=2) chain k=2", "draft_model", {{"model", model_path}, {"layers", "2"}}, 2},
      {"early_exit(layers=2) tree 2x2 (6 nodes)",
       "early_exit",
       {{"layers", "2"}, {"tree_width", "2"}, {"tree_depth", "2"}},
       6},
      {"draft_model(layers=4) chain k=1", "draft_model", {{"model", model_path}, {"layers", "4"}}, 1},
      {"early_exit(layers=4) tree 2x2 (6 nodes)",
       "early_exit",
       {{"layers", "4"}, {"tree_width", "2"}, {"tree_depth", "2"}},
       6},
      // Dynamic draft length: the chain stops where q's largest probability is below 0.5 (0 to 3 tokens).
      {"early_exit(layers=4) chain k=3, min_confidence=0.5",
       "early_exit",
       {{"layers", "4"}, {"min_confidence", "0.5"}},
       3},
      // Medusa heads on the target's features: a chain sampled from the heads' softmax (q), and a sparse
      // tree of deterministic candidates (one-hot q; siblings through the recursive rejection rule).
      {"medusa chain k=2", "medusa", {{"heads", test::random_medusa_heads(s.model.config(), "stat_medusa")}}, 2},
      {"medusa tree (6 nodes)",
       "medusa",
       {{"heads", test::random_medusa_heads(s.model.config(), "stat_medusa")}, {"tree_nodes", "6"}},
       6},
      // An EAGLE layer on the target's features (fc fitted to stories260K's states, so that drafts are often
      // accepted): a chain sampled from the draft softmax (q), and EAGLE-2's dynamic tree of deterministic
      // candidates (one-hot q).
      {"eagle chain k=2", "eagle", {{"weights", test::fitted_eagle_weights()}}, 2},
      {"eagle dynamic tree (6 nodes, depth 3, topk 3)",
       "eagle",
       {{"weights", test::fitted_eagle_weights()}, {"tree", "dynamic"}, {"depth", "3"}, {"topk", "3"}},
       6},
  };
  uint64_t seed = 10;
  DrafterSharedState shared;  // the run's state: heads and layers loaded once, not per request
  for (const Arm& arm : arms) {
    // max_new_tokens = k + 1, so that the first step drafts all k tokens.
    const int k = arm.k, max_new = k + 1;
    const uint64_t arm_seed = seed++;
    const Sample spec = draw(1.0f, arm_seed, k, max_new, [&](uint64_t request) {
      DrafterEnv env{.target = &s.model,
                     .tokenizer = s.tok.get(),
                     .sampling = {.temperature = 1.0f},
                     .seed = arm_seed,
                     .request = request,
                     .max_context = static_cast<int>(s.prompt.size()) + max_new + k + 1,
                     .shared = &shared,
                     .target_path = model_path};
      return make_drafter(registry.get(arm.drafter), env, DrafterOptions(arm.options, arm.drafter));
    });
    print_arm(arm.label, spec);
    CHECK(spec.accepted > 0);
    CHECK(spec.accepted < spec.drafted);  // rejections too: both branches of the rule are exercised
    const ChiSquare c = compare((std::string("AR vs ") + arm.label).c_str(), ar, spec);
    CHECK(c.statistic <= c.threshold);
  }
}

// oracle and synthetic copy the AR output of the same request. In the runner that output is the AR
// baseline's, sampled with uniform(seed, request, step, draw). Verified with the same stream, the uniform
// that tests the proposed token would be the one that drew it (with p = (1/2, 1/2) the first token would
// always be accepted when it is token 0): these arms use the production choice of stream (verify_seed).
TEST_CASE("oracle and synthetic at T = 1 match AR in distribution (chi-square)", "[speculative][statistical]") {
  omp_set_num_threads(1);
  auto& s = stories();
  auto& registry = drafters::default_registry();
  auto rule = verifiers::make_speculative_rule();
  const Sample ar = draw(1.0f, /*seed=*/101, 1, 2, nullptr);
  print_arm("AR T=1.0", ar);
  auto reference_of = [&](uint64_t seed, uint64_t request, int max_new) {
    DecodeOptions ref;
    ref.sampling.temperature = 1.0f;
    ref.seed = seed;
    ref.request = request;
    ref.max_new_tokens = max_new;
    return speculative_decode(s.model, nullptr, *rule, s.prompt, ref).tokens;
  };

  // Negative control, the bug itself: the oracle verified on its reference's own stream (info = nullptr
  // keeps opts.seed = seed). The test must see the bias.
  {
    const int k = 2, max_new = k + 1;
    const uint64_t bug_seed = 150;
    std::vector<TokenId> reference;
    const Sample biased = draw(1.0f, bug_seed, k, max_new, [&](uint64_t request) {
      reference = reference_of(bug_seed, request, max_new);
      DrafterEnv env{.target = &s.model,
                     .tokenizer = s.tok.get(),
                     .sampling = {.temperature = 1.0f},
                     .seed = bug_seed,
                     .request = request,
                     .reference = &reference,
                     .max_context = static_cast<int>(s.prompt.size()) + max_new + k + 1};
      return make_drafter(registry.get("oracle"), env, DrafterOptions({}, "oracle"));
    });
    print_arm("oracle k=2 on the reference's stream (the bug)", biased);
    const ChiSquare c = compare("AR vs oracle on the reference's stream (negative control)", ar, biased);
    CHECK(c.statistic > c.threshold);
  }

  struct Arm {
    const char* label;
    const char* drafter;
    std::map<std::string, std::string> options;
  };
  const std::vector<Arm> arms = {{"oracle k=2", "oracle", {}},
                                 {"synthetic(acceptance=0.6) k=2", "synthetic", {{"acceptance", "0.6"}}}};
  uint64_t seed = 200;
  for (const Arm& arm : arms) {
    const int k = 2, max_new = k + 1;
    const uint64_t arm_seed = seed++;
    const DrafterInfo& info = registry.get(arm.drafter);
    REQUIRE(info.needs_reference);
    std::vector<TokenId> reference;
    const Sample spec = draw(
        1.0f, arm_seed, k, max_new,
        [&](uint64_t request) {
          // The reference: this request's AR output with the run's own seed, as the runner's baseline.
          reference = reference_of(arm_seed, request, max_new);
          DrafterEnv env{.target = &s.model,
                         .tokenizer = s.tok.get(),
                         .sampling = {.temperature = 1.0f},
                         .seed = arm_seed,
                         .request = request,
                         .reference = &reference,
                         .max_context = static_cast<int>(s.prompt.size()) + max_new + k + 1};
          return make_drafter(info, env, DrafterOptions(arm.options, arm.drafter));
        },
        &info);
    print_arm(arm.label, spec);
    CHECK(spec.accepted > 0);
    CHECK(spec.accepted < spec.drafted);
    const ChiSquare c = compare((std::string("AR vs ") + arm.label).c_str(), ar, spec);
    CHECK(c.statistic <= c.threshold);
  }
}
