// SentencePiece-style BPE from plain arrays (make_spm_tokenizer, the GGUF "llama" path): tok512 stored
// GGUF-style (U+2581 for spaces, token types) encodes exactly as the llama2.c loader; on a hand-built
// vocabulary, merges go by score (leftmost on ties) or by rank, bytes fall back to <0xNN>, the space
// prefix follows special tokens, control tokens need parse_special and user-defined ones do not.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"

using Catch::Matchers::Contains;
using specdec::SpmVocab;
using specdec::TokenId;
using specdec::TokenType;

using specdec::test::error_of;

namespace {

const std::string kSp = "\xE2\x96\x81";  // U+2581

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
  return s;
}

// tok512.bin as a GGUF converter would store it: spaces as U+2581, explicit token types.
SpmVocab stories_as_gguf() {
  std::ifstream f(specdec::test::stories_tokenizer(), std::ios::binary);
  REQUIRE(f.good());
  const std::string d((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  SpmVocab v;
  for (size_t off = 4; off < d.size();) {
    float s;
    int32_t len;
    std::memcpy(&s, d.data() + off, 4);
    std::memcpy(&len, d.data() + off + 4, 4);
    v.tokens.push_back(replace_all(std::string(d.data() + off + 8, static_cast<size_t>(len)), " ", kSp));
    v.scores.push_back(s);
    off += 8 + static_cast<size_t>(len);
  }
  v.token_types.assign(v.tokens.size(), 1);
  v.token_types[0] = 2;
  v.token_types[1] = v.token_types[2] = 3;
  for (size_t i = 3; i < 259; ++i) v.token_types[i] = 6;
  return v;
}

// A small vocabulary: <unk> <s> </s>, 256 byte tokens, then pieces with chosen scores.
struct Small {
  SpmVocab v;
  TokenId add(const std::string& piece, float score, TokenType type = TokenType::kNormal) {
    v.tokens.push_back(piece);
    v.scores.push_back(score);
    v.token_types.push_back(static_cast<int32_t>(type));
    return static_cast<TokenId>(v.tokens.size()) - 1;
  }
  Small() {
    add("<unk>", 0, TokenType::kUnknown);
    add("<s>", 0, TokenType::kControl);
    add("</s>", 0, TokenType::kControl);
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      add(buf, 0, TokenType::kByte);
    }
  }
};

TokenId byte_token(int b) { return 3 + b; }

}  // namespace

TEST_CASE("spm: tok512 stored GGUF-style encodes and decodes as the llama2.c loader") {
  const auto gguf = specdec::make_spm_tokenizer(stories_as_gguf());
  const auto l2c = specdec::load_llama2c_tokenizer(specdec::test::stories_tokenizer(), 512);
  const std::vector<std::string> texts = {
      "Once upon a time",
      "",
      " ",
      "  two  spaces  ",
      "Lily's mom said, \"Lily, let's go to the park.\"\nThe end.",
      "\xe2\x82\xac\xe2\x82\xac \xe4\xbd\xa0\xe5\xa5\xbd",
      "tabs\tand\x01control",
      "\xff broken \xc3",
  };
  for (const std::string& t : texts) {
    INFO(t);
    const auto ids = gguf->encode(t, true);
    CHECK(ids == l2c->encode(t, true));
    CHECK(gguf->decode(ids) == t);
    CHECK(l2c->decode(ids) == t);
  }
  CHECK(gguf->piece(265) == kSp + "the");
  CHECK(gguf->decode_token(-1, 265) == " the");
  CHECK(gguf->decode_token(1, 265) == "the");
}

TEST_CASE("spm: merges by score, leftmost on ties") {
  Small s;
  const TokenId sp = s.add(kSp, -10), a = s.add("a", -10), b = s.add("b", -10), c = s.add("c", -10);
  const TokenId ab = s.add("ab", -5), bc = s.add("bc", -1);
  {
    const auto tok = specdec::make_spm_tokenizer(s.v);
    CHECK(tok->encode("abc", false) == std::vector<TokenId>{sp, a, bc});  // "bc" scores higher
    CHECK(tok->encode("abc", true) == std::vector<TokenId>{1, sp, a, bc});
  }
  s.v.scores[bc] = -5;  // a tie: the leftmost pair merges first
  {
    const auto tok = specdec::make_spm_tokenizer(s.v);
    CHECK(tok->encode("abc", false) == std::vector<TokenId>{sp, ab, c});
  }
  s.v.merges = {"b c", "a b"};  // merges given: by rank, the scores no longer matter
  {
    const auto tok = specdec::make_spm_tokenizer(s.v);
    CHECK(tok->encode("abc", false) == std::vector<TokenId>{sp, a, bc});
  }
  (void)b;
}

TEST_CASE("spm: byte fallback, unknown code points and decoding") {
  Small s;
  const TokenId sp = s.add(kSp, -1), a = s.add("a", -2), sp_a = s.add(kSp + "a", -0.5f);
  const auto tok = specdec::make_spm_tokenizer(s.v);
  // "é" = C3 A9 has no piece.
  CHECK(tok->encode("a\xc3\xa9", false) == std::vector<TokenId>{sp_a, byte_token(0xC3), byte_token(0xA9)});
  CHECK(tok->decode(tok->encode("a\xc3\xa9 a", true)) == "a\xc3\xa9 a");
  CHECK(tok->decode_token(1, sp_a) == "a");  // after BOS the space prefix goes
  CHECK(tok->decode_token(a, sp_a) == " a");
  CHECK(tok->decode_token(1, byte_token(' ')) == " ");
  CHECK(tok->decode_token(-1, 1).empty());
  (void)sp;

  // Without byte tokens, a code point without a piece becomes one <unk>.
  SpmVocab nb;
  nb.tokens = {"<unk>", "<s>", "</s>", kSp, "a"};
  const auto tok2 = specdec::make_spm_tokenizer(nb);
  CHECK(tok2->encode("a\xc3\xa9", false) == std::vector<TokenId>{3, 4, 0});
}

TEST_CASE("spm: special tokens and the space prefix") {
  Small s;
  const TokenId sp = s.add(kSp, -1), a = s.add("a", -2), sp_a = s.add(kSp + "a", -0.5f);
  const TokenId im_start = s.add("<|im_start|>", 0, TokenType::kControl);
  const TokenId tool = s.add("<tool>", 0, TokenType::kUserDefined);
  const TokenId im_end = s.add("<|im_end|>", 0, TokenType::kNormal);  // forced to control: an end-of-turn text
  {
    const auto tok = specdec::make_spm_tokenizer(s.v);
    // parse_special: the control token is matched and the text after it gets the space prefix.
    CHECK(tok->encode("<|im_start|>a", false, true) == std::vector<TokenId>{im_start, sp_a});
    CHECK(tok->encode("a<|im_end|>", false, true) == std::vector<TokenId>{sp_a, im_end});
    // Without it the control string is plain text (bytes here).
    const auto plain = tok->encode("<|im_start|>a", false, false);
    CHECK(std::find(plain.begin(), plain.end(), im_start) == plain.end());
    CHECK(tok->decode(plain) == "<|im_start|>a");
    // User-defined tokens are matched either way, and decode to their text.
    CHECK(tok->encode("a<tool>a", false, false) == std::vector<TokenId>{sp_a, tool, sp_a});
    CHECK(tok->decode_token(-1, tool) == "<tool>");
    CHECK(tok->is_end_of_generation(im_end));
    CHECK(tok->is_end_of_generation(2));
    CHECK_FALSE(tok->is_end_of_generation(im_start));
    CHECK(tok->decode_token(-1, im_start).empty());
  }
  s.v.add_space_prefix = false;
  {
    const auto tok = specdec::make_spm_tokenizer(s.v);
    CHECK(tok->encode("<|im_start|>a", false, true) == std::vector<TokenId>{im_start, a});
    CHECK(tok->encode(" a", false) == std::vector<TokenId>{sp_a});
    CHECK(tok->decode_token(1, sp_a) == " a");  // no prefix was added, so none is removed
  }
  (void)sp;
}

TEST_CASE("spm: invalid vocabularies throw naming the value") {
  Small s;
  s.add("a", 0);
  SECTION("scores") {
    s.v.scores.pop_back();
    CHECK_THAT(error_of([&] { specdec::make_spm_tokenizer(s.v); }), Contains("SpmVocab") && Contains("scores"));
  }
  SECTION("token type") {
    s.v.token_types.back() = 9;
    CHECK_THAT(error_of([&] { specdec::make_spm_tokenizer(s.v); }), Contains("SpmVocab") && Contains("type 9"));
  }
  SECTION("bos id") {
    s.v.bos = 100000;
    CHECK_THAT(error_of([&] { specdec::make_spm_tokenizer(s.v); }), Contains("BOS id 100000"));
  }
  SECTION("empty") { CHECK_THROWS_AS(specdec::make_spm_tokenizer(SpmVocab{}), specdec::Error); }
  SECTION("add_bos without a BOS") {
    s.v.bos = -1;
    const auto tok = specdec::make_spm_tokenizer(s.v);
    CHECK(tok->encode("a", false).size() == 4);  // "\u2581" has no piece here: 3 byte tokens, then "a"
    CHECK_THAT(error_of([&] { tok->encode("a", true); }), Contains("no BOS"));
  }
}
