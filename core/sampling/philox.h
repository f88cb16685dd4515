// Philox4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC'11; Random123), the
// counter-based RNG behind every random draw in specdec. Header-only, no CUDA header: the same code runs
// on the host and, compiled by nvcc, on the device, so a (seed, request, step, draw) tuple gives the same
// number on CPU and GPU.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SPECDEC_HD __host__ __device__
#else
#define SPECDEC_HD
#endif

namespace specdec {

// Plain arrays in small POD structs (not std::array) so they are usable in device code.
struct PhiloxCounter {
  uint32_t v[4];
};
struct PhiloxKey {
  uint32_t v[2];
};

namespace detail {
inline constexpr uint32_t kPhiloxM0 = 0xD2511F53u;  // round multipliers
inline constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
inline constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // Weyl key increments (golden ratio, sqrt(3) - 1)
inline constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;

SPECDEC_HD constexpr PhiloxCounter philox4x32_round(PhiloxCounter c, PhiloxKey k) {
  // A 32x32 -> 64-bit product gives hi and lo on host and device alike (__umulhi would be device-only).
  const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c.v[0];
  const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c.v[2];
  const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
  const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
  return PhiloxCounter{{hi1 ^ c.v[1] ^ k.v[0], lo1, hi0 ^ c.v[3] ^ k.v[1], lo0}};
}
}  // namespace detail

// The Philox4x32 bijection with 10 rounds: 4 random 32-bit words for (counter, key).
// Bit-exact with Random123's philox4x32(ctr, key) (tests/sampling/test_sampling_philox.cpp checks its
// known-answer vectors).
SPECDEC_HD constexpr PhiloxCounter philox4x32_10(PhiloxCounter counter, PhiloxKey key) {
  counter = detail::philox4x32_round(counter, key);
  for (int r = 1; r < 10; ++r) {
    key.v[0] += detail::kPhiloxW0;
    key.v[1] += detail::kPhiloxW1;
    counter = detail::philox4x32_round(counter, key);
  }
  return counter;
}

// A uniform double in [0, 1) with 53 random bits (every double of the form m * 2^-53, m < 2^53, equally
// likely), a pure function of its arguments. Layout:
//   key     = { seed & 0xffffffff, seed >> 32 }
//   counter = { draw, step, request & 0xffffffff, request >> 32 }
//   w       = philox4x32_10(counter, key);  bits = ((w.v[0] << 32) | w.v[1]) >> 11
//   result  = bits * 2^-53
// request: the sequence being decoded; step: its decoding step (position); draw: which random number
// within the step (draft token, acceptance test, residual sample, ...). Every tuple maps to its own
// counter; the largest value is 1 - 2^-53, so the result is never 1. 53 bits make the quantisation of
// an inverse-CDF draw over V tokens bias each token's probability by at most 2^-53 (total variation
// <= V * 2^-53 per draw; see docs/verification.md, "Randomness"), where 24 bits allowed V * 2^-25.
SPECDEC_HD constexpr double uniform(uint64_t seed, uint64_t request, uint32_t step, uint32_t draw) {
  const PhiloxKey key{{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)}};
  const PhiloxCounter ctr{{draw, step, static_cast<uint32_t>(request), static_cast<uint32_t>(request >> 32)}};
  const PhiloxCounter w = philox4x32_10(ctr, key);
  const uint64_t bits = ((static_cast<uint64_t>(w.v[0]) << 32) | w.v[1]) >> 11;
  return static_cast<double>(bits) * (1.0 / 9007199254740992.0);  // exact: 53 bits fit a double's mantissa
}

}  // namespace specdec
