// The hand-written regex splits of pretokenize.h. Each splitter walks the code points of one segment
// and tries the alternatives of its pattern in order, as the regex engine would; the branch structure
// follows llama.cpp's unicode_regex_split_custom_gpt2 / _llama3, whose results these must equal.
#include "core/tokenizer/pretokenize.h"

#include "core/tokenizer/unicode.h"

namespace specdec {

namespace {

using unicode::CpClass;

struct Cp {
  uint32_t cp;
  uint32_t offset;  // byte offset in the text
  CpClass cls;
};

// Marks positions outside the current segment: the patterns see the segment end as the text end.
constexpr uint32_t kOutside = 0xFFFFFFFEu;

class Splitter {
 public:
  Splitter(const std::vector<Cp>& cps, size_t begin, size_t end, std::vector<std::pair<size_t, size_t>>& out)
      : cps_(cps), begin_(begin), end_(end), out_(out), start_(begin) {}

  void gpt2() {
    size_t pos = begin_;
    while (pos < end_) {
      const uint32_t c = cp(pos);
      if (const size_t n = contraction(pos, false)) {
        emit(pos += n);
        continue;
      }
      // ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+': an optional single space, then a run of one class.
      const size_t body = pos + (c == ' ');
      const int k = cls(body);
      if (k == kLetter || k == kNumber || k == kOther) {
        pos = body;
        while (cls(pos) == k) ++pos;
        emit(pos);
        continue;
      }
      pos = whitespace(pos, false);
    }
  }

  void llama3(size_t max_digits) {
    size_t pos = begin_;
    while (pos < end_) {
      const uint32_t c = cp(pos);
      const int k = cls(pos);
      if (const size_t n = contraction(pos, true)) {
        emit(pos += n);
        continue;
      }
      // '[^\r\n\p{L}\p{N}]?\p{L}+'
      if (c != '\r' && c != '\n' && k != kNumber && (k == kLetter || cls(pos + 1) == kLetter)) {
        ++pos;  // the optional prefix, or the first letter
        while (cls(pos) == kLetter) ++pos;
        emit(pos);
        continue;
      }
      // '\p{N}{1,max_digits}', repeated
      if (k == kNumber) {
        size_t run = 0;
        while (cls(pos) == kNumber) {
          ++pos;
          if (++run == max_digits) {
            emit(pos);
            run = 0;
          }
        }
        emit(pos);
        continue;
      }
      // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
      const size_t body = pos + (c == ' ');
      if (cls(body) == kOther) {
        pos = body;
        while (cls(pos) == kOther) ++pos;
        while (cp(pos) == '\r' || cp(pos) == '\n') ++pos;
        emit(pos);
        continue;
      }
      pos = whitespace(pos, true);
    }
  }

 private:
  // Class codes; kNone is outside the segment (matches nothing).
  static constexpr int kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3, kNone = 4;

  uint32_t cp(size_t p) const { return p < end_ ? cps_[p].cp : kOutside; }
  int cls(size_t p) const { return p < end_ ? static_cast<int>(cps_[p].cls) : kNone; }

  void emit(size_t end) {
    if (end > start_) out_.emplace_back(start_, end);
    start_ = end;
  }

  // 's 't 're 've 'm 'll 'd at pos (ASCII case-insensitive for Llama 3): the match length, or 0.
  size_t contraction(size_t pos, bool fold_case) const {
    if (cp(pos) != '\'' || pos + 1 >= end_) return 0;
    auto lower = [&](uint32_t x) { return fold_case && x >= 'A' && x <= 'Z' ? x + 32 : x; };
    const uint32_t a = lower(cp(pos + 1));
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (pos + 2 >= end_) return 0;
    const uint32_t b = lower(cp(pos + 2));
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    return 0;
  }

  // The whitespace alternatives at pos: ('\s*[\r\n]+' when newlines,) '\s+(?!\S)', '\s+'. Returns the
  // new position; a code point nothing matched is a pre-token of its own.
  size_t whitespace(size_t pos, bool newlines) {
    size_t n = 0, after_newline = 0;
    while (cls(pos + n) == kSpace) {
      if (newlines && (cp(pos + n) == '\r' || cp(pos + n) == '\n')) after_newline = pos + n + 1;
      ++n;
    }
    if (after_newline > 0) {
      emit(after_newline);
      return after_newline;
    }
    // A run followed by a non-space leaves its last space to prefix the next pre-token.
    if (n > 1 && pos + n < end_) n -= 1;
    const size_t next = pos + (n > 0 ? n : 1);
    emit(next);
    return next;
  }

  const std::vector<Cp>& cps_;
  size_t begin_, end_;
  std::vector<std::pair<size_t, size_t>>& out_;
  size_t start_;
};

}  // namespace

std::optional<PreTokenizer> parse_pre_tokenizer(std::string_view name) {
  if (name == "gpt2" || name == "gpt-2") return PreTokenizer::kGpt2;
  if (name == "smollm") return PreTokenizer::kSmolLM;
  if (name == "llama-bpe" || name == "llama3" || name == "llama-v3") return PreTokenizer::kLlama3;
  if (name == "qwen2") return PreTokenizer::kQwen2;
  return std::nullopt;
}

void pre_tokenize(PreTokenizer kind, std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& spans) {
  spans.clear();
  std::vector<Cp> cps;
  cps.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    size_t len;
    const uint32_t c = unicode::decode_utf8(text, pos, &len);
    cps.push_back({c, static_cast<uint32_t>(pos), unicode::classify(c)});
    pos += len;
  }
  std::vector<std::pair<size_t, size_t>> out;  // code point ranges
  out.reserve(cps.size() / 3 + 1);
  switch (kind) {
    case PreTokenizer::kGpt2:
      Splitter(cps, 0, cps.size(), out).gpt2();
      break;
    case PreTokenizer::kSmolLM: {
      // First \p{N}: every number code point is a segment, and so is each run between them.
      size_t seg = 0;
      for (size_t i = 0; i <= cps.size(); ++i) {
        if (i < cps.size() && cps[i].cls != CpClass::kNumber) continue;
        if (i > seg) Splitter(cps, seg, i, out).gpt2();
        if (i < cps.size()) out.emplace_back(i, i + 1);
        seg = i + 1;
      }
      break;
    }
    case PreTokenizer::kLlama3:
      Splitter(cps, 0, cps.size(), out).llama3(3);
      break;
    case PreTokenizer::kQwen2:
      Splitter(cps, 0, cps.size(), out).llama3(1);
      break;
  }
  spans.reserve(out.size());
  auto byte_at = [&](size_t i) { return i < cps.size() ? cps[i].offset : static_cast<uint32_t>(text.size()); };
  for (const auto& [b, e] : out) spans.emplace_back(byte_at(b), byte_at(e));
}

std::vector<std::string> pre_tokenize(PreTokenizer kind, std::string_view text) {
  std::vector<std::pair<uint32_t, uint32_t>> spans;
  pre_tokenize(kind, text, spans);
  std::vector<std::string> pieces;
  pieces.reserve(spans.size());
  for (const auto& [b, e] : spans) pieces.emplace_back(text.substr(b, e - b));
  return pieces;
}

}  // namespace specdec
