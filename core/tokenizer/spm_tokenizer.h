// SpmTokenizer (internal): SentencePiece-style BPE over a VocabTokenizer; built by make_spm_tokenizer,
// load_llama2c_tokenizer (llama2.c's conventions) and load_hf_tokenizer_json (Llama-2 style files).
#pragma once

#include <array>
#include <string_view>
#include <vector>

#include "core/tokenizer/bpe_merge.h"
#include "core/tokenizer/vocab_tokenizer.h"

namespace specdec::detail {

class SpmTokenizer final : public VocabTokenizer {
 public:
  // extra_eog: ids that end generation besides EOS / EOT; what: names the source in error messages.
  SpmTokenizer(const SpmVocab& vocab, std::vector<TokenId> extra_eog, std::string_view what);

 private:
  void encode_fragment(std::string_view text, bool after_special, std::vector<TokenId>& out) const override;
  std::string decode_normal(const std::string& piece) const override;
  // Encodes s[begin, end): code points, merges, byte fallback. symbols / heap are scratch space.
  void encode_chunk(std::string_view s, size_t begin, size_t end, std::vector<MergeSymbol>& symbols,
                    std::vector<MergeCandidate>& heap, std::vector<TokenId>& out) const;

  std::vector<float> scores_;
  std::array<TokenId, 256> byte_ids_{};  // <0xNN> token of each byte, -1 when absent
  size_t max_piece_bytes_ = 0;
  bool split_words_ = false;
  bool escape_whitespace_ = true;
  bool add_space_prefix_ = true;
  bool by_rank_ = false;
};

}  // namespace specdec::detail
