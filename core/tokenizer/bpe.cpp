// Byte-level BPE (GGUF "gpt2", GPT-2 / Llama 3 / SmolLM2 tokenizer.json): special tokens first, then
// the pre-tokenizer split, then within each pre-token its bytes (GPT-2's byte map makes each byte a
// one-character token) merge in rank order. llama.cpp's llm_tokenizer_bpe_session, over ids.
#include <array>

#include "core/error.h"
#include "core/tokenizer/bpe_merge.h"
#include "core/tokenizer/bpe_tokenizer.h"
#include "core/tokenizer/pretokenize.h"
#include "core/tokenizer/unicode.h"

namespace specdec {

namespace detail {

BpeTokenizer::BpeTokenizer(const BpeVocab& v, std::string_view what) {
  const std::optional<PreTokenizer> pre = parse_pre_tokenizer(v.pre);
  SPECDEC_CHECK(pre.has_value(), what, ": pre-tokenizer '", v.pre,
                "' is not supported, expected one of smollm, gpt2, gpt-2, llama-bpe, llama3, llama-v3, qwen2");
  pre_ = *pre;
  ignore_merges_ = v.ignore_merges || pre_ == PreTokenizer::kLlama3;  // as llama.cpp for llama3

  VocabSpec spec;
  spec.tokens = v.tokens;
  spec.token_types = v.token_types;
  spec.bos = v.bos;
  spec.eos = v.eos;
  spec.eot = v.eot;
  spec.add_bos = v.add_bos;
  spec.what = what;
  init(std::move(spec));
  init_merges(v.merges);

  std::string ch;
  for (int b = 0; b < 256; ++b) {
    ch.clear();
    unicode::append_utf8(ch, unicode::byte_to_unicode(static_cast<uint8_t>(b)));
    byte_ids_[b] = find_id(ch);
  }
  init_decode_cache();
}

std::string BpeTokenizer::decode_normal(const std::string& piece) const {
  std::string out;
  out.reserve(piece.size());
  for (size_t pos = 0; pos < piece.size();) {
    size_t len;
    const uint32_t cp = unicode::decode_utf8(piece, pos, &len);
    const int b = cp == unicode::kInvalid ? -1 : unicode::unicode_to_byte(cp);
    if (b >= 0)
      out += static_cast<char>(b);
    else
      out.append(piece, pos, len);  // not a mapped byte: keep the text as it is
    pos += len;
  }
  return out;
}

void BpeTokenizer::encode_fragment(std::string_view text, bool /*after_special*/, std::vector<TokenId>& out) const {
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  pre_tokenize(pre_, text, spans);
  std::vector<MergeSymbol> symbols;
  std::vector<MergeCandidate> heap;
  std::string mapped;
  for (const auto& [begin, end] : spans) {
    const std::string_view word = text.substr(begin, end - begin);
    if (ignore_merges_) {
      mapped.clear();
      for (char c : word) unicode::append_utf8(mapped, unicode::byte_to_unicode(static_cast<uint8_t>(c)));
      if (const TokenId id = find_id(mapped); id >= 0) {
        out.push_back(id);
        continue;
      }
    }
    symbols.resize(word.size());
    for (size_t i = 0; i < word.size(); ++i) {
      symbols[i].begin = static_cast<uint32_t>(i);
      symbols[i].len = 1;
      symbols[i].id = byte_ids_[static_cast<unsigned char>(word[i])];
      symbols[i].prev = static_cast<int32_t>(i) - 1;
      symbols[i].next = i + 1 < word.size() ? static_cast<int32_t>(i) + 1 : -1;
    }
    merge_symbols(symbols, heap, [&](const MergeSymbol& l, const MergeSymbol& r, float* priority, TokenId* merged) {
      return l.id >= 0 && r.id >= 0 && find_merge(l.id, r.id, priority, merged);
    });
    for (int32_t i = 0; i >= 0; i = symbols[i].next) {
      if (symbols[i].id >= 0)
        out.push_back(symbols[i].id);
      else if (unk_ >= 0)
        out.push_back(unk_);  // a byte without a token (an incomplete vocabulary)
    }
  }
}

}  // namespace detail

std::unique_ptr<Tokenizer> make_bpe_tokenizer(const BpeVocab& vocab) {
  return std::make_unique<detail::BpeTokenizer>(vocab, "BpeVocab");
}

}  // namespace specdec
