// The batch plan of a forward: the validation and row layout every backend shares (LlamaCpu, LlamaCuda), so
// a batch is accepted or refused, and laid out, the same way on every device. Backend-specific checks (the
// cache's type, its owner) stay in the backend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "core/model/config.h"
#include "core/model/model.h"

namespace specdec {

// B sequences laid out as R = sum(T_b) token rows: sequence b owns rows [row0[b], row0[b + 1]).
struct BatchPlan {
  int B = 0;                 // sequences
  int R = 0;                 // token rows of the whole batch
  int L = 0;                 // layers this forward runs (early exit: fewer than the caches')
  int max_T = 0;             // the longest block
  std::vector<int> row0;     // (B + 1) first row of each sequence; row0[B] = R
  std::vector<int> n_past;   // (B) cached slots before this block (the cache's size())
  std::vector<int32_t> pos;  // (R) RoPE position of each row: the request's, or n_past + t (a chain)
  // The rows whose logits were asked for: sequence b's last sel_n[b] rows, from sel_first[b]; n_sel in all.
  std::vector<int> sel_first, sel_n;
  int n_sel = 0;
  std::vector<int32_t> capture;  // the layers some request wants the outputs of (sorted, distinct)
  size_t mask_bytes = 0;         // the explicit masks' entries, all requests together
  bool any_hidden = false;       // some request wants its hidden states

  int T(int b) const { return row0[b + 1] - row0[b]; }
};

// The layer count of a new cache: n_layers, or -1 for the model's; throws unless it is in 1..c.n_layers and
// capacity in 1..c.max_seq_len. What every backend's new_cache checks.
int cache_layers(const ModelConfig& c, int capacity, int n_layers);

// Validates one forward_batch call and lays it out; throws specdec::Error (one line) on the first violation:
// one cache and one result per request (n_results), caches of one layer count, requests running the same
// layers, T >= 1, layer outputs among the layers run, no context overflow, token ids in 0..V-1, one position
// per token in 0..max_seq_len-1, a T x (n_past + T) mask. B = 0 gives an empty plan.
BatchPlan plan_batch(const ModelConfig& c, std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                     size_t n_results);

}  // namespace specdec
