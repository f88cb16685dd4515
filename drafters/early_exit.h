// early_exit: self-speculative drafting from the target's first L layers + final norm + LM head.
#pragma once

#include "core/speculative/drafter.h"

namespace specdec::drafters {
DrafterInfo early_exit_info();
}
