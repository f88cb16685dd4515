// The EAGLE draft layer (Li et al., 2024), in two architectures, drafted with EAGLE-2's dynamic trees:
//
// EAGLE-1 (EagleArch::kEagle1): one decoder layer of the target's shape that, for the pair (f_t, x_{t+1}) of the
// target's final-norm feature at position t and the embedding of the next token, predicts the feature f_{t+1};
// the target's LM head (or the rows of a reduced draft vocabulary) reads the prediction out. It drafts
// autoregressively: a drafted token's pair is (its parent's predicted feature, the token's embedding), in its
// own small KV cache. For T pairs at RoPE positions pos (the position of x_{t+1}) with a mask over (cached + T):
//   u   = Wfc [e ; f] + bfc                  (e = the target's embedding row of x_{t+1}, f = f_t; Wfc: H x 2H)
//   a   = Wo Attn(RoPE(Wq u), RoPE(Wk u), Wv u)   (no input norm, as EAGLE-1's layer 0; GQA like the target;
//                                             RoPE in the Hugging Face "rotate_half" convention, the target's
//                                             rope_theta; scores scaled by 1/sqrt(head_dim))
//   h   = u + a
//   out = h + Wdown (SiLU(Wgate n) * (Wup n)),  n = RMSNorm(h) * post_norm   (the target's rms_eps)
// out is the predicted f_{t+1}; the draft logits of the next token are LM(out) with no further norm (the
// features are final-norm states already).
//
// EAGLE-3 (EagleArch::kEagle3; SafeAILab/EAGLE eagle/model/cnets.py, Model with `midlayer`): the feature of
// position t is fused from three target layers, g_t = Wfc [low ; mid ; high] (Wfc: H x 3H, no bias), where
// low/mid/high are the residual streams (before the final norm) entering the target's layers 2, L/2 and L-3
// (EAGLE-3's choice for an L-layer target), i.e. the outputs of layers 1, L/2 - 1, L - 4 in FeatureSpec's
// 0-based "output of layer l" terms (eagle3_default_layers). The layer then reads (g, e) as
//   x   = [RMSNorm(e) * input_norm ; RMSNorm(g) * hidden_norm]            (2H: the embedding first)
//   a   = Wo Attn(RoPE(Wq x), RoPE(Wk x), Wv x)   (Wq: q_dim x 2H, Wk / Wv: kv_dim x 2H, Wo: H x q_dim; no biases)
//   h   = g + a                              (the residual is the un-normed feature)
//   out = h + Wdown (SiLU(Wgate n) * (Wup n)),  n = RMSNorm(h) * post_norm
// and its own head reads the draft logits: lm_head (N x H) . (RMSNorm(out) * final_norm). When drafting, a
// drafted token's feature is its parent's `out` as it is (H wide, fc skipped), exactly as EAGLE-1 feeds back
// its prediction; only the target's features pass through fc (eagle3_fuse).
//
// Files (safetensors). EAGLE-1's tensor names (so EAGLE-1 checkpoints load as they are):
//   fc.weight (H x 2H), fc.bias (H), layers.0.self_attn.{q,k,v,o}_proj.weight, layers.0.mlp.{gate,up,down}_proj
//   .weight, layers.0.post_attention_layernorm.weight (H); optional d2t (N, int64: draft id d is target id
//   d + d2t[d], EAGLE-3's encoding) for a reduced draft vocabulary whose LM head is the target's rows of those
//   ids; __metadata__ "specdec" = JSON metadata (docs/training.md). Extra tensors of EAGLE-1 files
//   (embed_tokens.weight, a frozen copy of the target's) are ignored.
// EAGLE-3's public names (a file with any `midlayer.` tensor is read as EAGLE-3): fc.weight (H x 3H),
//   midlayer.self_attn.{q,k,v}_proj.weight (x 2H), midlayer.self_attn.o_proj.weight, midlayer.mlp.{gate,up,down}
//   _proj.weight, midlayer.{input_layernorm,hidden_norm,post_attention_layernorm}.weight, norm.weight,
//   lm_head.weight (N x H), d2t (N, int64; absent: N = V), optional t2d (V, bool: checked against d2t), optional
//   embed_tokens.weight (ignored: the target's embedding is used). F32, F16 or BF16 float tensors. The MLP
//   width is read from mlp.gate_proj; heads and head_dim are the target's. save_eagle_weights writes the same
//   names (d2t always, zeros for the whole vocabulary; no t2d, which d2t determines).
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/model/config.h"
#include "kernels/cpu/dtype.h"

namespace specdec::eagle {

enum class EagleArch { kEagle1, kEagle3 };

struct EagleConfig {
  EagleArch arch = EagleArch::kEagle1;
  int hidden_size = 0;  // H, the target's
  int n_heads = 0, n_kv_heads = 0, head_dim = 0;
  int intermediate_size = 0;
  int vocab_size = 0;  // the target's V
  float rope_theta = 10000.0f;
  float rms_eps = 1e-5f;

  int q_dim() const { return n_heads * head_dim; }
  int kv_dim() const { return n_kv_heads * head_dim; }
  bool eagle3() const { return arch == EagleArch::kEagle3; }
  int attn_in() const { return eagle3() ? 2 * hidden_size : hidden_size; }  // the q/k/v projections' input width
  int fc_in() const { return (eagle3() ? 3 : 2) * hidden_size; }            // fc's input width
  static EagleConfig of_target(const ModelConfig& target);                  // the target's shape
};

// The decoder layer's matrices, in eagle_forward's order (EagleWeights::packed is indexed by these).
enum EagleMatrix : int { kFc, kWq, kWk, kWv, kWo, kGate, kUp, kDown, kEagleMatrices };

// Row-major, out x in, f32. A = cfg.attn_in() (H for EAGLE-1, 2H for EAGLE-3).
struct EagleWeights {
  EagleConfig cfg;
  std::vector<float> fc_w;            // EAGLE-1: H x 2H, columns 0..H-1 read e, H..2H-1 read f; EAGLE-3: H x 3H
  std::vector<float> fc_b;            // H (EAGLE-1); empty (EAGLE-3: no bias)
  std::vector<float> wq, wk, wv, wo;  // q_dim x A, kv_dim x A, kv_dim x A, H x q_dim
  std::vector<float> post_norm;       // H
  std::vector<float> w_gate, w_up;    // I x H
  std::vector<float> w_down;          // H x I
  // The reduced draft vocabulary: draft id d reads out target id draft_ids[d] (ascending, distinct, < V);
  // empty = the target's whole vocabulary.
  std::vector<int32_t> draft_ids;
  // EAGLE-3 only (empty for EAGLE-1): the RMSNorm weights of the embedding, of the feature and before the
  // head (H each), and the layer's own head over the draft vocabulary (N x H, N = draft_ids.size() or V).
  std::vector<float> input_norm, hidden_norm, final_norm;
  std::vector<float> lm_head;
  std::string metadata_json;  // the file's "specdec" metadata ("" for EAGLE-1 files)
  // What eagle_forward and eagle3_fuse read in place of the matrices above: their rows quantized as packed_dtype
  // (pack_eagle_matrices; empty: that matrix's f32 rows; the f32 vectors stay, for training and saving).
  cpu::DType packed_dtype = cpu::DType::F32;
  std::array<std::vector<uint8_t>, kEagleMatrices> packed;
};

// Packs the decoder layer's matrices (fc .. down) as dtype: Q8_0, Q4_0 or Q4_1 (cpu::quantize_row, GGML's
// reference quantizers), read by cpu::matmul's quantized kernels; F32 drops the packed copies. The forward then
// reads 3.8x (Q8_0) to 7x fewer weight bytes, and its activations are quantized to 8 bits per block as the
// target's quantized layers do: the layer's output moves by about the quantization's error (tests/eagle). A
// matrix whose input width is not a multiple of the block (32) stays f32. A one-line error for another dtype.
void pack_eagle_matrices(EagleWeights& w, cpu::DType dtype);

// Random weights for a seed (tests and training's start) of cfg.arch: N(0, init_scale^2) matrices (EAGLE-1: fc_w's
// f columns start near the identity so out starts near f; EAGLE-3: an lm_head of V rows), zero biases, unit norms.
EagleWeights init_eagle_weights(const EagleConfig& cfg, uint64_t seed, float init_scale = 0.02f);

// Loads specdec's, EAGLE-1's or EAGLE-3's files (see above). Throws a one-line specdec::Error naming the file for:
// not a safetensors file, a truncated file, a missing or misshapen tensor, a hidden size / vocabulary other
// than the target's, a d2t naming ids outside the target's vocabulary, and (expected_target_sha256 not
// empty, the metadata naming a target) weights trained for another target.
EagleWeights load_eagle_weights(const std::string& path, const ModelConfig& target,
                                const std::string& expected_target_sha256 = "");
// Writes specdec's layout (EAGLE-1's names, or EAGLE-3's for w.cfg.arch = kEagle3; metadata_json as the "specdec"
// metadata); atomic.
void save_eagle_weights(const EagleWeights& w, const std::string& path);

// The layer's own KV cache: slot i holds the keys (RoPE applied) and values of the i-th pair read.
struct EagleCache {
  int n = 0;                // slots in use
  std::vector<float> k, v;  // n x kv_dim each (size tracks n; the vectors' capacity keeps the memory)
  void truncate(int m);     // keep slots 0..m-1 (0 <= m <= n)
  // Keep slots base + rows[i] at base + i (rows strictly increasing, < n - base); n becomes base + rows.size().
  void compact(int base, std::span<const int32_t> rows);
};

// EAGLE-3's default target layers for an L-layer target, in FeatureSpec's terms (the output of layer l, 0-based):
// {1, L/2 - 1, L - 4}, the inputs of EAGLE-3's layers 2, L/2, L - 3, each clamped to [0, L - 1].
std::vector<int> eagle3_default_layers(int n_layers);
// EAGLE-3's fused feature: out (T x H) = fc_w . row of feats (T x 3H: low, mid, high target layer outputs).
void eagle3_fuse(const EagleWeights& w, std::span<const float> feats, std::span<float> out);
// What the draft head reads for T predicted states (T x H): EAGLE-3: RMSNorm(state) * final_norm; EAGLE-1: the
// state as it is (copied).
void eagle_head_input(const EagleWeights& w, std::span<const float> states, std::span<float> out);

// Reads T pairs: emb and feat T x H each (row t: the embedding of x_{t+1} and the feature f_t: EAGLE-3's fused
// g_t or a fed-back prediction), positions T,
// mask T x (cache.n + T) (1 = attend; empty = causal over the cache and the block). Appends T slots to the
// cache and writes out (T x H), the predicted features. Deterministic for a thread count.
void eagle_forward(const EagleWeights& w, EagleCache& cache, std::span<const float> emb, std::span<const float> feat,
                   std::span<const int32_t> positions, std::span<const uint8_t> mask, std::span<float> out);

}  // namespace specdec::eagle
