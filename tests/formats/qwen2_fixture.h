// A tiny random Qwen2 (q/k/v biases) for tests: HF-layout tensors, written as GGUF (arch "qwen2", q/k rows
// in HF order as llama.cpp's converter leaves them) or as an HF safetensors folder (Qwen2ForCausalLM), and a
// naive double-precision forward in HF's own conventions. Used by test_qwen2 (CPU) and test_qwen2_cuda.
#pragma once

#include <cmath>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/types.h"
#include "tests/formats/gguf_writer.h"
#include "tests/formats/safetensors_writer.h"

namespace specdec::test {

struct TinyQwen2 {
  int L = 2, H = 64, F = 96, n_heads = 4, n_kv_heads = 2, D = 16, V = 32, ctx = 64;
  double theta = 1000000.0, eps = 1e-6;
  // HF name -> (HF shape, values in HF layout: q/k rows and biases in rotate-half order).
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> t;

  TinyQwen2() {
    TinyLlama rng;  // its seeded uniform(-1, 1)
    uint32_t salt = 500;
    auto add = [&](const std::string& name, std::vector<int64_t> shape) {
      size_t n = 1;
      for (int64_t d : shape) n *= static_cast<size_t>(d);
      t[name] = {shape, rng.random(n, ++salt)};
    };
    add("model.embed_tokens.weight", {V, H});
    for (int l = 0; l < L; ++l) {
      const std::string b = "model.layers." + std::to_string(l) + ".";
      add(b + "input_layernorm.weight", {H});
      add(b + "self_attn.q_proj.weight", {n_heads * D, H});
      add(b + "self_attn.q_proj.bias", {n_heads * D});
      add(b + "self_attn.k_proj.weight", {n_kv_heads * D, H});
      add(b + "self_attn.k_proj.bias", {n_kv_heads * D});
      add(b + "self_attn.v_proj.weight", {n_kv_heads * D, H});
      add(b + "self_attn.v_proj.bias", {n_kv_heads * D});
      add(b + "self_attn.o_proj.weight", {H, n_heads * D});
      add(b + "post_attention_layernorm.weight", {H});
      add(b + "mlp.gate_proj.weight", {F, H});
      add(b + "mlp.up_proj.weight", {F, H});
      add(b + "mlp.down_proj.weight", {H, F});
    }
    add("model.norm.weight", {H});
    add("lm_head.weight", {V, H});
  }
  const std::vector<float>& at(const std::string& name) const { return t.at(name).second; }

  // The GGUF name of each HF name, written out here rather than taken from the loader's table.
  static std::string gguf_name(const std::string& hf) {
    static const std::pair<const char*, const char*> kMap[] = {{"input_layernorm.weight", "attn_norm.weight"},
                                                               {"self_attn.q_proj.weight", "attn_q.weight"},
                                                               {"self_attn.q_proj.bias", "attn_q.bias"},
                                                               {"self_attn.k_proj.weight", "attn_k.weight"},
                                                               {"self_attn.k_proj.bias", "attn_k.bias"},
                                                               {"self_attn.v_proj.weight", "attn_v.weight"},
                                                               {"self_attn.v_proj.bias", "attn_v.bias"},
                                                               {"self_attn.o_proj.weight", "attn_output.weight"},
                                                               {"post_attention_layernorm.weight", "ffn_norm.weight"},
                                                               {"mlp.gate_proj.weight", "ffn_gate.weight"},
                                                               {"mlp.up_proj.weight", "ffn_up.weight"},
                                                               {"mlp.down_proj.weight", "ffn_down.weight"}};
    if (hf == "model.embed_tokens.weight") return "token_embd.weight";
    if (hf == "model.norm.weight") return "output_norm.weight";
    if (hf == "lm_head.weight") return "output.weight";
    const std::string pre = "model.layers.";
    const size_t dot = hf.find('.', pre.size());
    const std::string layer = hf.substr(pre.size(), dot - pre.size()), rest = hf.substr(dot + 1);
    for (const auto& [h, g] : kMap)
      if (rest == h) return "blk." + layer + "." + g;
    throw std::runtime_error("no GGUF name for " + hf);
  }

  std::string write_gguf(const std::filesystem::path& path, const std::string& skip = "") const {
    GgufWriter w;
    add_model_metadata(w, {.arch = "qwen2",
                           .name = "tiny-qwen2",
                           .tokenizer = "gpt2",
                           .H = H,
                           .F = F,
                           .L = L,
                           .n_heads = n_heads,
                           .n_kv_heads = n_kv_heads,
                           .ctx = ctx,
                           .V = V,
                           .theta = static_cast<float>(theta),
                           .eps = static_cast<float>(eps)});
    for (const auto& [name, sv] : t) {
      const std::string g = gguf_name(name);
      if (g == skip) continue;
      std::vector<int64_t> dims(sv.first.rbegin(), sv.first.rend());  // GGUF: columns first
      w.add_f32(g, dims, sv.second);
    }
    w.write(path.string());
    return path.string();
  }

  std::string write_safetensors(const std::filesystem::path& dir) const {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    write_json(dir / "config.json", {{"architectures", {"Qwen2ForCausalLM"}},
                                     {"model_type", "qwen2"},
                                     {"hidden_size", H},
                                     {"intermediate_size", F},
                                     {"num_hidden_layers", L},
                                     {"num_attention_heads", n_heads},
                                     {"num_key_value_heads", n_kv_heads},
                                     {"vocab_size", V},
                                     {"max_position_embeddings", ctx},
                                     {"rope_theta", theta},
                                     {"rms_norm_eps", eps},
                                     {"hidden_act", "silu"},
                                     {"use_sliding_window", false},
                                     {"tie_word_embeddings", false},
                                     {"torch_dtype", "float32"}});
    std::vector<StTensor> ts;
    for (const auto& [name, sv] : t) ts.push_back({name, "F32", sv.first, encode_floats(sv.second, "F32")});
    StFile(ts).write(dir / "model.safetensors");
    return dir.string();
  }

  // Naive forward in double, HF conventions. Returns T x V logits (every position, causal).
  std::vector<double> reference(const std::vector<TokenId>& tokens, bool with_bias) const {
    const int T = static_cast<int>(tokens.size()), QD = n_heads * D, KVD = n_kv_heads * D;
    auto matvec = [](const std::vector<float>& W, const std::vector<double>& x, int rows) {
      const size_t cols = x.size();
      std::vector<double> y(rows, 0.0);
      for (int r = 0; r < rows; ++r)
        for (size_t c = 0; c < cols; ++c) y[r] += static_cast<double>(W[r * cols + c]) * x[c];
      return y;
    };
    auto rmsnorm = [&](const std::vector<double>& x, const std::vector<float>& w) {
      double ss = 0;
      for (double v : x) ss += v * v;
      const double s = 1.0 / std::sqrt(ss / x.size() + eps);
      std::vector<double> y(x.size());
      for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * s * w[i];
      return y;
    };
    auto rope = [&](std::vector<double>& v, int heads, int pos) {  // rotate-half
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < D / 2; ++i) {
          const double a = pos * std::pow(theta, -2.0 * i / D);
          double& x0 = v[h * D + i];
          double& x1 = v[h * D + i + D / 2];
          const double r0 = x0 * std::cos(a) - x1 * std::sin(a), r1 = x1 * std::cos(a) + x0 * std::sin(a);
          x0 = r0;
          x1 = r1;
        }
    };
    std::vector<std::vector<double>> x(T);
    for (int p = 0; p < T; ++p) {
      const std::vector<float>& e = at("model.embed_tokens.weight");
      x[p].assign(e.begin() + tokens[p] * H, e.begin() + (tokens[p] + 1) * H);
    }
    for (int l = 0; l < L; ++l) {
      const std::string b = "model.layers." + std::to_string(l) + ".";
      std::vector<std::vector<double>> q(T), k(T), v(T);
      for (int p = 0; p < T; ++p) {
        const std::vector<double> xn = rmsnorm(x[p], at(b + "input_layernorm.weight"));
        q[p] = matvec(at(b + "self_attn.q_proj.weight"), xn, QD);
        k[p] = matvec(at(b + "self_attn.k_proj.weight"), xn, KVD);
        v[p] = matvec(at(b + "self_attn.v_proj.weight"), xn, KVD);
        if (with_bias) {
          for (int i = 0; i < QD; ++i) q[p][i] += at(b + "self_attn.q_proj.bias")[i];
          for (int i = 0; i < KVD; ++i) k[p][i] += at(b + "self_attn.k_proj.bias")[i];
          for (int i = 0; i < KVD; ++i) v[p][i] += at(b + "self_attn.v_proj.bias")[i];
        }
        rope(q[p], n_heads, p);
        rope(k[p], n_kv_heads, p);
      }
      for (int p = 0; p < T; ++p) {
        std::vector<double> att(QD, 0.0);
        for (int h = 0; h < n_heads; ++h) {
          const int kvh = h / (n_heads / n_kv_heads);
          std::vector<double> s(p + 1);
          double mx = -1e300, sum = 0;
          for (int j = 0; j <= p; ++j) {
            double d = 0;
            for (int i = 0; i < D; ++i) d += q[p][h * D + i] * k[j][kvh * D + i];
            s[j] = d / std::sqrt(static_cast<double>(D));
            mx = std::max(mx, s[j]);
          }
          for (double& e : s) sum += (e = std::exp(e - mx));
          for (int j = 0; j <= p; ++j)
            for (int i = 0; i < D; ++i) att[h * D + i] += s[j] / sum * v[j][kvh * D + i];
        }
        const std::vector<double> o = matvec(at(b + "self_attn.o_proj.weight"), att, H);
        for (int i = 0; i < H; ++i) x[p][i] += o[i];
        const std::vector<double> xn = rmsnorm(x[p], at(b + "post_attention_layernorm.weight"));
        std::vector<double> g = matvec(at(b + "mlp.gate_proj.weight"), xn, F);
        const std::vector<double> u = matvec(at(b + "mlp.up_proj.weight"), xn, F);
        for (int i = 0; i < F; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
        const std::vector<double> d = matvec(at(b + "mlp.down_proj.weight"), g, H);
        for (int i = 0; i < H; ++i) x[p][i] += d[i];
      }
    }
    std::vector<double> logits;
    for (int p = 0; p < T; ++p) {
      const std::vector<double> y = matvec(at("lm_head.weight"), rmsnorm(x[p], at("model.norm.weight")), V);
      logits.insert(logits.end(), y.begin(), y.end());
    }
    return logits;
  }
};

}  // namespace specdec::test
