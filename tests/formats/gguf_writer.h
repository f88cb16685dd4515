// A small GGUF writer for tests: metadata of every type, tensors with raw bytes, a chosen version and
// alignment, and knobs to write files that lie (offsets, counts). Also a tiny random llama builder.
// Writes exactly what it is told: tensor types are not checked, so bad files are easy to make.
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "core/model/gguf.h"

namespace specdec::test {

class GgufWriter {
 public:
  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;  // ne order: dims[0] = columns
    uint32_t ggml_type = 0;
    std::vector<uint8_t> bytes;
    std::optional<uint64_t> offset_override;  // write this offset instead of the computed one
  };

  uint32_t version = 3;
  uint64_t alignment = 32;  // padding used; also add general.alignment to make readers use it
  std::optional<uint64_t> kv_count_override, tensor_count_override;

  // Section starts in the last bytes() output, for truncation tests.
  size_t kv_start = 0, tensor_info_start = 0, data_start = 0;
  std::vector<size_t> tensor_data_start;  // absolute file offset of each tensor's data

  void add(const std::string& key, GgufValue v) { kv_.emplace_back(key, std::move(v)); }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  void add_u32(const std::string& key, uint32_t v) { add(key, GgufValue{v}); }
  void add_i32(const std::string& key, int32_t v) { add(key, GgufValue{v}); }
  void add_f32(const std::string& key, float v) { add(key, GgufValue{v}); }
  void add_bool(const std::string& key, bool v) { add(key, GgufValue{v}); }
  void add_string(const std::string& key, const std::string& v) { add(key, GgufValue{v}); }
  void add_strings(const std::string& key, const std::vector<std::string>& v) { add(key, array(GgufType::String, v)); }
  template <typename T>
  static GgufValue array(GgufType elem, const std::vector<T>& items) {
    GgufArray a;
    a.elem_type = elem;
    for (const T& x : items) a.items.push_back(GgufValue{x});
    return GgufValue{std::move(a)};
  }

  Tensor& add_tensor(const std::string& name, std::vector<int64_t> dims, uint32_t ggml_type,
                     std::vector<uint8_t> bytes) {
    tensors_.push_back({name, std::move(dims), ggml_type, std::move(bytes), std::nullopt});
    return tensors_.back();
  }
  Tensor& add_f32(const std::string& name, std::vector<int64_t> dims, const std::vector<float>& v) {
    std::vector<uint8_t> b(v.size() * 4);
    std::memcpy(b.data(), v.data(), b.size());
    return add_tensor(name, std::move(dims), 0, std::move(b));
  }
  Tensor* tensor(const std::string& name) {
    for (Tensor& t : tensors_)
      if (t.name == name) return &t;
    return nullptr;
  }
  void remove_tensor(const std::string& name) {
    std::erase_if(tensors_, [&](const Tensor& t) { return t.name == name; });
  }
  void remove_key(const std::string& key) {
    std::erase_if(kv_, [&](const auto& kv) { return kv.first == key; });
  }

  std::vector<uint8_t> bytes() {
    std::vector<uint8_t> out;
    put_raw(out, "GGUF", 4);
    put(out, version);
    put<uint64_t>(out, tensor_count_override.value_or(tensors_.size()));
    put<uint64_t>(out, kv_count_override.value_or(kv_.size()));
    kv_start = out.size();
    for (const auto& [k, v] : kv_) {
      put_string(out, k);
      put<uint32_t>(out, static_cast<uint32_t>(v.type()));
      put_value(out, v);
    }
    tensor_info_start = out.size();
    std::vector<uint64_t> offsets;
    uint64_t off = 0;
    for (const Tensor& t : tensors_) {
      offsets.push_back(off);
      off = align(off + t.bytes.size());
      put_string(out, t.name);
      put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
      for (int64_t d : t.dims) put<uint64_t>(out, static_cast<uint64_t>(d));
      put<uint32_t>(out, t.ggml_type);
      put<uint64_t>(out, t.offset_override.value_or(offsets.back()));
    }
    out.resize(align(out.size()), 0);
    data_start = out.size();
    tensor_data_start.clear();
    for (size_t i = 0; i < tensors_.size(); ++i) {
      out.resize(data_start + offsets[i], 0);
      tensor_data_start.push_back(out.size());
      put_raw(out, tensors_[i].bytes.data(), tensors_[i].bytes.size());
    }
    return out;
  }

  static void write_file(const std::string& path, const std::vector<uint8_t>& b) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  }
  void write(const std::string& path) { write_file(path, bytes()); }

 private:
  uint64_t align(uint64_t x) const { return (x + alignment - 1) / alignment * alignment; }
  static void put_raw(std::vector<uint8_t>& out, const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  template <typename T>
  static void put(std::vector<uint8_t>& out, T v) {
    put_raw(out, &v, sizeof(T));
  }
  static void put_string(std::vector<uint8_t>& out, const std::string& s) {
    put<uint64_t>(out, s.size());
    put_raw(out, s.data(), s.size());
  }
  static void put_value(std::vector<uint8_t>& out, const GgufValue& v) {
    std::visit(
        [&](const auto& x) {
          using T = std::decay_t<decltype(x)>;
          if constexpr (std::is_same_v<T, std::string>) {
            put_string(out, x);
          } else if constexpr (std::is_same_v<T, GgufArray>) {
            put<uint32_t>(out, static_cast<uint32_t>(x.elem_type));
            put<uint64_t>(out, x.items.size());
            for (const GgufValue& e : x.items) put_value(out, e);
          } else if constexpr (std::is_same_v<T, bool>) {
            put<uint8_t>(out, x ? 1 : 0);
          } else {
            put<T>(out, x);
          }
        },
        v.v);
  }

  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

// The metadata of a tiny Llama-like model: general.*, the hyperparameters under "<arch>.", V tokens "t0".."tN".
struct GgufModelMeta {
  std::string arch, name, tokenizer;
  int H = 0, F = 0, L = 0, n_heads = 0, n_kv_heads = 0, ctx = 0, V = 0;
  int rope_dims = 0;  // <arch>.rope.dimension_count; 0 = absent
  float theta = 10000.f, eps = 1e-5f;
};
inline void add_model_metadata(GgufWriter& w, const GgufModelMeta& m) {
  const auto key = [&](const char* k) { return m.arch + "." + k; };
  w.add_string("general.architecture", m.arch);
  w.add_string("general.name", m.name);
  w.add_u32(key("embedding_length"), static_cast<uint32_t>(m.H));
  w.add_u32(key("feed_forward_length"), static_cast<uint32_t>(m.F));
  w.add_u32(key("block_count"), static_cast<uint32_t>(m.L));
  w.add_u32(key("attention.head_count"), static_cast<uint32_t>(m.n_heads));
  w.add_u32(key("attention.head_count_kv"), static_cast<uint32_t>(m.n_kv_heads));
  w.add_u32(key("context_length"), static_cast<uint32_t>(m.ctx));
  if (m.rope_dims) w.add_u32(key("rope.dimension_count"), static_cast<uint32_t>(m.rope_dims));
  w.add_f32(key("rope.freq_base"), m.theta);
  w.add_f32(key("attention.layer_norm_rms_epsilon"), m.eps);
  std::vector<std::string> tokens;
  for (int i = 0; i < m.V; ++i) tokens.push_back(std::string("t").append(std::to_string(i)));
  w.add_strings("tokenizer.ggml.tokens", tokens);
  w.add_string("tokenizer.ggml.model", m.tokenizer);
}

// A tiny random llama: L layers, H = 64, 4 query heads and 2 kv heads of D = 16, F = 96, V = 32,
// f32 tensors (values from a fixed seed). tied: no output.weight.
struct TinyLlama {
  int L = 2, H = 64, F = 96, n_heads = 4, n_kv_heads = 2, D = 16, V = 32, ctx = 128;
  bool tied = false;
  uint32_t seed = 7;

  std::vector<float> random(size_t n, uint32_t salt) const {
    std::mt19937 rng(seed * 1000003u + salt);
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    std::vector<float> v(n);
    for (float& x : v) x = u(rng);
    return v;
  }

  void fill(GgufWriter& w) const {
    add_model_metadata(w, {.arch = "llama",
                           .name = "tiny",
                           .tokenizer = "llama",
                           .H = H,
                           .F = F,
                           .L = L,
                           .n_heads = n_heads,
                           .n_kv_heads = n_kv_heads,
                           .ctx = ctx,
                           .V = V,
                           .rope_dims = D,
                           .theta = 500000.f,
                           .eps = 1e-6f});

    uint32_t salt = 0;
    auto mat = [&](const std::string& name, int rows, int cols) {
      w.add_f32(name, {cols, rows}, random(static_cast<size_t>(rows) * cols, ++salt));
    };
    mat("token_embd.weight", V, H);
    for (int l = 0; l < L; ++l) {
      const std::string b = "blk." + std::to_string(l) + ".";
      mat(b + "attn_norm.weight", 1, H);
      w.tensor(b + "attn_norm.weight")->dims = {H};
      mat(b + "attn_q.weight", n_heads * D, H);
      mat(b + "attn_k.weight", n_kv_heads * D, H);
      mat(b + "attn_v.weight", n_kv_heads * D, H);
      mat(b + "attn_output.weight", H, n_heads * D);
      mat(b + "ffn_norm.weight", 1, H);
      w.tensor(b + "ffn_norm.weight")->dims = {H};
      mat(b + "ffn_gate.weight", F, H);
      mat(b + "ffn_down.weight", H, F);
      mat(b + "ffn_up.weight", F, H);
    }
    mat("output_norm.weight", 1, H);
    w.tensor("output_norm.weight")->dims = {H};
    if (!tied) mat("output.weight", V, H);
  }
};

}  // namespace specdec::test
