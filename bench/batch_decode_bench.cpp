// Throughput of the batched decode loop (core/speculative/batch_decoder.h) against speculative_decode: the
// same requests decoded one after another by speculative_decode, then by batch_decode with B = 1, 2, 4, 8
// sequences in flight. AR (no drafter) and ngram drafting, greedy.
//   build/bench/batch_decode_bench MODEL [TOKENIZER] [REQUESTS=8] [NEW_TOKENS=64] [OUT.csv]
// Prints tokens/s (generated tokens over wall time, prefill included) per row and whether every request's
// tokens equal speculative_decode's; OUT.csv gets the same rows.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "core/loading.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/speculative/batch_decoder.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "verifiers/rules.h"

using namespace specdec;
using Clock = std::chrono::steady_clock;

namespace {
const char* kPrompts[] = {
    "Once upon a time, there was a little girl named Lily.",
    "Tom and his dog went to the park to play with a ball.",
    "Write a short story about a cat who wants to fly.",
    "The sun was hot and the children wanted to swim in the lake.",
    "Explain why the sky is blue in simple words.",
    "One day, a big red bird sat on the tree and sang a song.",
    "Ben had a toy car. He liked to race it around the kitchen.",
    "List three things a good friend does.",
};
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [TOKENIZER] [REQUESTS=8] [NEW_TOKENS=64] [OUT.csv]\n", argv[0]);
    return 2;
  }
  try {
    auto loaded = load_model(argv[1]);
    LlamaCpu model(loaded);
    auto tok = load_tokenizer(*loaded, argc > 2 ? argv[2] : "");
    const int n_req = argc > 3 ? std::stoi(argv[3]) : 8;
    const int new_tokens = argc > 4 ? std::stoi(argv[4]) : 64;
    std::ofstream csv;
    if (argc > 5) {
      csv.open(argv[5]);
      csv << "drafter,mode,B,requests,tokens,seconds,tokens_per_s,steps,same_tokens\n";
    }
    auto rule = verifiers::make_greedy_rule();
    std::vector<std::vector<TokenId>> prompts;
    for (int i = 0; i < n_req; ++i) prompts.push_back(tok->encode(kPrompts[i % std::size(kPrompts)], true));

    std::printf("%-8s %-20s %3s %8s %9s %10s %7s %5s\n", "drafter", "mode", "B", "tokens", "seconds", "tokens/s",
                "steps", "same");
    for (const std::string drafter : {"", "ngram"}) {
      const auto make = [&](uint64_t request) -> std::unique_ptr<Drafter> {
        if (drafter.empty()) return nullptr;
        DrafterEnv env{.target = &model, .tokenizer = tok.get(), .request = request};
        return make_drafter(drafters::default_registry().get(drafter), env, DrafterOptions({}, drafter));
      };
      const auto options = [&](int i) {
        DecodeOptions o;
        o.max_new_tokens = new_tokens;
        o.k = 4;
        o.request = static_cast<uint64_t>(i);
        return o;
      };
      const std::string name = drafter.empty() ? "AR" : drafter;
      const auto row = [&](const char* mode, int B, long tokens, double s, long steps, bool same) {
        std::printf("%-8s %-20s %3d %8ld %9.3f %10.1f %7ld %5s\n", name.c_str(), mode, B, tokens, s, tokens / s, steps,
                    same ? "yes" : "NO");
        if (csv.is_open())
          csv << name << ',' << mode << ',' << B << ',' << n_req << ',' << tokens << ',' << s << ',' << tokens / s
              << ',' << steps << ',' << (same ? 1 : 0) << '\n';
      };

      std::vector<std::vector<TokenId>> reference;
      long tokens = 0, steps = 0;
      auto t0 = Clock::now();
      for (int i = 0; i < n_req; ++i) {
        auto d = make(i);
        const DecodeResult r = speculative_decode(model, d.get(), *rule, prompts[i], options(i));
        tokens += static_cast<long>(r.tokens.size());
        steps += static_cast<long>(r.steps.size());
        reference.push_back(r.tokens);
      }
      row("speculative_decode", 1, tokens, std::chrono::duration<double>(Clock::now() - t0).count(), steps, true);

      for (int B : {1, 2, 4, 8}) {
        std::vector<BatchRequest> reqs;
        for (int i = 0; i < n_req; ++i) {
          BatchRequest r{.prompt = prompts[i], .opts = options(i), .rule = rule.get()};
          if (!drafter.empty()) r.make_drafter = [&make, i] { return make(i); };
          reqs.push_back(std::move(r));
        }
        t0 = Clock::now();
        const BatchResult res = batch_decode(model, std::move(reqs), {.max_sequences = B, .max_tokens_per_step = 256});
        const double s = std::chrono::duration<double>(Clock::now() - t0).count();
        tokens = 0;
        bool same = true;
        for (int i = 0; i < n_req; ++i) {
          tokens += static_cast<long>(res.results[i].tokens.size());
          same = same && res.results[i].tokens == reference[i];
        }
        row("batch_decode", B, tokens, s, static_cast<long>(res.steps.size()), same);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "batch_decode_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
