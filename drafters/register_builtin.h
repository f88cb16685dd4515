// The built-in drafters, registered from one explicit list (no self-registering statics, which the
// linker drops from static libraries).
#pragma once

#include "core/speculative/drafter.h"

namespace specdec::drafters {

void register_builtin(DrafterRegistry& registry);
// A registry holding the built-ins (plugins are added to it by resolve("plugin:...")).
DrafterRegistry& default_registry();

}  // namespace specdec::drafters
