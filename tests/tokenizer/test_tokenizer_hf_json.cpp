// Hugging Face tokenizer.json loading: small files written here in the shapes of SmolLM2's (Digits +
// ByteLevel), Llama 3's (Split regex + ByteLevel, TemplateProcessing BOS, ignore_merges) and Llama-2's
// (Prepend / Replace "▁" normalizer or Metaspace, byte_fallback) files must tokenize exactly as the
// same vocabulary built from plain arrays; merges in "a b" and ["a", "b"] form agree; BOS / EOS come
// from tokenizer_config.json; bad files throw naming the file.
#include <catch2/catch.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"

using Catch::Matchers::Contains;
using nlohmann::json;
using specdec::TokenId;

using specdec::test::error_of;

namespace {

const std::string kSp = "\xE2\x96\x81";  // U+2581

std::string mapped(std::string_view raw) {
  std::string out;
  for (char c : raw) specdec::unicode::append_utf8(out, specdec::unicode::byte_to_unicode(static_cast<uint8_t>(c)));
  return out;
}

std::string write_case(const std::string& name, const json& tokenizer, const json& config = json()) {
  const auto dir = specdec::test::scratch_dir("tokenizer_hf_json") / name;
  std::filesystem::create_directories(dir);
  std::filesystem::remove(dir / "tokenizer_config.json");
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump(1);
  if (!config.is_null()) std::ofstream(dir / "tokenizer_config.json") << config.dump(1);
  return (dir / "tokenizer.json").string();
}

// A SmolLM2-shaped byte-level vocabulary: 4 specials, the 256 bytes, then merge results.
struct ByteLevelCase {
  std::vector<std::string> tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool>"};
  std::vector<int32_t> types = {3, 3, 3, 4};
  std::vector<std::pair<std::string, std::string>> merges;
  ByteLevelCase() {
    for (int b = 0; b < 256; ++b) {
      tokens.push_back(mapped(std::string(1, static_cast<char>(b))));
      types.push_back(1);
    }
  }
  void merge(const std::string& a, const std::string& b) {
    merges.emplace_back(mapped(a), mapped(b));
    tokens.push_back(mapped(a + b));
    types.push_back(1);
  }
  json to_json(bool array_merges, const json& pre_tokenizer) const {
    json vocab = json::object();
    for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
    json m = json::array();
    for (const auto& [a, b] : merges) m.push_back(array_merges ? json::array({a, b}) : json(a + " " + b));
    json added = json::array();
    for (size_t i = 0; i < 4; ++i)
      added.push_back({{"id", i}, {"content", tokens[i]}, {"special", types[i] == 3}, {"normalized", false}});
    return {
        {"version", "1.0"},
        {"added_tokens", added},
        {"normalizer", nullptr},
        {"pre_tokenizer", pre_tokenizer},
        {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", true}}},
        {"decoder", {{"type", "ByteLevel"}}},
        {"model", {{"type", "BPE"}, {"dropout", nullptr}, {"byte_fallback", false}, {"vocab", vocab}, {"merges", m}}}};
  }
};

const json kSmolLMPre = {
    {"type", "Sequence"},
    {"pretokenizers",
     json::array({{{"type", "Digits"}, {"individual_digits", true}},
                  {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}})}};

const std::vector<std::string> kTexts = {
    "Hello world's 123 test",   "<|im_start|>user\nHi<tool>there<|im_end|>\n", "",
    "  spaces   and\ttabs\n\n", "\xe2\x82\xac 100 \xe4\xbd\xa0\xe5\xa5\xbd",   "1234567 abc abcabc",
};

}  // namespace

TEST_CASE("hf_json: a SmolLM2-shaped byte-level file equals make_bpe_tokenizer") {
  ByteLevelCase c;
  c.merge("a", "b");
  c.merge("ab", "c");
  c.merge(" ", "abc");
  c.merge("H", "i");
  const json config = {
      {"bos_token", "<|im_start|>"}, {"eos_token", {{"content", "<|im_end|>"}}}, {"add_bos_token", false}};
  const auto tok = specdec::load_hf_tokenizer_json(write_case("smollm", c.to_json(false, kSmolLMPre), config));
  const auto tok_arrays =
      specdec::load_hf_tokenizer_json(write_case("smollm_arrays", c.to_json(true, kSmolLMPre), config));

  specdec::BpeVocab v;
  v.tokens = c.tokens;
  v.token_types = c.types;
  for (const auto& [a, b] : c.merges) v.merges.push_back(a + " " + b);
  v.bos = 1;
  v.eos = 2;
  v.pre = "smollm";
  const auto ref = specdec::make_bpe_tokenizer(v);

  CHECK(tok->vocab_size() == static_cast<int>(c.tokens.size()));
  CHECK(tok->bos() == 1);
  CHECK(tok->eos() == 2);
  CHECK_FALSE(tok->add_bos_default());
  CHECK(tok->is_end_of_generation(0));
  CHECK(tok->chat_template() == specdec::ChatTemplateKind::kChatMLSmolLM);
  for (const std::string& t : kTexts) {
    for (bool special : {false, true}) {
      INFO(t << " special=" << special);
      const auto ids = ref->encode(t, false, special);
      CHECK(tok->encode(t, false, special) == ids);
      CHECK(tok_arrays->encode(t, false, special) == ids);
    }
    CHECK(tok->decode(tok->encode(t, false)) == t);
  }
  CHECK(tok->encode("<|im_start|>", false, true) == std::vector<TokenId>{1});
  CHECK(tok->encode(" abc", false) == std::vector<TokenId>{tok->find(mapped(" abc")).value()});

  // Without tokenizer_config.json: BOS / EOS from the usual names.
  const auto bare = specdec::load_hf_tokenizer_json(write_case("smollm_bare", c.to_json(false, kSmolLMPre)));
  CHECK(bare->bos() == 0);
  CHECK(bare->eos() == 2);
}

TEST_CASE("hf_json: a Llama-3-shaped file (Split regex, TemplateProcessing, ignore_merges)") {
  ByteLevelCase c;
  c.tokens[2] = "<|reserved_special_token_0|>";  // Llama 3 has no <|im_end|>: EOS falls back to <|end_of_text|>
  c.merge("3", "4");                             // rank 0: applies only if "1234567" stays one pre-token
  c.merge("1", "2");
  c.merge("12", "3");
  c.merge("4", "5");
  c.merge("45", "6");
  c.tokens.push_back(mapped(" world"));  // no merge reaches it
  c.types.push_back(1);
  const json pre = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({{{"type", "Split"},
                                      {"pattern",
                                       {{"Regex",
                                         "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
                                         "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                                      {"behavior", "Isolated"},
                                      {"invert", false}},
                                     {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}};
  json j = c.to_json(false, pre);
  j["model"]["ignore_merges"] = true;
  const size_t V = c.tokens.size();
  for (const char* name : {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"})
    j["added_tokens"].push_back({{"id", V + j["added_tokens"].size() - 4}, {"content", name}, {"special", true}});
  j["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       json::array({{{"type", "ByteLevel"}},
                    {{"type", "TemplateProcessing"},
                     {"single", json::array({{{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}},
                                             {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})}}})}};
  const auto tok = specdec::load_hf_tokenizer_json(write_case("llama3", j));
  CHECK(tok->vocab_size() == static_cast<int>(V + 3));
  CHECK(tok->bos() == static_cast<TokenId>(V));
  CHECK(tok->eos() == static_cast<TokenId>(V + 1));
  CHECK(tok->add_bos_default());
  CHECK(tok->is_end_of_generation(static_cast<TokenId>(V + 2)));
  const TokenId t123 = tok->find(mapped("123")).value(), t456 = tok->find(mapped("456")).value();
  CHECK(tok->encode("1234567", true) == std::vector<TokenId>{static_cast<TokenId>(V), t123, t456, 4 + '7'});
  CHECK(tok->encode(" world", false) == std::vector<TokenId>{tok->find(mapped(" world")).value()});
  CHECK(tok->decode(tok->encode("1234567 world\n\n", true)) == "1234567 world\n\n");
}

TEST_CASE("hf_json: a Llama-2-shaped SentencePiece file equals make_spm_tokenizer") {
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    std::snprintf(buf, sizeof buf, "<0x%02X>", b);
    tokens.push_back(buf);
  }
  for (const std::string& p : {kSp, std::string("a"), std::string("b"), kSp + "a", std::string("ab"), kSp + "ab"})
    tokens.push_back(p);
  const std::vector<std::string> merges = {kSp + " a", "a b", kSp + "a b"};
  json vocab = json::object();
  for (size_t i = 0; i < tokens.size(); ++i) vocab[tokens[i]] = i;
  json added = json::array();
  for (size_t i = 0; i < 3; ++i) added.push_back({{"id", i}, {"content", tokens[i]}, {"special", true}});
  json j = {{"added_tokens", added},
            {"normalizer",
             {{"type", "Sequence"},
              {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", kSp}},
                                           {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kSp}}})}}},
            {"pre_tokenizer", nullptr},
            {"model",
             {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"vocab", vocab}, {"merges", merges}}}};
  const json config = {{"add_bos_token", true}, {"bos_token", {{"content", "<s>"}}}, {"eos_token", "</s>"}};
  const auto tok = specdec::load_hf_tokenizer_json(write_case("llama2", j, config));
  json j2 = j;
  j2["normalizer"] = nullptr;
  j2["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kSp}, {"prepend_scheme", "first"}, {"split", false}};
  const auto tok_meta = specdec::load_hf_tokenizer_json(write_case("llama2_metaspace", j2, config));

  specdec::SpmVocab v;
  v.tokens = tokens;
  v.merges = merges;
  v.token_types.assign(tokens.size(), 1);
  v.token_types[0] = 2;
  v.token_types[1] = v.token_types[2] = 3;
  for (int b = 0; b < 256; ++b) v.token_types[3 + b] = 6;
  const auto ref = specdec::make_spm_tokenizer(v);

  CHECK(tok->bos() == 1);
  CHECK(tok->eos() == 2);
  CHECK(tok->add_bos_default());
  CHECK(tok->chat_template() == specdec::ChatTemplateKind::kPlain);
  const TokenId sp_ab = tok->find(kSp + "ab").value();
  CHECK(tok->encode("ab ab", true) == std::vector<TokenId>{1, sp_ab, sp_ab});
  CHECK(tok->encode("a\xc3\xa9", false) == std::vector<TokenId>{tok->find(kSp + "a").value(), 3 + 0xC3, 3 + 0xA9});
  for (const std::string& t :
       {std::string("ab ab"), std::string("a\xc3\xa9 b  a"), std::string(""), std::string("<s>ab</s>")}) {
    for (bool special : {false, true}) {
      INFO(t << " special=" << special);
      CHECK(tok->encode(t, true, special) == ref->encode(t, true, special));
      CHECK(tok_meta->encode(t, true, special) == ref->encode(t, true, special));
    }
    CHECK(tok->decode(tok->encode(t, true)) == t);
  }
}

TEST_CASE("hf_json: bad files throw naming the file") {
  const auto dir = specdec::test::scratch_dir("tokenizer_hf_json");
  ByteLevelCase c;
  c.merge("a", "b");
  SECTION("missing") {
    const std::string path = (dir / "nope" / "tokenizer.json").string();
    CHECK_THAT(error_of([&] { specdec::load_hf_tokenizer_json(path); }), Contains(path) && Contains("cannot open"));
  }
  SECTION("not JSON") {
    const std::string path = (dir / "garbage.json").string();
    std::ofstream(path) << "{ not json";
    CHECK_THAT(error_of([&] { specdec::load_hf_tokenizer_json(path); }), Contains(path) && Contains("not valid JSON"));
  }
  SECTION("unsupported Split regex") {
    const json pre = {{"type", "Sequence"},
                      {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", "\\w+"}}}},
                                                     {{"type", "ByteLevel"}, {"use_regex", false}}})}};
    const std::string path = write_case("bad_split", c.to_json(false, pre));
    CHECK_THAT(error_of([&] { specdec::load_hf_tokenizer_json(path); }), Contains(path) && Contains("Split regex"));
  }
  SECTION("unsupported model") {
    json j = c.to_json(false, kSmolLMPre);
    j["model"]["type"] = "WordPiece";
    const std::string path = write_case("wordpiece", j);
    CHECK_THAT(error_of([&] { specdec::load_hf_tokenizer_json(path); }), Contains(path) && Contains("WordPiece"));
  }
  SECTION("config names a token that is not there") {
    const std::string path = write_case("bad_config", c.to_json(false, kSmolLMPre), {{"bos_token", "<nope>"}});
    CHECK_THAT(error_of([&] { specdec::load_hf_tokenizer_json(path); }),
               Contains("tokenizer_config.json") && Contains("<nope>"));
  }
}
