// Medusa heads (Cai et al., 2024): K small heads on the target's final-norm hidden state h_t; head k
// (0-based) predicts the token k + 2 positions ahead of t (the target's own LM head predicts t + 1).
// Head k is n_layers residual blocks x <- x + SiLU(W x + b) (W: H x H, b: H) starting from x = h_t, then
// an LM head: the target's own (frozen, shared by every head) or the head's own (V x H).
//
// Files: safetensors. specdec's layout (what `specdec train medusa` writes):
//   heads.{k}.blocks.{l}.weight (H x H), heads.{k}.blocks.{l}.bias (H), heads.{k}.lm_head.weight (V x H,
//   only with own LM heads); __metadata__ "specdec" = the JSON metadata (target sha256, features, data
//   files, steps, seed, losses, accuracies; docs/training.md).
// The Medusa repository's layout is read too: medusa_head.{k}.{l}.linear.weight / .bias for the blocks,
//   medusa_head.{k}.{n_layers}.weight for the head's LM head (always its own there).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/model/config.h"
#include "core/model/safetensors.h"

namespace specdec::medusa {

struct HeadsConfig {
  int n_heads = 0;
  int n_layers = 1;  // residual blocks per head
  int hidden_size = 0;
  int vocab_size = 0;
  bool own_lm_head = false;  // false: the target's LM head, shared and frozen
};

struct MedusaHeads {
  HeadsConfig cfg;
  // Block (k, l) at index k * n_layers + l: w (H x H, row-major: out x in), b (H).
  std::vector<std::vector<float>> w, b;
  std::vector<std::vector<float>> lm_head;  // per head (V x H) when own_lm_head; empty otherwise
  std::string metadata_json;                // the file's "specdec" metadata ("" for public layouts)

  // out (H) = the state of head k for the feature h (H), before its LM head. out may not alias h.
  void head_state(int k, const float* h, float* out) const;
};

// Zero-initialised blocks (x + SiLU(0) = x: every head starts as the target's next-token prediction, as
// Medusa initialises them), or small random ones for a seed; own LM heads need the target's to copy.
MedusaHeads init_medusa_heads(const HeadsConfig& cfg, uint64_t seed, float init_scale = 0.0f);
// The same, with own LM heads: each a copy of target_lm_head (V x H, row-major f32).
MedusaHeads init_medusa_heads(const HeadsConfig& cfg, uint64_t seed, float init_scale,
                              const std::vector<float>& target_lm_head);

// Loads either layout (detected from the tensor names). Throws a one-line specdec::Error naming the file
// for: not a safetensors file, a truncated file, missing or misshapen tensors, a hidden size or vocabulary
// other than the target's, and (when expected_target_sha256 is not empty and the file's metadata names a
// target) heads trained for another target.
MedusaHeads load_medusa_heads(const std::string& path, const ModelConfig& target,
                              const std::string& expected_target_sha256 = "");

// Writes specdec's layout with metadata_json as the "specdec" metadata; atomic (temporary file + rename).
void save_medusa_heads(const MedusaHeads& heads, const std::string& path);

// ---- safetensors helpers (also the trainer's checkpoints) ---------------------------------------------

// One f32 tensor to write: shape row-major, outermost first; data holds the product of shape values.
struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  const float* data = nullptr;
  const int64_t* data_i64 = nullptr;  // set instead of data: an I64 tensor (ids, e.g. EAGLE-3's d2t)
};

// Writes a safetensors file of F32 (or, with data_i64, I64) tensors (in the order given) with a
// "__metadata__" map of strings: 8-byte little-endian header length, the JSON header (padded with spaces to a
// multiple of 8 bytes), the data. Atomic: written to PATH.tmp, flushed, then renamed over path. Throws naming the file
// on an I/O error.
void write_safetensors_f32(const std::string& path, const std::vector<TensorToWrite>& tensors,
                           const std::map<std::string, std::string>& metadata);

// The values of tensor `name` of a safetensors file (F32, F16 or BF16) as f32; the shape must be
// `shape`. Throws one line naming the file and the tensor when it is missing, misshapen or of another dtype.
std::vector<float> read_safetensors_f32(const SafetensorsFile& file, const std::string& name,
                                        const std::vector<int64_t>& shape);

}  // namespace specdec::medusa
