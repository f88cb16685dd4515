// The backend registry (core/backends/registry.h): which backends this build lists, how device strings
// resolve, and the one-line refusals of an unknown device and of cuda where it cannot run.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "core/backends/registry.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"

#if SPECDEC_HAVE_CUDA
#include "kernels/cuda/device.h"
#endif

using namespace specdec;
using Catch::Contains;
using test::error_of;

namespace {

std::vector<std::string> names() {
  std::vector<std::string> n;
  for (const BackendInfo& b : backends()) n.push_back(b.name);
  return n;
}

}  // namespace

TEST_CASE("the registry lists cpu, and cuda only in a CUDA build") {
#if SPECDEC_HAVE_CUDA
  CHECK(names() == std::vector<std::string>{"cpu", "cuda"});
#else
  CHECK(names() == std::vector<std::string>{"cpu"});
#endif
  for (const BackendInfo& b : backends()) {
    INFO(b.name);
    CHECK(!b.help.empty());
    CHECK(b.make);
  }
}

TEST_CASE("resolve_device: cpu, and unknown devices named with the known ones") {
  const Device cpu = resolve_device("cpu");
  REQUIRE(cpu.backend != nullptr);
  CHECK(cpu.backend->name == "cpu");
  CHECK(cpu.index == 0);
  for (const char* bad : {"tpu", "cpu:0", "cuda:", "cuda:x", "cuda:-1", "CUDA", ""}) {
    INFO(bad);
    CHECK_THAT(error_of([&] { resolve_device(bad, "[target] device"); }),
               Contains(std::string("unknown device '") + bad + "' ([target] device): expected cpu, cuda or cuda:N"));
  }
  const DeviceDescription none = device_description("tpu");
  CHECK(none.gpu == "none");
  CHECK(device_description("cpu").cublas == "none");
}

TEST_CASE("resolve_device: cuda says why it cannot run here") {
#if SPECDEC_HAVE_CUDA
  const int n = cuda::device_count();
  if (n > 0) {
    const Device d = resolve_device("cuda:0");
    CHECK(d.backend->name == "cuda");
    CHECK(error_of([&] { resolve_device("cuda:" + std::to_string(n)); }).find("not found: this machine has") !=
          std::string::npos);
    return;
  }
  CHECK_THAT(error_of([] { resolve_device("cuda"); }), Contains("no CUDA device found (--device cuda)"));
  CHECK_THAT(error_of([] { resolve_device("cuda:2", "[target] device"); }),
             Contains("no CUDA device found ([target] device cuda:2)"));
#else
  CHECK_THAT(error_of([] { resolve_device("cuda"); }), Contains("specdec was built without CUDA (--device cuda)"));
  CHECK_THAT(error_of([] { resolve_device("cuda:2", "[target] device"); }),
             Contains("specdec was built without CUDA ([target] device cuda:2)"));
#endif
  CHECK(device_description("cuda").gpu == "none");  // not usable here: nothing to describe
}

TEST_CASE("make_backend_model: the CPU model on stories260K") {
  const auto model = make_backend_model(load_model(test::stories_model()), "cpu");
  CHECK(std::string(model->device()) == "cpu");
  CHECK_THAT(error_of([&] { make_backend_model(load_model(test::stories_model()), "tpu"); }),
             Contains("unknown device 'tpu' (--device)"));
}
