// plan_batch: the batch validation and layout of Model::forward_batch, once for every backend.
#include "core/model/batch_plan.h"

#include <algorithm>

#include "core/error.h"

namespace specdec {

int cache_layers(const ModelConfig& c, int capacity, int n_layers) {
  if (n_layers < 0) n_layers = c.n_layers;
  SPECDEC_CHECK(n_layers >= 1 && n_layers <= c.n_layers, "cache layers in 1..", c.n_layers, ", got ", n_layers);
  SPECDEC_CHECK(capacity >= 1 && capacity <= c.max_seq_len, "context of 1..", c.max_seq_len,
                " tokens (the model's max_seq_len), got ", capacity);
  return n_layers;
}

BatchPlan plan_batch(const ModelConfig& c, std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                     size_t n_results) {
  SPECDEC_CHECK(caches.size() == reqs.size() && n_results == reqs.size(), "one cache and one result per request");
  BatchPlan p;
  p.B = static_cast<int>(reqs.size());
  p.row0.assign(p.B + 1, 0);
  if (p.B == 0) return p;
  const int B = p.B, V = c.vocab_size;
  const int L = forward_layers(reqs[0], *caches[0]);
  p.L = L;
  p.n_past.resize(B);
  p.sel_first.resize(B);
  p.sel_n.resize(B);
  for (int b = 0; b < B; ++b) {
    const ForwardRequest& r = reqs[b];
    const KVCache& cache = *caches[b];
    SPECDEC_CHECK(cache.n_layers() == caches[0]->n_layers(), "every cache in a batch with the same layer count (",
                  caches[0]->n_layers(), "), got ", cache.n_layers());
    SPECDEC_CHECK(forward_layers(r, cache) == L, "every request in a batch running the same layers (", L, "), got ",
                  forward_layers(r, cache), " (request ", b, ")");
    const int T = static_cast<int>(r.tokens.size());
    SPECDEC_CHECK(T >= 1, "at least one token per request, got 0 (request ", b, ")");
    for (int32_t l : r.layer_outputs) {
      SPECDEC_CHECK(l >= 0 && l < L, "layer outputs of layers 0..", L - 1, " (the layers this forward runs), got ", l);
      p.capture.push_back(l);
    }
    const int n_past = cache.size();
    SPECDEC_CHECK(n_past + T <= cache.capacity(), "context of at most ", cache.capacity(), " tokens, got ", n_past,
                  " cached + ", T, " new");
    for (int t = 0; t < T; ++t)
      SPECDEC_CHECK(r.tokens[t] >= 0 && r.tokens[t] < V, "token ids in 0..", V - 1, ", got ", r.tokens[t]);
    SPECDEC_CHECK(r.positions.empty() || static_cast<int>(r.positions.size()) == T, "one position per token (", T,
                  "), got ", r.positions.size());
    SPECDEC_CHECK(r.mask.empty() || r.mask.size() == static_cast<size_t>(T) * (n_past + T), "a mask of ", T, "x",
                  n_past + T, " entries, got ", r.mask.size());
    for (int t = 0; t < T; ++t) {
      const int32_t at = r.positions.empty() ? n_past + t : r.positions[t];
      if (!r.positions.empty())
        SPECDEC_CHECK(at >= 0 && at < c.max_seq_len, "positions in 0..", c.max_seq_len - 1, ", got ", at);
      p.pos.push_back(at);
    }
    p.n_past[b] = n_past;
    p.row0[b + 1] = p.row0[b] + T;
    p.max_T = std::max(p.max_T, T);
    p.mask_bytes += r.mask.size();
    const int n = r.n_logits < 0 ? T : std::min(r.n_logits, T);
    p.sel_first[b] = p.row0[b] + T - n;
    p.sel_n[b] = n;
    p.n_sel += n;
    p.any_hidden |= r.want_hidden;
  }
  p.R = p.row0[B];
  std::sort(p.capture.begin(), p.capture.end());
  p.capture.erase(std::unique(p.capture.begin(), p.capture.end()), p.capture.end());
  return p;
}

}  // namespace specdec
