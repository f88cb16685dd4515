// llama2.c's tokenizer.bin reader: the file gives pieces and scores, llama2.c's run.c the conventions
// (BOS = 1, EOS = 2, <unk> = 0, <0xNN> byte tokens, pieces with plain ' ', a dummy-prefix space). The
// algorithm is the SentencePiece one of spm.cpp. The file does not store its size, so the model's
// vocabulary size says how many entries to read, and the file must end right after them.
#include <fstream>
#include <iterator>
#include <cstring>

#include "core/error.h"
#include "core/tokenizer/spm_tokenizer.h"

namespace specdec {

namespace {

constexpr int32_t kMaxPieceBytes = 1 << 16;  // far above any real piece; more means a corrupt file

// A little-endian cursor over the file's bytes.
struct Reader {
  const std::string& data;
  size_t pos = 0;
  bool can(size_t n) const { return data.size() - pos >= n; }
  template <typename T>
  T take() {
    T v;
    std::memcpy(&v, data.data() + pos, sizeof(T));
    pos += sizeof(T);
    return v;
  }
};

// After the expected entries: how many more whole entries the remaining bytes hold (-1 if they do
// not parse as entries), for a message that names the file's real size.
long count_extra_entries(Reader r, int32_t max_len) {
  long n = 0;
  while (r.pos < r.data.size()) {
    if (!r.can(8)) return -1;
    r.take<float>();
    const int32_t len = r.take<int32_t>();
    if (len < 0 || len > max_len || !r.can(static_cast<size_t>(len))) return -1;
    r.pos += static_cast<size_t>(len);
    ++n;
  }
  return n;
}

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int expected_vocab) {
  SPECDEC_CHECK(expected_vocab > 2, "tokenizer file '", path, "': the model's vocab size is ", expected_vocab,
                ", expected > 2 (llama2.c uses BOS = 1, EOS = 2)");
  std::ifstream f(path, std::ios::binary);
  SPECDEC_CHECK(f.good(), "cannot open tokenizer file '", path, "'");
  const std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  SPECDEC_CHECK(!f.bad(), "cannot read tokenizer file '", path, "'");

  Reader r{data};
  SPECDEC_CHECK(r.can(4), "tokenizer file '", path, "' is truncated: ", data.size(),
                " bytes, expected at least the 4-byte max_token_length header");
  const int32_t max_len = r.take<int32_t>();
  SPECDEC_CHECK(max_len > 0 && max_len <= kMaxPieceBytes, "tokenizer file '", path, "': max_token_length is ", max_len,
                ", expected 1..", kMaxPieceBytes, " (not a llama2.c tokenizer.bin?)");

  SpmVocab v;
  v.tokens.reserve(expected_vocab);
  v.scores.reserve(expected_vocab);
  for (int i = 0; i < expected_vocab; ++i) {
    SPECDEC_CHECK(r.pos < data.size(), "tokenizer file '", path, "' holds ", i,
                  " tokens but the model's vocab size is ", expected_vocab);
    SPECDEC_CHECK(r.can(8), "tokenizer file '", path, "' is truncated inside token ", i, " of ", expected_vocab);
    const float score = r.take<float>();
    const int32_t len = r.take<int32_t>();
    SPECDEC_CHECK(len >= 0 && len <= max_len, "tokenizer file '", path, "': token ", i, " has length ", len,
                  ", expected 0..", max_len, " (its max_token_length); the file is corrupt");
    SPECDEC_CHECK(r.can(static_cast<size_t>(len)), "tokenizer file '", path, "' is truncated inside token ", i, " of ",
                  expected_vocab);
    v.tokens.emplace_back(data.data() + r.pos, static_cast<size_t>(len));
    r.pos += static_cast<size_t>(len);
    v.scores.push_back(score);
  }
  if (r.pos < data.size()) {
    const long extra = count_extra_entries(r, max_len);
    SPECDEC_CHECK(extra < 0, "tokenizer file '", path, "' holds ", expected_vocab + extra,
                  " tokens but the model's vocab size is ", expected_vocab);
    SPECDEC_FAIL("tokenizer file '", path, "' has ", data.size() - r.pos, " bytes after the ", expected_vocab,
                 " tokens the model expects, expected none");
  }

  // run.c's conventions. The pieces hold plain spaces (the exporter turned U+2581 into ' ').
  v.token_types.assign(expected_vocab, static_cast<int32_t>(TokenType::kNormal));
  v.token_types[0] = static_cast<int32_t>(TokenType::kUnknown);
  v.token_types[1] = v.token_types[2] = static_cast<int32_t>(TokenType::kControl);
  for (int i = 3; i < expected_vocab; ++i)
    if (detail::parse_byte_piece(v.tokens[i]) >= 0) v.token_types[i] = static_cast<int32_t>(TokenType::kByte);
  v.bos = 1;
  v.eos = 2;
  v.unk = 0;
  v.add_bos = true;
  v.add_space_prefix = true;
  v.escape_whitespace = false;
  // run.c's generate() stops when the model emits BOS (the stories models separate stories with it).
  return std::make_unique<detail::SpmTokenizer>(v, std::vector<TokenId>{1}, path);
}

}  // namespace specdec
