// --device: thin over the backend registry (core/backends/registry.h), which knows cpu (LlamaCpu) and, when
// built with CUDA, cuda[:N] (LlamaCuda).
#include "experiments/backend.h"

#include <map>

#include "core/error.h"

namespace specdec::experiments {

void check_device(const std::string& device, const std::string& where) { resolve_device(device, where); }

std::unique_ptr<Model> make_model(std::shared_ptr<const LoadedModel> model, const std::string& device,
                                  const std::string& where) {
  return make_backend_model(std::move(model), device, where);
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

DeviceDescription describe_device(const std::string& device) { return device_description(device); }

}  // namespace specdec::experiments
