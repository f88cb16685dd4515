// llama2.c tokenizer.bin (stories260K's tok512.bin): encoding equals a plain transcription of run.c's
// encode() (SimpleRunCEncode below) token for token, decoding follows run.c's decode(), text round-trips
// byte for byte (golden story, byte fallback, spaces, malformed UTF-8), and bad files fail with
// one-line errors that name the file.
#include <catch2/catch.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"

using Catch::Matchers::Contains;
using specdec::TokenId;

using specdec::test::error_of;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  REQUIRE(f.good());
  return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

void write_file(const std::filesystem::path& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// run.c's encode(), transcribed for obviousness: pieces looked up in a sorted map, byte fallback
// id = byte + 3, then "find the best-scoring adjacent pair by concatenating the two pieces, merge,
// repeat" with a linear scan. O(n^2): the reference, not the implementation.
struct SimpleRunCEncode {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::map<std::string, int> lookup;

  explicit SimpleRunCEncode(const std::string& path) {
    const std::string d = read_file(path);
    size_t off = 4;
    while (off < d.size()) {
      float s;
      int32_t len;
      std::memcpy(&s, d.data() + off, 4);
      std::memcpy(&len, d.data() + off + 4, 4);
      pieces.emplace_back(d.data() + off + 8, static_cast<size_t>(len));
      scores.push_back(s);
      off += 8 + static_cast<size_t>(len);
    }
    for (size_t i = 0; i < pieces.size(); ++i) lookup.emplace(pieces[i], static_cast<int>(i));
  }

  std::vector<TokenId> operator()(const std::string& text, bool bos) const {
    std::vector<TokenId> t;
    if (bos) t.push_back(1);
    if (!text.empty()) t.push_back(lookup.at(" "));
    for (size_t i = 0; i < text.size();) {
      size_t j = i + 1;
      while (j < text.size() && j - i < 4 && (static_cast<unsigned char>(text[j]) & 0xC0) == 0x80) ++j;
      auto it = lookup.find(text.substr(i, j - i));
      if (it != lookup.end()) {
        t.push_back(it->second);
      } else {
        for (size_t k = i; k < j; ++k) t.push_back(static_cast<unsigned char>(text[k]) + 3);
      }
      i = j;
    }
    while (true) {
      float best = -1e10f;
      int best_id = -1;
      size_t best_at = 0;
      for (size_t i = 0; i + 1 < t.size(); ++i) {  // BOS included, as run.c
        auto it = lookup.find(pieces[t[i]] + pieces[t[i + 1]]);
        if (it != lookup.end() && scores[it->second] > best) {
          best = scores[it->second];
          best_id = it->second;
          best_at = i;
        }
      }
      if (best_id < 0) break;
      t[best_at] = best_id;
      t.erase(t.begin() + static_cast<long>(best_at) + 1);
    }
    return t;
  }
};

const specdec::Tokenizer& stories() {
  static const auto tok = specdec::load_llama2c_tokenizer(specdec::test::stories_tokenizer(), 512);
  return *tok;
}

std::vector<std::string> prompt_texts() {
  std::vector<std::string> out;
  std::ifstream f(specdec::test::asset("data/prompts/spec_bench_question.jsonl"));
  REQUIRE(f.good());
  for (std::string line; std::getline(f, line);) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    for (const auto& turn : j.at("turns")) out.push_back(turn.get<std::string>());
  }
  return out;
}

}  // namespace

TEST_CASE("llama2c: vocabulary and conventions of tok512") {
  const auto& tok = stories();
  CHECK(tok.vocab_size() == 512);
  CHECK(tok.bos() == 1);
  CHECK(tok.eos() == 2);
  CHECK(tok.add_bos_default());
  CHECK(tok.piece(265) == " the");
  CHECK(tok.find(" the") == 265);
  CHECK_FALSE(tok.find("not a piece").has_value());
  CHECK(tok.is_end_of_generation(2));
  CHECK(tok.is_end_of_generation(1));  // run.c stops when the model emits BOS
  CHECK_FALSE(tok.is_end_of_generation(265));
  CHECK(tok.chat_template() == specdec::ChatTemplateKind::kPlain);
  CHECK_THROWS_AS(tok.piece(512), specdec::Error);
  CHECK_THROWS_AS(tok.decode_token(1, -1), specdec::Error);
}

TEST_CASE("llama2c: known ids of a prompt") {
  const auto& tok = stories();
  // Computed with a separate Python transcription of run.c's encode().
  CHECK(tok.encode("Once upon a time", true) == std::vector<TokenId>{1, 403, 407, 261, 378});
  CHECK(tok.encode("Once upon a time", false) == std::vector<TokenId>{403, 407, 261, 378});
  CHECK(tok.decode(tok.encode("Once upon a time", true)) == "Once upon a time");
  CHECK(tok.encode("", true) == std::vector<TokenId>{1});
  CHECK(tok.encode("", false).empty());
}

TEST_CASE("llama2c: the golden story round-trips and matches run.c's encode") {
  const auto& tok = stories();
  const SimpleRunCEncode simple(specdec::test::stories_tokenizer());
  const std::string golden = read_file(specdec::test::asset("models/stories260K/golden_greedy_bos_200.txt"));
  REQUIRE(golden.size() > 400);
  const auto ids = tok.encode(golden, true);
  REQUIRE(ids.front() == 1);
  CHECK(ids == simple(golden, true));
  CHECK(tok.decode(ids) == golden);
  // Streaming: decode_token with the previous token gives the same bytes.
  std::string streamed;
  for (size_t i = 1; i < ids.size(); ++i) streamed += tok.decode_token(ids[i - 1], ids[i]);
  CHECK(streamed == golden);
}

TEST_CASE("llama2c: every Spec-Bench prompt matches run.c's encode and round-trips") {
  const auto& tok = stories();
  const SimpleRunCEncode simple(specdec::test::stories_tokenizer());
  const auto texts = prompt_texts();
  REQUIRE(texts.size() >= 480);
  size_t n = 0;
  for (const std::string& text : texts) {
    const auto ids = tok.encode(text, true);
    if (n++ < 60) CHECK(ids == simple(text, true));  // the O(n^2) reference is slow on long prompts
    INFO(text);
    CHECK(tok.decode(ids) == text);
  }
}

TEST_CASE("llama2c: bytes without a piece fall back to <0xNN> and round-trip") {
  const auto& tok = stories();
  const SimpleRunCEncode simple(specdec::test::stories_tokenizer());
  const std::vector<std::string> texts = {
      "\xe2\x82\xac\xe2\x82\xac \xe4\xbd\xa0\xe5\xa5\xbd",  // "€€ 你好"
      std::string("ctrl\x01\x02\x1b[0m\x7f end"),
      std::string("nul\0inside", 10),
      "\xff\xfe bad \xc3 utf8 \xe2\x82",  // malformed UTF-8
      "\xf0\x9f\x98\x80 emoji",
  };
  for (const std::string& text : texts) {
    INFO(text);
    const auto ids = tok.encode(text, true);
    CHECK(ids == simple(text, true));
    CHECK(tok.decode(ids) == text);
  }
  // '€' has a piece; '你' = E4 BD A0 has none: its three byte tokens are byte + 3.
  const TokenId space = tok.find(" ").value();
  CHECK(tok.encode("\xe2\x82\xac", false) == std::vector<TokenId>{space, tok.find("\xe2\x82\xac").value()});
  CHECK(tok.encode("\xe4\xbd\xa0", false) == std::vector<TokenId>{space, 0xE4 + 3, 0xBD + 3, 0xA0 + 3});
  // Computed with a separate Python transcription of run.c's encode().
  CHECK(tok.encode("\xe2\x82\xac\xe2\x82\xac \xe4\xbd\xa0\xe5\xa5\xbd", true) ==
        std::vector<TokenId>{1, 410, 503, 503, 410, 231, 192, 163, 232, 168, 192});
  CHECK(tok.decode_token(5, 0xE2 + 3) == "\xe2");
  CHECK(tok.decode_token(1, 0x20 + 3) == " ");  // a byte token keeps its space after BOS (run.c)
}

TEST_CASE("llama2c: runs of spaces, tabs and newlines round-trip") {
  const auto& tok = stories();
  const std::vector<std::string> texts = {
      "a" + std::string(100, ' ') + "b", "   leading",           "trailing   ", " ", "  ", "\n", "\n\n  \t x\n",
      "one  two   three    four",        std::string(1000, ' '),
  };
  for (const std::string& text : texts) {
    INFO("'" << text << "'");
    CHECK(tok.decode(tok.encode(text, true)) == text);
    CHECK(tok.decode(tok.encode(text, false)) == text);
  }
}

TEST_CASE("llama2c: decode_token follows run.c") {
  const auto& tok = stories();
  const TokenId once = tok.encode("Once", false).at(0);
  REQUIRE(tok.piece(once) == " Once");
  CHECK(tok.decode_token(1, once) == "Once");  // after BOS the leading space goes
  CHECK(tok.decode_token(-1, once) == " Once");
  CHECK(tok.decode_token(265, once) == " Once");
  CHECK(tok.decode_token(-1, 1).empty());  // control tokens decode to nothing by default
  CHECK(tok.decode_token(-1, 2).empty());
  auto tok2 = specdec::load_llama2c_tokenizer(specdec::test::stories_tokenizer(), 512);
  tok2->set_render_special(true);
  CHECK(tok2->decode_token(-1, 1) == "\n<s>\n");
}

TEST_CASE("llama2c: bad files fail with a one-line error naming the file") {
  const auto dir = specdec::test::scratch_dir("tokenizer_llama2c");
  const std::string good = read_file(specdec::test::stories_tokenizer());

  SECTION("missing file") {
    const std::string path = (dir / "missing.bin").string();
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(path, 512); }),
               Contains(path) && Contains("cannot open"));
  }
  SECTION("fewer tokens than the model's vocab") {
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(specdec::test::stories_tokenizer(), 600); }),
               Contains("tok512.bin") && Contains("holds 512 tokens") && Contains("600"));
  }
  SECTION("more tokens than the model's vocab") {
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(specdec::test::stories_tokenizer(), 500); }),
               Contains("tok512.bin") && Contains("holds 512 tokens") && Contains("500"));
  }
  SECTION("truncated inside a token") {
    const auto path = dir / "truncated.bin";
    write_file(path, good.substr(0, good.size() - 3));
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(path.string(), 512); }),
               Contains(path.string()) && Contains("truncated"));
  }
  SECTION("truncated header") {
    const auto path = dir / "header.bin";
    write_file(path, good.substr(0, 2));
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(path.string(), 512); }),
               Contains(path.string()) && Contains("truncated"));
  }
  SECTION("negative piece length") {
    std::string bad = good;
    const int32_t neg = -5;
    std::memcpy(bad.data() + 4 + 4, &neg, 4);  // token 0's length
    const auto path = dir / "negative.bin";
    write_file(path, bad);
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(path.string(), 512); }),
               Contains(path.string()) && Contains("length -5"));
  }
  SECTION("absurd max_token_length") {
    std::string bad = good;
    const int32_t huge = 1 << 30;
    std::memcpy(bad.data(), &huge, 4);
    const auto path = dir / "absurd.bin";
    write_file(path, bad);
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(path.string(), 512); }),
               Contains(path.string()) && Contains("max_token_length"));
  }
  SECTION("trailing garbage") {
    const auto path = dir / "trailing.bin";
    write_file(path, good + "xyz");
    CHECK_THAT(error_of([&] { specdec::load_llama2c_tokenizer(path.string(), 512); }),
               Contains(path.string()) && Contains("3 bytes after"));
  }
  SECTION("errors are one line") {
    try {
      specdec::load_llama2c_tokenizer(specdec::test::stories_tokenizer(), 600);
      FAIL("no throw");
    } catch (const specdec::Error& e) {
      CHECK(std::string(e.what()).find('\n') == std::string::npos);
    }
  }
}
