// ngram: prompt lookup decoding. The longest suffix of the context (length max_n down to min_n) that
// occurred earlier proposes the tokens that followed its most recent occurrence; optionally a static
// n-gram index over a corpus file is searched when the context has no match.
#pragma once

#include "core/speculative/drafter.h"

namespace specdec::drafters {
DrafterInfo ngram_info();
}
