// The tensor-role and architecture tables (core/model/arch.h).
#include "core/model/arch.h"

#include <cstring>
#include <memory>

#include "core/error.h"
#include "core/model/safetensors.h"

namespace specdec {
namespace {

using K = RoleKind;
using E = Extent;
using Rp = RopeHeads;
using LW = LayerWeights;

constexpr LayerRoleInfo kRoles[kLayerRoleCount] = {
    {LayerRole::AttnNorm, &LW::attn_norm, "attn_norm.weight", "input_layernorm.weight", "attention_norm", K::Norm,
     E::One, E::H, Rp::None},
    {LayerRole::Wq, &LW::wq, "attn_q.weight", "self_attn.q_proj.weight", "wq", K::Matrix, E::Q, E::H, Rp::Query},
    {LayerRole::Wk, &LW::wk, "attn_k.weight", "self_attn.k_proj.weight", "wk", K::Matrix, E::KV, E::H, Rp::KeyValue},
    {LayerRole::Wv, &LW::wv, "attn_v.weight", "self_attn.v_proj.weight", "wv", K::Matrix, E::KV, E::H, Rp::None},
    {LayerRole::Wo, &LW::wo, "attn_output.weight", "self_attn.o_proj.weight", "wo", K::Matrix, E::H, E::Q, Rp::None},
    {LayerRole::FfnNorm, &LW::ffn_norm, "ffn_norm.weight", "post_attention_layernorm.weight", "ffn_norm", K::Norm,
     E::One, E::H, Rp::None},
    {LayerRole::W1, &LW::w1, "ffn_gate.weight", "mlp.gate_proj.weight", "w1", K::Matrix, E::F, E::H, Rp::None},
    {LayerRole::W2, &LW::w2, "ffn_down.weight", "mlp.down_proj.weight", "w2", K::Matrix, E::H, E::F, Rp::None},
    {LayerRole::W3, &LW::w3, "ffn_up.weight", "mlp.up_proj.weight", "w3", K::Matrix, E::F, E::H, Rp::None},
    {LayerRole::Bq, &LW::bq, "attn_q.bias", "self_attn.q_proj.bias", "bq", K::Bias, E::One, E::Q, Rp::Query},
    {LayerRole::Bk, &LW::bk, "attn_k.bias", "self_attn.k_proj.bias", "bk", K::Bias, E::One, E::KV, Rp::KeyValue},
    {LayerRole::Bv, &LW::bv, "attn_v.bias", "self_attn.v_proj.bias", "bv", K::Bias, E::One, E::KV, Rp::None},
};

constexpr bool roles_in_order() {
  for (int i = 0; i < kLayerRoleCount; ++i)
    if (static_cast<int>(kRoles[i].role) != i) return false;
  return true;
}
static_assert(roles_in_order(), "kRoles is indexed by LayerRole");

constexpr Architecture kArchitectures[] = {
    // name     HF class             model_type  qkv_bias  gguf_rope_rotate_half
    {"llama", "LlamaForCausalLM", "llama", false, false},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", true, true},
};

}  // namespace

std::span<const LayerRoleInfo> layer_roles() { return kRoles; }
const LayerRoleInfo& layer_role(LayerRole r) { return kRoles[static_cast<int>(r)]; }
std::span<const Architecture> architectures() { return kArchitectures; }

namespace {
const Architecture* find_by(const char* Architecture::*field, std::string_view v) {
  for (const Architecture& a : kArchitectures)
    if (v == a.*field) return &a;
  return nullptr;
}
}  // namespace

const Architecture* find_architecture(std::string_view name) { return find_by(&Architecture::name, name); }
const Architecture* find_hf_architecture(std::string_view c) { return find_by(&Architecture::hf_class, c); }
const Architecture* find_hf_model_type(std::string_view t) { return find_by(&Architecture::hf_model_type, t); }

const Architecture& architecture_of(const ModelConfig& c) {
  const Architecture* a = find_architecture(c.arch);
  SPECDEC_CHECK(a != nullptr, "architecture '", c.arch, "', expected ", architecture_list(&Architecture::name));
  return *a;
}

std::string architecture_list(const char* Architecture::*field) {
  std::string s;
  for (const Architecture& a : kArchitectures) s += (s.empty() ? "" : " or ") + std::string(a.*field);
  return s;
}

bool role_present(const LayerRoleInfo& r, const ModelConfig& c) { return r.kind != RoleKind::Bias || c.qkv_bias; }

int64_t extent(Extent e, const ModelConfig& c) {
  switch (e) {
    case Extent::One:
      return 1;
    case Extent::H:
      return c.dim;
    case Extent::F:
      return c.hidden_dim;
    case Extent::Q:
      return c.q_dim();
    case Extent::KV:
      return c.kv_dim();
  }
  return 0;
}

int rope_heads(RopeHeads h, const ModelConfig& c) {
  return h == RopeHeads::Query ? c.n_heads : h == RopeHeads::KeyValue ? c.n_kv_heads : 0;
}

}  // namespace specdec

namespace specdec {

void load_layers(const ModelConfig& c, LlamaWeights& w, const std::string& prefix, const char* LayerRoleInfo::*name,
                 bool rotate_half, const std::function<WeightTensor(const LayerRoleInfo&, const std::string&)>& load) {
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int l = 0; l < c.n_layers; ++l) {
    const std::string b = prefix + std::to_string(l) + ".";
    for (const LayerRoleInfo& r : layer_roles()) {
      if (!role_present(r, c)) continue;
      WeightTensor& t = w.layers[static_cast<size_t>(l)].*r.field;
      t = load(r, b + r.*name);
      if (rotate_half && r.rope != RopeHeads::None)
        t = rope_rows_to_interleaved(t, rope_heads(r.rope, c), c.head_dim, w.storage);
    }
  }
}

WeightTensor vector_to_f32(WeightTensor w, std::vector<std::any>& storage) {
  if (w.dtype == cpu::DType::F32) return w;
  const int64_t n = w.rows * w.cols;
  auto buf = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
  const auto* s = static_cast<const uint8_t*>(w.data);
  for (int64_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, s + 2 * i, 2);
    (*buf)[static_cast<size_t>(i)] = w.dtype == cpu::DType::F16 ? cpu::fp16_to_fp32(h) : cpu::bf16_to_fp32(h);
  }
  w.dtype = cpu::DType::F32;
  w.data = buf->data();
  storage.emplace_back(std::move(buf));
  return w;
}

WeightTensor rope_rows_to_interleaved(WeightTensor w, int n_heads, int head_dim, std::vector<std::any>& storage) {
  const bool vec = w.rows == 1;
  SPECDEC_CHECK((vec ? w.cols : w.rows) == static_cast<int64_t>(n_heads) * head_dim, w.name, ": expected ", n_heads,
                " heads of ", head_dim, " rows to permute, got ", w.rows, " x ", w.cols);
  const size_t unit = vec ? cpu::row_bytes(w.dtype, 1) : cpu::row_bytes(w.dtype, w.cols);
  auto buf = std::make_shared<std::vector<float>>((w.nbytes() + 3) / 4);
  permute_rope_rows_hf_to_interleaved(buf->data(), w.data, n_heads, head_dim, unit);
  w.data = buf->data();
  storage.emplace_back(std::move(buf));
  return w;
}

}  // namespace specdec
