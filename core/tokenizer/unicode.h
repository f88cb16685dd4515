// UTF-8 and Unicode helpers for the tokenizers: code point decoding that never fails (a malformed byte
// is a code point of its own, so every input round-trips), the letter / number / whitespace classes the
// pre-tokenizer patterns need (\p{L}, \p{N}, \s), and GPT-2's byte <-> unicode map of byte-level BPE.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace specdec::unicode {

// Returned by decode_utf8 for a byte that does not start a well-formed sequence (classified as "other").
inline constexpr uint32_t kInvalid = 0xFFFFFFFFu;

// Decodes the code point starting at text[pos] (pos < text.size()); *len receives its byte length
// (1..4). A malformed, overlong, surrogate or truncated sequence yields kInvalid with *len = 1.
uint32_t decode_utf8(std::string_view text, size_t pos, size_t* len);

// Appends the UTF-8 encoding of cp (cp <= 0x10FFFF) to out.
void append_utf8(std::string& out, uint32_t cp);

// Code point classes of the pre-tokenizer patterns. Exactly one of letter / number / whitespace / other.
enum class CpClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kWhitespace = 3 };

// \p{L} = general categories Lu Ll Lt Lm Lo; \p{N} = Nd Nl No; \s = the White_Space property
// (what llama.cpp's unicode tables use). kInvalid is kOther.
CpClass classify(uint32_t cp);

// GPT-2's reversible byte -> code point map: printable Latin-1 bytes map to themselves, the other 68
// bytes to U+0100.. in byte order (so ' ' -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
uint32_t byte_to_unicode(uint8_t b);
// The inverse: the byte of a mapped code point, or -1 when cp is none of the 256.
int unicode_to_byte(uint32_t cp);

namespace detail {
struct Range {
  uint32_t first, last;  // closed
};
std::span<const Range> letter_ranges();  // unicode_data.cpp, ascending
std::span<const Range> number_ranges();
}  // namespace detail

}  // namespace specdec::unicode
