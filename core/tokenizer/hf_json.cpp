// Hugging Face tokenizer.json (BPE models) -> SpmVocab or BpeVocab. The pre-tokenizer and normalizer
// decide the flavour: ByteLevel is byte-level BPE (its Split regex / Digits step names the pattern);
// Metaspace or a Replace " " -> "▁" normalizer is SentencePiece-style BPE merged by rank, as Llama-2's
// file. BOS / EOS come from tokenizer_config.json beside it when present.
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/spm_tokenizer.h"

namespace specdec {

namespace {

using nlohmann::json;

// The Split regexes of Llama 3 and Qwen2 tokenizer.json files (after JSON unescaping).
constexpr std::string_view kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
    R"(|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*)"
    R"(|\s*[\r\n]+|\s+(?!\S)|\s+)";

json read_json(const std::string& path) {
  std::ifstream f(path);
  SPECDEC_CHECK(f.good(), "cannot open tokenizer file '", path, "'");
  try {
    return json::parse(f);
  } catch (const json::exception& e) {
    SPECDEC_FAIL("tokenizer file '", path, "' is not valid JSON: ", e.what());
  }
}

std::string str_or(const json& j, const char* key, std::string fallback = {}) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

bool bool_or(const json& j, const char* key, bool fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_boolean() ? it->get<bool>() : fallback;
}

// A component and, for a "Sequence", its members (key: "pretokenizers", "normalizers", "processors").
std::vector<json> flatten(const json& j, const char* members) {
  std::vector<json> out;
  if (!j.is_object()) return out;
  if (str_or(j, "type") == "Sequence" && j.contains(members) && j[members].is_array()) {
    for (const json& m : j[members]) out.push_back(m);
  } else {
    out.push_back(j);
  }
  return out;
}

// A token named in tokenizer_config.json: "text" or {"content": "text", ...}; "" when null / absent.
std::string config_token(const json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  return str_or(*it, "content");
}

struct Vocabulary {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<std::string> merges;
};

Vocabulary read_vocabulary(const json& j, const std::string& path) {
  const json& model = j.at("model");
  const json& vocab = model.at("vocab");
  SPECDEC_CHECK(vocab.is_object(), "tokenizer file '", path, "': model.vocab is not an object");
  size_t V = 0;
  auto check_id = [&](const json& id, std::string_view piece) {
    SPECDEC_CHECK(id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() < (int64_t{1} << 31),
                  "tokenizer file '", path, "': token '", piece, "' has id ", id.dump(), ", expected 0..2^31-1");
    V = std::max(V, static_cast<size_t>(id.get<int64_t>()) + 1);
    return static_cast<size_t>(id.get<int64_t>());
  };
  for (auto it = vocab.begin(); it != vocab.end(); ++it) check_id(it.value(), it.key());
  const json added = j.contains("added_tokens") && j["added_tokens"].is_array() ? j["added_tokens"] : json::array();
  for (const json& a : added) check_id(a.at("id"), str_or(a, "content"));

  Vocabulary v;
  v.tokens.assign(V, std::string());
  v.types.assign(V, static_cast<int32_t>(TokenType::kUnused));  // ids no entry names stay unused
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const size_t id = it.value().get<size_t>();
    v.tokens[id] = it.key();
    v.types[id] = static_cast<int32_t>(TokenType::kNormal);
  }
  for (const json& a : added) {
    const size_t id = a.at("id").get<size_t>();
    v.tokens[id] = str_or(a, "content");
    v.types[id] = static_cast<int32_t>(bool_or(a, "special", false) ? TokenType::kControl : TokenType::kUserDefined);
  }
  for (size_t i = 0; i < V; ++i)
    if (v.tokens[i].empty()) v.tokens[i] = "[UNUSED_" + std::to_string(i) + "]";

  if (model.contains("merges") && model["merges"].is_array()) {
    v.merges.reserve(model["merges"].size());
    for (const json& m : model["merges"]) {
      if (m.is_string()) {
        v.merges.push_back(m.get<std::string>());
      } else {
        SPECDEC_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(), "tokenizer file '", path,
                      "': merge ", m.dump(), " is neither \"a b\" nor [\"a\", \"b\"]");
        v.merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
      }
    }
  }
  return v;
}

// ByteLevel files: which GGUF pre-tokenizer name their pre_tokenizer amounts to.
std::string byte_level_pre(const std::vector<json>& pre, const std::string& path) {
  bool digits = false, byte_level_regex = false;
  std::string split;
  for (const json& p : pre) {
    const std::string type = str_or(p, "type");
    if (type == "ByteLevel") {
      byte_level_regex = bool_or(p, "use_regex", true);
    } else if (type == "Digits") {
      digits = bool_or(p, "individual_digits", false);
      SPECDEC_CHECK(digits, "tokenizer file '", path,
                    "': Digits pre-tokenizer without individual_digits is not supported");
    } else if (type == "Split") {
      split = p.contains("pattern") ? str_or(p["pattern"], "Regex") : std::string();
      SPECDEC_CHECK(!split.empty(), "tokenizer file '", path,
                    "': Split pre-tokenizer without a Regex pattern is not supported");
    } else {
      SPECDEC_FAIL("tokenizer file '", path, "': pre-tokenizer '", type, "' is not supported");
    }
  }
  if (!split.empty()) {
    SPECDEC_CHECK(!byte_level_regex && !digits, "tokenizer file '", path,
                  "': a Split pre-tokenizer combined with ByteLevel use_regex or Digits is not supported");
    if (split == kLlama3Regex) return "llama-bpe";
    if (split == kQwen2Regex) return "qwen2";
    SPECDEC_FAIL("tokenizer file '", path, "': Split regex '", split,
                 "' is not supported (expected Llama 3's or Qwen2's pattern)");
  }
  SPECDEC_CHECK(byte_level_regex, "tokenizer file '", path,
                "': ByteLevel without use_regex and without Split is not supported");
  return digits ? "smollm" : "gpt2";
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path) {
  const json j = read_json(path);
  SPECDEC_CHECK(j.is_object() && j.contains("model") && j["model"].is_object() && j["model"].contains("vocab"),
                "tokenizer file '", path, "' has no model.vocab (not a tokenizer.json?)");
  const json& model = j["model"];
  const std::string model_type = str_or(model, "type", "BPE");
  SPECDEC_CHECK(model_type == "BPE", "tokenizer file '", path, "': model type '", model_type,
                "' is not supported, expected BPE");
  Vocabulary v = read_vocabulary(j, path);
  const size_t V = v.tokens.size();
  auto id_of = [&](const std::string& text) -> TokenId {
    for (size_t i = 0; i < V; ++i)
      if (v.tokens[i] == text) return static_cast<TokenId>(i);
    return -1;
  };

  const std::vector<json> pre = flatten(j.value("pre_tokenizer", json()), "pretokenizers");
  const std::vector<json> norm = flatten(j.value("normalizer", json()), "normalizers");
  bool byte_level = false, metaspace = false, metaspace_prefix = false, replace_space = false, prepend = false;
  for (const json& p : pre) {
    const std::string type = str_or(p, "type");
    byte_level |= type == "ByteLevel";
    if (type == "Metaspace") {
      metaspace = true;
      const std::string scheme = str_or(p, "prepend_scheme", bool_or(p, "add_prefix_space", true) ? "always" : "never");
      metaspace_prefix = scheme != "never";
    }
  }
  for (const json& n : norm) {
    const std::string type = str_or(n, "type");
    if (type == "Replace" && n.contains("pattern") && str_or(n["pattern"], "String") == " " &&
        str_or(n, "content") == "\xE2\x96\x81")
      replace_space = true;
    if (type == "Prepend" && str_or(n, "prepend") == "\xE2\x96\x81") prepend = true;
  }

  // BOS / EOS / add_bos: tokenizer_config.json, else the post-processor and the usual names.
  TokenId bos = -1, eos = -1;
  std::optional<bool> add_bos;
  const std::filesystem::path config_path = std::filesystem::path(path).parent_path() / "tokenizer_config.json";
  if (std::filesystem::exists(config_path)) {
    const json config = read_json(config_path.string());
    for (auto [key, id] : {std::pair<const char*, TokenId*>{"bos_token", &bos}, {"eos_token", &eos}}) {
      const std::string name = config.is_object() ? config_token(config, key) : std::string();
      if (name.empty()) continue;
      *id = id_of(name);
      SPECDEC_CHECK(*id >= 0, "tokenizer config '", config_path.string(), "': ", key, " '", name,
                    "' is not in the vocabulary of '", path, "'");
    }
    if (config.is_object() && config.contains("add_bos_token") && config["add_bos_token"].is_boolean())
      add_bos = config["add_bos_token"].get<bool>();
  }
  for (const json& p : flatten(j.value("post_processor", json()), "processors")) {
    if (str_or(p, "type") != "TemplateProcessing" || !p.contains("single") || !p["single"].is_array() ||
        p["single"].empty())
      continue;
    const json& first = p["single"][0];
    const bool starts_special = first.is_object() && first.contains("SpecialToken");
    if (!add_bos) add_bos = starts_special;
    if (starts_special && bos < 0) bos = id_of(str_or(first["SpecialToken"], "id"));
  }
  for (const char* name : {"<s>", "<|begin_of_text|>", "<|endoftext|>"})
    if (bos < 0) bos = id_of(name);
  for (const char* name : {"</s>", "<|im_end|>", "<|end_of_text|>", "<|endoftext|>"})
    if (eos < 0) eos = id_of(name);

  if (byte_level) {
    BpeVocab b;
    b.pre = byte_level_pre(pre, path);
    b.tokens = std::move(v.tokens);
    b.token_types = std::move(v.types);
    b.merges = std::move(v.merges);
    b.bos = bos;
    b.eos = eos;
    b.add_bos = add_bos.value_or(false);
    b.ignore_merges = bool_or(model, "ignore_merges", false);
    return std::make_unique<detail::BpeTokenizer>(b, path);
  }
  SPECDEC_CHECK(metaspace || replace_space, "tokenizer file '", path,
                "': neither a ByteLevel pre-tokenizer nor SentencePiece-style spaces (Metaspace, or a Replace \" \" "
                "-> \"\xE2\x96\x81\" normalizer); not supported");
  SPECDEC_CHECK(!v.merges.empty(), "tokenizer file '", path, "': model.merges is empty, expected the BPE merges");
  SpmVocab s;
  const bool byte_fallback = bool_or(model, "byte_fallback", false);
  const std::string unk = str_or(model, "unk_token");
  for (size_t i = 0; i < V; ++i) {
    if (v.types[i] != static_cast<int32_t>(TokenType::kNormal)) continue;
    if (byte_fallback && detail::parse_byte_piece(v.tokens[i]) >= 0)
      v.types[i] = static_cast<int32_t>(TokenType::kByte);
  }
  s.unk = unk.empty() ? -1 : id_of(unk);
  if (s.unk >= 0) v.types[s.unk] = static_cast<int32_t>(TokenType::kUnknown);
  s.tokens = std::move(v.tokens);
  s.token_types = std::move(v.types);
  s.merges = std::move(v.merges);
  s.bos = bos;
  s.eos = eos;
  s.add_bos = add_bos.value_or(true);
  s.add_space_prefix = metaspace ? metaspace_prefix : prepend;
  s.escape_whitespace = true;
  return std::make_unique<detail::SpmTokenizer>(s, std::vector<TokenId>{}, path);
}

}  // namespace specdec
