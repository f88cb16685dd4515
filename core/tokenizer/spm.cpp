// SentencePiece-style BPE (GGUF "llama", Llama-2 tokenizer.json, llama2.c tokenizer.bin): the text is
// split into UTF-8 code points, each looked up as a piece (code points without one fall back to <0xNN>
// byte tokens), then adjacent pieces merge by score (or by merge rank) until none can. This is run.c's
// encode() and llama.cpp's llm_tokenizer_spm; llama2c.cpp only reads the file and sets conventions.
#include <algorithm>
#include <array>

#include "core/error.h"
#include "core/tokenizer/bpe_merge.h"
#include "core/tokenizer/spm_tokenizer.h"

namespace specdec {

namespace detail {

namespace {
constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space
}  // namespace

SpmTokenizer::SpmTokenizer(const SpmVocab& v, std::vector<TokenId> extra_eog, std::string_view what) {
  const size_t V = v.tokens.size();
  SPECDEC_CHECK(v.scores.empty() || v.scores.size() == V, what, ": ", v.scores.size(), " scores for ", V,
                " tokens, expected one per token");
  VocabSpec spec;
  spec.tokens = v.tokens;
  spec.token_types = v.token_types;
  spec.bytes_by_form = true;
  spec.bos = v.bos;
  spec.eos = v.eos;
  spec.unk = v.unk;
  spec.eot = v.eot;
  spec.extra_eog = std::move(extra_eog);
  spec.add_bos = v.add_bos;
  spec.strip_space_after_bos = v.add_space_prefix;
  spec.what = what;
  init(std::move(spec));

  scores_ = v.scores;
  if (scores_.empty()) scores_.assign(V, 0.0f);
  escape_whitespace_ = v.escape_whitespace;
  add_space_prefix_ = v.add_space_prefix;
  by_rank_ = !v.merges.empty();
  if (by_rank_) init_merges(v.merges);

  // Words (a space run and what follows it up to the next space after a non-space) merge alone when no
  // piece holds a non-space followed by a space: then no merged symbol can cross a word start, and the
  // result equals merging the whole text, with small heaps.
  const std::string_view space = escape_whitespace_ ? kSpace : std::string_view(" ");
  split_words_ = true;
  for (const std::string& p : pieces_) {
    max_piece_bytes_ = std::max<size_t>(max_piece_bytes_, p.size());
    const std::string_view pv(p);
    for (size_t at = pv.find(space, 1); split_words_ && at != std::string_view::npos; at = pv.find(space, at + 1))
      if (at < space.size() || pv.compare(at - space.size(), space.size(), space) != 0) split_words_ = false;  // "x▁"
  }
  byte_ids_.fill(-1);
  for (size_t i = 0; i < V; ++i) {
    if (type(static_cast<TokenId>(i)) != TokenType::kByte) continue;
    const int b = parse_byte_piece(pieces_[i]);
    if (b >= 0 && byte_ids_[b] < 0) byte_ids_[b] = static_cast<TokenId>(i);
  }
  init_decode_cache();
}

std::string SpmTokenizer::decode_normal(const std::string& piece) const {
  if (!escape_whitespace_) return piece;
  std::string out;
  out.reserve(piece.size());
  for (size_t i = 0; i < piece.size();) {
    if (piece.compare(i, kSpace.size(), kSpace) == 0) {
      out += ' ';
      i += kSpace.size();
    } else {
      out += piece[i++];
    }
  }
  return out;
}

void SpmTokenizer::encode_fragment(std::string_view text, bool after_special, std::vector<TokenId>& out) const {
  // The space prefix (run.c's dummy prefix) and the ' ' -> U+2581 escape.
  std::string s;
  s.reserve(text.size() + text.size() / 2 + 3);
  if (add_space_prefix_ && after_special) s += ' ';
  s += text;
  if (escape_whitespace_) {
    std::string escaped;
    escaped.reserve(s.size() + s.size() / 2);
    for (char c : s) {
      if (c == ' ')
        escaped += kSpace;
      else
        escaped += c;
    }
    s.swap(escaped);
  }

  // Merge word by word when no piece can span a word start (see split_words_), else the whole text.
  const std::string_view sv(s), space = escape_whitespace_ ? kSpace : std::string_view(" ");
  std::vector<MergeSymbol> symbols;
  std::vector<MergeCandidate> heap;
  for (size_t chunk = 0; chunk < sv.size();) {
    size_t end = sv.size();
    for (size_t p = chunk + 1; split_words_ && (p = sv.find(space, p)) != std::string_view::npos; p += space.size()) {
      const bool after_space = p >= space.size() && sv.compare(p - space.size(), space.size(), space) == 0;
      if (!after_space) {  // the next word starts here
        end = p;
        break;
      }
    }
    encode_chunk(sv, chunk, end, symbols, heap, out);
    chunk = end;
  }
}

void SpmTokenizer::encode_chunk(std::string_view s, size_t begin, size_t end, std::vector<MergeSymbol>& symbols,
                                std::vector<MergeCandidate>& heap, std::vector<TokenId>& out) const {
  // One symbol per code point as run.c groups them: a byte and up to three continuation bytes after it.
  symbols.clear();
  for (size_t i = begin; i < end;) {
    size_t j = i + 1;
    while (j < end && j - i < 4 && (static_cast<unsigned char>(s[j]) & 0xC0) == 0x80) ++j;
    MergeSymbol sym;
    sym.begin = static_cast<uint32_t>(i);
    sym.len = static_cast<uint32_t>(j - i);
    sym.id = find_id(s.substr(i, j - i));
    sym.prev = static_cast<int32_t>(symbols.size()) - 1;
    sym.next = static_cast<int32_t>(symbols.size()) + 1;
    symbols.push_back(sym);
    i = j;
  }
  if (symbols.empty()) return;
  symbols.back().next = -1;

  merge_symbols(symbols, heap, [&](const MergeSymbol& l, const MergeSymbol& r, float* priority, TokenId* merged) {
    // A code point without a piece stays alone and becomes bytes (run.c: its byte tokens never merge).
    if (l.id < 0 || r.id < 0) return false;
    if (by_rank_) return find_merge(l.id, r.id, priority, merged);
    if (l.len + r.len > max_piece_bytes_) return false;  // no piece that long: skip the lookup
    const TokenId id = find_id(s.substr(l.begin, l.len + r.len));
    if (id < 0) return false;
    *priority = scores_[id];
    *merged = id;
    return true;
  });

  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    const MergeSymbol& sym = symbols[i];
    if (sym.id >= 0) {
      out.push_back(sym.id);
      continue;
    }
    bool all_bytes = true;
    for (uint32_t k = 0; k < sym.len; ++k) all_bytes &= byte_ids_[static_cast<unsigned char>(s[sym.begin + k])] >= 0;
    if (!all_bytes) {
      if (unk_ >= 0) out.push_back(unk_);  // a vocabulary without byte fallback: one <unk> per code point
      continue;
    }
    for (uint32_t k = 0; k < sym.len; ++k) out.push_back(byte_ids_[static_cast<unsigned char>(s[sym.begin + k])]);
  }
}

}  // namespace detail

std::unique_ptr<Tokenizer> make_spm_tokenizer(const SpmVocab& vocab) {
  return std::make_unique<detail::SpmTokenizer>(vocab, std::vector<TokenId>{}, "SpmVocab");
}

}  // namespace specdec
