// The acceptance rules of specdec, by name: greedy (exact match, lossless at temperature 0),
// speculative (rejection sampling with the drafter's q, recursive over tree siblings; lossless at any
// temperature), typical (Medusa's typical acceptance; lossy, and reported as such).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/speculative/acceptance.h"

namespace specdec::verifiers {

struct TypicalParams {
  double epsilon = 0.09;  // Medusa's posterior_threshold
  double delta = 0.3;     // Medusa's posterior_alpha (sqrt of it in some versions; we use the DESIGN's form)
};

std::unique_ptr<AcceptanceRule> make_greedy_rule();
std::unique_ptr<AcceptanceRule> make_speculative_rule();
std::unique_ptr<AcceptanceRule> make_typical_rule(TypicalParams params = {});

// "greedy" | "speculative" | "typical"; an unknown name is an error listing the known ones.
std::unique_ptr<AcceptanceRule> make_acceptance_rule(const std::string& name, TypicalParams typical = {});
std::vector<std::string> acceptance_rule_names();

}  // namespace specdec::verifiers
