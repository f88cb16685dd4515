// draft_model: a separate, smaller model with the target's vocabulary drafts a chain or a tree.
#pragma once

#include "core/speculative/drafter.h"

namespace specdec::drafters {
DrafterInfo draft_model_info();
}
