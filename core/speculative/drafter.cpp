// DraftProposal validation, drafter options with unknown-key detection, the drafter registry and the
// plugin loader (dlopen).
#include "core/speculative/drafter.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <sstream>

#include "core/error.h"

namespace specdec {

void DraftProposal::validate(int V) const {
  const size_t n = tokens.size();
  SPECDEC_CHECK(parents.empty() || parents.size() == n, "a drafter proposal with one parent per token (", n,
                "), got ", parents.size());
  SPECDEC_CHECK(q.empty() || q.size() == n * static_cast<size_t>(V), "a drafter proposal with ", n, " x ", V,
                " draft probabilities, got ", q.size());
  for (size_t i = 0; i < n; ++i) {
    SPECDEC_CHECK(tokens[i] >= 0 && tokens[i] < V, "draft token ids in 0..", V - 1, ", got ", tokens[i], " at node ", i);
    if (!parents.empty())
      SPECDEC_CHECK(parents[i] >= -1 && parents[i] < static_cast<int32_t>(i), "draft node ", i, " with a parent in -1..",
                    i - 1, ", got ", parents[i]);
    if (!q.empty())
      SPECDEC_CHECK(q[i * V + tokens[i]] > 0.f, "a draft token with q > 0 (it was drawn from q), node ", i, " token ",
                    tokens[i], " has q = ", q[i * V + tokens[i]]);
  }
}

// ---- options --------------------------------------------------------------------------------------

std::string DrafterOptions::get(const std::string& key, const std::string& def) const {
  used_.insert(key);
  auto it = kv_.find(key);
  return it == kv_.end() ? def : it->second;
}

int DrafterOptions::get_int(const std::string& key, int def) const {
  const std::string v = get(key, "");
  if (v.empty()) return def;
  try {
    size_t pos = 0;
    const int x = std::stoi(v, &pos);
    if (pos == v.size()) return x;
  } catch (const std::exception&) {
  }
  SPECDEC_FAIL("[", section_, "] ", key, " = '", v, "': expected an integer");
}

double DrafterOptions::get_double(const std::string& key, double def) const {
  const std::string v = get(key, "");
  if (v.empty()) return def;
  try {
    size_t pos = 0;
    const double x = std::stod(v, &pos);
    if (pos == v.size() && std::isfinite(x)) return x;
  } catch (const std::exception&) {
  }
  SPECDEC_FAIL("[", section_, "] ", key, " = '", v, "': expected a number");
}

bool DrafterOptions::get_bool(const std::string& key, bool def) const {
  const std::string v = get(key, "");
  if (v.empty()) return def;
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  SPECDEC_FAIL("[", section_, "] ", key, " = '", v, "': expected true or false");
}

std::vector<double> DrafterOptions::get_doubles(const std::string& key, std::vector<double> def) const {
  const std::string v = get(key, "");
  if (v.empty()) return def;
  std::vector<double> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    DrafterOptions one({{key, item}}, section_);
    out.push_back(one.get_double(key, 0.0));
  }
  return out;
}

void DrafterOptions::check_all_used() const {
  for (const auto& [key, value] : kv_) {
    if (used_.count(key)) continue;
    std::string list;
    for (const auto& u : used_) list += (list.empty() ? "" : ", ") + u;
    throw UnknownOptionError(detail::concat("[", section_, "] unknown key '", key, "'; this drafter knows: ",
                                            list.empty() ? "(no options)" : list),
                             key, std::vector<std::string>(used_.begin(), used_.end()));
  }
}

// ---- registry ---------------------------------------------------------------------------------------

void DrafterRegistry::add(DrafterInfo info) {
  SPECDEC_CHECK(!info.name.empty() && info.factory, "a drafter with a name and a factory");
  SPECDEC_CHECK(!by_name_.count(info.name), "drafter '", info.name, "' is registered twice (names must be unique)");
  by_name_.emplace(info.name, std::move(info));
}

const DrafterInfo& DrafterRegistry::get(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it != by_name_.end()) return it->second;
  std::string known;
  for (const auto& [n, _] : by_name_) known += (known.empty() ? "" : ", ") + n;
  SPECDEC_FAIL("unknown drafter '", name, "'; known drafters: ", known, " (or plugin:PATH.so:NAME)");
}

std::vector<const DrafterInfo*> DrafterRegistry::list() const {
  std::vector<const DrafterInfo*> out;
  for (const auto& [_, info] : by_name_) out.push_back(&info);
  return out;
}

const DrafterInfo& DrafterRegistry::resolve(const std::string& spec) {
  if (spec.rfind("plugin:", 0) != 0) return get(spec);
  const std::string rest = spec.substr(7);
  const size_t colon = rest.rfind(':');
  SPECDEC_CHECK(colon != std::string::npos && colon > 0 && colon + 1 < rest.size(),
                "a plugin drafter as plugin:PATH.so:NAME, got '", spec, "'");
  const std::string name = rest.substr(colon + 1);
  // One load per file, however the path is spelt.
  std::error_code ec;
  std::string path = std::filesystem::weakly_canonical(rest.substr(0, colon), ec).string();
  if (ec || path.empty()) path = rest.substr(0, colon);
  if (!loaded_plugins_.count(path)) {
    load_drafter_plugin(*this, path);
    loaded_plugins_.insert(path);
  }
  return get(name);
}

void load_drafter_plugin(DrafterRegistry& registry, const std::string& path) {
  // RTLD_LOCAL keeps plugins from seeing each other; the plugin resolves specdec symbols against the host.
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* err = dlerror();
    SPECDEC_FAIL(path, ": cannot load drafter plugin (", err ? err : "unknown dlopen error", ")");
  }
  using VersionFn = int (*)();
  using RegisterFn = void (*)(DrafterRegistry*);
  auto version = reinterpret_cast<VersionFn>(dlsym(handle, "specdec_plugin_abi_version"));
  auto reg = reinterpret_cast<RegisterFn>(dlsym(handle, "specdec_plugin_register"));
  SPECDEC_CHECK(version && reg, path,
                ": not a specdec drafter plugin (expected the C symbols specdec_plugin_abi_version and "
                "specdec_plugin_register)");
  const int v = version();
  SPECDEC_CHECK(v == SPECDEC_PLUGIN_ABI_VERSION, path, ": drafter plugin built for plugin ABI version ", v,
                ", this specdec has version ", SPECDEC_PLUGIN_ABI_VERSION, "; rebuild the plugin against these headers");
  try {
    reg(&registry);  // the handle stays open for the life of the process: factories live in it
  } catch (const Error& e) {
    SPECDEC_FAIL(path, ": drafter plugin registration failed: ", e.what());
  }
}

}  // namespace specdec
