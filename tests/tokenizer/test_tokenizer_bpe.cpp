// Byte-level BPE (make_bpe_tokenizer, the GGUF "gpt2" path) on hand-built vocabularies: GPT-2's byte
// map, Unicode classes, the pre-tokenizer splits (expected values from Python's `regex` module running
// the original patterns), merges applied by rank inside pre-tokens only, special and user-defined
// tokens, end-of-generation ids, decoding, and byte-exact round trips of arbitrary bytes.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tokenizer/pretokenize.h"
#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode.h"
#include "tests/support/errors.h"

using Catch::Matchers::Contains;
using specdec::BpeVocab;
using specdec::PreTokenizer;
using specdec::TokenId;
using specdec::TokenType;
using Pieces = std::vector<std::string>;

using specdec::test::error_of;

namespace {

// GPT-2's byte map applied to raw bytes: the form byte-level vocabularies store pieces in.
std::string mapped(std::string_view raw) {
  std::string out;
  for (char c : raw) specdec::unicode::append_utf8(out, specdec::unicode::byte_to_unicode(static_cast<uint8_t>(c)));
  return out;
}

// Ids 0..255 are the single bytes (in byte order); merges add their results.
struct ByteLevel {
  BpeVocab v;
  explicit ByteLevel(std::string pre = "gpt2") {
    v.pre = std::move(pre);
    for (int b = 0; b < 256; ++b) v.tokens.push_back(mapped(std::string(1, static_cast<char>(b))));
  }
  TokenId id(std::string_view raw) const {
    auto it = std::find(v.tokens.begin(), v.tokens.end(), mapped(raw));
    REQUIRE(it != v.tokens.end());
    return static_cast<TokenId>(it - v.tokens.begin());
  }
  TokenId merge(std::string_view a, std::string_view b) {
    v.merges.push_back(mapped(a) + " " + mapped(b));
    const std::string ab = mapped(std::string(a) + std::string(b));
    auto it = std::find(v.tokens.begin(), v.tokens.end(), ab);
    if (it != v.tokens.end()) return static_cast<TokenId>(it - v.tokens.begin());
    v.tokens.push_back(ab);
    return static_cast<TokenId>(v.tokens.size()) - 1;
  }
  TokenId special(std::string text, TokenType type) {
    if (v.token_types.empty()) v.token_types.assign(v.tokens.size(), 1);
    v.tokens.push_back(std::move(text));
    v.token_types.resize(v.tokens.size(), 1);
    v.token_types.back() = static_cast<int32_t>(type);
    return static_cast<TokenId>(v.tokens.size()) - 1;
  }
};

}  // namespace

TEST_CASE("bpe: GPT-2's byte map round-trips all 256 bytes") {
  using namespace specdec::unicode;
  std::set<uint32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const uint32_t cp = byte_to_unicode(static_cast<uint8_t>(b));
    CHECK(unicode_to_byte(cp) == b);
    seen.insert(cp);
  }
  CHECK(seen.size() == 256);
  CHECK(byte_to_unicode(' ') == 0x120);   // 'Ġ'
  CHECK(byte_to_unicode('\n') == 0x10A);  // 'Ċ'
  CHECK(byte_to_unicode('A') == 'A');
  CHECK(byte_to_unicode(0xAD) == 0x143);  // the soft hyphen is not printable: the last remapped byte
  CHECK(unicode_to_byte(0x144) == -1);
  CHECK(unicode_to_byte(kInvalid) == -1);
  CHECK(mapped("Hello world") == "Hello\xC4\xA0world");
}

TEST_CASE("bpe: Unicode classes of the pre-tokenizer patterns") {
  using namespace specdec::unicode;
  CHECK(classify('a') == CpClass::kLetter);
  CHECK(classify(0xE9) == CpClass::kLetter);    // é
  CHECK(classify(0x4F60) == CpClass::kLetter);  // 你 (Lo)
  CHECK(classify(0x1C5) == CpClass::kLetter);   // ǅ (Lt)
  CHECK(classify(0x2B0) == CpClass::kLetter);   // ʰ (Lm)
  CHECK(classify('7') == CpClass::kNumber);
  CHECK(classify(0x663) == CpClass::kNumber);   // ٣ (Nd)
  CHECK(classify(0xBD) == CpClass::kNumber);    // ½ (No)
  CHECK(classify(0x216B) == CpClass::kNumber);  // Ⅻ (Nl)
  CHECK(classify('\t') == CpClass::kWhitespace);
  CHECK(classify(0xA0) == CpClass::kWhitespace);
  CHECK(classify(0x3000) == CpClass::kWhitespace);
  CHECK(classify(0x1C) == CpClass::kOther);     // not White_Space (Python's str.isspace says yes)
  CHECK(classify(0x20AC) == CpClass::kOther);   // €
  CHECK(classify(0x301) == CpClass::kOther);    // combining acute (Mn)
  CHECK(classify(0x1F600) == CpClass::kOther);  // emoji
  CHECK(classify(kInvalid) == CpClass::kOther);
  size_t len;
  CHECK(decode_utf8("\xe2\x82\xac", 0, &len) == 0x20AC);
  CHECK(len == 3);
  CHECK(decode_utf8("\xc0\xaf", 0, &len) == kInvalid);  // overlong
  CHECK(len == 1);
  CHECK(decode_utf8("\xed\xa0\x80", 0, &len) == kInvalid);  // surrogate
  CHECK(decode_utf8("\xe2\x82", 0, &len) == kInvalid);      // truncated
}

TEST_CASE("bpe: pre-tokenizer splits follow their patterns") {
  const std::string text = "Hello world's 123 test";
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, text) == Pieces{"Hello", " world", "'s", " 123", " test"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kSmolLM, text) ==
        Pieces{"Hello", " world", "'s", " ", "1", "2", "3", " test"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kLlama3, text) == Pieces{"Hello", " world", "'s", " ", "123", " test"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kQwen2, text) ==
        Pieces{"Hello", " world", "'s", " ", "1", "2", "3", " test"});

  // Whitespace runs leave their last space to the next word; newlines; case of contractions.
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, "x   y") == Pieces{"x", "  ", " y"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, "a\n\nb") == Pieces{"a", "\n", "\n", "b"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kLlama3, "a\n\nb") == Pieces{"a", "\n\n", "b"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, "I'M fine") == Pieces{"I", "'", "M", " fine"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kLlama3, "I'M fine") == Pieces{"I", "'M", " fine"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, "don't  \n\tgo") == Pieces{"don", "'t", "  \n", "\t", "go"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kLlama3, "don't  \n\tgo") == Pieces{"don", "'t", "  \n", "\tgo"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, "  lead") == Pieces{" ", " lead"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, "trail  ") == Pieces{"trail", "  "});
  const std::string money =
      "\xe2\x82\xac"
      "100,000 \xce\xa9\xc2\xbd";  // "€100,000 Ω½"
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, money) ==
        Pieces{"\xe2\x82\xac", "100", ",", "000", " \xce\xa9", "\xc2\xbd"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kSmolLM, money) ==
        Pieces{"\xe2\x82\xac", "1", "0", "0", ",", "0", "0", "0", " \xce\xa9", "\xc2\xbd"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kLlama3, "1234567") == Pieces{"123", "456", "7"});
  CHECK(specdec::pre_tokenize(PreTokenizer::kGpt2, "").empty());

  CHECK(specdec::parse_pre_tokenizer("smollm") == PreTokenizer::kSmolLM);
  CHECK(specdec::parse_pre_tokenizer("gpt-2") == PreTokenizer::kGpt2);
  CHECK(specdec::parse_pre_tokenizer("llama-bpe") == PreTokenizer::kLlama3);
  CHECK_FALSE(specdec::parse_pre_tokenizer("falcon").has_value());
}

TEST_CASE("bpe: merges apply by rank") {
  {
    ByteLevel bl;
    const TokenId bc = bl.merge("b", "c");
    bl.merge("a", "b");
    const auto tok = specdec::make_bpe_tokenizer(bl.v);
    CHECK(tok->encode("abc", false) == std::vector<TokenId>{'a', bc});  // "b c" has the lower rank
  }
  {
    ByteLevel bl;
    const TokenId ab = bl.merge("a", "b");
    bl.merge("b", "c");
    const auto tok = specdec::make_bpe_tokenizer(bl.v);
    CHECK(tok->encode("abc", false) == std::vector<TokenId>{ab, 'c'});
  }
  {
    ByteLevel bl;
    bl.merge("H", "e");
    bl.merge("l", "l");
    bl.merge("He", "ll");
    const TokenId hello = bl.merge("Hell", "o");
    bl.merge(" ", "w");
    bl.merge("o", "r");
    bl.merge(" w", "or");
    bl.merge("l", "d");
    const TokenId world = bl.merge(" wor", "ld");
    const TokenId b_space = bl.merge("o", " ");  // never applies: "o" and " " are in different pre-tokens
    const auto tok = specdec::make_bpe_tokenizer(bl.v);
    CHECK(tok->encode("Hello world", false) == std::vector<TokenId>{hello, world});
    CHECK(tok->piece(world) == "\xC4\xA0world");
    CHECK(tok->decode_token(hello, world) == " world");
    CHECK(tok->decode(tok->encode("Hello world", false)) == "Hello world");
    const auto ids = tok->encode("Hello  world", false);
    CHECK(std::find(ids.begin(), ids.end(), b_space) == ids.end());
    CHECK(tok->decode(ids) == "Hello  world");
  }
}

TEST_CASE("bpe: special and user-defined tokens") {
  ByteLevel bl("smollm");
  bl.merge("a", "b");
  const TokenId eot = bl.special("<|endoftext|>", TokenType::kControl);
  const TokenId im_start = bl.special("<|im_start|>", TokenType::kControl);
  const TokenId im_end = bl.special("<|im_end|>", TokenType::kUserDefined);  // forced to control (end of turn)
  const TokenId tool = bl.special("<tool>", TokenType::kUserDefined);
  bl.v.bos = im_start;
  bl.v.eos = im_end;
  const auto tok = specdec::make_bpe_tokenizer(bl.v);
  const TokenId ab = tok->find(mapped("ab")).value();

  CHECK(tok->encode("<|im_start|>ab<|im_end|>", false, true) == std::vector<TokenId>{im_start, ab, im_end});
  const auto plain = tok->encode("<|im_start|>ab", false, false);
  CHECK(plain.size() == 13);  // the 12 bytes of "<|im_start|>", then "ab"
  CHECK(tok->decode(plain) == "<|im_start|>ab");
  CHECK(tok->encode("ab<tool>ab", false, false) == std::vector<TokenId>{ab, tool, ab});
  CHECK(tok->encode("<|im_start|>", true, true) == std::vector<TokenId>{im_start, im_start});

  CHECK(tok->is_end_of_generation(im_end));
  CHECK(tok->is_end_of_generation(eot));
  CHECK_FALSE(tok->is_end_of_generation(im_start));
  CHECK_FALSE(tok->is_end_of_generation(ab));
  CHECK_FALSE(tok->add_bos_default());

  CHECK(tok->decode_token(-1, im_start).empty());
  CHECK(tok->decode_token(-1, tool) == "<tool>");
  CHECK(tok->decode(std::vector<TokenId>{im_start, ab, im_end}) == "ab");
  auto tok2 = specdec::make_bpe_tokenizer(bl.v);
  tok2->set_render_special(true);
  CHECK(tok2->decode(std::vector<TokenId>{im_start, ab, im_end}) == "<|im_start|>ab<|im_end|>");
}

TEST_CASE("bpe: llama3 keeps a pre-token that is a token whole (ignore_merges)") {
  ByteLevel bl("llama-bpe");
  bl.merge("a", "b");
  bl.v.tokens.push_back(mapped(" abc"));  // reachable by no merge
  const TokenId whole = static_cast<TokenId>(bl.v.tokens.size()) - 1;
  const auto tok = specdec::make_bpe_tokenizer(bl.v);
  CHECK(tok->encode("x abc", false) == std::vector<TokenId>{'x', whole});
  bl.v.pre = "gpt2";
  const auto gpt2 = specdec::make_bpe_tokenizer(bl.v);
  CHECK(gpt2->encode("x abc", false) == std::vector<TokenId>{'x', ' ', tok->find(mapped("ab")).value(), 'c'});
  bl.v.ignore_merges = true;
  CHECK(specdec::make_bpe_tokenizer(bl.v)->encode("x abc", false) == std::vector<TokenId>{'x', whole});
}

TEST_CASE("bpe: arbitrary bytes round-trip for every pre-tokenizer") {
  std::mt19937 rng(7);
  const std::vector<std::string> alphabet = {"a",
                                             "b",
                                             "Z",
                                             "0",
                                             "7",
                                             " ",
                                             "  ",
                                             "\n",
                                             "\r\n",
                                             "\t",
                                             "'s",
                                             "'LL",
                                             ",",
                                             "\xe2\x82\xac",
                                             "\xe4\xbd\xa0",
                                             "\xc3\xa9",
                                             "\xf0\x9f\x98\x80",
                                             "\xff",
                                             "\xc3",
                                             "\x80",
                                             std::string(1, '\0'),
                                             "\xc2\xbd"};
  for (const char* pre : {"gpt2", "smollm", "llama-bpe", "qwen2"}) {
    ByteLevel bl(pre);
    bl.merge(" ", "a");
    bl.merge("'", "s");
    bl.merge("\xe2", "\x82");
    const auto tok = specdec::make_bpe_tokenizer(bl.v);
    for (int n = 0; n < 300; ++n) {
      std::string text;
      const int len = static_cast<int>(rng() % 20);
      for (int i = 0; i < len; ++i) text += alphabet[rng() % alphabet.size()];
      INFO(pre << ": " << text);
      CHECK(tok->decode(tok->encode(text, false)) == text);
    }
  }
}

TEST_CASE("bpe: invalid vocabularies throw naming the value") {
  ByteLevel bl;
  SECTION("pre-tokenizer") {
    bl.v.pre = "falcon";
    CHECK_THAT(error_of([&] { specdec::make_bpe_tokenizer(bl.v); }), Contains("BpeVocab") && Contains("'falcon'"));
  }
  SECTION("token types") {
    bl.v.token_types = {1, 1};
    CHECK_THAT(error_of([&] { specdec::make_bpe_tokenizer(bl.v); }), Contains("BpeVocab") && Contains("2 token types"));
  }
  SECTION("eos id") {
    bl.v.eos = 256;
    CHECK_THAT(error_of([&] { specdec::make_bpe_tokenizer(bl.v); }), Contains("EOS id 256"));
  }
  SECTION("no BOS") {
    const auto tok = specdec::make_bpe_tokenizer(bl.v);
    CHECK(tok->bos() == -1);
    CHECK_THROWS_AS(tok->encode("a", true), specdec::Error);
    CHECK_THROWS_AS(tok->decode_token(-1, 256), specdec::Error);
  }
}
