// sample_from_probs (exact edge cases of the inverse CDF, zero-probability tokens never drawn) and the
// seeded Sampler (reproducible sequences, greedy path, statistics of 200k draws, parameter errors).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/error.h"
#include "core/sampling/philox.h"
#include "core/sampling/sampling.h"

using namespace specdec;

namespace {
constexpr float kBelowOne = 1.f - std::numeric_limits<float>::epsilon() / 2;  // largest float < 1

// Pearson's statistic of observed counts against expected probabilities (nonzero ones only).
double chi_square(const std::vector<int>& count, const std::vector<double>& prob, int n) {
  double chi2 = 0;
  for (size_t i = 0; i < prob.size(); ++i) {
    if (prob[i] == 0) continue;
    const double e = prob[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  return chi2;
}
}  // namespace

TEST_CASE("sample_from_probs: the ends of the CDF", "[sampling]") {
  const std::vector<float> p{0.f, 0.f, 0.3f, 0.f, 0.7f, 0.f};
  REQUIRE(sample_from_probs(p, 0.f) == 2);        // first nonzero token, not token 0
  REQUIRE(sample_from_probs(p, kBelowOne) == 4);  // last nonzero token, not token 5
  REQUIRE(sample_from_probs(p, 0.2999f) == 2);
  REQUIRE(sample_from_probs(p, 0.3001f) == 4);
  // One-hot: every u gives the hot token.
  const std::vector<float> hot{0.f, 0.f, 0.f, 1.f, 0.f};
  for (float u : {0.f, 0.25f, 0.5f, 0.999f, kBelowOne}) REQUIRE(sample_from_probs(hot, u) == 3);
  REQUIRE(sample_from_probs(std::vector<float>{1.f}, kBelowOne) == 0);
  // Token i owns [cum_{i-1}, cum_i): a u exactly on a boundary belongs to the next token.
  const std::vector<float> q{0.25f, 0.25f, 0.f, 0.5f};
  REQUIRE(sample_from_probs(q, 0.24999999f) == 0);
  REQUIRE(sample_from_probs(q, 0.25f) == 1);
  REQUIRE(sample_from_probs(q, 0.5f) == 3);
}

TEST_CASE("sample_from_probs never draws a zero-probability token", "[sampling]") {
  // Sums to slightly less than 1 (as float round-off leaves it), with zeros after the last nonzero one.
  const std::vector<float> p{0.25f, 0.f, 0.25f, 0.4999f, 0.f, 0.f};
  REQUIRE(sample_from_probs(p, kBelowOne) == 3);
  REQUIRE(sample_from_probs(p, 0.99995f) == 3);
  // A sweep over u: never a zero token, and the token never decreases as u grows (an inverse CDF).
  int prev = 0;
  for (int i = 0; i < 100000; ++i) {
    const float u = static_cast<float>(i) / 100000.f;
    const int t = sample_from_probs(p, u);
    REQUIRE(p[static_cast<size_t>(t)] > 0.f);
    REQUIRE(t >= prev);
    prev = t;
  }
  // Unnormalised weights are scaled, not truncated: u = 0.9 lands in the last third of {1, 1, 1}.
  REQUIRE(sample_from_probs(std::vector<float>{1.f, 1.f, 1.f}, 0.9f) == 2);
}

TEST_CASE("sample_from_probs rejects invalid input", "[sampling]") {
  const std::vector<float> p{0.5f, 0.5f};
  REQUIRE_THROWS_AS(sample_from_probs(p, 1.f), Error);
  REQUIRE_THROWS_AS(sample_from_probs(p, -0.1f), Error);
  REQUIRE_THROWS_AS(sample_from_probs(std::vector<float>{0.f, 0.f}, 0.5f), Error);
  REQUIRE_THROWS_AS(sample_from_probs(std::vector<float>{0.5f, -0.1f, 0.6f}, 0.5f), Error);
  REQUIRE_THROWS_AS(sample_from_probs(std::vector<float>{}, 0.5f), Error);
}

TEST_CASE("200k seeded draws match a 6-token distribution", "[sampling]") {
  const std::vector<double> prob{0.05, 0.3, 0.15, 0.02, 0.28, 0.2};
  std::vector<float> logits;
  for (double q : prob) logits.push_back(static_cast<float>(std::log(q)));
  Sampler sampler(SamplingParams{1.f}, 1234);
  constexpr int kDraws = 200000;
  std::vector<int> count(prob.size(), 0);
  for (int i = 0; i < kDraws; ++i) ++count[static_cast<size_t>(sampler.sample(logits, 0, static_cast<uint32_t>(i)))];
  const double chi2 = chi_square(count, prob, kDraws);
  // Threshold: the 0.999 quantile of chi-square with 5 degrees of freedom, 20.52 (seeded: a fixed result).
  INFO("chi2 = " << chi2);
  REQUIRE(chi2 < 20.52);

  // The same through sample_from_probs with the documented uniform(), varying the draw index instead.
  std::vector<float> probs(prob.begin(), prob.end());
  std::fill(count.begin(), count.end(), 0);
  for (int i = 0; i < kDraws; ++i)
    ++count[static_cast<size_t>(sample_from_probs(probs, uniform(99, 3, 0, static_cast<uint32_t>(i))))];
  const double chi2_direct = chi_square(count, prob, kDraws);
  INFO("chi2 (sample_from_probs) = " << chi2_direct);
  REQUIRE(chi2_direct < 20.52);
}

TEST_CASE("filtered tokens are never drawn and the rest keep their proportions", "[sampling]") {
  // top_k = 3 keeps 0.3, 0.28, 0.2 (renormalised by 0.78).
  const std::vector<double> prob{0.05, 0.3, 0.15, 0.02, 0.28, 0.2};
  std::vector<float> logits;
  for (double q : prob) logits.push_back(static_cast<float>(std::log(q)));
  Sampler sampler(SamplingParams{1.f, 3}, 77);
  constexpr int kDraws = 100000;
  std::vector<int> count(prob.size(), 0);
  for (int i = 0; i < kDraws; ++i) ++count[static_cast<size_t>(sampler.sample(logits, 1, static_cast<uint32_t>(i)))];
  REQUIRE(count[0] == 0);
  REQUIRE(count[2] == 0);
  REQUIRE(count[3] == 0);
  const std::vector<double> kept{0, 0.3 / 0.78, 0, 0, 0.28 / 0.78, 0.2 / 0.78};
  const double chi2 = chi_square(count, kept, kDraws);
  // Threshold: the 0.999 quantile of chi-square with 2 degrees of freedom, 13.82.
  INFO("chi2 = " << chi2);
  REQUIRE(chi2 < 13.82);
}

TEST_CASE("Sampler: the same seed gives the same sequence, another seed another", "[sampling]") {
  std::vector<float> logits(1000);
  for (size_t i = 0; i < logits.size(); ++i) logits[i] = 0.01f * static_cast<float>(i % 97);
  const SamplingParams p{0.9f, 0, 0.95f};
  auto run = [&](uint64_t seed, uint64_t request) {
    Sampler s(p, seed);
    std::vector<TokenId> out;
    for (uint32_t step = 0; step < 100; ++step) out.push_back(s.sample(logits, request, step));
    return out;
  };
  const auto a = run(5, 0);
  REQUIRE(a == run(5, 0));
  REQUIRE(a != run(6, 0));
  REQUIRE(a != run(5, 1));

  // Order independence: a draw depends on its tuple only, not on what was sampled before.
  Sampler s(p, 5);
  REQUIRE(s.sample(logits, 0, 42) == a[42]);
  REQUIRE(s.sample(logits, 0, 7) == a[7]);
  // The draw index selects an independent number within a step.
  std::vector<TokenId> draws;
  for (uint32_t d = 0; d < 100; ++d) draws.push_back(s.sample(logits, 0, 3, d));
  REQUIRE(draws[0] == a[3]);
  REQUIRE(std::count(draws.begin(), draws.end(), draws[0]) < 100);
}

TEST_CASE("Sampler: greedy returns the argmax whatever the seed", "[sampling]") {
  const std::vector<float> logits{0.3f, 4.f, 4.f, -1.f};
  for (uint64_t seed : {0ull, 1ull, 123456789ull}) {
    Sampler s(SamplingParams{}, seed);
    for (uint32_t step = 0; step < 10; ++step) REQUIRE(s.sample(logits, 0, step) == 1);
  }
  // Sizes may change between calls (the scratch grows and shrinks).
  Sampler s(SamplingParams{1.f, 2}, 3);
  for (size_t V : {5u, 49152u, 3u}) {
    std::vector<float> l(V, 0.f);
    l[V - 1] = 100.f;  // all but certain
    REQUIRE(s.sample(l, 0, 0) == static_cast<TokenId>(V - 1));
  }
}

TEST_CASE("Sampler: bad parameters throw naming the key", "[sampling]") {
  using Catch::Matchers::Contains;
  REQUIRE_THROWS_WITH(Sampler(SamplingParams{-1.f}, 0), Contains("temperature") && Contains("-1"));
  REQUIRE_THROWS_WITH(Sampler(SamplingParams{1.f, -2}, 0), Contains("top_k") && Contains("-2"));
  REQUIRE_THROWS_WITH(Sampler(SamplingParams{1.f, 0, 1.25f}, 0), Contains("top_p") && Contains("1.25"));
  REQUIRE_THROWS_AS(Sampler(SamplingParams{1.f}, 0).sample(std::vector<float>{}, 0, 0), Error);
}
