// Throughput of the batched decode loop (core/speculative/batch_decoder.h) against speculative_decode: the
// same requests decoded one after another by speculative_decode, then by batch_decode with B = 1, 2, 4, 8
// sequences in flight. AR (no drafter), ngram, and any drafters given as NAME[:KEY=VALUE,...] (e.g.
// medusa:heads=artifacts/medusa_smollm2.safetensors), greedy, k = 4. Drafters that draft batched
// (Drafter::batch_key: medusa, eagle) are also run with their batching hidden ("solo drafts"), the peer of
// the batched rows in the same run.
//   build/bench/batch_decode_bench MODEL [TOKENIZER] [REQUESTS=8] [NEW_TOKENS=64] [OUT.csv] [DRAFTER ...]
// Prints tokens/s (generated tokens over wall time, prefill included), the drafting time per sequence-step
// (each step record's t_draft_us: a batched group's time shared equally among its members) and whether every
// request's tokens equal speculative_decode's; OUT.csv gets the same rows.
#include <chrono>
#include <map>
#include <memory>
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

// A drafter with its batching hidden: the loop asks it alone (the "solo drafts" rows).
class Solo final : public Drafter {
 public:
  explicit Solo(std::unique_ptr<Drafter> d) : d_(std::move(d)) {}
  FeatureSpec features() const override { return d_->features(); }
  void begin(std::span<const TokenId> p, const TargetFeatures& f) override { d_->begin(p, f); }
  DraftProposal propose(int max_tokens) override { return d_->propose(max_tokens); }
  void accept(std::span<const TokenId> a, const TargetFeatures& f) override { d_->accept(a, f); }
  void share_target_cache(KVCache* c) override { d_->share_target_cache(c); }

 private:
  std::unique_ptr<Drafter> d_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL [TOKENIZER] [REQUESTS=8] [NEW_TOKENS=64] [OUT.csv] [NAME[:K=V,...] ...]\n",
                 argv[0]);
    return 2;
  }
  try {
    auto loaded = load_model(argv[1]);
    LlamaCpu model(loaded);
    auto tok = load_tokenizer(*loaded, argc > 2 ? argv[2] : "");
    const int n_req = argc > 3 ? std::stoi(argv[3]) : 8;
    const int new_tokens = argc > 4 ? std::stoi(argv[4]) : 64;
    std::ofstream csv;
    if (argc > 5 && argv[5][0] != '\0') {
      csv.open(argv[5]);
      csv << "drafter,mode,B,requests,tokens,seconds,tokens_per_s,steps,draft_us_per_seq_step,same_tokens\n";
    }
    // The drafters: AR, ngram, then each NAME[:KEY=VALUE,...] argument.
    std::vector<std::pair<std::string, std::map<std::string, std::string>>> drafters = {{"", {}}, {"ngram", {}}};
    for (int a = 6; a < argc; ++a) {
      const std::string spec = argv[a];
      const size_t colon = spec.find(':');
      std::map<std::string, std::string> opts;
      for (size_t at = colon; at != std::string::npos && at + 1 < spec.size();) {
        const size_t end = spec.find(',', at + 1);
        const std::string kv = spec.substr(at + 1, end == std::string::npos ? std::string::npos : end - at - 1);
        const size_t eq = kv.find('=');
        SPECDEC_CHECK(eq != std::string::npos, "drafter '", spec, "': options KEY=VALUE, got '", kv, "'");
        opts[kv.substr(0, eq)] = kv.substr(eq + 1);
        at = end;
      }
      drafters.emplace_back(spec.substr(0, colon), opts);
    }
    auto rule = verifiers::make_greedy_rule();
    std::vector<std::vector<TokenId>> prompts;
    for (int i = 0; i < n_req; ++i) prompts.push_back(tok->encode(kPrompts[i % std::size(kPrompts)], true));

    std::printf("%-16s %-26s %3s %8s %9s %10s %7s %11s %5s\n", "drafter", "mode", "B", "tokens", "seconds", "tokens/s",
                "steps", "draft us/sq", "same");
    for (const auto& [drafter, drafter_opts] : drafters) {
      DrafterSharedState shared;  // a run's drafters share their weights, as the runner's do
      const auto make = [&](uint64_t request, bool solo) -> std::unique_ptr<Drafter> {
        if (drafter.empty()) return nullptr;
        DrafterEnv env{
            .target = &model, .tokenizer = tok.get(), .request = request, .shared = &shared, .target_path = argv[1]};
        auto d = make_drafter(drafters::default_registry().get(drafter), env, DrafterOptions(drafter_opts, drafter));
        return solo ? std::make_unique<Solo>(std::move(d)) : std::move(d);
      };
      const bool batches = !drafter.empty() && make(0, false)->batch_key() != nullptr;
      const auto options = [&](int i) {
        DecodeOptions o;
        o.max_new_tokens = new_tokens;
        o.k = 4;
        o.request = static_cast<uint64_t>(i);
        return o;
      };
      // The row's label: the drafter and its options but files (heads, weights, model).
      std::string name = drafter.empty() ? "AR" : drafter;
      for (const auto& [key, value] : drafter_opts)
        if (key != "heads" && key != "weights" && key != "model") name += "," + key + "=" + value;
      const auto row = [&](const char* mode, int B, long tokens, double s, long steps, double draft_us, bool same) {
        std::printf("%-16s %-26s %3d %8ld %9.3f %10.1f %7ld %11.1f %5s\n", name.c_str(), mode, B, tokens, s, tokens / s,
                    steps, draft_us, same ? "yes" : "NO");
        if (csv.is_open())
          csv << name << ',' << mode << ',' << B << ',' << n_req << ',' << tokens << ',' << s << ',' << tokens / s
              << ',' << steps << ',' << draft_us << ',' << (same ? 1 : 0) << '\n';
      };
      // The mean drafting time per sequence-step over the results' step records.
      const auto draft_us = [](const std::vector<DecodeResult>& rs) {
        double us = 0;
        long n = 0;
        for (const DecodeResult& r : rs)
          for (const StepRecord& st : r.steps) {
            us += st.t_draft_us;
            ++n;
          }
        return n ? us / static_cast<double>(n) : 0.0;
      };

      std::vector<std::vector<TokenId>> reference;
      std::vector<DecodeResult> alone;
      long tokens = 0, steps = 0;
      auto t0 = Clock::now();
      for (int i = 0; i < n_req; ++i) {
        auto d = make(i, false);
        alone.push_back(speculative_decode(model, d.get(), *rule, prompts[i], options(i)));
        tokens += static_cast<long>(alone.back().tokens.size());
        steps += static_cast<long>(alone.back().steps.size());
        reference.push_back(alone.back().tokens);
      }
      row("speculative_decode", 1, tokens, std::chrono::duration<double>(Clock::now() - t0).count(), steps,
          draft_us(alone), true);

      for (int B : {1, 2, 4, 8})
        for (const bool solo : {false, true}) {
          if (solo && !batches) continue;
          std::vector<BatchRequest> reqs;
          for (int i = 0; i < n_req; ++i) {
            BatchRequest r{.prompt = prompts[i], .opts = options(i), .rule = rule.get()};
            if (!drafter.empty()) r.make_drafter = [&make, i, solo] { return make(i, solo); };
            reqs.push_back(std::move(r));
          }
          t0 = Clock::now();
          const BatchResult res =
              batch_decode(model, std::move(reqs), {.max_sequences = B, .max_tokens_per_step = 256});
          const double s = std::chrono::duration<double>(Clock::now() - t0).count();
          tokens = 0;
          bool same = true;
          for (int i = 0; i < n_req; ++i) {
            tokens += static_cast<long>(res.results[i].tokens.size());
            same = same && res.results[i].tokens == reference[i];
          }
          row(solo ? "batch_decode, solo drafts" : "batch_decode", B, tokens, s, static_cast<long>(res.steps.size()),
              draft_us(res.results), same);
        }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "batch_decode_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
