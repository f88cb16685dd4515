// Bounds that know the target's own AR output for the prompt: `oracle` proposes it (the upper bound of
// any drafter) and `synthetic` proposes it with a configured per-position conditional acceptance
// profile, which separates the system's overhead from a drafter's quality.
#pragma once

#include "core/speculative/drafter.h"

namespace specdec::drafters {
DrafterInfo oracle_info();
DrafterInfo synthetic_info();
}  // namespace specdec::drafters
