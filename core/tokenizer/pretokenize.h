// Pre-tokenizers of byte-level BPE: the regex splits of GPT-2, SmolLM (digits first, then GPT-2) and
// Llama 3 / Qwen2, written by hand over Unicode classes (std::regex has no \p{L}). They reproduce
// llama.cpp's unicode_regex_split for the same GGUF tokenizer.ggml.pre names.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace specdec {

enum class PreTokenizer {
  kGpt2,    // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
  kSmolLM,  // \p{N} (every digit alone), then kGpt2 on the pieces between
  kLlama3,  // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
            //   |\s*[\r\n]+|\s+(?!\S)|\s+
  kQwen2,   // kLlama3 with \p{N} (one digit) instead of \p{N}{1,3}
};

// GGUF tokenizer.ggml.pre -> kind: "gpt2"/"gpt-2", "smollm", "llama-bpe"/"llama3"/"llama-v3", "qwen2".
std::optional<PreTokenizer> parse_pre_tokenizer(std::string_view name);

// Splits text into pre-tokens: byte ranges [begin, end) that tile the text in order. Malformed UTF-8
// bytes are single "other" characters, so any input splits and round-trips.
void pre_tokenize(PreTokenizer kind, std::string_view text, std::vector<std::pair<uint32_t, uint32_t>>& spans);
std::vector<std::string> pre_tokenize(PreTokenizer kind, std::string_view text);  // the pieces, for tests

}  // namespace specdec
