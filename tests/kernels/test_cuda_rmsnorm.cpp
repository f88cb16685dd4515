// The CUDA RMSNorm against its CPU twin over awkward shapes (gpu label: skipped without a device).
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/rmsnorm.cuh"
#include "tests/support/cuda_buffer.h"
#include "tests/support/random.h"
#include "tests/support/shapes.h"

namespace shapes = specdec::test::shapes;

namespace {

using specdec::test::DeviceBuffer;
using specdec::test::randn;

}  // namespace

TEST_CASE("cuda rmsnorm equals the CPU twin over awkward shapes", "[gpu][kernels]") {
  for (int H : shapes::kWidths) {
    for (int T : shapes::kBlockRows) {
      const auto x = randn(static_cast<size_t>(T) * H, H + T), w = randn(H, H);
      std::vector<float> ref(x.size());
      specdec::cpu::rmsnorm_ref(ref.data(), x.data(), w.data(), T, H, 1e-5f);
      DeviceBuffer<float> dx(x), dw(w), dout(x.size());
      specdec::cuda::rmsnorm(dout.get(), dx.get(), dw.get(), T, H, 1e-5f, nullptr);
      specdec::cuda::device_synchronize();
      const auto got = dout.download();
      for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-5).epsilon(1e-5));
    }
  }
}
