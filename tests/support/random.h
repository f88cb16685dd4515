// Random test data shared by the tests (deterministic: std::mt19937 seeded by the caller).
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace specdec::test {

// n samples of N(0, scale^2) from std::mt19937(seed).
inline std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.f) {
  std::mt19937 g(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(g);
  return v;
}

}  // namespace specdec::test
