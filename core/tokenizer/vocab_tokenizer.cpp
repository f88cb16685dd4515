// VocabTokenizer: the vocabulary tables, special-token split, merge ranks and decoding shared by the
// SentencePiece-style and byte-level BPE tokenizers (see vocab_tokenizer.h).
#include "core/tokenizer/vocab_tokenizer.h"

#include <algorithm>
#include <array>
#include <limits>

#include "core/error.h"

namespace specdec::detail {

namespace {

// Texts that end generation whatever their ids (llama.cpp's list; it also forces them to control type).
constexpr std::array<std::string_view, 7> kEndOfGenerationTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>"};

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_special_type(TokenType t) {
  return t == TokenType::kControl || t == TokenType::kUserDefined || t == TokenType::kUnknown;
}

}  // namespace

int parse_byte_piece(std::string_view piece) {
  if (piece.size() != 6 || piece.substr(0, 3) != "<0x" || piece[5] != '>') return -1;
  const int hi = hex_digit(piece[3]), lo = hex_digit(piece[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

void VocabTokenizer::init(VocabSpec spec) {
  const size_t V = spec.tokens.size();
  SPECDEC_CHECK(V > 0 && V < static_cast<size_t>(std::numeric_limits<int32_t>::max()), spec.what, ": vocabulary has ",
                V, " tokens, expected 1..2^31-1");
  SPECDEC_CHECK(spec.token_types.empty() || spec.token_types.size() == V, spec.what, ": ", spec.token_types.size(),
                " token types for ", V, " tokens, expected one per token");
  auto check_id = [&](TokenId id, const char* name) {
    SPECDEC_CHECK(id >= -1 && id < static_cast<TokenId>(V), spec.what, ": ", name, " id ", id,
                  " is outside the vocabulary of ", V, " tokens");
  };
  check_id(spec.bos, "BOS");
  check_id(spec.eos, "EOS");
  check_id(spec.unk, "UNK");
  check_id(spec.eot, "EOT");
  for (TokenId id : spec.extra_eog) check_id(id, "end-of-generation");

  pieces_ = std::move(spec.tokens);
  types_.assign(V, TokenType::kNormal);
  for (size_t i = 0; i < V; ++i) {
    if (!spec.token_types.empty()) {
      const int32_t t = spec.token_types[i];
      SPECDEC_CHECK(t >= 0 && t <= 6, spec.what, ": token ", i, " has type ", t, ", expected 0..6");
      types_[i] = t == 0 ? TokenType::kNormal : static_cast<TokenType>(t);
    } else if (spec.bytes_by_form && parse_byte_piece(pieces_[i]) >= 0) {
      types_[i] = TokenType::kByte;
    }
  }
  bos_ = spec.bos;
  eos_ = spec.eos;
  unk_ = spec.unk;
  add_bos_ = spec.add_bos;
  strip_space_after_bos_ = spec.strip_space_after_bos;

  piece_to_id_.clear();
  piece_to_id_.reserve(V);
  eog_.assign(V, 0);
  for (size_t i = 0; i < V; ++i) {
    const std::string& p = pieces_[i];
    if (p.empty()) continue;                           // can never be matched
    piece_to_id_.emplace(p, static_cast<TokenId>(i));  // the first of duplicate pieces wins
    if (std::find(kEndOfGenerationTexts.begin(), kEndOfGenerationTexts.end(), p) != kEndOfGenerationTexts.end()) {
      eog_[i] = 1;
      types_[i] = TokenType::kControl;  // as llama.cpp: these are control tokens whatever the file says
    }
  }
  for (TokenId id : {spec.eos, spec.eot})
    if (id >= 0) eog_[id] = 1;
  for (TokenId id : spec.extra_eog)
    if (id >= 0) eog_[id] = 1;

  specials_.clear();
  for (size_t i = 0; i < V; ++i)
    if (is_special_type(types_[i]) && !pieces_[i].empty()) specials_.push_back(static_cast<TokenId>(i));
  std::stable_sort(specials_.begin(), specials_.end(),
                   [&](TokenId a, TokenId b) { return pieces_[a].size() > pieces_[b].size(); });
}

void VocabTokenizer::init_merges(const std::vector<std::string>& merges) {
  merges_.clear();
  merges_.reserve(merges.size());
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& m = merges[rank];
    // Split at the first space after the first character (as llama.cpp), so a piece may start with one.
    const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
    if (sp == std::string::npos) continue;
    const std::string_view a(m.data(), sp), b(m.data() + sp + 1, m.size() - sp - 1);
    const TokenId ia = find_id(a), ib = find_id(b);
    joined.assign(a);
    joined.append(b);
    const TokenId merged = find_id(joined);
    if (ia < 0 || ib < 0 || merged < 0) continue;
    merges_.emplace(merge_key(ia, ib), MergeInfo{static_cast<int32_t>(rank), merged});  // first rank wins
  }
}

void VocabTokenizer::init_decode_cache() {
  decoded_.assign(pieces_.size(), std::string());
  for (size_t i = 0; i < pieces_.size(); ++i) {
    switch (types_[i]) {
      case TokenType::kUndefined:
      case TokenType::kNormal:
        decoded_[i] = decode_normal(pieces_[i]);
        break;
      case TokenType::kByte: {
        const int b = parse_byte_piece(pieces_[i]);
        decoded_[i] = b >= 0 ? std::string(1, static_cast<char>(b)) : decode_normal(pieces_[i]);
        break;
      }
      case TokenType::kUserDefined:
        decoded_[i] = pieces_[i];
        break;
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUnused:
        break;  // empty unless render_special
    }
  }
}

std::optional<TokenId> VocabTokenizer::find(std::string_view piece) const {
  const TokenId id = find_id(piece);
  if (id < 0) return std::nullopt;
  return id;
}

const std::string& VocabTokenizer::piece(TokenId tok) const {
  SPECDEC_CHECK(tok >= 0 && tok < vocab_size(), "token id ", tok, " is outside the vocabulary of ", vocab_size(),
                " tokens");
  return pieces_[tok];
}

std::string VocabTokenizer::decode_token(TokenId prev, TokenId tok) const {
  SPECDEC_CHECK(tok >= 0 && tok < vocab_size(), "decode: token id ", tok, " is outside the vocabulary of ",
                vocab_size(), " tokens");
  const TokenType t = types_[tok];
  if (render_special_ && (t == TokenType::kControl || t == TokenType::kUnknown || t == TokenType::kUnused))
    return pieces_[tok];
  const std::string& s = decoded_[tok];
  // llama2.c's run.c: the piece after BOS loses its leading space (the space prefix encode() added).
  if (strip_space_after_bos_ && prev >= 0 && prev == bos_ && t == TokenType::kNormal && !s.empty() && s[0] == ' ')
    return s.substr(1);
  return s;
}

void VocabTokenizer::split_special(std::string_view text, bool parse_special, std::vector<Fragment>& frags) const {
  frags.assign(1, Fragment{-1, 0, text.size()});
  std::vector<Fragment> next;
  // Longest special first, each over the text fragments left by the ones before (llama.cpp's order).
  for (TokenId id : specials_) {
    if (!parse_special && types_[id] != TokenType::kUserDefined) continue;
    const std::string& p = pieces_[id];
    bool found = false;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      const std::string_view region = text.substr(f.begin, f.len);
      size_t at = 0;
      for (size_t m; (m = region.find(p, at)) != std::string_view::npos; at = m + p.size()) {
        if (m > at) next.push_back({-1, f.begin + at, m - at});
        next.push_back({id, f.begin + m, p.size()});
        found = true;
      }
      if (at < f.len) next.push_back({-1, f.begin + at, f.len - at});
    }
    if (found) frags.swap(next);
  }
}

std::vector<TokenId> VocabTokenizer::encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos) {
    SPECDEC_CHECK(bos_ >= 0, "encode: add_bos requested but the vocabulary has no BOS token");
    out.push_back(bos_);
  }
  if (text.empty()) return out;
  std::vector<Fragment> frags;
  split_special(text, parse_special, frags);
  bool after_special = true;  // the start of the text counts as "after a special token"
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
    } else {
      encode_fragment(text.substr(f.begin, f.len), after_special, out);
      after_special = false;
    }
  }
  return out;
}

}  // namespace specdec::detail
