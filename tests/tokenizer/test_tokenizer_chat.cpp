// Chat templates: SmolLM2-Instruct's ChatML (default system message when the first message is not
// one; exactly what its GGUF tokenizer.chat_template renders), plain ChatML, the plain fallback, the
// kind detected from the vocabulary and overridden by a caller, and the rendered prompt's encoding.
#include <catch2/catch.hpp>

#include <algorithm>
#include <string>
#include <vector>

#include "core/tokenizer/tokenizer.h"
#include "core/tokenizer/unicode.h"
#include "tests/support/assets.h"

using specdec::ChatMessage;
using specdec::ChatTemplateKind;
using specdec::TokenId;

namespace {

const std::string kSystem =
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n";

// A byte-level vocabulary with SmolLM2's first special tokens.
std::unique_ptr<specdec::Tokenizer> chatml_tokenizer() {
  specdec::BpeVocab v;
  v.pre = "smollm";
  v.tokens = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"};
  v.token_types = {3, 3, 3};
  for (int b = 0; b < 256; ++b) {
    std::string s;
    specdec::unicode::append_utf8(s, specdec::unicode::byte_to_unicode(static_cast<uint8_t>(b)));
    v.tokens.push_back(s);
    v.token_types.push_back(1);
  }
  v.bos = 1;
  v.eos = 2;
  return specdec::make_bpe_tokenizer(v);
}

}  // namespace

TEST_CASE("chat: SmolLM2's ChatML with its default system message") {
  const std::vector<ChatMessage> one = {{"user", "What is 2+2?"}};
  CHECK(specdec::render_chat_template(ChatTemplateKind::kChatMLSmolLM, one, true) ==
        kSystem + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n");
  CHECK(specdec::render_chat_template(ChatTemplateKind::kChatMLSmolLM, one, false) ==
        kSystem + "<|im_start|>user\nWhat is 2+2?<|im_end|>\n");

  const std::vector<ChatMessage> with_system = {
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "Bye"}};
  CHECK(specdec::render_chat_template(ChatTemplateKind::kChatMLSmolLM, with_system, true) ==
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nHello!<|im_end|>\n"
        "<|im_start|>user\nBye<|im_end|>\n"
        "<|im_start|>assistant\n");

  // The template adds its system message inside the loop over messages: none for an empty list.
  CHECK(specdec::render_chat_template(ChatTemplateKind::kChatMLSmolLM, {}, true) == "<|im_start|>assistant\n");
}

TEST_CASE("chat: plain ChatML and the plain fallback") {
  const std::vector<ChatMessage> msgs = {{"user", "Hi"}, {"assistant", "Hello"}};
  CHECK(specdec::render_chat_template(ChatTemplateKind::kChatML, msgs, true) ==
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello<|im_end|>\n<|im_start|>assistant\n");
  CHECK(specdec::render_chat_template(ChatTemplateKind::kPlain, msgs, true) == "HiHello");
}

TEST_CASE("chat: the kind comes from the vocabulary unless overridden") {
  auto tok = chatml_tokenizer();
  CHECK(tok->chat_template() == ChatTemplateKind::kChatMLSmolLM);
  const std::vector<ChatMessage> msgs = {{"user", "Hi"}};
  const std::string prompt = tok->apply_chat_template(msgs, true);
  CHECK(prompt == kSystem + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");

  // Encoded with parse_special, the markers become their ids; the text decodes without them.
  const auto ids = tok->encode(prompt, tok->add_bos_default(), true);
  REQUIRE(ids.size() > 4);
  CHECK(ids.front() == 1);
  CHECK(ids.back() == 3 + '\n');  // the byte token of the final newline (bytes start at id 3)
  CHECK(std::count(ids.begin(), ids.end(), 1) == 3);
  CHECK(std::count(ids.begin(), ids.end(), 2) == 2);
  CHECK(tok->decode(ids) ==
        "system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face\nuser\nHi\nassistant\n");

  tok->set_chat_template(ChatTemplateKind::kPlain);
  CHECK(tok->apply_chat_template(msgs, true) == "Hi");
  tok->set_chat_template(ChatTemplateKind::kChatML);
  CHECK(tok->apply_chat_template(msgs, false) == "<|im_start|>user\nHi<|im_end|>\n");

  const auto stories = specdec::load_llama2c_tokenizer(specdec::test::stories_tokenizer(), 512);
  CHECK(stories->chat_template() == ChatTemplateKind::kPlain);
  CHECK(stories->apply_chat_template(msgs, true) == "Hi");
}
