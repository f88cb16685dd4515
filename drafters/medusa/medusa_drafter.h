// medusa: Medusa heads on the target's final-norm hidden state (heads.h). Each step reads the state of the
// last accepted token (handed over by accept: no extra target pass) and proposes, from the heads' logits,
// a chain (head j's most likely token at draft position j + 1; at T > 0 a draw from head j's softmax,
// filtered like the target's, reported as q so the speculative rule stays exact) or a sparse tree built
// from the heads' measured accuracies (tree.h; deterministic candidates, q one-hot).
#pragma once

#include "core/speculative/drafter.h"

namespace specdec::medusa {

DrafterInfo medusa_info();

}  // namespace specdec::medusa
