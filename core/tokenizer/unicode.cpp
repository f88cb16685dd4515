// UTF-8 decoding, code point classes and GPT-2's byte <-> unicode map (see unicode.h).
// classify() has an ASCII table and binary-searches the generated ranges of unicode_data.cpp above it.
#include "core/tokenizer/unicode.h"

#include <algorithm>
#include <array>

namespace specdec::unicode {

uint32_t decode_utf8(std::string_view text, size_t pos, size_t* len) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data()) + pos;
  const size_t avail = text.size() - pos;
  const unsigned c = s[0];
  *len = 1;
  if (c < 0x80) return c;
  size_t n;
  uint32_t cp, min;
  if ((c & 0xE0) == 0xC0) {
    n = 2, cp = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    n = 3, cp = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    n = 4, cp = c & 0x07, min = 0x10000;
  } else {
    return kInvalid;  // a continuation byte or 0xF8..0xFF where a sequence should start
  }
  if (avail < n) return kInvalid;
  for (size_t i = 1; i < n; ++i) {
    if ((s[i] & 0xC0) != 0x80) return kInvalid;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalid;
  *len = n;
  return cp;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

namespace {

bool in_ranges(std::span<const detail::Range> ranges, uint32_t cp) {
  // First range whose last >= cp; cp is inside iff that range starts at or before it.
  auto it =
      std::lower_bound(ranges.begin(), ranges.end(), cp, [](const detail::Range& r, uint32_t v) { return r.last < v; });
  return it != ranges.end() && it->first <= cp;
}

bool is_white_space(uint32_t cp) {
  // Unicode's White_Space property (PropList.txt).
  return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
         (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::array<CpClass, 128> make_ascii_classes() {
  std::array<CpClass, 128> t{};
  for (uint32_t c = 0; c < 128; ++c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
      t[c] = CpClass::kLetter;
    else if (c >= '0' && c <= '9')
      t[c] = CpClass::kNumber;
    else if (is_white_space(c))
      t[c] = CpClass::kWhitespace;
    else
      t[c] = CpClass::kOther;
  }
  return t;
}

struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 324> to_byte{};  // code points 0..323 cover the whole image of the map
  ByteMap() {
    to_byte.fill(-1);
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      to_byte[to_cp[b]] = static_cast<int16_t>(b);
    }
  }
};

const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

}  // namespace

CpClass classify(uint32_t cp) {
  static const std::array<CpClass, 128> ascii = make_ascii_classes();
  if (cp < 128) return ascii[cp];
  if (cp == kInvalid) return CpClass::kOther;
  if (is_white_space(cp)) return CpClass::kWhitespace;
  if (in_ranges(detail::letter_ranges(), cp)) return CpClass::kLetter;
  if (in_ranges(detail::number_ranges(), cp)) return CpClass::kNumber;
  return CpClass::kOther;
}

uint32_t byte_to_unicode(uint8_t b) { return byte_map().to_cp[b]; }

int unicode_to_byte(uint32_t cp) {
  const auto& m = byte_map();
  return cp < m.to_byte.size() ? m.to_byte[cp] : -1;
}

}  // namespace specdec::unicode
