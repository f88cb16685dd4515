// The outputs of tests/fixtures/make_stories_formats.py (stories260K as GGUF and HF safetensors) against
// the llama2.c checkpoint they came from: every tensor of every copy, read through load_gguf /
// load_safetensors, equals the original floats (the HF q/k rows after the loader's RoPE permutation).
// Skipped (exit 77) unless SPECDEC_STORIES_FORMATS_DIR names the script's --out folder.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>

#include "core/generate.h"
#include "core/loading.h"
#include "core/model/gguf.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/model/safetensors.h"
#include "tests/formats/safetensors_writer.h"
#include "tests/support/assets.h"

using namespace specdec;
namespace fs = std::filesystem;

namespace {

fs::path fixture_dir() {
  const char* env = std::getenv("SPECDEC_STORIES_FORMATS_DIR");
  if (!env || !*env || !fs::exists(fs::path(env) / "stories260K.gguf")) {
    std::cerr << "test_stories_gguf_safetensors: SPECDEC_STORIES_FORMATS_DIR does not name the output of "
                 "tests/fixtures/make_stories_formats.py; skipped\n";
    std::exit(77);  // CTest SKIP_RETURN_CODE
  }
  return env;
}

// The floats of stories260K.bin (llama2.c version-1 export: a 256-byte header, then fp32 weights), read
// independently of the library's llama2.c loader.
std::vector<float> read_floats_after_header() {
  std::ifstream f(test::stories_model(), std::ios::binary);
  f.seekg(0, std::ios::end);
  const size_t n = (static_cast<size_t>(f.tellg()) - 256) / 4;
  std::vector<float> w(n);
  f.seekg(256);
  f.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(n * 4));
  return w;
}

// Offsets (in floats) of each tensor in the llama2.c version-1 order.
struct Layout {
  int H = 64, F = 172, L = 5, Hq = 8, Hkv = 4, D = 8, V = 512;
  size_t attn_norm(int l) const { return static_cast<size_t>(l) * H; }
  size_t ffn_norm(int l) const { return static_cast<size_t>(L + l) * H; }
  size_t norm() const { return static_cast<size_t>(2 * L) * H; }
  size_t embd() const { return norm() + H; }
  size_t wq(int l) const { return embd() + static_cast<size_t>(V) * H + static_cast<size_t>(l) * H * H; }
  size_t wk(int l) const { return wq(L) + static_cast<size_t>(l) * Hkv * D * H; }
  size_t wv(int l) const { return wk(L) + static_cast<size_t>(l) * Hkv * D * H; }
  size_t wo(int l) const { return wv(L) + static_cast<size_t>(l) * H * H; }
  size_t w1(int l) const { return wo(L) + static_cast<size_t>(l) * F * H; }
  size_t w2(int l) const { return w1(L) + static_cast<size_t>(l) * F * H; }
  size_t w3(int l) const { return w2(L) + static_cast<size_t>(l) * F * H; }
  size_t end() const { return w3(L); }
};

// tol = 0: exact; else relative to the value plus a small absolute floor.
void check_tensor(const WeightTensor& t, const std::vector<float>& ref, size_t off, double tol) {
  const size_t n = static_cast<size_t>(t.rows * t.cols);
  for (size_t i = 0; i < n; ++i) {
    const float got = test::decode_float(t.data, i, t.dtype), want = ref[off + i];
    const bool ok = tol == 0 ? got == want : std::fabs(got - want) <= tol * std::fabs(want) + 1e-6;
    if (!ok) {
      FAIL_CHECK(t.name << " element " << i << ": " << got << " != " << want);
      return;
    }
  }
}

void check_model(const LoadedModel& m, double tol_matrix) {
  const Layout Lo;
  const std::vector<float> ref = read_floats_after_header();
  REQUIRE(ref.size() == Lo.end());
  const ModelConfig& c = m.config;
  CAPTURE(c.describe());
  CHECK(c == ModelConfig{.arch = "llama",
                         .dim = 64,
                         .hidden_dim = 172,
                         .n_layers = 5,
                         .n_heads = 8,
                         .n_kv_heads = 4,
                         .head_dim = 8,
                         .vocab_size = 512,
                         .max_seq_len = 512,
                         .rope_theta = 10000.f,
                         .rms_eps = 1e-5f,
                         .tied_embeddings = true});
  const LlamaWeights& w = m.weights;
  check_tensor(w.tok_embeddings, ref, Lo.embd(), tol_matrix);
  // Norms are f32 in every copy except the bf16 one, where they went through bf16.
  const double tol_norm = tol_matrix > 1e-3 ? tol_matrix : 0;
  check_tensor(w.final_norm, ref, Lo.norm(), tol_norm);
  CHECK(w.output.data == w.tok_embeddings.data);
  for (int l = 0; l < 5; ++l) {
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    check_tensor(lw.attn_norm, ref, Lo.attn_norm(l), tol_norm);
    check_tensor(lw.ffn_norm, ref, Lo.ffn_norm(l), tol_norm);
    check_tensor(lw.wq, ref, Lo.wq(l), tol_matrix);
    check_tensor(lw.wk, ref, Lo.wk(l), tol_matrix);
    check_tensor(lw.wv, ref, Lo.wv(l), tol_matrix);
    check_tensor(lw.wo, ref, Lo.wo(l), tol_matrix);
    check_tensor(lw.w1, ref, Lo.w1(l), tol_matrix);
    check_tensor(lw.w2, ref, Lo.w2(l), tol_matrix);
    check_tensor(lw.w3, ref, Lo.w3(l), tol_matrix);
  }
}

}  // namespace

TEST_CASE("stories formats: GGUF copies equal the llama2.c checkpoint", "[gguf][fixture]") {
  const fs::path dir = fixture_dir();
  auto f = GgufFile::open((dir / "stories260K.gguf").string());
  auto m = load_gguf(*f);
  CHECK(m->format == "gguf");
  check_model(*m, 0);
  check_model(*load_gguf((dir / "stories260K-f16.gguf").string()), 1.0 / 1024);

  const GgufTokenizerMetadata t = read_gguf_tokenizer_metadata(*f);
  CHECK(t.model == "llama");
  REQUIRE(t.tokens.size() == 512);
  CHECK(t.tokens[0] == "<unk>");
  CHECK(t.tokens[1] == "<s>");
  CHECK(t.tokens[2] == "</s>");
  CHECK(t.tokens[3] == "<0x00>");
  CHECK(t.tokens[259] == "\xE2\x96\x81t");
  CHECK(t.scores[260] == -1.f);
  CHECK(t.token_types[0] == 2);
  CHECK(t.token_types[1] == 3);
  CHECK(t.token_types[3] == 6);
  CHECK(t.token_types[258] == 6);
  CHECK(t.token_types[259] == 1);
  CHECK(t.bos_id == 1);
  CHECK(t.eos_id == 2);
  CHECK(t.unk_id == 0);
  CHECK(t.add_bos == std::optional<bool>(true));
  CHECK(t.add_space_prefix == std::optional<bool>(true));
}

TEST_CASE("stories formats: safetensors copies equal the llama2.c checkpoint", "[safetensors][fixture]") {
  const fs::path dir = fixture_dir();
  auto single = load_safetensors((dir / "stories260K-hf").string());
  CHECK(single->format == "safetensors");
  check_model(*single, 0);
  check_model(*load_safetensors((dir / "stories260K-hf-sharded").string()), 0);
  auto bf = load_safetensors((dir / "stories260K-hf-bf16").string());
  CHECK(bf->weights.layers[0].wq.dtype == cpu::DType::BF16);
  check_model(*bf, 1.0 / 128);
}

// End to end through load_model + load_tokenizer: every copy gives the llama2.c file's logits and its
// greedy text (the tokenizer coming from GGUF metadata or tokenizer.json, not from tok512.bin).
TEST_CASE("stories formats: identical logits and greedy text through the public loaders", "[fixture]") {
  const fs::path dir = fixture_dir();
  auto ref_loaded = load_model(test::stories_model());
  LlamaCpu ref(ref_loaded);
  auto ref_tok = load_tokenizer(*ref_loaded, test::stories_tokenizer());
  const auto prompt = ref_tok->encode("Once upon a time, a little bird", true);
  const int V = ref_loaded->config.vocab_size;
  auto forward_all = [&](Model& m) {
    auto cache = m.new_cache(64);
    ForwardResult r;
    m.forward(*cache, {.tokens = prompt}, r);
    return r.logits;
  };
  const auto ref_logits = forward_all(ref);
  GenerateOptions g;
  g.max_new_tokens = 120;
  const auto ref_text = ref_tok->decode(generate(ref, prompt, g).tokens);

  struct Copy {
    std::string path;
    bool exact;  // f32 copies: bit-identical logits; f16/bf16 copies: close
  };
  for (const Copy& c :
       {Copy{(dir / "stories260K.gguf").string(), true}, Copy{(dir / "stories260K-hf").string(), true},
        Copy{(dir / "stories260K-hf-sharded").string(), true}, Copy{(dir / "stories260K-f16.gguf").string(), false},
        Copy{(dir / "stories260K-hf-bf16").string(), false}}) {
    INFO(c.path);
    auto loaded = load_model(c.path);
    LlamaCpu m(loaded);
    auto tok = load_tokenizer(*loaded, "");
    REQUIRE(tok->encode("Once upon a time, a little bird", true) == prompt);
    const auto logits = forward_all(m);
    REQUIRE(logits.size() == prompt.size() * V);
    double max_diff = 0;
    for (size_t i = 0; i < logits.size(); ++i)
      max_diff = std::max(max_diff, double(std::fabs(logits[i] - ref_logits[i])));
    if (c.exact) {
      REQUIRE(max_diff == 0.0);
      REQUIRE(tok->decode(generate(m, prompt, g).tokens) == ref_text);
    } else {
      REQUIRE(max_diff < 0.1);  // 16-bit weights: 8 (fp16) or 7 (bf16) mantissa bits
    }
  }
}
