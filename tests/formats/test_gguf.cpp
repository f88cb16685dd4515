// GGUF reader and llama loader: metadata round trips, tensor infos and alignment, versions, the tiny
// llama's config and in-place views, and every kind of bad file (each a one-line error naming the file
// and the key or tensor). All files are written here by tests/formats/gguf_writer.h.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>

#include "core/error.h"
#include "core/model/gguf.h"
#include "tests/formats/gguf_writer.h"
#include "tests/formats/tiny_llama_config.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"

using namespace specdec;
using Catch::Matchers::Contains;
using specdec::test::GgufWriter;
using specdec::test::one_line_error_of;
using specdec::test::TinyLlama;

namespace {

std::string scratch(const std::string& name) { return (test::scratch_dir("formats_gguf") / name).string(); }

std::string write_tiny(const std::string& name, const TinyLlama& m, GgufWriter* out = nullptr) {
  GgufWriter w;
  m.fill(w);
  const std::string path = scratch(name);
  w.write(path);
  if (out) *out = w;
  return path;
}

// Writes bytes to a file and returns the message of opening it as GGUF.
std::string open_error(const std::string& name, const std::vector<uint8_t>& bytes) {
  const std::string path = scratch(name);
  GgufWriter::write_file(path, bytes);
  return one_line_error_of([&] { GgufFile::open(path); });
}

}  // namespace

TEST_CASE("gguf: every metadata type round-trips", "[gguf]") {
  GgufWriter w;
  w.add("u8", GgufValue{uint8_t{255}});
  w.add("i8", GgufValue{int8_t{-128}});
  w.add("u16", GgufValue{uint16_t{65535}});
  w.add("i16", GgufValue{int16_t{-32768}});
  w.add("u32", GgufValue{uint32_t{4000000000u}});
  w.add("i32", GgufValue{int32_t{-2000000000}});
  w.add("f32", GgufValue{1.5f});
  w.add("bool_t", GgufValue{true});
  w.add("bool_f", GgufValue{false});
  w.add("str", GgufValue{std::string("h\xc3\xa9llo")});
  w.add("str_empty", GgufValue{std::string()});
  w.add("u64", GgufValue{std::numeric_limits<uint64_t>::max()});
  w.add("i64", GgufValue{std::numeric_limits<int64_t>::min()});
  w.add("f64", GgufValue{-2.25e300});
  w.add("arr_f32", GgufWriter::array(GgufType::F32, std::vector<float>{0.5f, -1.f, 3.f}));
  w.add("arr_i8", GgufWriter::array(GgufType::I8, std::vector<int8_t>{-1, 2, -3}));
  w.add("arr_str", GgufWriter::array(GgufType::String, std::vector<std::string>{"a", "", "ccc"}));
  w.add("arr_bool", GgufWriter::array(GgufType::Bool, std::vector<bool>{true, false}));
  w.add("arr_u64", GgufWriter::array(GgufType::U64, std::vector<uint64_t>{1, 1ull << 40}));
  w.add("arr_f64", GgufWriter::array(GgufType::F64, std::vector<double>{1e-300}));
  w.add("arr_empty", GgufWriter::array(GgufType::U32, std::vector<uint32_t>{}));
  GgufArray inner1{GgufType::U16, {GgufValue{uint16_t{1}}, GgufValue{uint16_t{2}}}};
  GgufArray inner2{GgufType::U16, {}};
  w.add("arr_nested", GgufValue{GgufArray{GgufType::Array, {GgufValue{inner1}, GgufValue{inner2}}}});
  const std::string path = scratch("types.gguf");
  w.write(path);

  auto f = GgufFile::open(path);
  // Keys, order, types and values exactly as written.
  REQUIRE(f->metadata().size() == 22);
  CHECK(f->metadata() == w.metadata());
  for (const auto& [key, value] : w.metadata()) CHECK(f->find(key)->type() == value.type());
  CHECK(f->get_u8("u8") == 255);
  CHECK(f->get_i8("i8") == -128);
  CHECK(f->get_u16("u16") == 65535);
  CHECK(f->get_i16("i16") == -32768);
  CHECK(f->get_u32("u32") == 4000000000u);
  CHECK(f->get_i32("i32") == -2000000000);
  CHECK(f->get_f32("f32") == 1.5f);
  CHECK(f->get_bool("bool_t"));
  CHECK_FALSE(f->get_bool("bool_f"));
  CHECK(f->get_string("str") == "h\xc3\xa9llo");
  CHECK(f->get_string("str_empty").empty());
  CHECK(f->get_u64("u64") == std::numeric_limits<uint64_t>::max());
  CHECK(f->get_i64("i64") == std::numeric_limits<int64_t>::min());
  CHECK(f->get_f64("f64") == -2.25e300);
  CHECK(f->get_f32_array("arr_f32") == std::vector<float>{0.5f, -1.f, 3.f});
  CHECK(f->get_i32_array("arr_i8") == std::vector<int32_t>{-1, 2, -3});
  CHECK(f->get_string_array("arr_str") == std::vector<std::string>{"a", "", "ccc"});
  CHECK(f->get_array("arr_bool").elem_type == GgufType::Bool);
  CHECK(f->get_array("arr_bool").items.size() == 2);
  CHECK(f->get_array("arr_u64").items[1] == GgufValue{uint64_t{1ull << 40}});
  CHECK(f->get_array("arr_f64").items[0] == GgufValue{1e-300});
  CHECK(f->get_array("arr_empty").elem_type == GgufType::U32);
  CHECK(f->get_array("arr_empty").items.empty());
  const GgufArray& nested = f->get_array("arr_nested");
  REQUIRE(nested.elem_type == GgufType::Array);
  REQUIRE(nested.items.size() == 2);
  CHECK(std::get<GgufArray>(nested.items[0].v) == inner1);
  CHECK(std::get<GgufArray>(nested.items[1].v) == inner2);
  CHECK(*f->find("arr_nested") == GgufValue{GgufArray{GgufType::Array, {GgufValue{inner1}, GgufValue{inner2}}}});

  // Lenient accessors and defaults.
  CHECK(f->get_int("u8") == 255);
  CHECK(f->get_int("i64") == std::numeric_limits<int64_t>::min());
  CHECK(f->get_float("f32") == 1.5);
  CHECK(f->get_float("f64") == -2.25e300);
  CHECK(f->get_u32("absent", 7u) == 7u);
  CHECK(f->get_int("absent", -3) == -3);
  CHECK(f->get_string("absent", "x") == "x");
  CHECK_FALSE(f->has("absent"));
  CHECK(f->tensors().empty());
}

TEST_CASE("gguf: typed accessors name the file, key and expected type", "[gguf]") {
  GgufWriter w;
  w.add_i32("llama.block_count", 2);
  w.add("big", GgufValue{std::numeric_limits<uint64_t>::max()});
  w.add("floats", GgufWriter::array(GgufType::F32, std::vector<float>{1.f}));
  const std::string path = scratch("accessors.gguf");
  w.write(path);
  auto f = GgufFile::open(path);

  std::string msg = one_line_error_of([&] { f->get_u32("llama.context_length"); });
  CHECK_THAT(msg, Contains(path) && Contains("'llama.context_length'") && Contains("missing") && Contains("uint32"));
  msg = one_line_error_of([&] { f->get_u32("llama.block_count"); });
  CHECK_THAT(msg,
             Contains(path) && Contains("'llama.block_count'") && Contains("int32") && Contains("expected uint32"));
  msg = one_line_error_of([&] { f->get_u32("llama.block_count", 3u); });  // present with the wrong type: still an error
  CHECK_THAT(msg, Contains("'llama.block_count'") && Contains("expected uint32"));
  msg = one_line_error_of([&] { f->get_string("llama.block_count"); });
  CHECK_THAT(msg, Contains("'llama.block_count'") && Contains("expected string"));
  msg = one_line_error_of([&] { f->get_int("big"); });
  CHECK_THAT(msg, Contains("'big'") && Contains("int64"));
  msg = one_line_error_of([&] { f->get_float("llama.block_count"); });
  CHECK_THAT(msg, Contains("'llama.block_count'") && Contains("float32 or float64"));
  msg = one_line_error_of([&] { f->get_string_array("floats"); });
  CHECK_THAT(msg, Contains("'floats'") && Contains("array of float32") && Contains("expected an array of string"));
}

TEST_CASE("gguf: tensor infos, alignment and versions", "[gguf]") {
  for (uint32_t version : {2u, 3u}) {
    for (uint64_t alignment : {32u, 64u, 8u, 256u}) {
      DYNAMIC_SECTION("version " << version << " alignment " << alignment) {
        GgufWriter w;
        w.version = version;
        w.alignment = alignment;
        if (alignment != 32) w.add_u32("general.alignment", static_cast<uint32_t>(alignment));
        w.add_string("general.name", "x");
        w.add_f32("vec", {5}, {1, 2, 3, 4, 5});
        w.add_tensor("q8", {64, 3}, 8, std::vector<uint8_t>(3 * 2 * 34, 0x11));
        w.add_tensor("odd", {3, 2, 1}, 1, std::vector<uint8_t>(12, 0x22));     // f16, 12 bytes
        w.add_tensor("unsupported", {32}, 6, std::vector<uint8_t>(22, 0x33));  // q5_0
        const auto bytes = w.bytes();
        const std::string path = scratch("infos.gguf");
        GgufWriter::write_file(path, bytes);

        auto f = GgufFile::open(path);
        CHECK(f->version() == version);
        CHECK(f->alignment() == alignment);
        CHECK(f->data_offset() == w.data_start);
        CHECK(f->data_offset() % alignment == 0);
        REQUIRE(f->tensors().size() == 4);
        const GgufTensorInfo* v = f->find_tensor("vec");
        REQUIRE(v != nullptr);
        CHECK(v->dims == std::vector<int64_t>{5});
        CHECK(v->ggml_type == 0);
        CHECK(v->dtype == cpu::DType::F32);
        CHECK(v->offset == 0);
        CHECK(v->nbytes == 20);
        CHECK(v->data == f->mapping()->data() + w.tensor_data_start[0]);
        float x[5];
        std::memcpy(x, v->data, sizeof x);
        CHECK(x[4] == 5.f);
        const GgufTensorInfo* q = f->find_tensor("q8");
        REQUIRE(q != nullptr);
        CHECK(q->dtype == cpu::DType::Q8_0);
        CHECK(q->cols() == 64);
        CHECK(q->rows() == 3);
        CHECK(q->nbytes == 204);
        CHECK(q->offset % alignment == 0);
        CHECK(q->data == f->mapping()->data() + w.tensor_data_start[1]);
        CHECK(q->data[0] == 0x11);
        const GgufTensorInfo* o = f->find_tensor("odd");
        REQUIRE(o != nullptr);
        CHECK(o->dims == std::vector<int64_t>{3, 2, 1});
        CHECK(o->rows() == 2);
        CHECK(o->shape_string() == "[3, 2, 1]");
        CHECK(o->data == f->mapping()->data() + w.tensor_data_start[2]);
        const GgufTensorInfo* u = f->find_tensor("unsupported");
        REQUIRE(u != nullptr);
        CHECK_FALSE(u->dtype.has_value());  // a valid ggml type specdec does not compute with
        CHECK(ggml_type_name(u->ggml_type) == "q5_0");
        CHECK(f->find_tensor("nope") == nullptr);
      }
    }
  }
}

TEST_CASE("gguf: ggml type ids map to DType", "[gguf]") {
  CHECK(ggml_type_to_dtype(0) == cpu::DType::F32);
  CHECK(ggml_type_to_dtype(1) == cpu::DType::F16);
  CHECK(ggml_type_to_dtype(2) == cpu::DType::Q4_0);
  CHECK(ggml_type_to_dtype(3) == cpu::DType::Q4_1);
  CHECK(ggml_type_to_dtype(8) == cpu::DType::Q8_0);
  CHECK(ggml_type_to_dtype(12) == cpu::DType::Q4_K);
  CHECK(ggml_type_to_dtype(13) == cpu::DType::Q5_K);
  CHECK(ggml_type_to_dtype(14) == cpu::DType::Q6_K);
  CHECK(ggml_type_to_dtype(30) == cpu::DType::BF16);
  CHECK_FALSE(ggml_type_to_dtype(6).has_value());
  CHECK_FALSE(ggml_type_to_dtype(4).has_value());
  CHECK(ggml_type_name(4) == "unknown");
  CHECK(ggml_type_name(14) == "q6_k");
}

TEST_CASE("gguf: load_gguf views a tiny llama in place", "[gguf]") {
  for (bool tied : {false, true}) {
    DYNAMIC_SECTION((tied ? "tied" : "separate output")) {
      TinyLlama m;
      m.tied = tied;
      GgufWriter w;
      const std::string path = write_tiny(tied ? "tiny_tied.gguf" : "tiny.gguf", m, &w);
      auto gf = GgufFile::open(path);
      auto lm = load_gguf(*gf);
      const ModelConfig& c = lm->config;
      CHECK(lm->format == "gguf");
      CHECK(lm->path == path);
      CAPTURE(c.describe());
      CHECK(c == specdec::test::tiny_llama_config(1e-6f, tied));

      const LlamaWeights& wt = lm->weights;
      REQUIRE(wt.layers.size() == 2);
      const uint8_t* base = gf->mapping()->data();
      auto at = [&](const std::string& name) {
        return static_cast<const void*>(base + gf->data_offset() + gf->find_tensor(name)->offset);
      };
      CHECK(wt.tok_embeddings.data == at("token_embd.weight"));
      CHECK(wt.tok_embeddings.rows == 32);
      CHECK(wt.tok_embeddings.cols == 64);
      const LayerWeights& l1 = wt.layers[1];
      CHECK(l1.wq.data == at("blk.1.attn_q.weight"));
      CHECK(l1.wq.rows == 64);
      CHECK(l1.wk.data == at("blk.1.attn_k.weight"));
      CHECK(l1.wk.rows == 32);
      CHECK(l1.wk.cols == 64);
      CHECK(l1.wv.data == at("blk.1.attn_v.weight"));
      CHECK(l1.wo.data == at("blk.1.attn_output.weight"));
      CHECK(l1.w1.data == at("blk.1.ffn_gate.weight"));
      CHECK(l1.w1.rows == 96);
      CHECK(l1.w2.data == at("blk.1.ffn_down.weight"));
      CHECK(l1.w2.rows == 64);
      CHECK(l1.w2.cols == 96);
      CHECK(l1.w3.data == at("blk.1.ffn_up.weight"));
      CHECK(l1.attn_norm.data == at("blk.1.attn_norm.weight"));
      CHECK(l1.ffn_norm.rows == 1);
      CHECK(l1.ffn_norm.cols == 64);
      CHECK(wt.final_norm.data == at("output_norm.weight"));
      if (tied) {
        CHECK(wt.output.data == wt.tok_embeddings.data);
      } else {
        CHECK(wt.output.data == at("output.weight"));
      }
      // Values: the q row 5 of layer 1 as written (salt order: embd 1, layer 0 tensors 2..10, then 11 = attn_norm,
      // 12 = attn_q of layer 1).
      const std::vector<float> q = m.random(64 * 64, 12);
      CHECK(l1.wq.f32()[5 * 64 + 3] == q[5 * 64 + 3]);
      // The model outlives the GgufFile: storage keeps the mapping.
      const float e0 = wt.tok_embeddings.f32()[0];
      gf.reset();
      CHECK(lm->weights.tok_embeddings.f32()[0] == e0);
    }
  }
}

TEST_CASE("gguf: load_gguf from a path, defaults and vocab sources", "[gguf]") {
  TinyLlama m;
  GgufWriter w;
  m.fill(w);
  w.remove_key("llama.attention.head_count_kv");
  w.remove_key("llama.rope.freq_base");
  w.remove_key("llama.attention.layer_norm_rms_epsilon");
  w.remove_key("llama.rope.dimension_count");
  w.remove_key("tokenizer.ggml.tokens");
  // head_count_kv defaults to head_count: make k/v full width.
  for (int l = 0; l < m.L; ++l) {
    for (const char* n : {"attn_k", "attn_v"}) {
      GgufWriter::Tensor* t = w.tensor("blk." + std::to_string(l) + "." + n + ".weight");
      t->dims = {64, 64};
      t->bytes.resize(64 * 64 * 4);
    }
  }
  const std::string path = scratch("defaults.gguf");
  w.write(path);
  auto lm = load_gguf(path);
  CHECK(lm->config.n_kv_heads == 4);
  CHECK(lm->config.rope_theta == 10000.f);
  CHECK(lm->config.rms_eps == 1e-5f);
  CHECK(lm->config.head_dim == 16);
  CHECK(lm->config.vocab_size == 32);  // from token_embd's rows

  w.add_u32("llama.vocab_size", 32);
  w.write(path);
  CHECK(load_gguf(path)->config.vocab_size == 32);
}

TEST_CASE("gguf: f16 and bf16 norms become f32; quantized matrices stay in place", "[gguf]") {
  TinyLlama m;
  GgufWriter w;
  m.fill(w);
  auto to16 = [](const std::vector<float>& v, bool bf) {
    std::vector<uint8_t> b(v.size() * 2);
    for (size_t i = 0; i < v.size(); ++i) {
      uint16_t h;
      if (bf) {
        uint32_t u;
        std::memcpy(&u, &v[i], 4);
        h = static_cast<uint16_t>(u >> 16);
      } else {
        h = cpu::fp32_to_fp16(v[i]);
      }
      std::memcpy(&b[2 * i], &h, 2);
    }
    return b;
  };
  std::vector<float> norm(64);
  for (int i = 0; i < 64; ++i) norm[static_cast<size_t>(i)] = 0.25f * static_cast<float>(i - 32);
  auto* an = w.tensor("blk.0.attn_norm.weight");
  an->ggml_type = 1;
  an->bytes = to16(norm, false);
  auto* fn = w.tensor("output_norm.weight");
  fn->ggml_type = 30;
  fn->bytes = to16(norm, true);
  auto* gate = w.tensor("blk.1.ffn_gate.weight");  // (96, 64): q8_0 rows of 2 blocks
  gate->ggml_type = 8;
  gate->bytes.assign(96 * 2 * 34, 0x5a);
  const std::string path = scratch("mixed.gguf");
  w.write(path);
  auto gf = GgufFile::open(path);
  auto lm = load_gguf(*gf);
  const LlamaWeights& wt = lm->weights;
  CHECK(wt.layers[0].attn_norm.dtype == cpu::DType::F32);
  CHECK(wt.final_norm.dtype == cpu::DType::F32);
  for (int i = 0; i < 64; ++i) {
    CHECK(wt.layers[0].attn_norm.f32()[i] == norm[static_cast<size_t>(i)]);
    CHECK(wt.final_norm.f32()[i] == norm[static_cast<size_t>(i)]);
  }
  CHECK(wt.layers[1].w1.dtype == cpu::DType::Q8_0);
  CHECK(wt.layers[1].w1.nbytes() == 96u * 2 * 34);
  CHECK(wt.layers[1].w1.data == gf->find_tensor("blk.1.ffn_gate.weight")->data);
}

TEST_CASE("gguf: alignment 1 leaves f32 data misaligned; the loader copies it", "[gguf]") {
  TinyLlama m;
  const std::string path = scratch("align1.gguf");
  for (const char* pad : {"", "a", "ab", "abc"}) {  // pick a padding that leaves the data misaligned
    GgufWriter w;
    w.alignment = 1;
    w.add_u32("general.alignment", 1);
    w.add_string("general.padding", pad);
    m.fill(w);
    w.write(path);
    if (w.data_start % 4 != 0) break;
  }
  auto gf = GgufFile::open(path);
  CHECK(reinterpret_cast<uintptr_t>(gf->find_tensor("token_embd.weight")->data) % 4 != 0);
  CHECK(gf->alignment() == 1);
  auto lm = load_gguf(*gf);
  const std::vector<float> e = m.random(32 * 64, 1);
  for (size_t i = 0; i < e.size(); ++i) REQUIRE(lm->weights.tok_embeddings.f32()[i] == e[i]);
  CHECK(reinterpret_cast<uintptr_t>(lm->weights.tok_embeddings.data) % 4 == 0);
}

TEST_CASE("gguf: tokenizer metadata", "[gguf]") {
  GgufWriter w;
  w.add_string("tokenizer.ggml.model", "gpt2");
  w.add_string("tokenizer.ggml.pre", "smollm");
  w.add_strings("tokenizer.ggml.tokens", {"<|endoftext|>", "a", "b", "ab"});
  w.add("tokenizer.ggml.scores", GgufWriter::array(GgufType::F32, std::vector<float>{0, -1, -2, -3}));
  w.add("tokenizer.ggml.token_type", GgufWriter::array(GgufType::I32, std::vector<int32_t>{3, 1, 1, 1}));
  w.add_strings("tokenizer.ggml.merges", {"a b"});
  w.add_u32("tokenizer.ggml.bos_token_id", 0);
  w.add_u32("tokenizer.ggml.eos_token_id", 0);
  w.add_u32("tokenizer.ggml.padding_token_id", 3);
  w.add_bool("tokenizer.ggml.add_bos_token", false);
  w.add_string("tokenizer.chat_template", "{{ x }}");
  const std::string path = scratch("tok.gguf");
  w.write(path);
  auto f = GgufFile::open(path);
  const GgufTokenizerMetadata t = read_gguf_tokenizer_metadata(*f);
  CHECK(t.model == "gpt2");
  CHECK(t.pre == "smollm");
  CHECK(t.tokens == std::vector<std::string>{"<|endoftext|>", "a", "b", "ab"});
  CHECK(t.scores == std::vector<float>{0, -1, -2, -3});
  CHECK(t.token_types == std::vector<int32_t>{3, 1, 1, 1});
  CHECK(t.merges == std::vector<std::string>{"a b"});
  CHECK(t.bos_id == 0);
  CHECK(t.eos_id == 0);
  CHECK(t.pad_id == 3);
  CHECK(t.unk_id == -1);
  CHECK(t.eot_id == -1);
  CHECK(t.add_bos == std::optional<bool>(false));
  CHECK_FALSE(t.add_space_prefix.has_value());
  CHECK(t.chat_template == "{{ x }}");

  w.add("tokenizer.ggml.scores", GgufWriter::array(GgufType::F32, std::vector<float>{0}));  // duplicate key
  std::string msg = open_error("tok_dup.gguf", w.bytes());
  CHECK_THAT(msg, Contains("'tokenizer.ggml.scores'") && Contains("twice"));
  w.remove_key("tokenizer.ggml.scores");
  w.add("tokenizer.ggml.scores", GgufWriter::array(GgufType::F32, std::vector<float>{0}));
  w.write(path);
  msg = one_line_error_of([&] { read_gguf_tokenizer_metadata(*GgufFile::open(path)); });
  CHECK_THAT(msg, Contains(path) && Contains("'tokenizer.ggml.scores'") && Contains("one per token"));
  w.remove_key("tokenizer.ggml.scores");
  w.remove_key("tokenizer.ggml.padding_token_id");
  w.add_u32("tokenizer.ggml.padding_token_id", 4);
  w.write(path);
  msg = one_line_error_of([&] { read_gguf_tokenizer_metadata(*GgufFile::open(path)); });
  CHECK_THAT(msg, Contains(path) && Contains("'tokenizer.ggml.padding_token_id'") && Contains("0..3"));
}

TEST_CASE("gguf: truncated files name the part that was cut", "[gguf]") {
  TinyLlama m;
  GgufWriter w;
  m.fill(w);
  const std::vector<uint8_t> full = w.bytes();
  const std::string path = scratch("truncated.gguf");
  auto cut = [&](size_t n) {
    GgufWriter::write_file(path, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(n)));
    return one_line_error_of([&] { load_gguf(path); });
  };
  std::string msg = cut(0);
  CHECK_THAT(msg, Contains(path) && Contains("header"));
  msg = cut(2);
  CHECK_THAT(msg, Contains(path) && Contains("header"));
  msg = cut(12);
  CHECK_THAT(msg, Contains(path) && Contains("truncated") && Contains("header"));
  msg = cut(w.kv_start + 4);  // inside the first key's length
  CHECK_THAT(msg, Contains(path) && Contains("truncated") && Contains("metadata key 0"));
  msg = cut(w.kv_start + 8 + 20 + 4 + 3);  // inside the first value ("general.architecture" = 20 bytes)
  CHECK_THAT(msg, Contains("metadata key 0 ('general.architecture')"));
  // Inside the tokens array (key 11; key 12, tokenizer.ggml.model = "llama", takes the last 45 bytes).
  msg = cut(w.tensor_info_start - 45 - 100);
  CHECK_THAT(msg, Contains(path) && Contains("truncated") && Contains("metadata key 11 ('tokenizer.ggml.tokens')"));
  msg = cut(w.tensor_info_start - 40);
  CHECK_THAT(msg, Contains(path) && Contains("truncated") && Contains("metadata key 12"));
  msg = cut(w.tensor_info_start + 3);
  CHECK_THAT(msg, Contains(path) && Contains("truncated") && Contains("tensor info 0"));
  msg = cut(w.tensor_info_start + 8 + 17 + 2);  // inside n_dims of "token_embd.weight"
  CHECK_THAT(msg, Contains("tensor info 0 ('token_embd.weight')"));
  msg = cut(w.data_start);  // every tensor info complete; the first tensor's data absent
  CHECK_THAT(msg, Contains(path) && Contains("'token_embd.weight'") && Contains("past the end of the file"));
  msg = cut(full.size() - 10);  // inside the last tensor's data
  CHECK_THAT(msg, Contains(path) && Contains("'output.weight'") && Contains("past the end of the file"));
  // Every prefix fails cleanly (and, under ASan, without reading past the mapping).
  for (size_t n = 0; n < w.data_start; n += 7) {
    GgufWriter::write_file(path, std::vector<uint8_t>(full.begin(), full.begin() + static_cast<long>(n)));
    CHECK_THROWS_AS(GgufFile::open(path), Error);
  }
}

TEST_CASE("gguf: bad headers, lying counts and lengths", "[gguf]") {
  GgufWriter w;
  w.add_string("general.architecture", "llama");
  w.add_f32("t", {4}, {1, 2, 3, 4});
  std::vector<uint8_t> b = w.bytes();

  auto bad = b;
  std::memcpy(bad.data(), "GGML", 4);
  CHECK_THAT(open_error("magic.gguf", bad), Contains("magic.gguf") && Contains("not a GGUF file") && Contains("GGML"));
  for (uint32_t v : {1u, 4u, 0x03000000u}) {
    bad = b;
    std::memcpy(bad.data() + 4, &v, 4);
    CHECK_THAT(open_error("version.gguf", bad),
               Contains("version.gguf") && Contains("version") && Contains("expected 2 or 3"));
  }
  // A header that claims 2^60 metadata entries / tensors: no huge allocation, an error naming the entry.
  bad = b;
  const uint64_t huge = 1ull << 60;
  std::memcpy(bad.data() + 16, &huge, 8);
  CHECK_THAT(open_error("kvcount.gguf", bad), Contains("kvcount.gguf") && Contains("metadata key"));
  bad = b;
  std::memcpy(bad.data() + 8, &huge, 8);
  CHECK_THAT(open_error("tcount.gguf", bad), Contains("tcount.gguf") && Contains("tensor info"));
  // A key length of 2^62.
  bad = b;
  const uint64_t huge_len = 1ull << 62;
  std::memcpy(bad.data() + w.kv_start, &huge_len, 8);
  CHECK_THAT(open_error("keylen.gguf", bad), Contains("keylen.gguf") && Contains("metadata key 0"));
  // A string value length past the end.
  bad = b;
  const uint64_t long_str = 1000;
  std::memcpy(bad.data() + w.kv_start + 8 + 20 + 4, &long_str, 8);
  CHECK_THAT(open_error("strlen.gguf", bad),
             Contains("strlen.gguf") && Contains("'general.architecture'") && Contains("1000"));
  // An unknown value type.
  bad = b;
  const uint32_t t99 = 99;
  std::memcpy(bad.data() + w.kv_start + 8 + 20, &t99, 4);
  CHECK_THAT(open_error("vtype.gguf", bad), Contains("'general.architecture'") && Contains("99"));

  // Arrays that lie about their length, and arrays nested absurdly deep.
  GgufWriter wa;
  wa.add("arr", GgufWriter::array(GgufType::U64, std::vector<uint64_t>{1, 2}));
  b = wa.bytes();
  bad = b;
  const uint64_t huge_n = 1ull << 61;
  std::memcpy(bad.data() + wa.kv_start + 8 + 3 + 4 + 4, &huge_n, 8);
  CHECK_THAT(open_error("arrlen.gguf", bad),
             Contains("arrlen.gguf") && Contains("metadata key 0 ('arr')") && Contains("array of"));
  GgufValue deep = GgufWriter::array(GgufType::U8, std::vector<uint8_t>{1});
  for (int i = 0; i < 40; ++i) deep = GgufValue{GgufArray{GgufType::Array, {deep}}};
  GgufWriter wd;
  wd.add("deep", deep);
  CHECK_THAT(open_error("deep.gguf", wd.bytes()), Contains("'deep'") && Contains("nests arrays"));

  // A real array too long to keep as values: 9 M uint8 (the file holds them all).
  {
    GgufWriter wl;
    wl.add("big", GgufWriter::array(GgufType::U8, std::vector<uint8_t>{}));
    std::vector<uint8_t> big = wl.bytes();
    const uint64_t n = 9'000'000;
    std::memcpy(big.data() + wl.kv_start + 8 + 3 + 4 + 4, &n, 8);
    big.resize(big.size() + n, 0);
    CHECK_THAT(open_error("bigarray.gguf", big),
               Contains("bigarray.gguf") && Contains("metadata key 0 ('big')") && Contains("over the limit"));
  }

  // general.alignment of the wrong type or not a power of two.
  GgufWriter wal;
  wal.add_u32("general.alignment", 24);
  CHECK_THAT(open_error("align24.gguf", wal.bytes()), Contains("'general.alignment'") && Contains("power of two"));
  GgufWriter wal2;
  wal2.add("general.alignment", GgufValue{uint64_t{64}});
  CHECK_THAT(open_error("align64.gguf", wal2.bytes()), Contains("'general.alignment'") && Contains("expected uint32"));
}

TEST_CASE("gguf: bad tensor infos", "[gguf]") {
  auto base = [] {
    GgufWriter w;
    w.add_string("general.architecture", "llama");
    w.add_f32("a.weight", {4}, {1, 2, 3, 4});
    return w;
  };
  GgufWriter w = base();
  w.add_tensor("blk.0.weird.weight", {8}, 99, std::vector<uint8_t>(32));
  CHECK_THAT(open_error("ttype.gguf", w.bytes()),
             Contains("ttype.gguf") && Contains("'blk.0.weird.weight'") && Contains("unknown GGML type 99"));

  w = base();
  w.add_tensor("gap.weight", {8}, 4, std::vector<uint8_t>(32));  // 4: removed from ggml (q4_2)
  CHECK_THAT(open_error("ttype4.gguf", w.bytes()), Contains("'gap.weight'") && Contains("unknown GGML type 4"));

  w = base();
  w.add_f32("far.weight", {4}, {1, 2, 3, 4}).offset_override = 1ull << 20;
  CHECK_THAT(open_error("oob.gguf", w.bytes()),
             Contains("oob.gguf") && Contains("'far.weight'") && Contains("past the end of the file"));

  w = base();
  w.add_f32("wrap.weight", {4}, {1, 2, 3, 4}).offset_override = ~0ull - 31;  // offset + size wraps around
  CHECK_THAT(open_error("wrap.gguf", w.bytes()), Contains("'wrap.weight'") && Contains("past the end of the file"));

  w = base();
  w.add_f32("unaligned.weight", {4}, {1, 2, 3, 4}).offset_override = 4;
  CHECK_THAT(open_error("unaligned.gguf", w.bytes()), Contains("'unaligned.weight'") && Contains("alignment"));

  w = base();
  w.add_tensor("q.weight", {48}, 8, std::vector<uint8_t>(68));  // q8_0 rows must hold whole 32-blocks
  CHECK_THAT(open_error("qcols.gguf", w.bytes()), Contains("'q.weight'") && Contains("multiple of its block size 32"));

  w = base();
  w.add_f32("dims.weight", {1, 1, 1, 1, 4}, {1, 2, 3, 4});
  CHECK_THAT(open_error("ndims.gguf", w.bytes()), Contains("'dims.weight'") && Contains("5 dimensions"));

  w = base();
  w.add_f32("huge.weight", {1ll << 40, 1ll << 40}, {1});
  CHECK_THAT(open_error("huge.gguf", w.bytes()), Contains("'huge.weight'") && Contains("absurd"));

  w = base();
  w.add_f32("a.weight", {4}, {1, 2, 3, 4});
  CHECK_THAT(open_error("twice.gguf", w.bytes()), Contains("'a.weight'") && Contains("twice"));
}

TEST_CASE("gguf: load_gguf rejects what it cannot run", "[gguf]") {
  TinyLlama m;
  auto fresh = [&] {
    GgufWriter w;
    m.fill(w);
    return w;
  };
  const std::string path = scratch("bad_model.gguf");
  auto load_error = [&](GgufWriter& w) {
    w.write(path);
    return one_line_error_of([&] { load_gguf(path); });
  };

  GgufWriter w = fresh();
  w.remove_key("general.architecture");
  w.add_string("general.architecture", "gpt2");
  CHECK_THAT(load_error(w), Contains(path) && Contains("'gpt2'") && Contains("expected llama"));

  w = fresh();
  w.remove_key("general.architecture");
  CHECK_THAT(load_error(w), Contains(path) && Contains("'general.architecture'") && Contains("missing"));

  w = fresh();
  w.remove_key("llama.block_count");
  CHECK_THAT(load_error(w), Contains(path) && Contains("'llama.block_count'") && Contains("missing"));

  w = fresh();
  w.remove_key("llama.embedding_length");
  w.add_string("llama.embedding_length", "64");
  CHECK_THAT(load_error(w), Contains("'llama.embedding_length'") && Contains("expected an integer"));

  w = fresh();
  w.remove_tensor("blk.1.ffn_up.weight");
  CHECK_THAT(load_error(w), Contains(path) && Contains("'blk.1.ffn_up.weight'") && Contains("missing"));

  w = fresh();
  w.tensor("blk.0.attn_k.weight")->dims = {64, 64};
  w.tensor("blk.0.attn_k.weight")->bytes.resize(64 * 64 * 4);
  CHECK_THAT(load_error(w), Contains(path) && Contains("'blk.0.attn_k.weight'") && Contains("[64, 64]") &&
                                Contains("expected [64, 32]"));

  w = fresh();
  w.tensor("output_norm.weight")->dims = {32};
  CHECK_THAT(load_error(w), Contains("'output_norm.weight'") && Contains("shape [32]") && Contains("expected [64]"));

  w = fresh();
  w.tensor("blk.0.ffn_down.weight")->ggml_type = 6;  // q5_0: (64, 96) -> 3 blocks of 22 bytes per row
  w.tensor("blk.0.ffn_down.weight")->bytes.assign(64 * 3 * 22, 0);
  CHECK_THAT(load_error(w), Contains("'blk.0.ffn_down.weight'") && Contains("q5_0 (6)") && Contains("q4_k"));

  w = fresh();
  w.tensor("blk.0.attn_norm.weight")->ggml_type = 8;  // a q8_0 norm
  w.tensor("blk.0.attn_norm.weight")->bytes.assign(2 * 34, 0);
  CHECK_THAT(load_error(w), Contains("'blk.0.attn_norm.weight'") && Contains("expected a norm vector"));

  w = fresh();
  w.add_string("llama.rope.scaling.type", "yarn");
  CHECK_THAT(load_error(w), Contains("'llama.rope.scaling.type'") && Contains("yarn"));

  w = fresh();
  w.add_f32("rope_freqs.weight", {8}, std::vector<float>(8, 1.f));
  CHECK_THAT(load_error(w), Contains("'rope_freqs.weight'"));

  w = fresh();
  w.remove_key("llama.attention.head_count_kv");
  w.add_u32("llama.attention.head_count_kv", 3);
  CHECK_THAT(load_error(w), Contains(path) && Contains("multiple of n_kv_heads"));

  w = fresh();
  w.add_u32("llama.vocab_size", 40);
  CHECK_THAT(load_error(w), Contains("'token_embd.weight'") && Contains("expected [64, 40]"));
}
