// The merge loop shared by every BPE flavour (internal): symbols of one text fragment in a linked list,
// candidate pairs in a max-heap keyed by (priority, leftmost). SentencePiece passes the merged piece's
// score as the priority, rank-based BPE passes -rank. Same result as llama2.c's "scan for the best
// pair, merge, repeat" loop, in O(n log n).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/types.h"

namespace specdec::detail {

struct MergeSymbol {
  uint32_t begin = 0;  // byte offset in the fragment
  uint32_t len = 0;    // bytes; 0 once merged into its left neighbour
  TokenId id = -1;     // the token this symbol is, or -1 (no token: byte fallback at the end)
  int32_t prev = -1, next = -1;
};

struct MergeCandidate {
  float priority;  // higher merges first
  int32_t left, right;
  uint32_t left_len, right_len;  // the lengths it was made for: a candidate is stale once either changed
  TokenId merged;
};

// pair(const MergeSymbol& l, const MergeSymbol& r, float* priority, TokenId* merged) -> bool says
// whether l and r may merge. `symbols` must be linked in order (prev/next); on return the live symbols
// (len > 0) are the result, still linked from index 0. `heap` is scratch space.
template <typename PairFn>
void merge_symbols(std::vector<MergeSymbol>& symbols, std::vector<MergeCandidate>& heap, PairFn&& pair) {
  auto less = [](const MergeCandidate& a, const MergeCandidate& b) {
    return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
  };
  heap.clear();
  auto try_add = [&](int32_t l, int32_t r) {
    if (l < 0 || r < 0) return;
    float priority;
    TokenId merged;
    if (!pair(symbols[l], symbols[r], &priority, &merged)) return;
    heap.push_back({priority, l, r, symbols[l].len, symbols[r].len, merged});
    std::push_heap(heap.begin(), heap.end(), less);
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) try_add(i, i + 1);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), less);
    const MergeCandidate c = heap.back();
    heap.pop_back();
    MergeSymbol& l = symbols[c.left];
    MergeSymbol& r = symbols[c.right];
    // Symbols only grow (absorbing a right neighbour) or die (len 0), so unchanged lengths mean the
    // pair is still adjacent and still the same two pieces.
    if (l.len == 0 || r.len == 0 || l.len != c.left_len || r.len != c.right_len) continue;
    l.len += r.len;
    l.id = c.merged;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) symbols[r.next].prev = c.left;
    try_add(l.prev, c.left);
    try_add(c.left, l.next);
  }
}

}  // namespace specdec::detail
