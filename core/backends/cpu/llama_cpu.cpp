// The Llama forward on the CPU. A batch of sequences shares every weight read: the projections run on
// all R = sum(T_b) token rows at once; attention runs per sequence over its own cache and mask.
#include "core/backends/cpu/llama_cpu.h"

#include <algorithm>
#include <cstring>

#include "core/error.h"
#include "core/model/batch_plan.h"
#include "kernels/cpu/op_profile.h"
#include "kernels/cpu/ops.h"

namespace specdec {
namespace {

// K and V for every layer: [layer][slot][kv_dim], fp32.
class CpuKVCache final : public KVCache {
 public:
  CpuKVCache(int capacity, int n_layers, int kv_dim)
      : KVCache(capacity, n_layers),
        kv_dim_(kv_dim),
        k_(static_cast<size_t>(n_layers) * capacity * kv_dim),
        v_(k_.size()) {}
  float* k(int layer, int slot) { return k_.data() + (static_cast<size_t>(layer) * capacity_ + slot) * kv_dim_; }
  float* v(int layer, int slot) { return v_.data() + (static_cast<size_t>(layer) * capacity_ + slot) * kv_dim_; }

  void copy_prefix(const KVCache& src, int n) override {
    const auto* s = dynamic_cast<const CpuKVCache*>(&src);
    SPECDEC_CHECK(s != nullptr && s->kv_dim_ == kv_dim_ && s->n_layers_ == n_layers_,
                  "a KV cache prefix from a CPU cache of the same model and layer count");
    SPECDEC_CHECK(n >= 0 && n <= s->size() && n <= capacity_, "a KV cache prefix of 0..",
                  std::min(s->size(), capacity_), " slots, got ", n);
    for (int l = 0; l < n_layers_; ++l) {
      std::memcpy(k(l, 0), s->k_.data() + static_cast<size_t>(l) * s->capacity_ * kv_dim_,
                  sizeof(float) * static_cast<size_t>(n) * kv_dim_);
      std::memcpy(v(l, 0), s->v_.data() + static_cast<size_t>(l) * s->capacity_ * kv_dim_,
                  sizeof(float) * static_cast<size_t>(n) * kv_dim_);
    }
    n_ = n;
  }

 protected:
  void move_slot(int from, int to) override {
    for (int l = 0; l < n_layers_; ++l) {
      std::memcpy(k(l, to), k(l, from), sizeof(float) * kv_dim_);
      std::memcpy(v(l, to), v(l, from), sizeof(float) * kv_dim_);
    }
  }

 private:
  int kv_dim_;
  std::vector<float> k_, v_;
};

}  // namespace

LlamaCpu::LlamaCpu(std::shared_ptr<const LoadedModel> model) : model_(std::move(model)) {
  SPECDEC_CHECK(model_ != nullptr, "a loaded model");
  model_->config.validate(model_->path);
}

std::unique_ptr<KVCache> LlamaCpu::new_cache(int capacity, int n_layers) const {
  const ModelConfig& c = config();
  n_layers = cache_layers(c, capacity, n_layers);
  return std::make_unique<CpuKVCache>(capacity, n_layers, c.kv_dim());
}

void LlamaCpu::forward_batch(std::span<KVCache* const> caches, std::span<const ForwardRequest> reqs,
                             std::span<ForwardResult> out) {
  const ModelConfig& c = config();
  const LlamaWeights& w = model_->weights;
  // Validate and lay out the batch (core/model/batch_plan.h): sequence b owns rows [row0[b], row0[b] + T_b).
  const BatchPlan p = plan_batch(c, caches, reqs, out.size());
  const int B = p.B;
  if (B == 0) return;
  for (int b = 0; b < B; ++b)
    SPECDEC_CHECK(dynamic_cast<CpuKVCache*>(caches[b]) != nullptr, "a CPU KV cache for the CPU model (request ", b,
                  ")");
  const int H = c.dim, F = c.hidden_dim, Dh = c.head_dim, Hq = c.n_heads, Hkv = c.n_kv_heads;
  const int QD = c.q_dim(), KVD = c.kv_dim(), V = c.vocab_size;
  const int L = p.L, R = p.R;
  const std::vector<int>& row0 = p.row0;
  auto size_to = [](std::vector<float>& v, size_t n) {
    if (v.size() < n) v.resize(n);
  };
  size_to(x_, static_cast<size_t>(R) * H);
  size_to(xb_, static_cast<size_t>(R) * H);
  size_to(q_, static_cast<size_t>(R) * QD);
  size_to(k_, static_cast<size_t>(R) * KVD);
  size_to(v_, static_cast<size_t>(R) * KVD);
  size_to(att_, static_cast<size_t>(R) * std::max(QD, H));
  size_to(gate_, static_cast<size_t>(R) * F);
  size_to(up_, static_cast<size_t>(R) * F);

  for (int b = 0; b < B; ++b)
    out[b].layer_outputs.assign(static_cast<size_t>(row0[b + 1] - row0[b]) * reqs[b].layer_outputs.size() * H, 0.f);

  using cpu::Op;
  using cpu::OpScope;
  {
    // Token embeddings (rows of tok_embeddings, dequantized when stored quantized).
    OpScope t(Op::Embed);
    const size_t emb_row_bytes = cpu::row_bytes(w.tok_embeddings.dtype, H);
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < row0[b + 1] - row0[b]; ++t)
        cpu::dequantize_row(x_.data() + static_cast<size_t>(row0[b] + t) * H,
                            static_cast<const uint8_t*>(w.tok_embeddings.data) + emb_row_bytes * reqs[b].tokens[t],
                            w.tok_embeddings.dtype, H);
  }

  {
    // RoPE's (cos, sin) per row, once for every layer
    OpScope t(Op::RopeCache);
    size_to(rope_cs_, static_cast<size_t>(R) * Dh);
    cpu::rope_table(rope_cs_.data(), p.pos.data(), R, Dh, c.rope_theta);
  }

  for (int l = 0; l < L; ++l) {
    const LayerWeights& lw = w.layers[l];
    {
      OpScope t(Op::Norm);
      cpu::rmsnorm(xb_.data(), x_.data(), lw.attn_norm.f32(), R, H, c.rms_eps);
    }
    {
      OpScope t(Op::MatmulQKV);
      const cpu::MatmulPart qkv[] = {{q_.data(), lw.wq.data, lw.wq.dtype, QD},
                                     {k_.data(), lw.wk.data, lw.wk.dtype, KVD},
                                     {v_.data(), lw.wv.data, lw.wv.dtype, KVD}};
      cpu::matmul_group(qkv, 3, xb_.data(), R, H);
      if (!lw.bq.empty())  // q/k/v biases (qwen2), before RoPE; Llama has none
        for (int r = 0; r < R; ++r) {
          cpu::add(q_.data() + static_cast<size_t>(r) * QD, lw.bq.f32(), QD);
          cpu::add(k_.data() + static_cast<size_t>(r) * KVD, lw.bk.f32(), KVD);
          cpu::add(v_.data() + static_cast<size_t>(r) * KVD, lw.bv.f32(), KVD);
        }
    }
    for (int b = 0; b < B; ++b) {
      auto* cache = static_cast<CpuKVCache*>(caches[b]);
      const int T = row0[b + 1] - row0[b], n_past = cache->size(), S = n_past + T;
      float* qb = q_.data() + static_cast<size_t>(row0[b]) * QD;
      const uint8_t* mask = reqs[b].mask.data();
      {
        OpScope t(Op::RopeCache);
        float* kb = k_.data() + static_cast<size_t>(row0[b]) * KVD;
        const float* cs = rope_cs_.data() + static_cast<size_t>(row0[b]) * Dh;
        cpu::rope_apply(qb, cs, T, Hq, Dh);
        cpu::rope_apply(kb, cs, T, Hkv, Dh);
        std::memcpy(cache->k(l, n_past), kb, sizeof(float) * T * KVD);
        std::memcpy(cache->v(l, n_past), v_.data() + static_cast<size_t>(row0[b]) * KVD, sizeof(float) * T * KVD);
        if (reqs[b].mask.empty()) {  // causal
          mask_.assign(static_cast<size_t>(T) * S, 0);
          for (int t = 0; t < T; ++t) std::fill_n(mask_.data() + static_cast<size_t>(t) * S, n_past + t + 1, 1);
          mask = mask_.data();
        }
      }
      OpScope t(Op::Attention);
      cpu::attention(att_.data() + static_cast<size_t>(row0[b]) * QD, qb, cache->k(l, 0), cache->v(l, 0), mask, T, S,
                     Hq, Hkv, Dh, KVD);
    }
    {
      OpScope t(Op::MatmulO);
      cpu::matmul(xb_.data(), att_.data(), lw.wo.data, lw.wo.dtype, R, H, QD);
    }
    {
      OpScope t(Op::Residual);
      cpu::add(x_.data(), xb_.data(), static_cast<int64_t>(R) * H);
    }
    {
      OpScope t(Op::Norm);
      cpu::rmsnorm(xb_.data(), x_.data(), lw.ffn_norm.f32(), R, H, c.rms_eps);
    }
    {
      OpScope t(Op::MatmulFfn);
      const cpu::MatmulPart gate_up[] = {{gate_.data(), lw.w1.data, lw.w1.dtype, F},
                                         {up_.data(), lw.w3.data, lw.w3.dtype, F}};
      cpu::matmul_group(gate_up, 2, xb_.data(), R, H);
    }
    {
      OpScope t(Op::Swiglu);
      cpu::swiglu(gate_.data(), gate_.data(), up_.data(), R, F);
    }
    {
      OpScope t(Op::MatmulFfn);
      cpu::matmul(xb_.data(), gate_.data(), lw.w2.data, lw.w2.dtype, R, H, F);
    }
    {
      OpScope t(Op::Residual);
      cpu::add(x_.data(), xb_.data(), static_cast<int64_t>(R) * H);
      capture_layer_outputs(l, reqs, row0, out);
    }
  }
  {
    OpScope t(Op::Norm);
    cpu::rmsnorm(x_.data(), x_.data(), w.final_norm.f32(), R, H, c.rms_eps);
  }

  // LM head over only the rows whose logits were asked for, gathered into one block.
  OpScope t_head(Op::LmHead);
  size_to(rows_, static_cast<size_t>(p.n_sel) * H);
  for (int b = 0, r = 0; b < B; ++b) {
    std::memcpy(rows_.data() + static_cast<size_t>(r) * H, x_.data() + static_cast<size_t>(p.sel_first[b]) * H,
                sizeof(float) * p.sel_n[b] * H);
    r += p.sel_n[b];
  }
  // One sequence (every decode step): the head writes straight into its result (no block to split).
  std::vector<float>& logits = B == 1 ? out[0].logits : logits_;
  logits.resize(static_cast<size_t>(p.n_sel) * V);
  if (p.n_sel > 0) cpu::matmul(logits.data(), rows_.data(), w.output.data, w.output.dtype, p.n_sel, V, H);

  for (int b = 0, r = 0; b < B; ++b) {
    const int T = row0[b + 1] - row0[b];
    ForwardResult& o = out[b];
    if (B > 1)
      o.logits.assign(logits.begin() + static_cast<ptrdiff_t>(r) * V,
                      logits.begin() + static_cast<ptrdiff_t>(r + p.sel_n[b]) * V);
    r += p.sel_n[b];
    if (reqs[b].want_hidden)
      o.hidden.assign(x_.begin() + static_cast<ptrdiff_t>(row0[b]) * H,
                      x_.begin() + static_cast<ptrdiff_t>(row0[b] + T) * H);
    else
      o.hidden.clear();
    caches[b]->advance(T);
  }
}

// Copies layer l's output rows into each request that asked for it (token-major: row t, then the
// requested layers in order).
void LlamaCpu::capture_layer_outputs(int l, std::span<const ForwardRequest> reqs, std::span<const int> row0,
                                     std::span<ForwardResult> out) const {
  const int H = config().dim;
  for (size_t b = 0; b < reqs.size(); ++b) {
    const auto& want = reqs[b].layer_outputs;
    const int n_l = static_cast<int>(want.size());
    for (int j = 0; j < n_l; ++j) {
      if (want[j] != l) continue;
      for (int t = 0; t < row0[b + 1] - row0[b]; ++t)
        std::memcpy(out[b].layer_outputs.data() + (static_cast<size_t>(t) * n_l + j) * H,
                    x_.data() + static_cast<size_t>(row0[b] + t) * H, sizeof(float) * H);
    }
  }
}

void LlamaCpu::lm_head(std::span<const float> hidden, int n, std::vector<float>& logits) {
  const ModelConfig& c = config();
  SPECDEC_CHECK(n >= 0 && hidden.size() == static_cast<size_t>(n) * c.dim, "lm_head: ", n, " rows of ", c.dim,
                " floats, got ", hidden.size(), " floats");
  const WeightTensor& w = model_->weights.output;
  logits.resize(static_cast<size_t>(n) * c.vocab_size);
  if (n > 0) cpu::matmul(logits.data(), hidden.data(), w.data, w.dtype, n, c.vocab_size, c.dim);
}

BackendInfo cpu_backend_info() {
  BackendInfo b;
  b.name = "cpu";
  b.help = "LlamaCpu: the reference forward on the host (fp32 compute, weights read in place)";
  b.make = [](std::shared_ptr<const LoadedModel> model, int) -> std::unique_ptr<Model> {
    return std::make_unique<LlamaCpu>(std::move(model));
  };
  return b;
}

}  // namespace specdec
