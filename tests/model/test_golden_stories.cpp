// stories260K from BOS, greedy, reproduces llama2.c's `run.c -t 0 -n 200` byte for byte: run.c runs 200
// forward steps (positions 0..199, BOS at 0) and prints the token each one samples, so 200 new tokens,
// then a final "\n" (run.c's printf after the loop), which the golden file keeps.
#include <catch2/catch.hpp>

#include <fstream>
#include <iterator>

#include "core/generate.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/tokenizer/tokenizer.h"
#include "tests/support/assets.h"

using namespace specdec;

TEST_CASE("greedy from BOS reproduces golden_greedy_bos_200.txt byte for byte", "[model][golden]") {
  std::ifstream in(test::asset("models/stories260K/golden_greedy_bos_200.txt"), std::ios::binary);
  REQUIRE(in.good());
  const std::string golden{std::istreambuf_iterator<char>(in), {}};
  REQUIRE(golden.size() > 400);

  auto loaded = load_model(test::stories_model());
  LlamaCpu model(loaded);
  auto tok = load_llama2c_tokenizer(test::stories_tokenizer(), loaded->config.vocab_size);
  const std::vector<TokenId> prompt = {tok->bos()};
  GenerateOptions opts;
  opts.max_new_tokens = 200;
  const GenerateResult res = generate(model, prompt, opts);
  REQUIRE(res.tokens.size() == 200);

  std::string text;
  TokenId prev = tok->bos();
  for (TokenId t : res.tokens) {
    text += tok->decode_token(prev, t);
    prev = t;
  }
  REQUIRE(text + "\n" == golden);
}
