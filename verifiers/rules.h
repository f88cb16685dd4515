// The acceptance rules of specdec, by name (a registry like drafters'): greedy (exact match, lossless at temperature
// 0), speculative (rejection sampling with the drafter's q, recursive over tree siblings; lossless at any temperature),
// typical (Medusa's typical acceptance; lossy, and reported as such).
#pragma once

#include <memory>
#include <string>
#include <vector>
#include <functional>
#include <map>
#include <utility>

#include "core/speculative/drafter.h"

#include "core/speculative/acceptance.h"

namespace specdec::verifiers {

struct TypicalParams {
  double epsilon = 0.09;  // Medusa's posterior_threshold
  double delta = 0.3;     // Medusa's posterior_alpha (sqrt of it in some versions; we use the DESIGN's form)
};

std::unique_ptr<AcceptanceRule> make_greedy_rule();
std::unique_ptr<AcceptanceRule> make_speculative_rule();
std::unique_ptr<AcceptanceRule> make_typical_rule(TypicalParams params = {});

// A rule by name, like drafters: its one-line help, whether it is lossless, the options it reads (key and
// help), and a factory taking those options (a config's [rule.NAME] section, or `--rule-opt k=v`). An
// unknown option is an UnknownOptionError naming the key and the known ones.
struct RuleInfo {
  std::string name;
  std::string help;
  bool lossless = false;
  std::vector<std::pair<std::string, std::string>> options;  // key, one-line help
  std::function<std::unique_ptr<AcceptanceRule>(const DrafterOptions&)> factory;
};

class RuleRegistry {
 public:
  void add(RuleInfo info);                             // a duplicate name is an error
  const RuleInfo& get(const std::string& name) const;  // an unknown name: error listing the known ones
  bool contains(const std::string& name) const { return by_name_.count(name) != 0; }
  std::vector<const RuleInfo*> list() const;  // in registration order
  std::vector<std::string> names() const;

 private:
  std::map<std::string, RuleInfo> by_name_;
  std::vector<std::string> order_;
};

// The built-in rules (greedy, speculative, typical), registered once from one list in rules.cpp.
const RuleRegistry& rule_registry();

// rule_registry().get(name).factory(options); throws for an unknown name or option.
std::unique_ptr<AcceptanceRule> make_acceptance_rule(const std::string& name, const DrafterOptions& options = {});

}  // namespace specdec::verifiers
