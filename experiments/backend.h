// The model backend of the CLI and the runner: --device cpu | cuda | cuda:N (config key [target] device).
// cpu is LlamaCpu; cuda is LlamaCuda (core/backends/cuda), present only when specdec was built with CUDA.
#pragma once

#include <memory>
#include <string>

#include "core/backends/registry.h"
#include "core/model/loader.h"
#include "core/model/model.h"
#include "core/speculative/drafter.h"

namespace specdec::experiments {

// Throws a one-line specdec::Error unless `device` names a backend usable on this machine:
// "specdec was built without CUDA (--device cuda)", "no CUDA device found (--device cuda)", or, for an
// unknown value, one naming it. `where` says where the value came from ("--device", "[target] device").
void check_device(const std::string& device, const std::string& where = "--device");

// The model on `device` (checked as above).
std::unique_ptr<Model> make_model(std::shared_ptr<const LoadedModel> model, const std::string& device,
                                  const std::string& where = "--device");

// A DrafterEnv::make_model for `device`: models on that device, one per model file, kept for the life
// of the factory (the runner makes a draft_model drafter per request; a GPU model uploads its weights once).
ModelFactory model_factory(const std::string& device);

// The device for logs: {"gpu", "driver", "cuda", "cublas"} ("none" on the CPU).
using specdec::DeviceDescription;
DeviceDescription describe_device(const std::string& device);

}  // namespace specdec::experiments
