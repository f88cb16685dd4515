// --device: cpu (LlamaCpu) or cuda[:N] (LlamaCuda, compiled in when SPECDEC_HAVE_CUDA is defined).
#include "experiments/backend.h"

#include <charconv>
#include <map>

#include "core/error.h"
#include "core/backends/cpu/llama_cpu.h"

#if SPECDEC_HAVE_CUDA
#include "kernels/cuda/device.h"
#include "core/backends/cuda/llama_cuda.h"
#endif

namespace specdec::experiments {
namespace {

// "cuda" -> 0, "cuda:N" -> N; -1 for anything else.
int cuda_index(const std::string& device) {
  if (device == "cuda") return 0;
  if (device.rfind("cuda:", 0) != 0 || device.size() == 5) return -1;
  int n = -1;
  const char* b = device.data() + 5;
  const char* e = device.data() + device.size();
  const auto r = std::from_chars(b, e, n);
  return r.ec == std::errc() && r.ptr == e && n >= 0 ? n : -1;
}

}  // namespace

void check_device(const std::string& device, const std::string& where) {
  if (device == "cpu") return;
  const int index = cuda_index(device);
  SPECDEC_CHECK(index >= 0, "unknown device '", device, "' (", where, "): expected cpu, cuda or cuda:N");
#if SPECDEC_HAVE_CUDA
  const int n = cuda::device_count();
  SPECDEC_CHECK(n > 0, "no CUDA device found (", where, " ", device, ")");
  SPECDEC_CHECK(index < n, "CUDA device ", index, " not found: this machine has ", n, " (", where, " ", device, ")");
#else
  (void)index;
  SPECDEC_FAIL("specdec was built without CUDA (", where, " ", device, ")");
#endif
}

std::unique_ptr<Model> make_model(std::shared_ptr<const LoadedModel> model, const std::string& device,
                                  const std::string& where) {
  check_device(device, where);
  if (device == "cpu") return std::make_unique<LlamaCpu>(std::move(model));
#if SPECDEC_HAVE_CUDA
  return cuda::make_cuda_model(std::move(model), cuda_index(device));
#else
  SPECDEC_FAIL("specdec was built without CUDA (", where, " ", device, ")");  // unreachable: check_device threw
#endif
}

ModelFactory model_factory(const std::string& device) {
  auto models = std::make_shared<std::map<std::string, std::shared_ptr<Model>>>();
  return [device, models](std::shared_ptr<const LoadedModel> loaded) -> std::shared_ptr<Model> {
    SPECDEC_CHECK(loaded != nullptr, "a loaded model");
    auto it = models->find(loaded->path);
    if (it != models->end()) return it->second;
    std::shared_ptr<Model> m = make_model(loaded, device);
    models->emplace(loaded->path, m);
    return m;
  };
}

DeviceDescription describe_device(const std::string& device) {
  DeviceDescription d;
#if SPECDEC_HAVE_CUDA
  const int index = cuda_index(device);
  if (index >= 0 && index < cuda::device_count()) {
    const cuda::CudaDeviceInfo info = cuda::cuda_device_info(index);
    d.gpu = info.name;
    d.driver = info.driver;
    d.cuda = info.runtime;
    d.cublas = info.cublas;
  }
#else
  (void)device;
#endif
  return d;
}

}  // namespace specdec::experiments
