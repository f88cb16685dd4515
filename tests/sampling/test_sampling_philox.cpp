// Philox4x32-10 against the Random123 known-answer vectors, and the uniform() mapping built on it:
// range, determinism, sensitivity to every field of the tuple, and a chi-square uniformity check.
#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <vector>

#include "core/sampling/philox.h"

using specdec::philox4x32_10;
using specdec::PhiloxCounter;
using specdec::PhiloxKey;
using specdec::uniform;

namespace {
struct Kat {
  PhiloxCounter ctr;
  PhiloxKey key;
  PhiloxCounter expected;
};
// Random123's kat_vectors, philox4x32 with 10 rounds (as reproduced in D. E. Shaw Research's
// fs123/core123/ut/ut_philox.cpp): counter words, key words, then the 4 output words.
constexpr Kat kKats[] = {
    {{{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u}},
     {{0x00000000u, 0x00000000u}},
     {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}}},
    {{{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}},
     {{0xffffffffu, 0xffffffffu}},
     {{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}}},
    {{{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}},
     {{0xa4093822u, 0x299f31d0u}},
     {{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}}},
};

constexpr bool same(PhiloxCounter a, PhiloxCounter b) {
  return a.v[0] == b.v[0] && a.v[1] == b.v[1] && a.v[2] == b.v[2] && a.v[3] == b.v[3];
}
}  // namespace

// constexpr evaluation: the device build uses the very same code, so a compile-time check pins it.
static_assert(same(philox4x32_10(kKats[0].ctr, kKats[0].key), kKats[0].expected));
static_assert(same(philox4x32_10(kKats[2].ctr, kKats[2].key), kKats[2].expected));

TEST_CASE("philox4x32_10 reproduces the Random123 known-answer vectors", "[sampling][philox]") {
  for (const Kat& k : kKats) {
    const PhiloxCounter out = philox4x32_10(k.ctr, k.key);
    for (int w = 0; w < 4; ++w) {
      INFO("word " << w);
      REQUIRE(out.v[w] == k.expected.v[w]);
    }
  }
}

TEST_CASE("uniform follows the documented counter/key layout", "[sampling][philox]") {
  const uint64_t seed = 0x0123456789abcdefull, request = 0xfedcba9876543210ull;
  const uint32_t step = 17, draw = 3;
  const PhiloxCounter out =
      philox4x32_10(PhiloxCounter{{draw, step, 0x76543210u, 0xfedcba98u}}, PhiloxKey{{0x89abcdefu, 0x01234567u}});
  const uint64_t bits = ((static_cast<uint64_t>(out.v[0]) << 32) | out.v[1]) >> 11;
  REQUIRE(uniform(seed, request, step, draw) == static_cast<double>(bits) / 9007199254740992.0);
}

TEST_CASE("uniform is in [0, 1), deterministic and sensitive to every field", "[sampling][philox]") {
  for (uint32_t d = 0; d < 10000; ++d) {
    const double u = uniform(42, 7, 3, d);
    REQUIRE(u >= 0.0);
    REQUIRE(u < 1.0);
    REQUIRE(u == uniform(42, 7, 3, d));
  }
  const double base = uniform(1, 2, 3, 4);
  CHECK(base != uniform(1, 2, 3, 5));                 // draw
  CHECK(base != uniform(1, 2, 4, 4));                 // step
  CHECK(base != uniform(1, 3, 3, 4));                 // request, low word
  CHECK(base != uniform(1, 2 + (1ull << 32), 3, 4));  // request, high word
  CHECK(base != uniform(2, 2, 3, 4));                 // seed, low word
  CHECK(base != uniform(1 + (1ull << 32), 2, 3, 4));  // seed, high word

  // Consecutive draws of one step are distinct (53-bit values: a collision among 10,000 has p ~ 6e-9).
  std::set<double> seen;
  for (uint32_t d = 0; d < 10000; ++d) seen.insert(uniform(9, 0, 0, d));
  CHECK(seen.size() == 10000);
}

TEST_CASE("uniform carries 53 random bits", "[sampling][philox]") {
  // A 24-bit uniform is a multiple of 2^-24: its low 29 mantissa bits (of 53) are always zero. Here, over
  // 10,000 draws, every one of the 53 bit positions of u * 2^53 must be set in some draw and clear in another.
  uint64_t any_set = 0, any_clear = 0;
  for (uint32_t d = 0; d < 10000; ++d) {
    const double u = uniform(77, 1, 2, d);
    const auto m = static_cast<uint64_t>(u * 9007199254740992.0);  // exact: u = m * 2^-53
    REQUIRE(static_cast<double>(m) / 9007199254740992.0 == u);
    any_set |= m;
    any_clear |= ~m;
  }
  const uint64_t all53 = (uint64_t{1} << 53) - 1;
  CHECK((any_set & all53) == all53);
  CHECK((any_clear & all53) == all53);
}

TEST_CASE("uniform passes a chi-square uniformity test", "[sampling][philox]") {
  constexpr int kBins = 100;
  constexpr int kDraws = 100000;
  std::vector<int> count(kBins, 0);
  for (int i = 0; i < kDraws; ++i) {
    // Walk draw and step both, as a decode loop does.
    const double u = uniform(2024, 5, static_cast<uint32_t>(i / 1000), static_cast<uint32_t>(i % 1000));
    ++count[static_cast<int>(u * kBins)];
  }
  const double expected = static_cast<double>(kDraws) / kBins;
  double chi2 = 0;
  for (int c : count) chi2 += (c - expected) * (c - expected) / expected;
  // Threshold: the 0.999 quantile of chi-square with 99 degrees of freedom, ~148.2. The draws are
  // seeded, so the outcome is fixed; the threshold only says the fixed sample is unremarkable.
  INFO("chi2 = " << chi2);
  REQUIRE(chi2 < 148.2);
}
