// stories260K loaded once per test binary (CPU model, tokenizer, and the "Once upon a time" prompt with
// BOS): the target of the decode-loop tests.
#pragma once

#include <memory>
#include <vector>

#include "core/loading.h"
#include "core/backends/cpu/llama_cpu.h"
#include "tests/support/assets.h"

namespace specdec::test {

struct Stories {
  std::shared_ptr<const LoadedModel> loaded = load_model(stories_model());
  LlamaCpu model{loaded};
  std::unique_ptr<Tokenizer> tok = load_tokenizer(*loaded, stories_tokenizer());
  std::vector<TokenId> prompt = tok->encode("Once upon a time", /*add_bos=*/true);
};

inline Stories& stories() {
  static Stories s;
  return s;
}

}  // namespace specdec::test
