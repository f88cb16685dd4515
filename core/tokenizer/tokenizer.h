// specdec::Tokenizer: text <-> token ids for Llama-family models, and the factories that build one:
// llama2.c tokenizer.bin, SentencePiece-style BPE and byte-level BPE from plain arrays (as GGUF's
// tokenizer.ggml.* metadata holds them), and Hugging Face tokenizer.json. Encoding follows llama.cpp's
// llama_tokenize (and llama2.c's run.c for tokenizer.bin); decoding follows its token_to_piece.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/types.h"

namespace specdec {

struct ChatMessage {
  std::string role;  // "system", "user", "assistant", ...
  std::string content;
};

// The chat templates specdec renders itself (no Jinja).
enum class ChatTemplateKind {
  kPlain,         // the contents concatenated, nothing else (models without a chat format)
  kChatML,        // <|im_start|>{role}\n{content}<|im_end|>\n per message; generation prompt <|im_start|>assistant\n
  kChatMLSmolLM,  // kChatML plus SmolLM2-Instruct's default system message when the first message is not one
};

// Renders messages exactly as the template kind says (kChatMLSmolLM = what SmolLM2-Instruct's GGUF
// tokenizer.chat_template renders). add_generation_prompt appends the assistant header (ChatML kinds).
std::string render_chat_template(ChatTemplateKind kind, std::span<const ChatMessage> messages,
                                 bool add_generation_prompt);

// GGUF's llama_token_type values (tokenizer.ggml.token_type).
enum class TokenType : int32_t {
  kUndefined = 0,  // treated as normal
  kNormal = 1,
  kUnknown = 2,      // <unk>: decodes to empty text
  kControl = 3,      // <s>, <|im_start|>, ...: matched in text only with parse_special; decodes to empty text
  kUserDefined = 4,  // always matched in text, decodes to its text as is
  kUnused = 5,       // never produced by encode; decodes to empty text
  kByte = 6,         // <0xNN> byte-fallback token (SentencePiece)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  virtual int vocab_size() const = 0;
  virtual TokenId bos() const = 0;  // -1 when the vocabulary has none
  virtual TokenId eos() const = 0;  // -1 when the vocabulary has none
  // Whether the model expects BOS in front of a prompt (llama2.c and GGUF "llama": yes; SmolLM2: no).
  virtual bool add_bos_default() const = 0;

  // Text (UTF-8, any bytes) -> ids. add_bos prepends bos() (throws if there is none). parse_special maps
  // control-token strings in the text (e.g. "<|im_start|>") to their ids, as llama.cpp's
  // tokenize(special=true); user-defined tokens are matched either way. Empty text gives [] or [BOS].
  virtual std::vector<TokenId> encode(std::string_view text, bool add_bos, bool parse_special = false) const = 0;

  // The bytes of `tok` as printed when streaming, given the token before it (prev = -1 when none).
  // SentencePiece vocabularies with a space prefix drop the leading space of a normal piece after BOS
  // (llama2.c's rule); <0xNN> tokens give the raw byte; byte-level BPE inverts GPT-2's byte map;
  // control / unknown / unused tokens give "" (their text when set_render_special(true)).
  // Throws when tok is outside [0, vocab_size()).
  virtual std::string decode_token(TokenId prev, TokenId tok) const = 0;
  // Concatenated decode_token() with prev starting at bos(): decode([BOS, " Once"...]) == "Once...",
  // and decode(encode(text, add_bos)) == text for text without special or user-defined token strings.
  // encode() and decode() are const and safe to call from several threads at once.
  std::string decode(std::span<const TokenId> tokens) const;

  // EOS, and end-of-turn tokens (<|im_end|>, <|endoftext|>, <|eot_id|>, ...) stop generation.
  virtual bool is_end_of_generation(TokenId tok) const = 0;

  virtual std::optional<TokenId> find(std::string_view piece) const = 0;  // exact vocabulary lookup
  virtual const std::string& piece(TokenId tok) const = 0;  // the raw vocabulary string; throws if out of range

  // Chat prompt as text; encode it with parse_special = true. The kind is detected from the vocabulary
  // (<|im_start|> present: kChatMLSmolLM, else kPlain) unless set_chat_template() overrode it.
  std::string apply_chat_template(std::span<const ChatMessage> messages, bool add_generation_prompt) const;
  ChatTemplateKind chat_template() const;
  // One user turn as a run prompts with it: rendered with the chat template (with the generation prompt)
  // when `chat`, then encoded with add_bos_default() and special tokens parsed only then.
  std::vector<TokenId> encode_user_turn(std::string_view text, bool chat) const;
  void set_chat_template(ChatTemplateKind kind) { chat_template_ = kind; }

  // Whether control / unknown / unused tokens decode to their text (default false: to empty text).
  void set_render_special(bool on) { render_special_ = on; }
  bool render_special() const { return render_special_; }

 protected:
  std::optional<ChatTemplateKind> chat_template_;
  bool render_special_ = false;
};

// ---- factories ---------------------------------------------------------------------------------

// llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 len, len bytes.
// The file does not store its size: it must hold exactly expected_vocab (the model's V) entries.
// BOS = 1, EOS = 2, add_bos_default = true; encoding and decoding follow run.c; BOS also ends
// generation (run.c stops there). Throws, naming the file, when it is missing, truncated, holds a
// negative or absurd length, or has a different number of tokens than expected_vocab.
std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::string& path, int expected_vocab);

// SentencePiece-style BPE (GGUF tokenizer.ggml.model = "llama"): spaces become U+2581, pieces merge by
// score (highest first, leftmost on ties), text without a token falls back to <0xNN> byte tokens.
struct SpmVocab {
  std::vector<std::string> tokens;    // V pieces
  std::vector<float> scores;          // V, or empty (all 0: then give merges)
  std::vector<int32_t> token_types;   // V TokenType values, or empty (<0xNN> pieces are bytes, the rest normal)
  std::vector<std::string> merges;    // optional "a b" pairs: when given, merge by rank (tokenizer.json) not by score
  TokenId bos = 1, eos = 2, unk = 0;  // llama.cpp's "llama" defaults; -1 = none
  TokenId eot = -1;                   // an extra end-of-turn id (tokenizer.ggml.eot_token_id), -1 = none
  bool add_bos = true;
  bool add_space_prefix = true;   // a space in front of the text and after each special token
  bool escape_whitespace = true;  // ' ' <-> U+2581 in pieces; false for llama2.c (its pieces hold ' ')
};
std::unique_ptr<Tokenizer> make_spm_tokenizer(const SpmVocab& vocab);

// Byte-level BPE (GGUF tokenizer.ggml.model = "gpt2"): pre-tokenizer split, GPT-2 byte map, then
// merges in rank order within each pre-token.
struct BpeVocab {
  std::vector<std::string> tokens;   // V pieces (byte-mapped text, e.g. "Ġthe")
  std::vector<int32_t> token_types;  // V TokenType values, or empty (all normal)
  std::vector<std::string> merges;   // "a b" pairs; rank = index
  TokenId bos = -1, eos = -1;        // -1 = none
  TokenId eot = -1;                  // an extra end-of-turn id, -1 = none
  bool add_bos = false;
  // tokenizer.ggml.pre: "smollm", "gpt2" / "gpt-2", "llama-bpe" / "llama3" / "llama-v3", "qwen2".
  std::string pre = "gpt2";
  bool ignore_merges = false;  // a pre-token that is itself a token is kept whole (always on for llama3)
};
std::unique_ptr<Tokenizer> make_bpe_tokenizer(const BpeVocab& vocab);

// Hugging Face tokenizer.json of a BPE model: byte-level (ByteLevel pre-tokenizer) or SentencePiece-style
// (Metaspace pre-tokenizer or a Replace " " -> "▁" normalizer, with byte_fallback). BOS / EOS / add_bos
// come from tokenizer_config.json in the same folder when present, else from the added tokens.
// Throws, naming the file, on a missing file, bad JSON, or an unsupported model / pre-tokenizer.
std::unique_ptr<Tokenizer> load_hf_tokenizer_json(const std::string& path);

}  // namespace specdec
