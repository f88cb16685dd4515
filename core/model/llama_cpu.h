// Moved: LlamaCpu is core/backends/cpu/llama_cpu.h. This forwarding header remains for the includes not yet
// updated (tests/speculative); include the new path.
#pragma once

#include "core/backends/cpu/llama_cpu.h"
