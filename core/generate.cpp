// Autoregressive generation on any Model backend.
#include "core/generate.h"

#include <algorithm>
#include <chrono>

#include "core/error.h"

namespace specdec {

GenerateResult generate(Model& model, std::span<const TokenId> prompt, const GenerateOptions& opts,
                        const std::function<void(TokenId)>& on_token) {
  using clock = std::chrono::steady_clock;
  const int ctx = model.config().max_seq_len;
  const int n_prompt = static_cast<int>(prompt.size());
  SPECDEC_CHECK(n_prompt >= 1, "a prompt of at least one token (add BOS for an empty prompt)");
  SPECDEC_CHECK(n_prompt < ctx, "a prompt shorter than the model's context of ", ctx, " tokens, got ", n_prompt,
                " tokens");
  SPECDEC_CHECK(opts.max_new_tokens >= 0, "max_new_tokens >= 0, got ", opts.max_new_tokens);
  const int max_new = std::min(opts.max_new_tokens, ctx - n_prompt);

  GenerateResult res;
  res.prompt_tokens = n_prompt;
  if (max_new == 0) return res;
  auto cache = model.new_cache(n_prompt + max_new);
  Sampler sampler(opts.sampling, opts.seed);
  ForwardResult fr;

  const auto t0 = clock::now();
  model.forward(*cache, {.tokens = prompt, .n_logits = 1}, fr);
  const auto t1 = clock::now();
  res.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();

  for (int step = 0;; ++step) {
    const TokenId next = sampler.sample(fr.logits, opts.request, static_cast<uint32_t>(step));
    res.tokens.push_back(next);
    if (on_token) on_token(next);
    if (opts.is_stop && opts.is_stop(next)) {
      res.stopped = true;
      break;
    }
    if (static_cast<int>(res.tokens.size()) >= max_new) break;
    model.forward(*cache, {.tokens = {&next, 1}}, fr);
  }
  res.decode_seconds = std::chrono::duration<double>(clock::now() - t1).count();
  return res;
}

}  // namespace specdec
