// The backend registry: the built-in list (one line per backend) and device-string resolution.
#include "core/backends/registry.h"

#include <charconv>
#include <string_view>

#include "core/backends/cpu/llama_cpu.h"
#include "core/error.h"

#if SPECDEC_HAVE_CUDA
#include "core/backends/cuda/llama_cuda.h"
#endif

namespace specdec {
namespace {

// The built-in backends, one registration line each.
std::vector<BackendInfo> builtin_backends() {
  std::vector<BackendInfo> list;
  list.push_back(cpu_backend_info());
#if SPECDEC_HAVE_CUDA
  list.push_back(cuda::cuda_backend_info());
#endif
  return list;
}

// Backends this build leaves out, known by name so that a device naming one says why rather than "unknown".
struct LeftOut {
  const char* name;
  bool indexed;
  const char* why;
};
constexpr LeftOut kLeftOut[] = {
#if !SPECDEC_HAVE_CUDA
    {"cuda", true, "specdec was built without CUDA"},
#endif
    {nullptr, false, nullptr},  // end (keeps the array non-empty in every build)
};

// "name" -> 0, "name:N" -> N for an indexed backend; -1 when `device` does not name this backend.
int device_index(std::string_view name, bool indexed, std::string_view device) {
  if (device == name) return 0;
  if (!indexed || device.size() <= name.size() + 1 || !device.starts_with(name) || device[name.size()] != ':')
    return -1;
  int n = -1;
  const char* b = device.data() + name.size() + 1;
  const char* e = device.data() + device.size();
  const auto r = std::from_chars(b, e, n);
  return r.ec == std::errc() && r.ptr == e && n >= 0 ? n : -1;
}

}  // namespace

std::string known_devices() {
  std::string s;
  auto add = [&](const std::string& name, bool indexed) {
    s += (s.empty() ? "" : ", ") + name;
    if (indexed) s += " or " + name + ":N";
  };
  for (const BackendInfo& b : backends()) add(b.name, b.indexed);
  for (const LeftOut& m : kLeftOut)
    if (m.name) add(m.name, m.indexed);
  return s;
}

namespace {

// The backend and index `device` names, or {nullptr, -1}.
Device find_device(const std::string& device) {
  for (const BackendInfo& b : backends())
    if (const int i = device_index(b.name, b.indexed, device); i >= 0) return {&b, i};
  return {nullptr, -1};
}

}  // namespace

const std::vector<BackendInfo>& backends() {
  static const std::vector<BackendInfo> list = builtin_backends();
  return list;
}

bool device_named(const std::string& device) {
  if (find_device(device).backend != nullptr) return true;
  for (const LeftOut& m : kLeftOut)
    if (m.name && device_index(m.name, m.indexed, device) >= 0) return true;
  return false;
}

Device resolve_device(const std::string& device, const std::string& where) {
  const Device d = find_device(device);
  if (d.backend == nullptr) {
    for (const LeftOut& m : kLeftOut)
      if (m.name && device_index(m.name, m.indexed, device) >= 0) SPECDEC_FAIL(m.why, " (", where, " ", device, ")");
    SPECDEC_FAIL("unknown device '", device, "' (", where, "): expected ", known_devices());
  }
  if (d.backend->check) d.backend->check(d.index, device, where);
  return d;
}

std::unique_ptr<Model> make_backend_model(std::shared_ptr<const LoadedModel> model, const std::string& device,
                                          const std::string& where) {
  const Device d = resolve_device(device, where);
  return d.backend->make(std::move(model), d.index);
}

DeviceDescription device_description(const std::string& device) {
  const Device d = find_device(device);
  return d.backend != nullptr && d.backend->describe ? d.backend->describe(d.index) : DeviceDescription{};
}

}  // namespace specdec
