// logits_to_probs (greedy, temperature, top-k, top-p and their combination) against worked examples and
// a plain double-precision reference (full sort, no chunking), over awkward sizes up to V = 49152.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/sampling/sampling.h"

using namespace specdec;

namespace {
// The documented rule written for obviousness: softmax in double, a full sort by (logit desc, index
// asc), keep the first k, then the shortest prefix reaching top_p of what is left, renormalise.
std::vector<double> simple_probs(const std::vector<float>& logits, const SamplingParams& p) {
  const size_t V = logits.size();
  std::vector<double> out(V, 0.0);
  if (p.greedy()) {
    out[static_cast<size_t>(std::max_element(logits.begin(), logits.end()) - logits.begin())] = 1.0;
    return out;
  }
  const double m = *std::max_element(logits.begin(), logits.end());
  std::vector<size_t> order(V);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return logits[a] > logits[b]; });
  size_t n = V;
  if (p.top_k > 0) n = std::min(n, static_cast<size_t>(p.top_k));
  std::vector<double> w(n);
  double total = 0;
  for (size_t j = 0; j < n; ++j) total += w[j] = std::exp((logits[order[j]] - m) / p.temperature);
  if (p.top_p < 1.f) {
    double cum = 0;
    for (size_t j = 0; j < n; ++j) {
      cum += w[j];
      if (cum >= (p.top_p - kTopPSlack) * total) {
        n = j + 1;
        break;
      }
    }
  }
  double kept = 0;
  for (size_t j = 0; j < n; ++j) kept += w[j];
  for (size_t j = 0; j < n; ++j) out[order[j]] = w[j] / kept;
  return out;
}

std::vector<float> probs_of(const std::vector<float>& logits, const SamplingParams& p) {
  std::vector<float> probs(logits.size(), -1.f);  // poison: every entry must be written
  logits_to_probs(logits, p, probs);
  return probs;
}

std::vector<float> log_of(const std::vector<float>& p) {
  std::vector<float> l(p.size());
  for (size_t i = 0; i < p.size(); ++i) l[i] = std::log(p[i]);
  return l;
}

// Normal logits, optionally rounded to a grid so that exact ties are common.
std::vector<float> random_logits(size_t V, uint32_t seed, float sd, float grid = 0.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, sd);
  std::vector<float> l(V);
  for (auto& x : l) x = grid > 0.f ? std::round(d(g) / grid) * grid : d(g);
  return l;
}

size_t count_nonzero(const std::vector<float>& p) {
  return static_cast<size_t>(std::count_if(p.begin(), p.end(), [](float x) { return x != 0.f; }));
}

double sum_of(const std::vector<float>& p) { return std::accumulate(p.begin(), p.end(), 0.0); }
}  // namespace

TEST_CASE("argmax picks the largest logit, the lowest index on ties", "[sampling]") {
  REQUIRE(argmax(std::vector<float>{0.5f}) == 0);
  REQUIRE(argmax(std::vector<float>{1.f, 3.f, 3.f, 2.f}) == 1);
  REQUIRE(argmax(std::vector<float>{7.f, 7.f, 7.f}) == 0);
  REQUIRE(argmax(std::vector<float>{-5.f, -1.f, -INFINITY, -1.f}) == 1);
  REQUIRE_THROWS_AS(argmax(std::vector<float>{}), Error);
}

TEST_CASE("greedy gives a one-hot distribution at the argmax", "[sampling]") {
  const std::vector<float> logits{0.1f, 2.f, -1.f, 2.f, 1.9f};
  for (const SamplingParams& p : {SamplingParams{}, SamplingParams{0.f, 3, 0.5f}}) {
    REQUIRE(p.greedy());
    const auto probs = probs_of(logits, p);
    REQUIRE(probs == std::vector<float>{0.f, 1.f, 0.f, 0.f, 0.f});
  }
}

TEST_CASE("temperature sampling is softmax(logits / T)", "[sampling]") {
  const auto logits = random_logits(37, 11, 2.f);
  for (float T : {1.f, 2.f, 0.5f, 0.05f, 20.f}) {
    INFO("T = " << T);
    const auto probs = probs_of(logits, SamplingParams{T});
    double m = *std::max_element(logits.begin(), logits.end()), z = 0;
    for (float l : logits) z += std::exp((l - m) / T);
    for (size_t i = 0; i < logits.size(); ++i)
      REQUIRE(probs[i] == Approx(std::exp((logits[i] - m) / T) / z).epsilon(1e-5).margin(1e-7));
    REQUIRE(sum_of(probs) == Approx(1.0).epsilon(1e-6));
  }
}

TEST_CASE("top-k keeps exactly k tokens with softmax's relative masses", "[sampling]") {
  const auto logits = random_logits(1002, 5, 3.f);
  for (int k : {1, 2, 5, 50, 1001}) {
    INFO("k = " << k);
    const auto probs = probs_of(logits, SamplingParams{1.f, k});
    REQUIRE(count_nonzero(probs) == static_cast<size_t>(k));
    REQUIRE(sum_of(probs) == Approx(1.0).epsilon(1e-6));
    // The survivors are the k largest logits ...
    std::vector<float> sorted = logits;
    std::sort(sorted.begin(), sorted.end(), std::greater<>());
    const float kth = sorted[static_cast<size_t>(k) - 1];
    const size_t top = argmax(logits);
    for (size_t i = 0; i < logits.size(); ++i) {
      REQUIRE((probs[i] != 0.f) == (logits[i] >= kth));
      // ... with the ratios of the full softmax: p_i / p_top = exp(l_i - l_top).
      if (probs[i] != 0.f)
        REQUIRE(probs[i] / probs[top] == Approx(std::exp(static_cast<double>(logits[i]) - logits[top])).epsilon(1e-5));
    }
  }
  // k >= V is a no-op.
  REQUIRE(count_nonzero(probs_of(logits, SamplingParams{1.f, 1002})) == 1002);
  REQUIRE(count_nonzero(probs_of(logits, SamplingParams{1.f, 5000})) == 1002);
}

TEST_CASE("top-k breaks ties at the k-th value by lower index", "[sampling]") {
  const std::vector<float> logits{1.f, 2.f, 0.f, 2.f, 2.f, 2.f};
  REQUIRE(probs_of(logits, SamplingParams{1.f, 2}) == std::vector<float>{0.f, 0.5f, 0.f, 0.5f, 0.f, 0.f});
  const auto p3 = probs_of(logits, SamplingParams{1.f, 3});
  REQUIRE(count_nonzero(p3) == 3);
  REQUIRE((p3[1] != 0.f && p3[3] != 0.f && p3[4] != 0.f));
  // All equal: the first k.
  const std::vector<float> flat(10, 0.25f);
  REQUIRE(probs_of(flat, SamplingParams{1.f, 4}) ==
          std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f});
}

TEST_CASE("top-p keeps exactly the shortest prefix that reaches the mass", "[sampling]") {
  // Known probabilities, shuffled so that the sort matters: index -> mass.
  const std::vector<float> mass{0.1f, 0.5f, 0.04f, 0.3f, 0.06f};
  const auto logits = log_of(mass);
  struct Case {
    float top_p;
    std::vector<int> kept;  // indices expected to survive
  };
  const Case cases[] = {
      {0.5f, {1}},              // 0.5 reaches 0.5 exactly
      {0.8f, {1, 3}},           // 0.5 + 0.3 reaches 0.8 exactly
      {0.81f, {1, 3, 0}},       // needs the 0.1
      {0.95f, {1, 3, 0, 4}},    // 0.9 < 0.95 <= 0.96
      {1.0f, {1, 3, 0, 4, 2}},  // off
      {0.01f, {1}},             // at least one token
  };
  for (const Case& c : cases) {
    INFO("top_p = " << c.top_p);
    const auto probs = probs_of(logits, SamplingParams{1.f, 0, c.top_p});
    double kept_mass = 0;
    for (int i : c.kept) kept_mass += mass[static_cast<size_t>(i)];
    REQUIRE(count_nonzero(probs) == c.kept.size());
    for (int i : c.kept) {
      const size_t t = static_cast<size_t>(i);
      REQUIRE(probs[t] == Approx(mass[t] / kept_mass).epsilon(1e-6));
    }
  }
}

TEST_CASE("top-k then top-p: top-p applies to the mass left by top-k", "[sampling]") {
  const std::vector<float> mass{0.1f, 0.5f, 0.04f, 0.3f, 0.06f};
  const auto logits = log_of(mass);
  // Alone, top_p = 0.6 needs 0.5 + 0.3. After top-k = 2 the survivors weigh 0.625 / 0.375: one suffices.
  REQUIRE(count_nonzero(probs_of(logits, SamplingParams{1.f, 0, 0.6f})) == 2);
  REQUIRE(probs_of(logits, SamplingParams{1.f, 2, 0.6f}) == std::vector<float>{0.f, 1.f, 0.f, 0.f, 0.f});
  // top-k = 4 leaves 0.5, 0.3, 0.1, 0.06 (total 0.96): 0.8 / 0.96 < 0.85 <= 0.9 / 0.96.
  const auto p = probs_of(logits, SamplingParams{1.f, 4, 0.85f});
  REQUIRE(count_nonzero(p) == 3);
  REQUIRE(p[0] == Approx(0.1 / 0.9).epsilon(1e-6));
  REQUIRE(p[1] == Approx(0.5 / 0.9).epsilon(1e-6));
  REQUIRE(p[3] == Approx(0.3 / 0.9).epsilon(1e-6));
  // Temperature applies before both: T = 2 flattens 0.5 / 0.3 / ... to sqrt-proportional masses.
  const auto t2 = probs_of(logits, SamplingParams{2.f, 2});
  REQUIRE(t2[1] == Approx(std::sqrt(0.5) / (std::sqrt(0.5) + std::sqrt(0.3))).epsilon(1e-6));
}

TEST_CASE("V = 1 always gives probability 1", "[sampling]") {
  const std::vector<float> one{-3.f};
  for (const SamplingParams& p : {SamplingParams{}, SamplingParams{1.f}, SamplingParams{0.7f, 1},
                                  SamplingParams{1.f, 5, 0.1f}, SamplingParams{3.f, 0, 0.5f}})
    REQUIRE(probs_of(one, p) == std::vector<float>{1.f});
}

TEST_CASE("logits_to_probs matches the simple reference over awkward sizes", "[sampling]") {
  const SamplingParams params[] = {
      {1.f},
      {0.7f, 0, 1.f},
      {1.f, 1},
      {1.f, 40},
      {1.3f, 0, 0.9f},
      {1.f, 0, 0.5f},
      {0.8f, 50, 0.95f},
      {1.f, 300, 0.3f},
      {2.f, 0, 0.999f},
      {0.f, 10, 0.9f},
      {1.f, 3000, 1.f},
      {1.f, 3000, 0.97f},
      {4.f, 0, 0.99f},
  };
  SamplingScratch scratch;  // reused across sizes, as Sampler does
  for (size_t V : {1u, 3u, 7u, 37u, 1002u, 4099u, 49152u}) {
    for (int variant : {0, 1, 2}) {  // 1: logits on a grid of 0.5, many exact ties; 2: some -inf
      auto logits = random_logits(V, static_cast<uint32_t>(V * 3 + variant), 2.5f, variant == 1 ? 0.5f : 0.f);
      if (variant == 2)
        for (size_t i = 1; i < V; i += 7) logits[i] = -INFINITY;
      for (const SamplingParams& p : params) {
        INFO("V = " << V << " variant = " << variant << " T = " << p.temperature << " k = " << p.top_k
                    << " p = " << p.top_p);
        std::vector<float> probs(V, -1.f);
        logits_to_probs(logits, p, probs, scratch);
        const auto ref = simple_probs(logits, p);
        for (size_t i = 0; i < V; ++i) {
          REQUIRE((probs[i] == 0.f) == (ref[i] == 0.0));  // the same survivors, exactly
          REQUIRE(probs[i] == Approx(ref[i]).epsilon(1e-5).margin(1e-9));
        }
        REQUIRE(sum_of(probs) == Approx(1.0).epsilon(1e-5));
      }
    }
  }
}

TEST_CASE("equal logits: top-k and top-p keep the lowest indices", "[sampling]") {
  const std::vector<float> flat(4099, 1.5f);
  // top_p = 0.5 of 4099 equal masses needs ceil(2049.5) = 2050 tokens: 0 .. 2049.
  // With top_k = 3000 first, top_p = 2050 / 3000 (less a little) selects the same 2050.
  for (const SamplingParams& p : {SamplingParams{1.f, 0, 0.5f}, SamplingParams{1.f, 3000, 0.5f * 4099 / 3000}}) {
    const auto probs = probs_of(flat, p);
    for (size_t i = 0; i < flat.size(); ++i) {
      INFO("top_k = " << p.top_k << " token " << i);
      REQUIRE(probs[i] == (i < 2050 ? Approx(1.0 / 2050) : Approx(0.0)));
    }
  }
}

TEST_CASE("a tiny top_p or top_k = 1 reduces to the argmax at V = 49152", "[sampling]") {
  const auto logits = random_logits(49152, 3, 4.f);
  const size_t top = argmax(logits);
  for (const SamplingParams& p : {SamplingParams{1.f, 1}, SamplingParams{0.5f, 0, 1e-6f}}) {
    const auto probs = probs_of(logits, p);
    REQUIRE(count_nonzero(probs) == 1);
    REQUIRE(probs[top] == 1.f);
  }
}

TEST_CASE("bad parameters and inputs throw one-line errors naming the key", "[sampling]") {
  using Catch::Matchers::Contains;
  REQUIRE_THROWS_WITH((SamplingParams{-0.5f}.validate()), Contains("temperature") && Contains("-0.5"));
  REQUIRE_THROWS_WITH((SamplingParams{NAN}.validate()), Contains("temperature"));
  REQUIRE_THROWS_WITH((SamplingParams{1.f, -3}.validate()), Contains("top_k") && Contains("-3"));
  REQUIRE_THROWS_WITH((SamplingParams{1.f, 0, 0.f}.validate()), Contains("top_p") && Contains("0"));
  REQUIRE_THROWS_WITH((SamplingParams{1.f, 0, 1.5f}.validate()), Contains("top_p") && Contains("1.5"));
  REQUIRE_NOTHROW(SamplingParams{0.f, 0, 1.f}.validate());

  std::vector<float> probs(3);
  REQUIRE_THROWS_WITH(logits_to_probs(std::vector<float>{1.f, 2.f, 3.f}, SamplingParams{1.f, 0, 2.f}, probs),
                      Contains("top_p"));
  REQUIRE_THROWS_AS(logits_to_probs(std::vector<float>{1.f, NAN, 3.f}, SamplingParams{1.f}, probs), Error);
  REQUIRE_THROWS_AS(logits_to_probs(std::vector<float>{1.f, INFINITY, 3.f}, SamplingParams{1.f}, probs), Error);
  REQUIRE_THROWS_AS(logits_to_probs(std::vector<float>(3, -INFINITY), SamplingParams{1.f}, probs), Error);
  std::vector<float> short_probs(2);
  REQUIRE_THROWS_AS(logits_to_probs(std::vector<float>{1.f, 2.f, 3.f}, SamplingParams{1.f}, short_probs), Error);
  // -inf logits are fine while one is finite: they get probability 0.
  const auto p = probs_of({-INFINITY, 0.f, -INFINITY}, SamplingParams{1.f});
  REQUIRE(p == std::vector<float>{0.f, 1.f, 0.f});
}
