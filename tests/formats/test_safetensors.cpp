// safetensors reader and HF Llama loader: single file, shards with an index, f16/bf16, the q/k RoPE row
// permutation, and headers or configs that lie (each a one-line error naming the file and tensor/key).
// All files are written here by tests/formats/safetensors_writer.h.
#include <catch2/catch.hpp>

#include <functional>
#include <map>

#include "core/error.h"
#include "core/model/safetensors.h"
#include "tests/formats/gguf_writer.h"
#include "tests/formats/safetensors_writer.h"
#include "tests/formats/tiny_llama_config.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"

using namespace specdec;
using namespace specdec::test;
using Catch::Matchers::Contains;
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// A fresh, empty folder under this binary's scratch dir.
fs::path folder(const std::string& name) {
  const fs::path p = scratch_dir("formats_safetensors") / name;
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

// The rows of a (n_heads*D, cols) matrix from specdec's interleaved-pairs order back to HF's
// rotate-half order: the inverse of permute_rope_rows_hf_to_interleaved, written independently.
std::vector<float> to_hf_rows(const std::vector<float>& w, int n_heads, int D, int cols) {
  std::vector<float> out(w.size());
  for (int h = 0; h < n_heads; ++h)
    for (int i = 0; i < D / 2; ++i)
      for (int j = 0; j < 2; ++j) {
        const size_t src = static_cast<size_t>(h * D + 2 * i + j) * cols;
        const size_t dst = static_cast<size_t>(h * D + j * D / 2 + i) * cols;
        std::copy_n(w.begin() + static_cast<long>(src), cols, out.begin() + static_cast<long>(dst));
      }
  return out;
}

// A tiny HF LlamaForCausalLM (TinyLlama's sizes). expected[name] holds each tensor's values in the
// layout the loader should produce (q/k interleaved); the file holds q/k in HF order.
struct HfTiny {
  TinyLlama m;
  std::string dtype = "F32";
  std::string norm_dtype = "F32";
  bool lm_head = true;
  std::map<std::string, std::vector<float>> expected;
  std::vector<StTensor> tensors;

  json config() const {
    return {{"architectures", {"LlamaForCausalLM"}},
            {"model_type", "llama"},
            {"hidden_size", m.H},
            {"intermediate_size", m.F},
            {"num_hidden_layers", m.L},
            {"num_attention_heads", m.n_heads},
            {"num_key_value_heads", m.n_kv_heads},
            {"vocab_size", m.V},
            {"max_position_embeddings", m.ctx},
            {"rope_theta", 500000.0},
            {"rms_norm_eps", 1e-5},
            {"hidden_act", "silu"},
            {"rope_scaling", nullptr},
            {"tie_word_embeddings", false},
            {"torch_dtype", "float32"}};
  }

  void build() {
    uint32_t salt = 100;
    auto add = [&](const std::string& name, std::vector<int64_t> shape, int rope_heads = 0) {
      size_t n = 1;
      for (int64_t d : shape) n *= static_cast<size_t>(d);
      std::vector<float> v = m.random(n, ++salt);
      const bool vec = shape.size() == 1;
      // Round through the stored dtype so expected values are exact.
      const std::string dt = vec ? norm_dtype : dtype;
      const std::vector<uint8_t> enc = encode_floats(v, dt);
      const cpu::DType t = dt == "F32" ? cpu::DType::F32 : dt == "F16" ? cpu::DType::F16 : cpu::DType::BF16;
      for (size_t i = 0; i < n; ++i) v[i] = decode_float(enc.data(), i, t);
      expected[name] = v;
      if (rope_heads) v = to_hf_rows(v, rope_heads, m.D, static_cast<int>(shape[1]));
      tensors.push_back({name, dt, shape, encode_floats(v, dt)});
    };
    add("model.embed_tokens.weight", {m.V, m.H});
    for (int l = 0; l < m.L; ++l) {
      const std::string b = "model.layers." + std::to_string(l) + ".";
      add(b + "input_layernorm.weight", {m.H});
      add(b + "self_attn.q_proj.weight", {m.n_heads * m.D, m.H}, m.n_heads);
      add(b + "self_attn.k_proj.weight", {m.n_kv_heads * m.D, m.H}, m.n_kv_heads);
      add(b + "self_attn.v_proj.weight", {m.n_kv_heads * m.D, m.H});
      add(b + "self_attn.o_proj.weight", {m.H, m.n_heads * m.D});
      add(b + "post_attention_layernorm.weight", {m.H});
      add(b + "mlp.gate_proj.weight", {m.F, m.H});
      add(b + "mlp.up_proj.weight", {m.F, m.H});
      add(b + "mlp.down_proj.weight", {m.H, m.F});
    }
    add("model.norm.weight", {m.H});
    if (lm_head) add("lm_head.weight", {m.V, m.H});
  }

  StTensor* find(const std::string& name) {
    for (StTensor& t : tensors)
      if (t.name == name) return &t;
    return nullptr;
  }

  // config.json + model.safetensors in dir.
  fs::path write(const fs::path& dir) {
    if (tensors.empty()) build();
    write_json(dir / "config.json", config());
    StFile(tensors).write(dir / "model.safetensors");
    return dir;
  }
};

bool in_mapping(const LoadedModel& lm, const void* p) {
  for (const std::any& a : lm.weights.storage)
    if (const auto* f = std::any_cast<std::shared_ptr<MappedFile>>(&a))
      if (p >= (*f)->data() && p < (*f)->data() + (*f)->size()) return true;
  return false;
}

void check_values(const WeightTensor& w, const std::vector<float>& want) {
  REQUIRE(static_cast<size_t>(w.rows * w.cols) == want.size());
  for (size_t i = 0; i < want.size(); ++i)
    if (decode_float(w.data, i, w.dtype) != want[i]) {
      FAIL_CHECK(w.name << " element " << i << ": " << decode_float(w.data, i, w.dtype) << " != " << want[i]);
      return;
    }
}

void check_model(const LoadedModel& lm, const HfTiny& hf, bool tied) {
  const ModelConfig& c = lm.config;
  CHECK(lm.format == "safetensors");
  CAPTURE(c.describe());
  CHECK(c == specdec::test::tiny_llama_config(1e-5f, tied));
  const LlamaWeights& w = lm.weights;
  REQUIRE(w.layers.size() == 2);
  check_values(w.tok_embeddings, hf.expected.at("model.embed_tokens.weight"));
  CHECK(in_mapping(lm, w.tok_embeddings.data));
  for (int l = 0; l < 2; ++l) {
    const std::string b = "model.layers." + std::to_string(l) + ".";
    const LayerWeights& lw = w.layers[static_cast<size_t>(l)];
    check_values(lw.attn_norm, hf.expected.at(b + "input_layernorm.weight"));
    check_values(lw.wq, hf.expected.at(b + "self_attn.q_proj.weight"));
    check_values(lw.wk, hf.expected.at(b + "self_attn.k_proj.weight"));
    check_values(lw.wv, hf.expected.at(b + "self_attn.v_proj.weight"));
    check_values(lw.wo, hf.expected.at(b + "self_attn.o_proj.weight"));
    check_values(lw.ffn_norm, hf.expected.at(b + "post_attention_layernorm.weight"));
    check_values(lw.w1, hf.expected.at(b + "mlp.gate_proj.weight"));
    check_values(lw.w2, hf.expected.at(b + "mlp.down_proj.weight"));
    check_values(lw.w3, hf.expected.at(b + "mlp.up_proj.weight"));
    CHECK(lw.wq.rows == 64);
    CHECK(lw.wk.rows == 32);
    CHECK(lw.w2.rows == 64);
    CHECK(lw.w2.cols == 96);
    CHECK(lw.attn_norm.dtype == cpu::DType::F32);
    CHECK(lw.ffn_norm.dtype == cpu::DType::F32);
    CHECK(in_mapping(lm, lw.wv.data));
    CHECK(in_mapping(lm, lw.w2.data));
    CHECK_FALSE(in_mapping(lm, lw.wq.data));  // permuted copy
  }
  check_values(w.final_norm, hf.expected.at("model.norm.weight"));
  if (tied) {
    CHECK(w.output.data == w.tok_embeddings.data);
  } else {
    check_values(w.output, hf.expected.at("lm_head.weight"));
    CHECK(in_mapping(lm, w.output.data));
  }
}

}  // namespace

TEST_CASE("safetensors: the q/k row permutation", "[safetensors]") {
  // 2 heads of D = 4, 1 column: HF row r holds r.
  std::vector<float> hf = {0, 1, 2, 3, 4, 5, 6, 7}, out(8);
  permute_rope_rows_hf_to_interleaved(out.data(), hf.data(), 2, 4, sizeof(float));
  // Head 0: HF pairs (0, 2) and (1, 3) become adjacent rows; head 1 likewise.
  CHECK(out == std::vector<float>{0, 2, 1, 3, 4, 6, 5, 7});
  CHECK(to_hf_rows(out, 2, 4, 1) == hf);

  // Through the loader: q_proj rows hold their HF row index.
  HfTiny t;
  t.build();
  StTensor* q = t.find("model.layers.0.self_attn.q_proj.weight");
  std::vector<float> rows(64 * 64);
  for (size_t i = 0; i < rows.size(); ++i) rows[i] = static_cast<float>(i / 64);
  q->bytes = encode_floats(rows, "F32");
  const fs::path dir = t.write(folder("perm"));
  auto lm = load_safetensors(dir.string());
  const WeightTensor& wq = lm->weights.layers[0].wq;
  for (int h = 0; h < 4; ++h)
    for (int i = 0; i < 8; ++i) {
      CHECK(wq.f32()[(h * 16 + 2 * i) * 64 + 5] == static_cast<float>(h * 16 + i));
      CHECK(wq.f32()[(h * 16 + 2 * i + 1) * 64 + 63] == static_cast<float>(h * 16 + i + 8));
    }
}

TEST_CASE("safetensors: a single-file model loads, from the folder or the file", "[safetensors]") {
  HfTiny t;
  const fs::path dir = t.write(folder("single"));
  check_model(*load_safetensors(dir.string()), t, false);
  auto lm = load_safetensors((dir / "model.safetensors").string());
  check_model(*lm, t, false);
  CHECK(lm->path == (dir / "model.safetensors").string());
}

TEST_CASE("safetensors: tied embeddings", "[safetensors]") {
  HfTiny t;
  t.lm_head = false;
  const fs::path dir = t.write(folder("tied_absent"));
  check_model(*load_safetensors(dir.string()), t, true);

  HfTiny t2;
  const fs::path dir2 = t2.write(folder("tied_flag"));
  json cfg = t2.config();
  cfg["tie_word_embeddings"] = true;
  write_json(dir2 / "config.json", cfg);
  check_model(*load_safetensors(dir2.string()), t2, true);
}

TEST_CASE("safetensors: shards listed in model.safetensors.index.json", "[safetensors]") {
  HfTiny t;
  t.build();
  const fs::path dir = folder("sharded");
  write_json(dir / "config.json", t.config());
  std::vector<StTensor> a, b;
  json weight_map = json::object();
  for (size_t i = 0; i < t.tensors.size(); ++i) {
    const bool first = i < t.tensors.size() / 2;
    (first ? a : b).push_back(t.tensors[i]);
    weight_map[t.tensors[i].name] = first ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
  }
  StFile(a).write(dir / "model-00001-of-00002.safetensors");
  StFile(b).write(dir / "model-00002-of-00002.safetensors");
  write_json(dir / "model.safetensors.index.json", {{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}});
  auto lm = load_safetensors(dir.string());
  check_model(*lm, t, false);
  check_model(*load_safetensors((dir / "model.safetensors.index.json").string()), t, false);

  // A tensor the index lists in a shard that lacks it; a shard that does not exist; a path outside the folder.
  json wm2 = weight_map;
  wm2["model.norm.weight"] = "model-00001-of-00002.safetensors";
  write_json(dir / "model.safetensors.index.json", {{"weight_map", wm2}});
  std::string msg = one_line_error_of([&] { load_safetensors(dir.string()); });
  CHECK_THAT(msg,
             Contains("model-00001-of-00002.safetensors") && Contains("'model.norm.weight'") && Contains("missing"));
  wm2["model.norm.weight"] = "model-00003-of-00002.safetensors";
  write_json(dir / "model.safetensors.index.json", {{"weight_map", wm2}});
  msg = one_line_error_of([&] { load_safetensors(dir.string()); });
  CHECK_THAT(msg, Contains("model-00003-of-00002.safetensors"));
  wm2["model.norm.weight"] = "../elsewhere.safetensors";
  write_json(dir / "model.safetensors.index.json", {{"weight_map", wm2}});
  msg = one_line_error_of([&] { load_safetensors(dir.string()); });
  CHECK_THAT(msg, Contains("model.safetensors.index.json") && Contains("'model.norm.weight'") &&
                      Contains("../elsewhere.safetensors"));
  wm2.erase("model.norm.weight");
  write_json(dir / "model.safetensors.index.json", {{"weight_map", wm2}});
  msg = one_line_error_of([&] { load_safetensors(dir.string()); });
  CHECK_THAT(msg, Contains("model.safetensors.index.json") && Contains("'model.norm.weight'") &&
                      Contains("missing from weight_map"));
  write_json(dir / "model.safetensors.index.json", {{"metadata", {}}});
  msg = one_line_error_of([&] { load_safetensors(dir.string()); });
  CHECK_THAT(msg, Contains("model.safetensors.index.json") && Contains("'weight_map'"));
}

TEST_CASE("safetensors: bf16 and f16 weights stay in place; norms become f32", "[safetensors]") {
  for (const char* dt : {"BF16", "F16"}) {
    DYNAMIC_SECTION(dt) {
      HfTiny t;
      t.dtype = dt;
      t.norm_dtype = dt;
      const fs::path dir = t.write(folder(std::string("half_") + dt));
      auto lm = load_safetensors(dir.string());
      const cpu::DType want = std::string(dt) == "BF16" ? cpu::DType::BF16 : cpu::DType::F16;
      CHECK(lm->weights.tok_embeddings.dtype == want);
      CHECK(lm->weights.layers[1].wq.dtype == want);
      CHECK(lm->weights.layers[1].w3.dtype == want);
      CHECK(lm->weights.final_norm.dtype == cpu::DType::F32);
      check_model(*lm, t, false);
    }
  }
}

TEST_CASE("safetensors: SafetensorsFile reads and checks a header", "[safetensors]") {
  const fs::path dir = folder("file");
  std::vector<StTensor> ts = {{"a", "F32", {2, 3}, std::vector<uint8_t>(24, 1)},
                              {"b", "I64", {4}, std::vector<uint8_t>(32, 2)},
                              {"c", "BF16", {0, 5}, {}}};
  StFile sf(ts);
  sf.write(dir / "x.safetensors");
  auto f = SafetensorsFile::open((dir / "x.safetensors").string());
  REQUIRE(f->tensors().size() == 3);
  const SafetensorsTensor* a = f->find("a");
  REQUIRE(a != nullptr);
  CHECK(a->dtype == "F32");
  CHECK(a->shape == std::vector<int64_t>{2, 3});
  CHECK(a->nbytes() == 24);
  CHECK(a->data == f->mapping()->data() + a->begin);
  CHECK(a->data[0] == 1);
  CHECK(f->find("b")->data[31] == 2);
  CHECK(f->find("c")->nbytes() == 0);
  CHECK(f->find("zz") == nullptr);
  CHECK(f->metadata().at("format") == "pt");
  CHECK(safetensors_dtype_size("BF16") == 2);
  CHECK(safetensors_dtype_size("Q4") == 0);

  auto open_error = [&](const StFile& s, std::optional<uint64_t> len = std::nullopt) {
    s.write(dir / "bad.safetensors", len);
    return one_line_error_of([&] { SafetensorsFile::open((dir / "bad.safetensors").string()); });
  };
  // A header that lies about a tensor's size.
  StFile lie = sf;
  lie.header["a"]["data_offsets"] = {0, 20};
  CHECK_THAT(open_error(lie),
             Contains("bad.safetensors") && Contains("'a'") && Contains("needs 24 bytes") && Contains("span 20"));
  lie = sf;
  lie.header["a"]["shape"] = {2, 4};
  CHECK_THAT(open_error(lie), Contains("'a'") && Contains("needs 32 bytes") && Contains("span 24"));
  lie = sf;
  lie.header["b"]["data_offsets"] = {24, 24 + 32 + 1000};
  CHECK_THAT(open_error(lie), Contains("bad.safetensors") && Contains("'b'") && Contains("past the end of the file"));
  lie = sf;
  lie.header["b"]["data_offsets"] = {30, 20};
  CHECK_THAT(open_error(lie), Contains("'b'") && Contains("begin <= end"));
  lie = sf;
  lie.header["b"]["dtype"] = "Q4";
  CHECK_THAT(open_error(lie), Contains("'b'") && Contains("unknown dtype 'Q4'"));
  lie = sf;
  lie.header["b"]["shape"] = {-4};
  CHECK_THAT(open_error(lie), Contains("'b'") && Contains("non-negative"));
  lie = sf;
  lie.header["b"]["shape"] = {1ll << 40, 1ll << 40};
  CHECK_THAT(open_error(lie), Contains("'b'") && Contains("absurd"));
  lie = sf;
  lie.header["b"].erase("data_offsets");
  CHECK_THAT(open_error(lie), Contains("'b'") && Contains("data_offsets"));
  // Header lengths that point past the file, or make the JSON end early.
  CHECK_THAT(open_error(sf, 1ull << 40),
             Contains("bad.safetensors") && Contains("header length") && Contains("past the end of the file"));
  CHECK_THAT(open_error(sf, ~0ull), Contains("header length") && Contains("past the end of the file"));
  CHECK_THAT(open_error(sf, 10), Contains("bad.safetensors") && Contains("not valid JSON"));
  // Shorter than the length field.
  {
    std::ofstream o(dir / "bad.safetensors", std::ios::binary | std::ios::trunc);
    o.write("abc", 3);
  }
  CHECK_THAT(one_line_error_of([&] { SafetensorsFile::open((dir / "bad.safetensors").string()); }),
             Contains("bad.safetensors") && Contains("truncated"));
  // A JSON header that is not an object.
  StFile arr({});
  arr.header = json::array();
  CHECK_THAT(open_error(arr), Contains("expected a JSON object"));
}

TEST_CASE("safetensors: load_safetensors rejects bad configs and tensors", "[safetensors]") {
  HfTiny t;
  const fs::path dir = t.write(folder("bad"));
  const std::string cfg_path = (dir / "config.json").string();
  auto with_config = [&](const std::function<void(json&)>& edit) {
    json c = t.config();
    edit(c);
    write_json(dir / "config.json", c);
    return one_line_error_of([&] { load_safetensors(dir.string()); });
  };
  CHECK_THAT(with_config([](json& c) { c.erase("hidden_size"); }),
             Contains(cfg_path) && Contains("'hidden_size'") && Contains("missing"));
  CHECK_THAT(with_config([](json& c) { c["num_hidden_layers"] = "2"; }),
             Contains(cfg_path) && Contains("'num_hidden_layers'") && Contains("positive integer"));
  CHECK_THAT(with_config([](json& c) { c["vocab_size"] = 0; }), Contains("'vocab_size'"));
  CHECK_THAT(with_config([](json& c) { c["rope_theta"] = "big"; }), Contains("'rope_theta'") && Contains("number"));
  // Qwen2ForCausalLM loads now (test_qwen2); an architecture missing from core/model/arch.h is refused.
  CHECK_THAT(with_config([](json& c) { c["architectures"] = {"GPT2LMHeadModel"}; }),
             Contains(cfg_path) && Contains("GPT2LMHeadModel") && Contains("expected LlamaForCausalLM"));
  CHECK_THAT(with_config([](json& c) {
               c["rope_scaling"] = {{"rope_type", "llama3"}};
             }),
             Contains("'rope_scaling'") && Contains("llama3"));
  CHECK_THAT(with_config([](json& c) { c["attention_bias"] = true; }), Contains("'attention_bias'"));
  CHECK_THAT(with_config([](json& c) { c["hidden_act"] = "gelu"; }), Contains("'hidden_act'") && Contains("gelu"));
  CHECK_THAT(with_config([](json& c) { c["vocab_size"] = 40; }),
             Contains("model.safetensors") && Contains("'model.embed_tokens.weight'") && Contains("expected [40, 64]"));
  CHECK_THAT(
      with_config([](json& c) { c["num_key_value_heads"] = 4; }),
      Contains("'model.layers.0.self_attn.k_proj.weight'") && Contains("[32, 64]") && Contains("expected [64, 64]"));
  // Defaults: no num_key_value_heads (= heads), rope_theta, rms_norm_eps, tie_word_embeddings.
  {
    json c = t.config();
    for (const char* k : {"rope_theta", "rms_norm_eps", "tie_word_embeddings", "torch_dtype", "architectures"})
      c.erase(k);
    write_json(dir / "config.json", c);
    auto lm = load_safetensors(dir.string());
    CHECK(lm->config.rope_theta == 10000.f);
    CHECK(lm->config.rms_eps == 1e-6f);
    CHECK_FALSE(lm->config.tied_embeddings);
  }
  write_json(dir / "config.json", t.config());

  fs::remove(dir / "config.json");
  CHECK_THAT(one_line_error_of([&] { load_safetensors(dir.string()); }), Contains(cfg_path) && Contains("config.json"));
  {
    std::ofstream o(dir / "config.json");
    o << "{not json";
  }
  CHECK_THAT(one_line_error_of([&] { load_safetensors(dir.string()); }),
             Contains(cfg_path) && Contains("not valid JSON"));
  write_json(dir / "config.json", t.config());

  // Tensors: missing, wrong dtype, wrong shape.
  auto with_tensors = [&](const std::function<void(std::vector<StTensor>&)>& edit) {
    std::vector<StTensor> ts = t.tensors;
    edit(ts);
    StFile(ts).write(dir / "model.safetensors");
    return one_line_error_of([&] { load_safetensors(dir.string()); });
  };
  const std::string st_path = (dir / "model.safetensors").string();
  CHECK_THAT(with_tensors([](auto& ts) {
               std::erase_if(ts, [](const StTensor& x) { return x.name == "model.layers.1.mlp.up_proj.weight"; });
             }),
             Contains(st_path) && Contains("'model.layers.1.mlp.up_proj.weight'") && Contains("missing"));
  CHECK_THAT(with_tensors([](auto& ts) {
               for (StTensor& x : ts)
                 if (x.name == "model.norm.weight") x.dtype = "I32";
             }),
             Contains(st_path) && Contains("'model.norm.weight'") && Contains("I32") && Contains("F32, F16 or BF16"));
  CHECK_THAT(with_tensors([](auto& ts) {
               for (StTensor& x : ts)
                 if (x.name == "model.layers.0.mlp.down_proj.weight") x.shape = {96, 64};
             }),
             Contains(st_path) && Contains("'model.layers.0.mlp.down_proj.weight'") && Contains("[96, 64]") &&
                 Contains("expected [64, 96]"));

  const fs::path empty = folder("empty");
  CHECK_THAT(one_line_error_of([&] { load_safetensors(empty.string()); }),
             Contains(empty.string()) && Contains("model.safetensors"));
  CHECK_THAT(one_line_error_of([&] { load_safetensors((empty / "nope.safetensors").string()); }),
             Contains("nope.safetensors"));
}
