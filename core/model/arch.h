// Architectures and tensor roles: the one table of what each per-layer tensor is called in every format
// (as llama.cpp's tensor-name table), which every loader and the CUDA upload walk instead of naming the
// tensors by hand. A new Llama-like architecture is a row of kArchitectures (docs/architectures.md).
#pragma once

#include <any>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/model/config.h"
#include "core/model/weights.h"

namespace specdec {

enum class LayerRole : uint8_t { AttnNorm, Wq, Wk, Wv, Wo, FfnNorm, W1, W2, W3, Bq, Bk, Bv };
inline constexpr int kLayerRoleCount = 12;

// How a role is stored and used. Norm and Bias are vectors the loaders convert to f32.
enum class RoleKind : uint8_t { Norm, Matrix, Bias };
// A tensor extent in terms of the config: 1, dim, hidden_dim, q_dim, kv_dim.
enum class Extent : uint8_t { One, H, F, Q, KV };
// Which heads a RoPE'd role's rows belong to (for the rotate-half -> interleaved row permutation).
enum class RopeHeads : uint8_t { None, Query, KeyValue };

struct LayerRoleInfo {
  LayerRole role;
  WeightTensor LayerWeights::*field;
  const char* gguf;     // after "blk.N."
  const char* hf;       // after "model.layers.N."
  const char* llama2c;  // the llama2.c export's name (tensor names in messages only)
  RoleKind kind;
  Extent rows, cols;  // (rows, cols) as WeightTensor; vectors are (1, cols)
  RopeHeads rope;
};

// Model-wide tensors: the token embedding, the final norm, the LM head (absent when tied).
struct ModelTensorNames {
  const char* gguf;
  const char* hf;
};
inline constexpr ModelTensorNames kTokEmbd{"token_embd.weight", "model.embed_tokens.weight"};
inline constexpr ModelTensorNames kFinalNorm{"output_norm.weight", "model.norm.weight"};
inline constexpr ModelTensorNames kOutput{"output.weight", "lm_head.weight"};

struct Architecture {
  const char* name;           // ModelConfig::arch, GGUF general.architecture and its metadata key prefix
  const char* hf_class;       // config.json "architectures"
  const char* hf_model_type;  // config.json "model_type" (used when "architectures" is absent)
  bool qkv_bias;              // Bq/Bk/Bv present
  // GGUF q/k rows (and biases) stay in HF rotate-half order (llama.cpp's NEOX RoPE) and are permuted to
  // the interleaved pairs cpu::rope expects on load; llama GGUF files store them interleaved already.
  bool gguf_rope_rotate_half;
};

// Every role, indexed by LayerRole.
std::span<const LayerRoleInfo> layer_roles();
const LayerRoleInfo& layer_role(LayerRole r);
std::span<const Architecture> architectures();
const Architecture* find_architecture(std::string_view name);         // by ModelConfig::arch / GGUF
const Architecture* find_hf_architecture(std::string_view hf_class);  // by config.json architectures
const Architecture* find_hf_model_type(std::string_view model_type);
const Architecture& architecture_of(const ModelConfig& c);        // throws for an unknown arch
std::string architecture_list(const char* Architecture::*field);  // "llama or qwen2", for messages

// Whether the role exists in models of this config (biases only where the architecture has them).
bool role_present(const LayerRoleInfo& r, const ModelConfig& c);
int64_t extent(Extent e, const ModelConfig& c);
int rope_heads(RopeHeads h, const ModelConfig& c);  // 0 for None

// ---- helpers the loaders share ----------------------------------------------------------------------

// Every layer's tensors of the roles present in c, named prefix + layer + "." + role.*name ("blk.", &gguf;
// "model.layers.", &hf). load(role, name) returns the tensor as the format stores it, vectors as f32; q/k
// rows and biases are then permuted to interleaved pairs when rotate_half (HF order in the file).
void load_layers(const ModelConfig& c, LlamaWeights& w, const std::string& prefix, const char* LayerRoleInfo::*name,
                 bool rotate_half, const std::function<WeightTensor(const LayerRoleInfo&, const std::string&)>& load);
// A (1, n) f16 or bf16 vector converted to f32 in a buffer kept in storage (norms and biases are f32 for
// every kernel). Returns w unchanged when it is f32 already.
WeightTensor vector_to_f32(WeightTensor w, std::vector<std::any>& storage);
// q/k rows (or bias elements) from HF rotate-half order to the interleaved pairs cpu::rope expects, into
// a buffer kept in storage. Matrices permute whole rows (any dtype); a (1, n) vector permutes elements.
WeightTensor rope_rows_to_interleaved(WeightTensor w, int n_heads, int head_dim, std::vector<std::any>& storage);

}  // namespace specdec
