// Autoregressive generation: prefill the prompt in one block, then one target forward per token.
// The AR baseline of every experiment; the speculative decode loop (core/speculative) must reproduce its
// greedy output token for token.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "core/model/model.h"
#include "core/sampling/sampling.h"

namespace specdec {

struct GenerateOptions {
  int max_new_tokens = 256;
  SamplingParams sampling;
  uint64_t seed = 0;
  uint64_t request = 0;                            // RNG stream: uniform(seed, request, step, 0)
  std::function<bool(TokenId)> is_stop = nullptr;  // e.g. the tokenizer's end-of-generation test
};

struct GenerateResult {
  std::vector<TokenId> tokens;  // generated tokens (a stop token included, as the last one)
  int prompt_tokens = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;  // from the first generated token to the last
  bool stopped = false;       // ended on a stop token rather than max_new_tokens
};

// Streams each new token to on_token (may be null). Throws specdec::Error when the prompt is empty or
// does not fit the model's context together with at least one new token.
GenerateResult generate(Model& model, std::span<const TokenId> prompt, const GenerateOptions& opts,
                        const std::function<void(TokenId)>& on_token = nullptr);

}  // namespace specdec
