// specdec bench decode: AR decode tokens/s (prompt P tokens, N new tokens, median over repeats) and the
// cost of one forward over T tokens relative to T = 1, for T = 1..9 (what verifying k = T-1 draft tokens
// costs). Prints a table and, with --out, writes a JSON line.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/model/llama_cpu.h"
#include "core/speculative/decoder.h"
#include "experiments/cli.h"
#include "kernels/cpu/quant.h"
#include "verifiers/rules.h"

namespace po = boost::program_options;

namespace specdec::cli {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// A prompt of exactly n tokens: a fixed English text, repeated as needed.
std::vector<TokenId> make_prompt(const Tokenizer& tok, int n) {
  const std::string text =
      "The history of the printing press begins in the fifteenth century, when movable type changed how "
      "books were made, how ideas travelled, and who could read them. ";
  std::vector<TokenId> ids;
  if (tok.add_bos_default() && tok.bos() >= 0) ids.push_back(tok.bos());
  while (static_cast<int>(ids.size()) < n) {
    const auto more = tok.encode(text, false);
    ids.insert(ids.end(), more.begin(), more.end());
  }
  ids.resize(n);
  return ids;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
  SPECDEC_CHECK(!args.empty() && (args[0] == "decode" || args[0] == "--help" || args[0] == "-h"),
                "a benchmark name: specdec bench decode --model PATH (see specdec bench decode --help)");
  std::string model_path, tokenizer_path, out_path;
  int prompt_tokens = 64, new_tokens = 128, repeats = 3, threads = 0, max_t = 9;
  po::options_description desc(
      "specdec bench decode: AR decode tokens/s and the cost of a T-token forward relative to T = 1\n\n"
      "usage: specdec bench decode --model PATH [options]\n\noptions");
  desc.add_options()("help,h", "show this help")("model,m", po::value(&model_path)->required(), "model file")(
      "tokenizer,t", po::value(&tokenizer_path), "tokenizer file (llama2.c models)")(
      "prompt-tokens", po::value(&prompt_tokens)->default_value(64), "prompt length")(
      "new-tokens", po::value(&new_tokens)->default_value(128), "tokens to generate")(
      "repeats", po::value(&repeats)->default_value(3), "repeats (the median is reported)")(
      "max-t", po::value(&max_t)->default_value(9), "largest block size T of the cost table")(
      "threads", po::value(&threads)->default_value(0), "CPU threads; 0 = OMP_NUM_THREADS or all cores")(
      "out", po::value(&out_path), "append a JSON line with the results to this file");
  po::variables_map vm;
  po::store(po::command_line_parser(std::vector<std::string>(args.begin() + (args[0] == "decode"), args.end()))
                .options(desc)
                .run(),
            vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  po::notify(vm);
  SPECDEC_CHECK(repeats >= 1 && new_tokens >= 2 && prompt_tokens >= 1 && max_t >= 1,
                "--repeats >= 1, --new-tokens >= 2, --prompt-tokens >= 1, --max-t >= 1");
  set_threads(threads);

  auto loaded = load_model(model_path);
  LlamaCpu model(loaded);
  auto tok = load_tokenizer(*loaded, tokenizer_path);
  const auto prompt = make_prompt(*tok, prompt_tokens);
  auto rule = verifiers::make_greedy_rule();

  std::vector<double> prefill_tps, decode_tps;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms caches and page-ins
    DecodeOptions opts;
    opts.max_new_tokens = new_tokens;
    const DecodeResult res = speculative_decode(model, nullptr, *rule, prompt, opts);
    if (r == 0) continue;
    prefill_tps.push_back((prompt_tokens - 1) / std::max(res.prefill_seconds, 1e-9));
    decode_tps.push_back(res.tokens.size() / std::max(res.decode_seconds, 1e-9));
  }

  // T-token forwards on top of the prompt's cache; each T timed over many reps (median).
  auto cache = model.new_cache(prompt_tokens + max_t);
  ForwardResult fr;
  model.forward(*cache, {.tokens = prompt, .n_logits = 1}, fr);
  std::vector<double> t_us(max_t + 1);
  for (int T = 1; T <= max_t; ++T) {
    std::vector<TokenId> block(prompt.end() - T, prompt.end());
    std::vector<double> samples;
    const auto until = Clock::now() + std::chrono::milliseconds(400);
    for (int rep = 0; rep < 5 || Clock::now() < until; ++rep) {
      const auto t0 = Clock::now();
      model.forward(*cache, {.tokens = block}, fr);
      samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
      cache->truncate(prompt_tokens);
    }
    t_us[T] = median(samples);
  }

  std::printf("specdec bench decode: %s (%s), %s kernels, prompt %d tokens, %d new tokens, median of %d\n",
              model_path.c_str(), loaded->config.describe().c_str(), std::string(cpu::cpu_level_name(cpu::cpu_level())).c_str(),
              prompt_tokens, new_tokens, repeats);
  std::printf("  prefill  %8.1f tok/s\n  decode   %8.1f tok/s\n\n", median(prefill_tps), median(decode_tps));
  std::printf("  %3s  %12s  %10s  %14s\n", "T", "forward us", "cost / T=1", "us per token");
  for (int T = 1; T <= max_t; ++T)
    std::printf("  %3d  %12.1f  %10.2f  %14.1f\n", T, t_us[T], t_us[T] / t_us[1], t_us[T] / T);
  if (!out_path.empty()) {
    nlohmann::json j = {{"model", model_path},
                        {"kernels", std::string(cpu::cpu_level_name(cpu::cpu_level()))},
                        {"prompt_tokens", prompt_tokens},
                        {"new_tokens", new_tokens},
                        {"prefill_tok_s", median(prefill_tps)},
                        {"decode_tok_s", median(decode_tps)},
                        {"forward_us", std::vector<double>(t_us.begin() + 1, t_us.end())}};
    std::ofstream(out_path, std::ios::app) << j.dump() << "\n";
  }
  return 0;
}

}  // namespace specdec::cli
