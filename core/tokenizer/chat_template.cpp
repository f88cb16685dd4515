// Chat templates rendered in C++ (no Jinja): plain concatenation, ChatML, and SmolLM2-Instruct's ChatML
// with its default system message. kChatMLSmolLM reproduces SmolLM2's tokenizer.chat_template exactly.
#include "core/tokenizer/tokenizer.h"

namespace specdec {

namespace {
constexpr std::string_view kSmolLMSystem = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

void append_chatml(std::string& out, std::string_view role, std::string_view content) {
  out += "<|im_start|>";
  out += role;
  out += '\n';
  out += content;
  out += "<|im_end|>\n";
}
}  // namespace

std::string render_chat_template(ChatTemplateKind kind, std::span<const ChatMessage> messages,
                                 bool add_generation_prompt) {
  std::string out;
  if (kind == ChatTemplateKind::kPlain) {
    for (const ChatMessage& m : messages) out += m.content;
    return out;
  }
  // SmolLM2's template inserts its system message inside the loop over messages (loop.first), so an
  // empty conversation gets none.
  if (kind == ChatTemplateKind::kChatMLSmolLM && !messages.empty() && messages[0].role != "system")
    append_chatml(out, "system", kSmolLMSystem);
  for (const ChatMessage& m : messages) append_chatml(out, m.role, m.content);
  if (add_generation_prompt) out += "<|im_start|>assistant\n";
  return out;
}

}  // namespace specdec
