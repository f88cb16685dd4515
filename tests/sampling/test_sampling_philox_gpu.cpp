// The device build of philox.h against the host one: the Random123 known answers and uniform() on the
// GPU, bit for bit (gpu label: skipped without a device).
#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "core/sampling/philox.h"
#include "tests/sampling/philox_device.h"

using namespace specdec;

TEST_CASE("philox4x32_10 on the GPU reproduces the known answers", "[sampling][philox][gpu]") {
  const std::vector<uint32_t> ctr{0x00000000u, 0x00000000u, 0x00000000u, 0x00000000u,  //
                                  0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu,  //
                                  0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u};
  const std::vector<uint32_t> key{0x00000000u, 0x00000000u,  //
                                  0xffffffffu, 0xffffffffu,  //
                                  0xa4093822u, 0x299f31d0u};
  const std::vector<uint32_t> expected{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u,  //
                                       0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu,  //
                                       0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u};
  std::vector<uint32_t> out(12);
  test::philox_on_device(out.data(), ctr.data(), key.data(), 3);
  REQUIRE(out == expected);
}

TEST_CASE("uniform() on the GPU equals uniform() on the CPU bit for bit", "[sampling][philox][gpu]") {
  constexpr int kN = 100003;  // awkward: not a multiple of the block size
  const uint64_t seed = 0x9e3779b97f4a7c15ull, request = (1ull << 32) + 17;
  const uint32_t step = 41, first_draw = 0xfffff000u;  // the draw counter wraps within the run
  std::vector<double> gpu(kN);
  test::uniform_on_device(gpu.data(), kN, seed, request, step, first_draw);
  for (int i = 0; i < kN; ++i) {
    INFO("draw " << i);
    REQUIRE(gpu[i] == uniform(seed, request, step, first_draw + static_cast<uint32_t>(i)));
  }
}
