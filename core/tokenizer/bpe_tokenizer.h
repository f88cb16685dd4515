// BpeTokenizer (internal): byte-level BPE over a VocabTokenizer; built by make_bpe_tokenizer and by
// load_hf_tokenizer_json for ByteLevel files.
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "core/tokenizer/pretokenize.h"
#include "core/tokenizer/vocab_tokenizer.h"

namespace specdec::detail {

class BpeTokenizer final : public VocabTokenizer {
 public:
  BpeTokenizer(const BpeVocab& vocab, std::string_view what);  // what: names the source in errors

 private:
  void encode_fragment(std::string_view text, bool after_special, std::vector<TokenId>& out) const override;
  std::string decode_normal(const std::string& piece) const override;

  PreTokenizer pre_ = PreTokenizer::kGpt2;
  bool ignore_merges_ = false;
  std::array<TokenId, 256> byte_ids_{};  // the one-character token of each byte, -1 when absent
};

}  // namespace specdec::detail
