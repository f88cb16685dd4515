// DraftProposal validation, drafter options with unknown-key detection, the drafter registry and the
// plugin loader (dlopen).
#include "core/speculative/drafter.h"

#include <dlfcn.h>

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <cstdlib>
#include <sstream>
#include <utility>

#include "core/error.h"

namespace specdec {

namespace {
// Checks one q row: every entry finite and >= 0, the sum (double) within kQRowTolerance of 1. One pass
// that the compiler vectorises: eight partial double sums in a fixed order (so the sum is deterministic)
// and a count of negative entries; a NaN or infinite entry makes the sum non-finite, and an entry above 1
// in a row summing to 1 needs a negative one. Returns the offending index, or -1 for a row that only
// fails the sum, or -2 when fine.
int check_q_row(const float* row, int V, double& sum) {
  double part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int negative = 0;
  int v = 0;
  for (; v + 8 <= V; v += 8)
    for (int j = 0; j < 8; ++j) {
      part[j] += static_cast<double>(row[v + j]);
      negative += row[v + j] < 0.f;
    }
  for (; v < V; ++v) {
    part[0] += static_cast<double>(row[v]);
    negative += row[v] < 0.f;
  }
  sum = ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
  if (negative || !std::isfinite(sum))
    for (int i = 0; i < V; ++i)
      if (!(row[i] >= 0.f && row[i] <= 1.f)) return i;
  return std::abs(sum - 1.0) <= kQRowTolerance ? -2 : -1;
}
}  // namespace

void Drafter::check_batch(const char* who, std::span<Drafter* const> group, std::span<const int> max_tokens,
                          std::span<DraftProposal> out) {
  SPECDEC_CHECK(group.size() == max_tokens.size() && group.size() == out.size(), who,
                ": propose_batch: one budget and one output per drafter of the group, got ", group.size(),
                " drafters, ", max_tokens.size(), " budgets, ", out.size(), " outputs");
}

void Drafter::propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                            std::span<DraftProposal> out) {
  check_batch("drafter", group, max_tokens, out);
  for (size_t i = 0; i < group.size(); ++i) out[i] = group[i]->propose(max_tokens[i]);
}

int breadth_first_depth(std::span<const int> branching, int max_tokens) {
  int depth = 0;
  int64_t made = 0, level = 1;  // nodes of the depths so far; nodes of the newest depth
  for (const int b : branching) {
    if (made >= max_tokens) break;
    SPECDEC_CHECK(b >= 1, "a tree's branching: children per node >= 1 at every depth, got ", b);
    level = std::min<int64_t>(level * b, max_tokens);  // capped: a level past the budget is cut anyway
    made += level;
    ++depth;
  }
  return depth;
}

void DraftProposal::validate(int V) const {
  const size_t n = tokens.size();
  SPECDEC_CHECK(parents.empty() || parents.size() == n, "a drafter proposal with one parent per token (", n, "), got ",
                parents.size());
  SPECDEC_CHECK(q.empty() || q.size() == n * static_cast<size_t>(V), "a drafter proposal with ", n, " x ", V,
                " draft probabilities, got ", q.size());
  for (size_t i = 0; i < n; ++i) {
    SPECDEC_CHECK(tokens[i] >= 0 && tokens[i] < V, "draft token ids in 0..", V - 1, ", got ", tokens[i], " at node ",
                  i);
    if (!parents.empty())
      SPECDEC_CHECK(parents[i] >= -1 && parents[i] < static_cast<int32_t>(i), "draft node ", i,
                    " with a parent in -1..", i - 1, ", got ", parents[i]);
    if (q.empty()) continue;
    const float* row = q.data() + i * static_cast<size_t>(V);
    double sum = 0;
    const int bad = check_q_row(row, V, sum);
    SPECDEC_CHECK(bad < 0, "draft node ", i, ": q entries finite and in [0, 1], got q[", bad,
                  "] = ", bad >= 0 ? row[bad] : 0.f);
    SPECDEC_CHECK(bad == -2, "draft node ", i, ": a q row that sums to 1 (within ", kQRowTolerance, "), got ", sum);
    SPECDEC_CHECK(row[tokens[i]] > 0.f, "a draft token with q > 0 (it was drawn from q), node ", i, " token ",
                  tokens[i], " has q = ", row[tokens[i]]);
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
    throw UnknownOptionError(detail::concat("[", section_, "] unknown key '", key,
                                            "'; this section knows: ", list.empty() ? "(no options)" : list),
                             key, std::vector<std::string>(used_.begin(), used_.end()));
  }
}

uint64_t verify_seed(const DrafterInfo* info, uint64_t seed) {
  return info && info->needs_reference ? reference_run_seed(seed) : seed;
}

std::unique_ptr<Drafter> make_drafter(const DrafterInfo& info, const DrafterEnv& env, const DrafterOptions& opts) {
  std::unique_ptr<Drafter> d = info.factory(env, opts);
  SPECDEC_CHECK(d != nullptr, "drafter '", info.name,
                "': its factory returned no drafter (expected a Drafter, or an "
                "exception saying what is wrong)");
  return d;
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
  SPECDEC_FAIL("unknown drafter '", name, "'; known drafters: ", known,
               " (or plugin:PATH.so:NAME, python:MODULE.CLASS)");
}

std::vector<const DrafterInfo*> DrafterRegistry::list() const {
  std::vector<const DrafterInfo*> out;
  for (const auto& [_, info] : by_name_) out.push_back(&info);
  return out;
}

namespace {
// "python:MODULE.CLASS": the entry of the drafter "python" (loading the Python plugin when no one registered
// it), with class = MODULE.CLASS set on every use, under the spec's own name.
const DrafterInfo& resolve_python(DrafterRegistry& registry, const std::string& spec) {
  if (registry.contains(spec)) return registry.get(spec);
  const std::string cls = spec.substr(7);
  SPECDEC_CHECK(!cls.empty(), "a Python drafter as python:MODULE.CLASS, got '", spec, "'");
  if (!registry.contains("python")) {
    const std::string path = python_plugin_path();
    SPECDEC_CHECK(std::filesystem::exists(path), spec, ": the Python drafter plugin ", path,
                  " does not exist (build specdec with -DSPECDEC_PYTHON=ON, or set SPECDEC_PYTHON_PLUGIN)");
    load_drafter_plugin(registry, path);
    SPECDEC_CHECK(registry.contains("python"), path, ": the Python drafter plugin registered no drafter 'python'");
  }
  DrafterInfo info = registry.get("python");
  info.name = spec;
  info.help = "the Python drafter class " + cls;
  info.factory = [base = std::move(info.factory), cls](const DrafterEnv& env, const DrafterOptions& opts) {
    SPECDEC_CHECK(!opts.has("class"), "[", opts.section(), "] class: python:", cls,
                  " names its class already; drop the key");
    DrafterOptions with_class(opts.values(), opts.section());
    with_class.set("class", cls);
    return base(env, with_class);
  };
  registry.add(std::move(info));
  return registry.get(spec);
}
}  // namespace

std::string python_plugin_path() {
  if (const char* env = std::getenv("SPECDEC_PYTHON_PLUGIN"); env && *env) return env;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return (ec ? std::filesystem::path("libspecdec_python.so") : exe.parent_path() / "libspecdec_python.so").string();
}

const DrafterInfo& DrafterRegistry::resolve(const std::string& spec) {
  if (spec.rfind("python:", 0) == 0) return resolve_python(*this, spec);
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
  auto it = loaded_plugins_.find(path);
  if (it == loaded_plugins_.end()) it = loaded_plugins_.emplace(path, load_drafter_plugin(*this, path)).first;
  const std::vector<std::string>& names = it->second;
  if (std::find(names.begin(), names.end(), name) == names.end()) {
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    SPECDEC_FAIL(path, ": drafter plugin has no drafter '", name, "'; it registers: ", list);
  }
  return get(name);
}

namespace {
struct DlHandle {  // closes a handle unless released
  void* h = nullptr;
  ~DlHandle() {
    if (h) dlclose(h);
  }
  void* release() { return std::exchange(h, nullptr); }
};
std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown dlopen error";
}
}  // namespace

std::vector<DrafterInfo> DrafterRegistry::take_all() {
  std::vector<DrafterInfo> out;
  for (auto& [_, info] : by_name_) out.push_back(std::move(info));
  by_name_.clear();
  return out;
}

std::vector<std::string> load_drafter_plugin(DrafterRegistry& registry, const std::string& path) {
  // 1. Load lazily: no function of the plugin is bound yet, so a plugin built against other headers
  //    (whose other symbols may not even resolve) is refused by its version before anything else of it
  //    is used. (Its static initialisers do run at dlopen: the ELF loader allows nothing earlier.)
  //    RTLD_LOCAL keeps plugins from seeing each other; the plugin resolves specdec symbols against the host.
  DlHandle lib{dlopen(path.c_str(), RTLD_LAZY | RTLD_LOCAL)};
  if (!lib.h) SPECDEC_FAIL(path, ": cannot load drafter plugin (", dl_error(), ")");
  using VersionFn = int (*)();
  using RegisterFn = void (*)(DrafterRegistry*);
  auto version = reinterpret_cast<VersionFn>(dlsym(lib.h, "specdec_plugin_abi_version"));
  auto reg = reinterpret_cast<RegisterFn>(dlsym(lib.h, "specdec_plugin_register"));
  SPECDEC_CHECK(version && reg, path,
                ": not a specdec drafter plugin (expected the C symbols specdec_plugin_abi_version and "
                "specdec_plugin_register)");
  const int v = version();
  SPECDEC_CHECK(v == SPECDEC_PLUGIN_ABI_VERSION, path, ": drafter plugin built for plugin ABI version ", v,
                ", this specdec has version ", SPECDEC_PLUGIN_ABI_VERSION,
                "; rebuild the plugin against these headers");
  // 2. The version matches: now bind every symbol, so an unresolved one is an error here, naming the file,
  //    rather than a crash in the middle of a run.
  DlHandle now{dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD | RTLD_LOCAL)};
  if (!now.h) SPECDEC_FAIL(path, ": drafter plugin has unresolved symbols (", dl_error(), ")");
  // 3. Register into a scratch registry, then move the entries over only when all of them fit: a plugin
  //    that fails half-way (or repeats a name) leaves the registry as it was.
  DrafterRegistry staged;
  try {
    reg(&staged);
  } catch (const std::exception& e) {
    SPECDEC_FAIL(path, ": drafter plugin registration failed: ", e.what());
  } catch (...) {
    SPECDEC_FAIL(path, ": drafter plugin registration failed with a non-standard exception");
  }
  std::vector<DrafterInfo> infos = staged.take_all();
  SPECDEC_CHECK(!infos.empty(), path, ": drafter plugin registered no drafter");
  for (const DrafterInfo& info : infos)
    SPECDEC_CHECK(!registry.contains(info.name), path, ": drafter plugin registers '", info.name,
                  "', which is registered twice (names must be unique; already known before this plugin)");
  std::vector<std::string> names;
  for (DrafterInfo& info : infos) {
    names.push_back(info.name);
    registry.add(std::move(info));
  }
  // The library stays loaded for the life of the process: the factories live in it.
  lib.release();
  now.release();
  return names;
}

}  // namespace specdec
