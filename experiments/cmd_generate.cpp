// specdec generate: load a model and its tokenizer, stream generated text, end with tokens/s; with
// --drafter, decode speculatively and also report tau, the draft acceptance rate and the speedup over an
// AR run of the same prompt.
#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "experiments/backend.h"
#include "experiments/options.h"

namespace po = boost::program_options;

namespace specdec::cli {

int cmd_generate(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, prompt, drafter_name;
  std::vector<std::string> drafter_opts;
  DecodeOptions opts;
  BackendOptions backend;
  SamplingOptions sampling;
  bool chat = false;
  po::options_description desc(
      "specdec generate: generate text from a prompt and report tokens/s\n\n"
      "usage: specdec generate --model PATH [--tokenizer PATH] --prompt TEXT [options]\n\noptions");
  desc.add_options()("help,h", "show this help")(
      "model,m", po::value(&model_path)->required(),
      "model file: llama2.c checkpoint (.bin), GGUF (.gguf) or a safetensors folder")(
      "tokenizer,t", po::value(&tokenizer_path),
      "tokenizer file: llama2.c tokenizer.bin (required for llama2.c models; GGUF models carry their own)")(
      "prompt,p", po::value(&prompt)->default_value(""), "prompt text; empty starts from BOS")(
      "chat", po::bool_switch(&chat), "wrap the prompt in the model's chat template (instruct models)")(
      "max-new-tokens,n", po::value(&opts.max_new_tokens)->default_value(256),
      "maximum number of tokens to generate (clipped to the model's context)");
  sampling.add_sampling_to(desc);
  desc.add_options()("drafter,d", po::value(&drafter_name),
                     "decode speculatively with this drafter (specdec list-drafters; plugin:PATH.so:NAME; "
                     "python:MODULE.CLASS, a drafter written in Python)")(
      "drafter-opt,o", po::value(&drafter_opts)->composing(),
      "a drafter option key=value (repeatable), e.g. -o model=draft.gguf -o tree_width=2")(
      "k", po::value(&opts.k)->default_value(4), "draft tokens per step (chain length or tree nodes)");
  sampling.add_rule_to(desc);
  backend.add_to(desc);
  if (!parse_options(args, desc)) return 0;
  sampling.validate();
  SPECDEC_CHECK(drafter_name.empty() || opts.k >= 1, "--k >= 1 draft tokens per step, got ", opts.k);
  backend.apply();
  opts.sampling = sampling.sampling;
  opts.seed = sampling.seed;
  auto rule = sampling.make_rule();
  const DrafterInfo* drafter_info =
      drafter_name.empty() ? nullptr : &drafters::default_registry().resolve(drafter_name);

  auto loaded = load_model(model_path);
  const std::unique_ptr<Model> target = experiments::make_model(loaded, backend.device);
  Model& model = *target;
  auto tok = load_tokenizer(*loaded, tokenizer_path);

  std::vector<TokenId> ids = tok->encode_user_turn(prompt, chat);
  if (ids.empty()) ids.push_back(tok->bos());
  opts.is_stop = [&](TokenId t) { return tok->is_end_of_generation(t); };

  // The AR run: printed when there is no drafter, the baseline (and the oracle's reference) otherwise.
  TokenId prev = ids.back();
  std::function<void(std::span<const TokenId>)> stream = [&](std::span<const TokenId> toks) {
    for (TokenId t : toks) {
      if (!tok->is_end_of_generation(t)) {
        const std::string piece = tok->decode_token(prev, t);
        std::fwrite(piece.data(), 1, piece.size(), stdout);
      }
      prev = t;
    }
    std::fflush(stdout);
  };
  // Drafters that do not need the AR output are made first, so a bad option fails before any decoding.
  std::unique_ptr<Drafter> drafter;
  DecodeResult ar;
  DrafterEnv env{.target = &model,
                 .tokenizer = tok.get(),
                 .sampling = opts.sampling,
                 .seed = opts.seed,
                 .reference = &ar.tokens,
                 .max_context = static_cast<int>(ids.size()) + opts.max_new_tokens + opts.k + 1,
                 .make_model = experiments::model_factory(backend.device),
                 .target_path = model_path};
  const DrafterOptions dopts(parse_key_values(drafter_opts, "--drafter-opt"), drafter_name);
  if (drafter_info && !drafter_info->needs_reference) drafter = make_drafter(*drafter_info, env, dopts);

  if (!chat) std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  std::fflush(stdout);
  ar = speculative_decode(model, nullptr, *rule, ids, opts, drafter_info ? nullptr : stream);
  DecodeResult res = ar;
  if (drafter_info) {
    if (!drafter) drafter = make_drafter(*drafter_info, env, dopts);  // oracle / synthetic: after the AR run
    DecodeOptions spec = opts;
    spec.seed = verify_seed(drafter_info, opts.seed);  // a stream disjoint from the reference's
    res = speculative_decode(model, drafter.get(), *rule, ids, spec, stream);
  }
  std::fputs("\n", stdout);  // end the text with a newline, as llama2.c's run.c does
  std::fflush(stdout);

  const int n = static_cast<int>(res.tokens.size());
  std::fprintf(stderr, "\n%d prompt tokens in %.3f s (%.1f tok/s); %d new tokens in %.3f s: %.1f tok/s%s\n",
               res.prompt_tokens, res.prefill_seconds, res.prompt_tokens / std::max(res.prefill_seconds, 1e-9), n,
               res.decode_seconds, n / std::max(res.decode_seconds, 1e-9),
               res.stopped ? " (stopped at end of generation)" : "");
  if (drafter_info) {
    // The definitions of docs/metrics.md (SpecStats; speedup per emitted token, prefill excluded, and
    // end to end as a second figure), the same as `specdec run`'s summary and `specdec report`.
    const SpecStats st = res.stats();
    auto per_token = [](double s, size_t n) { return n ? s / static_cast<double>(n) : 0.0; };
    const double run_tok = per_token(res.decode_seconds, res.tokens.size());
    const double run_e2e = per_token(res.prefill_seconds + res.decode_seconds, res.tokens.size());
    const double speedup = run_tok > 0 ? per_token(ar.decode_seconds, ar.tokens.size()) / run_tok : 0.0;
    const double speedup_e2e =
        run_e2e > 0 ? per_token(ar.prefill_seconds + ar.decode_seconds, ar.tokens.size()) / run_e2e : 0.0;
    std::fprintf(stderr,
                 "drafter %s, k = %d, rule %s%s: tau %.3f tokens per target pass (%lld passes), acc_rate "
                 "%.1f%% (%lld/%lld drafted), speedup over AR %.2fx per token (end to end %.2fx; AR %.1f tok/s)%s\n",
                 drafter_name.c_str(), opts.k, rule->name().c_str(), rule->lossless() ? "" : " (lossy)", st.tau(),
                 static_cast<long long>(st.steps()), st.drafted() ? 100.0 * st.acc_rate() : 0.0,
                 static_cast<long long>(st.accepted()), static_cast<long long>(st.drafted()), speedup, speedup_e2e,
                 ar.tokens.size() / std::max(ar.decode_seconds, 1e-9),
                 opts.sampling.greedy() && rule->lossless()
                     ? (res.tokens == ar.tokens ? "; output identical to AR" : "; OUTPUT DIFFERS FROM AR")
                     : "");
  }
  return 0;
}

}  // namespace specdec::cli
