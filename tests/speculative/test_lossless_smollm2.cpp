// Greedy losslessness on the real default model, SmolLM2-135M-Instruct (Q4_1 GGUF): every built-in
// drafter, chains and a tree, k in {1, 2, 4, 8}, emits exactly the AR greedy tokens.
#include <catch2/catch.hpp>

#include <filesystem>

#include "core/backends/cpu/llama_cpu.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "verifiers/rules.h"

using namespace specdec;

TEST_CASE("every drafter is lossless at greedy on SmolLM2-135M", "[speculative][lossless][smollm2]") {
  const std::string path = std::string(SPECDEC_SOURCE_DIR) + "/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  INFO("the default model is installed by scripts/setup: " << path);
  REQUIRE(std::filesystem::exists(path));
  auto loaded = load_model(path);
  LlamaCpu model(loaded);
  auto tok = load_tokenizer(*loaded, "");
  auto rule = verifiers::make_greedy_rule();
  const std::vector<std::map<std::string, std::string>> drafters = {
      {{"type", "ngram"}},
      {{"type", "early_exit"}, {"layers", "20"}},
      {{"type", "early_exit"}, {"layers", "24"}, {"tree_width", "2"}, {"tree_depth", "3"}},
      {{"type", "draft_model"}, {"model", path}, {"layers", "16"}},
      {{"type", "synthetic"}, {"acceptance", "0.9,0.6"}},
      {{"type", "oracle"}},
  };
  for (const char* q : {"List three uses of copper.", "Repeat after me: the cat sat on the mat, the cat sat on the"}) {
    const ChatMessage msg{"user", q};
    const auto prompt = tok->encode(tok->apply_chat_template({&msg, 1}, true), false, true);
    DecodeOptions base;
    base.max_new_tokens = 24;
    const auto ar = speculative_decode(model, nullptr, *rule, prompt, base);
    for (const auto& d : drafters) {
      for (int k : {1, 2, 4, 8}) {
        auto opts = d;
        const std::string type = opts["type"];
        opts.erase("type");
        DrafterEnv env{.target = &model, .tokenizer = tok.get(), .reference = &ar.tokens};
        auto drafter = drafters::default_registry().get(type).factory(env, DrafterOptions(opts, type));
        DecodeOptions o = base;
        o.k = k;
        const auto spec = speculative_decode(model, drafter.get(), *rule, prompt, o);
        INFO(type << " k=" << k << " prompt '" << q << "' tau " << spec.tau());
        REQUIRE(spec.tokens == ar.tokens);
      }
    }
  }
}
