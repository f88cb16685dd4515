// The model backends, by name: the one list of built-ins (registry.cpp), what a device string ("cpu", "cuda",
// "cuda:N") selects, whether it is usable here, the model on it and what the logs record about it. A backend
// is a folder under core/backends/ plus one registration line in registry.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/model/loader.h"
#include "core/model/model.h"

namespace specdec {

// A device for logs: {"gpu", "driver", "cuda", "cublas"}; "none" where it has no such thing (the CPU).
struct DeviceDescription {
  std::string gpu = "none", driver = "none", cuda = "none", cublas = "none";
};

struct BackendInfo {
  std::string name;      // "cpu", "cuda": the device string, and Model::device() of its models
  std::string help;      // one line
  bool indexed = false;  // also "name:N" (N >= 0; "name" alone is device 0), e.g. cuda:1
  // Throws a one-line specdec::Error unless device `index` is usable on this machine. `device` is the string
  // as given and `where` where it came from ("--device", "[target] device"), for the message.
  std::function<void(int index, const std::string& device, const std::string& where)> check;
  // The model on device `index` (checked first).
  std::function<std::unique_ptr<Model>(std::shared_ptr<const LoadedModel> model, int index)> make;
  // What the logs record about device `index`: all "none" where it is not usable (never throws).
  std::function<DeviceDescription(int index)> describe;
};

// The backends built into this binary, in registration order: cpu, then cuda when built with CUDA.
const std::vector<BackendInfo>& backends();

// "cpu, cuda or cuda:N": the device strings of every backend this build knows, built or left out.
std::string known_devices();

// Whether `device` is spelt as a device of a backend this build knows (built or left out), without asking
// whether it is usable here: what a config file's [target] device is checked against when it is read.
bool device_named(const std::string& device);

// A device string resolved to its backend and device index.
struct Device {
  const BackendInfo* backend = nullptr;
  int index = 0;
};

// Throws a one-line specdec::Error unless `device` names a backend usable on this machine: for an unknown
// value "unknown device 'tpu' (--device): expected cpu, cuda or cuda:N" (every backend this build knows,
// built or not); for one this build left out "specdec was built without CUDA (--device cuda)"; else the
// backend's own check ("no CUDA device found (--device cuda)").
Device resolve_device(const std::string& device, const std::string& where = "--device");

// The model on `device` (resolved as above).
std::unique_ptr<Model> make_backend_model(std::shared_ptr<const LoadedModel> model, const std::string& device,
                                          const std::string& where = "--device");

// The device for logs; all "none" for the CPU and for a device that is not usable here (never throws).
DeviceDescription device_description(const std::string& device);

}  // namespace specdec
