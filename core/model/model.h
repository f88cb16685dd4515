// The target-model interface every backend implements (core/backends/: cpu, cuda).
// One forward: a block of T new tokens per sequence with explicit positions and an attention mask over
// (cached prefix + the T tokens), so a tree of draft tokens is verified in one pass. Decode is T = 1.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "core/model/config.h"
#include "core/types.h"

namespace specdec {

// Per-sequence key/value cache. Slots 0..size()-1 hold the keys/values of the tokens seen so far.
// A forward appends its T tokens at slots size()..size()+T-1; afterwards the caller keeps only what
// was accepted: truncate() for a chain, compact() for a tree.
class KVCache {
 public:
  virtual ~KVCache() = default;
  int size() const { return n_; }
  int capacity() const { return capacity_; }
  int n_layers() const { return n_layers_; }  // may be fewer than the model's (early exit)

  // Drop every slot at or past n (roll back). Requires 0 <= n <= size().
  void truncate(int n);
  // After a tree forward: slots base.. hold candidates; keep base + rows[i] at base + i (rows strictly
  // increasing, all < size() - base) and drop the rest. size() becomes base + rows.size().
  // Virtual so a backend can move every slot at once (the CUDA cache runs one kernel); the default
  // validates (check_compact) and calls move_slot per moved slot.
  virtual void compact(int base, std::span<const int32_t> rows);
  // Makes this cache hold the first n slots of src, a cache of the same model with the same layer count
  // (0 <= n <= src.size(), n <= capacity()): a prefill computed once and reused, e.g. by every run of a
  // sweep on the same prompt. The forward is batch-invariant, so this equals recomputing those slots bit
  // for bit. Throws for caches of another backend or shape (the base class copies nothing: it throws).
  virtual void copy_prefix(const KVCache& src, int n);

 protected:
  KVCache(int capacity, int n_layers) : capacity_(capacity), n_layers_(n_layers) {}
  // The argument checks of compact(), for overrides: throws unless 0 <= base <= size() and rows are
  // strictly increasing and < size() - base.
  void check_compact(int base, std::span<const int32_t> rows) const;
  virtual void move_slot(int from, int to) = 0;  // copy slot `from` into slot `to`, every layer
  int n_ = 0;
  int capacity_;
  int n_layers_;

 public:
  void advance(int T) { n_ += T; }  // for backends: a forward has written T more slots
};

struct ForwardRequest {
  std::span<const TokenId> tokens;     // T new tokens
  std::span<const int32_t> positions;  // T RoPE positions; empty = size() + t (a chain)
  std::span<const uint8_t> mask;       // T x (size() + T), 1 = attend; empty = causal
  int n_logits = -1;                   // logits for the last n_logits tokens only; -1 = all T
  bool want_hidden = false;            // also return the final-norm hidden states (T x H)
  // Also return these layers' outputs (the residual stream after layer l, 0-based, before the final
  // norm); each l < the cache's layer count.
  std::span<const int32_t> layer_outputs;
  // Run only the first n_layers layers (then the final norm and the LM head); -1 = all of the cache's.
  // The slots this forward appends then hold keys and values of those layers only: the caller truncates
  // them before a full forward attends to them (early exit drafting in the target's own cache).
  int n_layers = -1;
};

struct ForwardResult {
  std::vector<float> logits;         // n_logits x V, row-major
  std::vector<float> hidden;         // T x H when requested
  std::vector<float> layer_outputs;  // T x layer_outputs.size() x H when requested (token-major)
};

class Model {
 public:
  virtual ~Model() = default;
  virtual const ModelConfig& config() const = 0;
  virtual const char* device() const = 0;  // "cpu", "cuda"

  // A cache for up to `capacity` tokens over the first n_layers layers (-1 = all; fewer = early exit:
  // the forward then runs only those layers, then the final norm and LM head).
  virtual std::unique_ptr<KVCache> new_cache(int capacity, int n_layers = -1) const = 0;

  // Forward B sequences in one batched pass (their tokens share the weight reads). Appends each
  // sequence's T tokens to its cache. Throws specdec::Error on a context overflow or a bad token id.
  virtual void forward_batch(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                             std::span<ForwardResult> out) = 0;

  // logits (n x V) = the LM head applied to n final-norm hidden states (n x H): what a drafter that
  // reads the target's features (Medusa heads, EAGLE) uses to read out its own states.
  virtual void lm_head(std::span<const float> hidden, int n, std::vector<float>& logits) = 0;

  void forward(KVCache& cache, const ForwardRequest& req, ForwardResult& out) {
    KVCache* c = &cache;
    forward_batch({&c, 1}, {&req, 1}, {&out, 1});
  }
};

// The layers a forward runs for request r over cache c (r.n_layers, or -1: the cache's); throws unless in
// 1..c.n_layers(). What both backends use, so every request of a batch is checked the same way.
int forward_layers(const ForwardRequest& r, const KVCache& c);

// Fills mask (T x (n_past+T)) for a tree: token t attends to the whole prefix, itself and its
// ancestors. parents[t] < t is the index of t's parent among the T tokens, or -1 (child of the prefix).
// Also fills positions[t] = n_past + depth(t). A chain (parents[t] = t-1) gives the causal mask.
void build_tree_mask(std::span<const int32_t> parents, int n_past, std::vector<uint8_t>& mask,
                     std::vector<int32_t>& positions);

}  // namespace specdec
