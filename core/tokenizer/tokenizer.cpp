// The non-virtual parts of specdec::Tokenizer: decode() over decode_token(), and chat-template
// selection (detected from the vocabulary unless a caller chose one).
#include "core/tokenizer/tokenizer.h"

namespace specdec {

std::string Tokenizer::decode(std::span<const TokenId> tokens) const {
  std::string out;
  TokenId prev = bos();
  for (TokenId t : tokens) {
    out += decode_token(prev, t);
    prev = t;
  }
  return out;
}

ChatTemplateKind Tokenizer::chat_template() const {
  if (chat_template_) return *chat_template_;
  return find("<|im_start|>") ? ChatTemplateKind::kChatMLSmolLM : ChatTemplateKind::kPlain;
}

std::string Tokenizer::apply_chat_template(std::span<const ChatMessage> messages, bool add_generation_prompt) const {
  return render_chat_template(chat_template(), messages, add_generation_prompt);
}

std::vector<TokenId> Tokenizer::encode_user_turn(std::string_view text, bool chat) const {
  if (!chat) return encode(text, add_bos_default(), /*parse_special=*/false);
  const ChatMessage msg{"user", std::string(text)};
  return encode(apply_chat_template({&msg, 1}, /*add_generation_prompt=*/true), add_bos_default(),
                /*parse_special=*/true);
}

}  // namespace specdec
