// VocabTokenizer (internal): what the SentencePiece-style and byte-level BPE tokenizers share: the
// piece table and its hash index, token types, the special-token split of llama.cpp's
// tokenizer_st_partition, the merge-rank table, decoding, and end-of-generation ids. A subclass
// encodes one fragment of plain text and decodes a normal piece.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/tokenizer/tokenizer.h"

namespace specdec::detail {

// FNV-1a, inlined: pieces are short, and std::hash's out-of-line murmur dominated encode() profiles.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const noexcept {
    uint64_t h = 0xcbf29ce484222325ull;
    for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
    return static_cast<size_t>(h ^ (h >> 32));
  }
};

// What a subclass hands to VocabTokenizer::init(). Ids are -1 when absent.
struct VocabSpec {
  std::vector<std::string> tokens;
  std::vector<int32_t> token_types;  // V, or empty: <0xNN> pieces are bytes when bytes_by_form, the rest normal
  bool bytes_by_form = false;
  TokenId bos = -1, eos = -1, unk = -1, eot = -1;
  std::vector<TokenId> extra_eog;  // more ids that end generation (llama2.c: BOS)
  bool add_bos = false;
  bool strip_space_after_bos = false;
  std::string_view what;  // names the source in error messages ("SpmVocab", a file path)
};

class VocabTokenizer : public Tokenizer {
 public:
  int vocab_size() const override { return static_cast<int>(pieces_.size()); }
  TokenId bos() const override { return bos_; }
  TokenId eos() const override { return eos_; }
  bool add_bos_default() const override { return add_bos_; }
  std::vector<TokenId> encode(std::string_view text, bool add_bos, bool parse_special = false) const override;
  std::string decode_token(TokenId prev, TokenId tok) const override;
  bool is_end_of_generation(TokenId tok) const override { return tok >= 0 && tok < vocab_size() && eog_[tok] != 0; }
  std::optional<TokenId> find(std::string_view piece) const override;
  const std::string& piece(TokenId tok) const override;

 protected:
  // Validates and indexes the vocabulary; call first from the subclass constructor.
  void init(VocabSpec spec);
  // Builds the (left id, right id) -> (rank, merged id) table from "a b" merges; pairs naming pieces
  // that are not in the vocabulary, or whose concatenation is not, are skipped (they can never apply).
  void init_merges(const std::vector<std::string>& merges);
  // Fills the decode cache; call last, once decode_normal() works.
  void init_decode_cache();

  // Encodes one fragment of plain text (no special tokens inside), appending ids. after_special: the
  // fragment starts the text or follows a special token (where SentencePiece adds its space prefix).
  virtual void encode_fragment(std::string_view text, bool after_special, std::vector<TokenId>& out) const = 0;
  // The bytes a normal piece stands for.
  virtual std::string decode_normal(const std::string& piece) const = 0;

  bool find_merge(TokenId left, TokenId right, float* priority, TokenId* merged) const {
    auto it = merges_.find(merge_key(left, right));
    if (it == merges_.end()) return false;
    *priority = -static_cast<float>(it->second.rank);  // lower rank first; exact below 2^24 merges
    *merged = it->second.merged;
    return true;
  }
  TokenId find_id(std::string_view piece) const {
    auto it = piece_to_id_.find(piece);
    return it == piece_to_id_.end() ? -1 : it->second;
  }
  TokenType type(TokenId tok) const { return types_[tok]; }
  bool has_merges() const { return !merges_.empty(); }

  std::vector<std::string> pieces_;
  std::vector<TokenType> types_;
  TokenId bos_ = -1, eos_ = -1, unk_ = -1;

 private:
  struct MergeInfo {
    int32_t rank;
    TokenId merged;
  };
  static uint64_t merge_key(TokenId l, TokenId r) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(l)) << 32) | static_cast<uint32_t>(r);
  }
  struct Fragment {
    TokenId token;  // >= 0: a special token; -1: text [begin, begin + len)
    size_t begin, len;
  };
  void split_special(std::string_view text, bool parse_special, std::vector<Fragment>& frags) const;

  std::unordered_map<std::string, TokenId, StringHash, std::equal_to<>> piece_to_id_;
  std::unordered_map<uint64_t, MergeInfo> merges_;
  std::vector<TokenId> specials_;  // control / user-defined / unknown, longest first
  std::vector<std::string> decoded_;
  std::vector<uint8_t> eog_;
  bool add_bos_ = false;
  bool strip_space_after_bos_ = false;
};

// "<0xNN>" (two hex digits, either case) -> NN, else -1.
int parse_byte_piece(std::string_view piece);

}  // namespace specdec::detail
