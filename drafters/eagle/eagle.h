// The EAGLE draft layer (Li et al., 2024; EAGLE-1's architecture, drafted with EAGLE-2's dynamic trees): one
// decoder layer of the target's shape that, for the pair (f_t, x_{t+1}) of the target's final-norm feature at
// position t and the embedding of the next token, predicts the feature f_{t+1}; the target's LM head (or the
// rows of a reduced draft vocabulary) reads the prediction out. It drafts autoregressively: a drafted token's
// pair is (its parent's predicted feature, the token's embedding), in its own small KV cache.
//
// The layer, for T pairs at RoPE positions pos (the position of x_{t+1}) with a mask over (cached + T):
//   u   = Wfc [e ; f] + bfc                  (e = the target's embedding row of x_{t+1}, f = f_t; Wfc: H x 2H)
//   a   = Wo Attn(RoPE(Wq u), RoPE(Wk u), Wv u)   (no input norm, as EAGLE-1's layer 0; GQA like the target;
//                                             RoPE in the Hugging Face "rotate_half" convention, the target's
//                                             rope_theta; scores scaled by 1/sqrt(head_dim))
//   h   = u + a
//   out = h + Wdown (SiLU(Wgate n) * (Wup n)),  n = RMSNorm(h) * post_norm   (the target's rms_eps)
// out is the predicted f_{t+1}; the draft logits of the next token are LM(out) with no further norm (the
// features are final-norm states already).
//
// Files: safetensors with EAGLE-1's tensor names (so EAGLE-1 checkpoints load as they are):
//   fc.weight (H x 2H), fc.bias (H), layers.0.self_attn.{q,k,v,o}_proj.weight, layers.0.mlp.{gate,up,down}_proj
//   .weight, layers.0.post_attention_layernorm.weight (H); optional d2t (N, int64: draft id d is target id
//   d + d2t[d], EAGLE-3's encoding) for a reduced draft vocabulary whose LM head is the target's rows of those
//   ids; __metadata__ "specdec" = JSON metadata (docs/training.md). Extra tensors of EAGLE-1 files
//   (embed_tokens.weight, a frozen copy of the target's) are ignored.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/model/config.h"

namespace specdec::eagle {

struct EagleConfig {
  int hidden_size = 0;  // H, the target's
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int intermediate_size = 0;
  int vocab_size = 0;  // the target's V
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  static EagleConfig of_target(const ModelConfig& target);  // the target's shape
};

// Row-major, out x in, f32.
struct EagleWeights {
  EagleConfig cfg;
  std::vector<float> fc_w;            // H x 2H: columns 0..H-1 read e, H..2H-1 read f
  std::vector<float> fc_b;            // H
  std::vector<float> wq, wk, wv, wo;  // q_dim x H, kv_dim x H, kv_dim x H, H x q_dim
  std::vector<float> post_norm;       // H
  std::vector<float> w_gate, w_up;    // I x H
  std::vector<float> w_down;          // H x I
  // The reduced draft vocabulary: draft id d reads out target id draft_ids[d] (ascending, distinct, < V);
  // empty = the target's whole vocabulary.
  std::vector<int32_t> draft_ids;
  std::string metadata_json;  // the file's "specdec" metadata ("" for EAGLE-1 files)
};

// Random weights for a seed (tests and training's start): N(0, init_scale^2) matrices (fc_w's f columns
// start near the identity so out starts near f), zero biases, unit post_norm.
EagleWeights init_eagle_weights(const EagleConfig& cfg, uint64_t seed, float init_scale = 0.02f);

// Loads specdec's or EAGLE-1's files (same names). Throws a one-line specdec::Error naming the file for:
// not a safetensors file, a truncated file, a missing or misshapen tensor, a hidden size / vocabulary other
// than the target's, a d2t naming ids outside the target's vocabulary, and (expected_target_sha256 not
// empty, the metadata naming a target) weights trained for another target.
EagleWeights load_eagle_weights(const std::string& path, const ModelConfig& target,
                                const std::string& expected_target_sha256 = "");
// Writes specdec's layout (metadata_json as the "specdec" metadata); atomic.
void save_eagle_weights(const EagleWeights& w, const std::string& path);

// The layer's own KV cache: slot i holds the keys (RoPE applied) and values of the i-th pair read.
struct EagleCache {
  int n = 0;                // slots in use
  std::vector<float> k, v;  // n x kv_dim each (size tracks n; the vectors' capacity keeps the memory)
  void truncate(int m);     // keep slots 0..m-1 (0 <= m <= n)
  // Keep slots base + rows[i] at base + i (rows strictly increasing, < n - base); n becomes base + rows.size().
  void compact(int base, std::span<const int32_t> rows);
};

// Reads T pairs: emb and feat T x H each (row t: the embedding of x_{t+1} and the feature f_t), positions T,
// mask T x (cache.n + T) (1 = attend; empty = causal over the cache and the block). Appends T slots to the
// cache and writes out (T x H), the predicted features. Deterministic for a thread count.
void eagle_forward(const EagleWeights& w, EagleCache& cache, std::span<const float> emb, std::span<const float> feat,
                   std::span<const int32_t> positions, std::span<const uint8_t> mask, std::span<float> out);

}  // namespace specdec::eagle
