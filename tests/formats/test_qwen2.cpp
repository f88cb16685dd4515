// The second architecture of core/model/arch.h: a tiny random Qwen2 (q/k/v biases, qwen2_fixture.h) written
// in GGUF (arch "qwen2", q/k rows in HF order as llama.cpp's converter leaves them) and as an HF safetensors
// folder (Qwen2ForCausalLM). Both load through load_model to the same config and weights, the CPU
// forward gives bit-identical logits for both, and those logits match the fixture's naive double-precision
// forward in HF's own conventions (rotate-half RoPE, bias after each q/k/v projection), which
// differs clearly from the same forward without the biases.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>

#include "core/error.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/model/loader.h"
#include "tests/formats/qwen2_fixture.h"
#include "tests/support/assets.h"

using namespace specdec;
using namespace specdec::test;
using Catch::Matchers::Contains;
namespace fs = std::filesystem;

namespace {

fs::path dir() { return scratch_dir("formats_qwen2"); }

std::vector<float> cpu_logits(std::shared_ptr<const LoadedModel> m, const std::vector<TokenId>& tokens) {
  LlamaCpu model(std::move(m));
  auto cache = model.new_cache(static_cast<int>(tokens.size()));
  ForwardRequest req;
  req.tokens = tokens;
  ForwardResult out;
  model.forward(*cache, req, out);
  return out.logits;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("qwen2: GGUF and safetensors load the same model, biases included", "[qwen2]") {
  const TinyQwen2 q;
  const auto g = load_model(q.write_gguf(dir() / "tiny-qwen2.gguf"));
  const auto s = load_model(q.write_safetensors(dir() / "tiny-qwen2-hf"));
  CHECK(g->format == "gguf");
  CHECK(s->format == "safetensors");

  ModelConfig want;
  want.arch = "qwen2";
  want.dim = 64;
  want.hidden_dim = 96;
  want.n_layers = 2;
  want.n_heads = 4;
  want.n_kv_heads = 2;
  want.head_dim = 16;
  want.vocab_size = 32;
  want.max_seq_len = 64;
  want.rope_theta = 1000000.f;
  want.rms_eps = 1e-6f;
  want.tied_embeddings = false;
  want.qkv_bias = true;
  CHECK(g->config == want);
  CHECK(s->config == want);

  // Every tensor, the biases among them, holds the same values (q/k permuted alike) in both.
  REQUIRE(g->weights.layers.size() == 2);
  for (size_t l = 0; l < 2; ++l) {
    const LayerWeights& a = g->weights.layers[l];
    const LayerWeights& b = s->weights.layers[l];
    for (auto f : {&LayerWeights::attn_norm, &LayerWeights::wq, &LayerWeights::wk, &LayerWeights::wv, &LayerWeights::wo,
                   &LayerWeights::ffn_norm, &LayerWeights::w1, &LayerWeights::w2, &LayerWeights::w3, &LayerWeights::bq,
                   &LayerWeights::bk, &LayerWeights::bv}) {
      const WeightTensor& x = a.*f;
      const WeightTensor& y = b.*f;
      INFO(x.name << " / " << y.name);
      REQUIRE_FALSE(x.empty());
      REQUIRE_FALSE(y.empty());
      CHECK(x.dtype == y.dtype);
      CHECK(x.rows == y.rows);
      CHECK(x.cols == y.cols);
      CHECK(std::memcmp(x.data, y.data, x.nbytes()) == 0);
    }
    CHECK(a.bq.dtype == cpu::DType::F32);
    CHECK(a.bq.rows == 1);
    CHECK(a.bq.cols == 64);
    CHECK(a.bk.cols == 32);
    // Bias element h*D + 2i is HF's h*D + i (rotate-half -> interleaved, as the rows of wq).
    const std::vector<float>& hf = q.at("model.layers." + std::to_string(l) + ".self_attn.q_proj.bias");
    CHECK(a.bq.f32()[2 * 3] == hf[3]);
    CHECK(a.bq.f32()[2 * 3 + 1] == hf[3 + 8]);
    CHECK(a.bq.f32()[16 + 2 * 5 + 1] == hf[16 + 5 + 8]);
  }
}

TEST_CASE("qwen2: both formats give bit-identical logits, which match a naive forward with the biases", "[qwen2]") {
  const TinyQwen2 q;
  const auto g = load_model(q.write_gguf(dir() / "tiny-qwen2.gguf"));
  const auto s = load_model(q.write_safetensors(dir() / "tiny-qwen2-hf"));
  const std::vector<TokenId> tokens = {1, 5, 9, 3, 17, 30, 2, 5};
  const std::vector<float> lg = cpu_logits(g, tokens), ls = cpu_logits(s, tokens);
  REQUIRE(lg.size() == tokens.size() * 32);
  CHECK(std::memcmp(lg.data(), ls.data(), lg.size() * sizeof(float)) == 0);

  const std::vector<double> ref = q.reference(tokens, true), no_bias = q.reference(tokens, false);
  double scale = 0;
  for (double x : ref) scale = std::max(scale, std::abs(x));
  const double err = max_abs_diff(lg, ref), bias_effect = max_abs_diff(lg, no_bias);
  INFO("max |logit| " << scale << ", max |cpu - reference| " << err << ", max |cpu - reference without biases| "
                      << bias_effect);
  CHECK(err <= 1e-4 * std::max(1.0, scale));
  CHECK(bias_effect > 100 * err);
  CHECK(bias_effect > 1e-2 * scale);
}

TEST_CASE("qwen2: a missing bias or an unknown architecture is named", "[qwen2]") {
  const TinyQwen2 q;
  const std::string path = q.write_gguf(dir() / "no-bias.gguf", "blk.1.attn_k.bias");
  try {
    load_model(path);
    FAIL("expected a specdec::Error");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Contains(path) && Contains("'blk.1.attn_k.bias'") && Contains("missing"));
  }
  const std::string hf = q.write_safetensors(dir() / "sliding");
  write_json(fs::path(hf) / "config.json", {{"architectures", {"Qwen2ForCausalLM"}}, {"use_sliding_window", true}});
  try {
    load_model(hf);
    FAIL("expected a specdec::Error");
  } catch (const Error& e) {
    CHECK_THAT(std::string(e.what()), Contains("'use_sliding_window'"));
  }
}
