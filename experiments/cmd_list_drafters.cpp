// specdec list-drafters / list-rules: every registered drafter (or acceptance rule) with its one-line help, after
// loading any --plugin libraries (their drafters are listed with the plugin:PATH:NAME spec that selects them). Options
// are not part of the registry (nor of the plugin ABI): the listing says how to pass them and how to see the keys.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

#include "core/speculative/drafter.h"
#include "drafters/register_builtin.h"
#include "experiments/cli.h"
#include "verifiers/rules.h"

namespace po = boost::program_options;

namespace specdec::cli {

int cmd_list_drafters(const std::vector<std::string>& args) {
  std::vector<std::string> plugins;
  po::options_description desc(
      "specdec list-drafters: list the drafters (built in, and from plugins) with their one-line help\n\n"
      "usage: specdec list-drafters [--plugin PATH.so ...]\n\noptions");
  desc.add_options()("help,h", "show this help")(
      "plugin", po::value(&plugins)->composing(),
      "load this drafter plugin first and list its drafters too (repeatable)");
  if (!parse_options(args, desc)) return 0;

  DrafterRegistry& registry = drafters::default_registry();
  std::set<std::string> builtin;
  for (const DrafterInfo* info : registry.list()) builtin.insert(info->name);
  // Which plugin brought each name: the names that appear while loading it.
  std::map<std::string, std::string> from_plugin;
  // The same file twice would register its drafters twice (an error): load each file once, however spelt.
  std::vector<std::string> unique;
  std::set<std::filesystem::path> seen;
  for (const std::string& path : plugins) {
    std::error_code ec;
    const auto canonical = std::filesystem::weakly_canonical(path, ec);
    if (seen.insert(ec ? std::filesystem::path(path) : canonical).second) unique.push_back(path);
  }
  plugins = unique;
  for (const std::string& path : plugins) {
    std::set<std::string> before;
    for (const DrafterInfo* info : registry.list()) before.insert(info->name);
    load_drafter_plugin(registry, path);
    for (const DrafterInfo* info : registry.list())
      if (!before.count(info->name)) from_plugin[info->name] = path;
  }

  const auto all = registry.list();
  size_t width = 0;
  for (const DrafterInfo* info : all) width = std::max(width, info->name.size());
  std::printf("drafters (specdec generate --drafter NAME; in a config, [drafter.X] type = NAME):\n");
  for (const DrafterInfo* info : all) {
    if (!builtin.count(info->name)) continue;
    std::printf("  %-*s  %s%s\n", static_cast<int>(width), info->name.c_str(), info->help.c_str(),
                info->needs_reference ? " [needs the AR output of the same prompt]" : "");
  }
  for (const std::string& path : plugins) {
    std::printf("\nfrom plugin %s (--drafter plugin:%s:NAME):\n", path.c_str(), path.c_str());
    int n = 0;
    for (const auto& [name, origin] : from_plugin) {
      if (origin != path) continue;
      const DrafterInfo& info = registry.get(name);
      std::printf("  %-*s  %s%s\n", static_cast<int>(width), name.c_str(), info.help.c_str(),
                  info.needs_reference ? " [needs the AR output of the same prompt]" : "");
      ++n;
    }
    if (n == 0) std::printf("  (registers no drafter)\n");
  }
  std::printf(
      "\noptions: pass a drafter's options as -o key=value (repeatable) to specdec generate, or as keys of its\n"
      "config section; its help names the main ones. A key the drafter does not use is an error that lists\n"
      "every key it knows, so -o help=1 shows them.\n"
      "plugins: --drafter plugin:/abs/path/libX.so:NAME loads a drafter library without rebuilding specdec\n"
      "(plugin ABI version %d; see examples/plugin_drafter).\n"
      "python: --drafter python:MODULE.CLASS (in a config, a type) runs a drafter class written in Python, imported\n"
      "from PYTHONPATH (see examples/python_ngram and docs/python.md).\n",
      SPECDEC_PLUGIN_ABI_VERSION);
  return 0;
}

int cmd_list_rules(const std::vector<std::string>& args) {
  po::options_description desc(
      "specdec list-rules: list the acceptance rules with their help and options\n\n"
      "usage: specdec list-rules\n\noptions");
  desc.add_options()("help,h", "show this help");
  if (!parse_options(args, desc)) return 0;
  const auto rules = verifiers::rule_registry().list();
  size_t width = 0;
  for (const verifiers::RuleInfo* r : rules) width = std::max(width, r->name.size());
  std::printf("acceptance rules (specdec generate --rule NAME; in a config, [run] rule = NAME):\n");
  for (const verifiers::RuleInfo* r : rules) {
    std::printf("  %-*s  %s%s\n", static_cast<int>(width), r->name.c_str(), r->help.c_str(),
                r->lossless ? "" : " [lossy]");
    for (const auto& [key, help] : r->options)
      std::printf("  %-*s    %s: %s\n", static_cast<int>(width), "", key.c_str(), help.c_str());
  }
  std::printf(
      "\noptions: --rule-opt key=value (repeatable) with specdec generate, or keys of a [rule.NAME] section\n"
      "in a config (--rule.NAME.key=value on the command line).\n");
  return 0;
}

}  // namespace specdec::cli
