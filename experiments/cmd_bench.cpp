// specdec bench: benchmarks that print a table and, with --out, append JSON lines.
//   bench decode: AR decode tokens/s (prompt P tokens, N new tokens, median over repeats) and the cost of
//                 one forward over T tokens relative to T = 1, for T = 1..9 (verifying k = T-1 drafts).
//   bench verify: the cost of one batched forward over B sequences x (k+1) tokens relative to B x 1
//                 token, k = 1..K, for each batch size B (what batched verification costs).
// Both run on --device cpu | cuda; forwards return with their logits on the host, so wall time is honest.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "experiments/backend.h"
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

// What the kernels are, for the table's title: the CPU level, or the GPU's name.
std::string backend_name(const std::string& device) {
  if (device == "cpu") return std::string(cpu::cpu_level_name(cpu::cpu_level())) + " kernels";
  return experiments::describe_device(device).gpu;
}

// Median microseconds of f() over at least 5 calls and min_ms milliseconds (after one warm-up call).
template <typename F>
double time_us(F&& f, int min_ms) {
  f();
  std::vector<double> samples;
  const auto until = Clock::now() + std::chrono::milliseconds(min_ms);
  for (int rep = 0; rep < 5 || Clock::now() < until; ++rep) {
    const auto t0 = Clock::now();
    f();
    samples.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  return median(samples);
}

std::vector<int> parse_ints(const std::string& s, const std::string& what) {
  std::vector<int> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) {
    size_t pos = 0;
    int v = 0;
    try {
      v = std::stoi(item, &pos);
    } catch (const std::exception&) {
      pos = 0;
    }
    SPECDEC_CHECK(pos == item.size() && !item.empty() && v >= 1, what, " as a comma-separated list of integers >= 1, got '",
                  s, "'");
    out.push_back(v);
  }
  SPECDEC_CHECK(!out.empty(), what, " as a comma-separated list of integers >= 1, got '", s, "'");
  return out;
}

int bench_decode(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, out_path, device;
  int prompt_tokens = 64, new_tokens = 128, repeats = 3, threads = 0, max_t = 9;
  po::options_description desc(
      "specdec bench decode: AR decode tokens/s and the cost of a T-token forward relative to T = 1\n\n"
      "usage: specdec bench decode --model PATH [options]\n\noptions");
  desc.add_options()("help,h", "show this help")("model,m", po::value(&model_path)->required(), "model file")(
      "tokenizer,t", po::value(&tokenizer_path), "tokenizer file (llama2.c models)")(
      "device", po::value(&device)->default_value("cpu"), "cpu | cuda | cuda:N")(
      "prompt-tokens", po::value(&prompt_tokens)->default_value(64), "prompt length")(
      "new-tokens", po::value(&new_tokens)->default_value(128), "tokens to generate")(
      "repeats", po::value(&repeats)->default_value(3), "repeats (the median is reported)")(
      "max-t", po::value(&max_t)->default_value(9), "largest block size T of the cost table")(
      "threads", po::value(&threads)->default_value(0), "CPU threads; 0 = OMP_NUM_THREADS or all cores")(
      "out", po::value(&out_path), "append a JSON line with the results to this file");
  if (!parse_options(args, desc)) return 0;
  SPECDEC_CHECK(repeats >= 1 && new_tokens >= 2 && prompt_tokens >= 1 && max_t >= 1,
                "--repeats >= 1, --new-tokens >= 2, --prompt-tokens >= 1, --max-t >= 1");
  set_threads(threads);
  experiments::check_device(device);

  auto loaded = load_model(model_path);
  const std::unique_ptr<Model> target = experiments::make_model(loaded, device);
  Model& model = *target;
  auto tok = load_tokenizer(*loaded, tokenizer_path);
  const auto prompt = make_prompt(*tok, prompt_tokens);
  auto rule = verifiers::make_greedy_rule();

  std::vector<double> prefill_tps, decode_tps;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms caches and page-ins (and captures a graph)
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
    t_us[T] = time_us(
        [&] {
          model.forward(*cache, {.tokens = block}, fr);
          cache->truncate(prompt_tokens);
        },
        400);
  }

  const std::string kernels = backend_name(device);
  std::printf("specdec bench decode: %s (%s) on %s, %s, prompt %d tokens, %d new tokens, median of %d\n",
              model_path.c_str(), loaded->config.describe().c_str(), device.c_str(), kernels.c_str(), prompt_tokens,
              new_tokens, repeats);
  std::printf("  prefill  %8.1f tok/s\n  decode   %8.1f tok/s\n\n", median(prefill_tps), median(decode_tps));
  std::printf("  %3s  %12s  %10s  %14s\n", "T", "forward us", "cost / T=1", "us per token");
  for (int T = 1; T <= max_t; ++T)
    std::printf("  %3d  %12.1f  %10.2f  %14.1f\n", T, t_us[T], t_us[T] / t_us[1], t_us[T] / T);
  if (!out_path.empty()) {
    nlohmann::json j = {{"bench", "decode"},
                        {"model", model_path},
                        {"device", device},
                        {"kernels", kernels},
                        {"prompt_tokens", prompt_tokens},
                        {"new_tokens", new_tokens},
                        {"prefill_tok_s", median(prefill_tps)},
                        {"decode_tok_s", median(decode_tps)},
                        {"forward_us", std::vector<double>(t_us.begin() + 1, t_us.end())}};
    std::ofstream(out_path, std::ios::app) << j.dump() << "\n";
  }
  return 0;
}

int bench_verify(const std::vector<std::string>& args) {
  std::string model_path, out_path, device, batches_text;
  int max_k = 8, context = 128, min_ms = 300, threads = 0;
  po::options_description desc(
      "specdec bench verify: the cost of one batched forward over B sequences x (k+1) tokens relative to\n"
      "B x 1 token (verifying k draft tokens per sequence), k = 1..max-k, for each batch size B\n\n"
      "usage: specdec bench verify --model PATH [options]\n\noptions");
  desc.add_options()("help,h", "show this help")("model,m", po::value(&model_path)->required(), "model file")(
      "device", po::value(&device)->default_value("cpu"), "cpu | cuda | cuda:N")(
      "batch", po::value(&batches_text)->default_value("1,4,16"), "batch sizes B, a comma-separated list")(
      "max-k", po::value(&max_k)->default_value(8), "largest number of draft tokens k")(
      "context", po::value(&context)->default_value(128), "tokens already cached per sequence before the block")(
      "min-ms", po::value(&min_ms)->default_value(300), "time each configuration for at least this long (median)")(
      "threads", po::value(&threads)->default_value(0), "CPU threads; 0 = OMP_NUM_THREADS or all cores")(
      "out", po::value(&out_path), "append one JSON line per (B, k) to this file");
  if (!parse_options(args, desc)) return 0;
  const std::vector<int> batches = parse_ints(batches_text, "--batch");
  SPECDEC_CHECK(max_k >= 1 && context >= 1 && min_ms >= 0, "--max-k >= 1, --context >= 1 and --min-ms >= 0, got ",
                max_k, ", ", context, ", ", min_ms);
  set_threads(threads);
  experiments::check_device(device);

  auto loaded = load_model(model_path);
  const ModelConfig& c = loaded->config;
  SPECDEC_CHECK(context + max_k + 1 <= c.max_seq_len, "--context + --max-k + 1 <= the model's context of ",
                c.max_seq_len, ", got ", context + max_k + 1);
  const std::unique_ptr<Model> target = experiments::make_model(loaded, device);
  Model& model = *target;
  // Token ids only matter for their rows of the embedding: a fixed pseudo-random sequence, no tokenizer.
  std::vector<TokenId> ids(context + max_k + 1);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<TokenId>((i * 7919 + 13) % c.vocab_size);
  const std::vector<TokenId> prompt(ids.begin(), ids.begin() + context);

  // us[bi][k]: one forward over B x (k+1) tokens, all logits returned (the verifier reads every row).
  std::vector<std::vector<double>> us(batches.size(), std::vector<double>(max_k + 1));
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const int B = batches[bi];
    std::vector<std::unique_ptr<KVCache>> caches;
    std::vector<KVCache*> ptrs;
    ForwardResult fr;
    for (int b = 0; b < B; ++b) {
      caches.push_back(model.new_cache(context + max_k + 1));
      model.forward(*caches.back(), {.tokens = prompt, .n_logits = 0}, fr);
      ptrs.push_back(caches.back().get());
    }
    std::vector<ForwardResult> out(B);
    for (int k = 0; k <= max_k; ++k) {
      const std::vector<TokenId> block(ids.begin() + context, ids.begin() + context + k + 1);
      const std::vector<ForwardRequest> reqs(B, ForwardRequest{.tokens = block});
      us[bi][k] = time_us(
          [&] {
            model.forward_batch(ptrs, reqs, out);
            for (KVCache* cache : ptrs) cache->truncate(context);
          },
          min_ms);
    }
  }

  std::printf("specdec bench verify: %s (%s) on %s, %s, %d cached tokens per sequence, median over >= %d ms\n",
              model_path.c_str(), c.describe().c_str(), device.c_str(), backend_name(device).c_str(), context, min_ms);
  std::printf("  cost = forward over B x (k+1) tokens / forward over B x 1 token\n\n  %3s", "k");
  for (int B : batches) std::printf("  %10s B=%-3d %7s", "us", B, "cost");
  std::printf("\n");
  for (int k = 0; k <= max_k; ++k) {
    std::printf("  %3d", k);
    for (size_t bi = 0; bi < batches.size(); ++bi) std::printf("  %16.1f %7.2f", us[bi][k], us[bi][k] / us[bi][0]);
    std::printf("\n");
  }
  if (!out_path.empty()) {
    std::ofstream f(out_path, std::ios::app);
    for (size_t bi = 0; bi < batches.size(); ++bi)
      for (int k = 0; k <= max_k; ++k) {
        nlohmann::json j = {{"bench", "verify"},
                            {"model", model_path},
                            {"device", device},
                            {"kernels", backend_name(device)},
                            {"context", context},
                            {"batch", batches[bi]},
                            {"k", k},
                            {"tokens", batches[bi] * (k + 1)},
                            {"forward_us", us[bi][k]},
                            {"cost_vs_1", us[bi][k] / us[bi][0]}};
        f << j.dump() << "\n";
      }
  }
  return 0;
}

}  // namespace

int cmd_bench(const std::vector<std::string>& args) {
  const std::string usage =
      "a benchmark name: specdec bench decode|verify --model PATH (see specdec bench decode --help, "
      "specdec bench verify --help)";
  SPECDEC_CHECK(!args.empty(), usage);
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "decode") return bench_decode(rest);
  if (args[0] == "verify") return bench_verify(rest);
  if (args[0] == "--help" || args[0] == "-h") {
    std::cout << "specdec bench: benchmarks that print a table (and append JSON lines with --out)\n\n"
                 "  specdec bench decode --model PATH [--device cpu|cuda]   AR tokens/s and the cost of a T-token "
                 "forward\n"
                 "  specdec bench verify --model PATH [--device cpu|cuda] [--batch 1,4,16] [--max-k 8]\n"
                 "                                                         cost of B x (k+1) tokens vs B x 1\n";
    return 0;
  }
  SPECDEC_FAIL(usage, "; got '", args[0], "'");
}

}  // namespace specdec::cli
