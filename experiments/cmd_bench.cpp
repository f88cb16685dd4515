// specdec bench: benchmarks that print a table and, with --out, append JSON lines.
//   bench decode: AR decode tokens/s (prompt P tokens, N new tokens, median over repeats), where a step's
//                 time goes (draft / verify / outside both), and the cost of one forward over T tokens
//                 relative to T = 1, for T = 1..16 (verifying k = T-1 drafts).
//   bench verify: the cost of one batched forward over B sequences x (k+1) tokens relative to B x 1
//                 token and to 1 x 1 token, k = 1..K, for each batch size B (what batched verification
//                 costs).
// Both run on --device cpu | cuda; forwards return with their logits on the host, so wall time is honest.
// Both print llama.cpp's cost of the same blocks beside specdec's (--llamacpp: llama-cpp-python running
// scripts/reference/llamacpp_blocks.py on the same GGUF file, one llama_decode per block, after
// specdec's timings so the two never share the cores).
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <fstream>
#include <iostream>
#include <sstream>
#include <utility>

#include <boost/program_options.hpp>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "experiments/backend.h"
#include "experiments/options.h"
#include "kernels/cpu/op_profile.h"
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

// --stat: how repeated timings are summarised. "median" (default); "min" on a machine with other load,
// which only ever slows a call down, so the fastest call estimates the unloaded cost.
bool g_stat_min = false;

double summary(std::vector<double> v) {
  if (g_stat_min) return *std::min_element(v.begin(), v.end());
  return median(std::move(v));
}

// Microseconds of f() (median or min, --stat) over at least 5 calls and min_ms milliseconds (after one
// warm-up call).
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
  return summary(std::move(samples));
}

// llama.cpp's microseconds per B x T block (us[B][T]), or why there are none (`why`).
struct LlamaCppBlocks {
  std::map<int, std::map<int, double>> us;
  std::string engine, why;
  bool has(int B, int T) const { return us.count(B) != 0 && us.at(B).count(T) != 0; }
};

// Runs scripts/reference/llamacpp_blocks.py with `python` ("auto": the source tree's .venv, else
// python3; "off": skip) on a GGUF model, after specdec's own timings. Never throws: a missing
// llama-cpp-python only leaves `why` set.
LlamaCppBlocks run_llamacpp_blocks(const std::string& python, const std::string& model_path, int context,
                                   const std::vector<int>& ts, const std::vector<int>& bs, int threads, int min_ms) {
  LlamaCppBlocks r;
  if (python == "off") {
    r.why = "skipped (--llamacpp off)";
    return r;
  }
  if (model_path.size() < 5 || model_path.substr(model_path.size() - 5) != ".gguf") {
    r.why = "not a GGUF model";
    return r;
  }
  const std::string src = SPECDEC_SOURCE_DIR;
  std::string py = python;
  if (py == "auto") py = std::filesystem::exists(src + "/.venv/bin/python") ? src + "/.venv/bin/python" : "python3";
  const auto join = [](const std::vector<int>& v) {
    std::string o;
    for (int x : v) {
      if (!o.empty()) o += ',';
      o += std::to_string(x);
    }
    return o;
  };
  const auto quote = [](const std::string& a) {
    std::string o = "'";
    for (char ch : a) o += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
    return o + "'";
  };
  const std::string cmd = quote(py) + " " + quote(src + "/scripts/reference/llamacpp_blocks.py") + " --model " +
                          quote(model_path) + " --threads " + std::to_string(threads) + " --context " +
                          std::to_string(context) + " --ts " + join(ts) + " --batch " + join(bs) + " --min-ms " +
                          std::to_string(min_ms) + (g_stat_min ? " --stat min" : "") + " 2>&1";
  std::fflush(stdout);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    r.why = "cannot run " + py;
    return r;
  }
  std::string text, last_json;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p) != nullptr) {
    text += buf.data();
  }
  pclose(p);
  std::stringstream lines(text);
  std::string tail;
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] == '{') last_json = line;
    if (!line.empty()) tail = line;
  }
  try {
    const auto j = nlohmann::json::parse(last_json);
    r.engine = j.at("engine").get<std::string>();
    for (const auto& [b, per_t] : j.at("us").items())
      for (const auto& [t, us] : per_t.items()) r.us[std::stoi(b)][std::stoi(t)] = us.get<double>();
  } catch (const std::exception&) {
    r.why = "unavailable (" + py + ": " + (tail.empty() ? std::string("no output") : tail) + ")";
  }
  return r;
}

int current_threads() { return omp_get_max_threads(); }

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
    SPECDEC_CHECK(pos == item.size() && !item.empty() && v >= 1, what,
                  " as a comma-separated list of integers >= 1, got '", s, "'");
    out.push_back(v);
  }
  SPECDEC_CHECK(!out.empty(), what, " as a comma-separated list of integers >= 1, got '", s, "'");
  return out;
}

int bench_decode(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, out_path, llamacpp, stat;
  int prompt_tokens = 64, new_tokens = 128, repeats = 3, max_t = 16;
  bool ops = false;
  BackendOptions backend;
  po::options_description desc(
      "specdec bench decode: AR decode tokens/s and the cost of a T-token forward relative to T = 1\n\n"
      "usage: specdec bench decode --model PATH [options]\n\noptions");
  desc.add_options()("help,h", "show this help")("model,m", po::value(&model_path)->required(), "model file")(
      "tokenizer,t", po::value(&tokenizer_path), "tokenizer file (llama2.c models)");
  backend.add_to(desc);
  desc.add_options()("prompt-tokens", po::value(&prompt_tokens)->default_value(64), "prompt length")(
      "new-tokens", po::value(&new_tokens)->default_value(128), "tokens to generate")(
      "repeats", po::value(&repeats)->default_value(3), "repeats (the median is reported)")(
      "max-t", po::value(&max_t)->default_value(16), "largest block size T of the cost table")(
      "llamacpp", po::value(&llamacpp)->default_value("auto"),
      "python with llama-cpp-python for llama.cpp's cost of the same blocks: auto (the source tree's "
      ".venv, else python3) | off | a python executable")(
      "stat", po::value(&stat)->default_value("median"),
      "median | min of the repeated block timings (min: on a machine with other load)")(
      "out", po::value(&out_path), "append a JSON line with the results to this file")(
      "ops", po::bool_switch(&ops),
      "also print the CPU forward's time per kind of op at T = 1 and T = --max-t (kernels/cpu/op_profile.h)");
  if (!parse_options(args, desc)) return 0;
  SPECDEC_CHECK(repeats >= 1 && new_tokens >= 2 && prompt_tokens >= 1 && max_t >= 1,
                "--repeats >= 1, --new-tokens >= 2, --prompt-tokens >= 1, --max-t >= 1");
  SPECDEC_CHECK(stat == "median" || stat == "min", "--stat median or min, got '", stat, "'");
  g_stat_min = stat == "min";
  backend.apply();
  const std::string& device = backend.device;

  auto loaded = load_model(model_path);
  const std::unique_ptr<Model> target = experiments::make_model(loaded, device);
  Model& model = *target;
  auto tok = load_tokenizer(*loaded, tokenizer_path);
  const auto prompt = make_prompt(*tok, prompt_tokens);
  auto rule = verifiers::make_greedy_rule();

  std::vector<double> prefill_tps, decode_tps, step_us, draft_us, verify_us, forward_us;
  for (int r = 0; r < repeats + 1; ++r) {  // the first run warms caches and page-ins (and captures a graph)
    DecodeOptions opts;
    opts.max_new_tokens = new_tokens;
    const DecodeResult res = speculative_decode(model, nullptr, *rule, prompt, opts);
    if (r == 0) continue;
    prefill_tps.push_back((prompt_tokens - 1) / std::max(res.prefill_seconds, 1e-9));
    decode_tps.push_back(res.tokens.size() / std::max(res.decode_seconds, 1e-9));
    // where a step's time goes: the decoder's own per-step draft and verify times, the rest outside both
    double d = 0, v = 0, f = 0;
    for (const StepRecord& st : res.steps) d += st.t_draft_us, v += st.t_verify_us, f += st.t_forward_us;
    const double n = static_cast<double>(std::max<size_t>(res.steps.size(), 1));
    step_us.push_back(res.decode_seconds * 1e6 / n);
    draft_us.push_back(d / n);
    verify_us.push_back(v / n);
    forward_us.push_back(f / n);
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

  // The forward's time per kind of op at T = 1 and T = max_t (CPU backend; mean over the calls).
  std::array<cpu::OpTimes, 2> op_times{};
  if (ops) {
    for (int i = 0; i < 2; ++i) {
      const int T = i == 0 ? 1 : max_t;
      std::vector<TokenId> block(prompt.end() - T, prompt.end());
      cpu::op_profile_take();
      cpu::op_profile_enable(true);
      for (int r = 0; r < 200; ++r) {
        model.forward(*cache, {.tokens = block}, fr);
        cache->truncate(prompt_tokens);
      }
      cpu::op_profile_enable(false);
      op_times[i] = cpu::op_profile_take();
      for (double& u : op_times[i].us) u /= 200;
    }
  }

  std::vector<int> ts;
  for (int T = 1; T <= max_t; ++T) ts.push_back(T);
  const LlamaCppBlocks ref = run_llamacpp_blocks(llamacpp, model_path, prompt_tokens, ts, {1}, current_threads(), 400);

  const std::string kernels = backend_name(device);
  std::printf(
      "specdec bench decode: %s (%s) on %s, %s, %d threads, prompt %d tokens, %d new tokens, median of %d; "
      "blocks: %s\n",
      model_path.c_str(), loaded->config.describe().c_str(), device.c_str(), kernels.c_str(), current_threads(),
      prompt_tokens, new_tokens, repeats, stat.c_str());
  std::printf("  prefill  %8.1f tok/s\n  decode   %8.1f tok/s\n\n", median(prefill_tps), median(decode_tps));
  const double st = median(step_us), dr = median(draft_us), ve = median(verify_us), fw = median(forward_us);
  std::printf(
      "  AR step %.1f us (mean over the steps, median of the repeats): draft %.1f | target forward %.1f | "
      "acceptance, argmax and cache %.1f | outside both (sampling loop, stop checks, records) %.1f\n\n",
      st, dr, fw, std::max(0.0, ve - fw), std::max(0.0, st - dr - ve));
  std::printf("  %3s  %12s  %10s  %14s  %14s  %10s\n", "T", "forward us", "cost / T=1", "us per token", "llama.cpp us",
              "cost / T=1");
  for (int T = 1; T <= max_t; ++T) {
    std::printf("  %3d  %12.1f  %10.2f  %14.1f", T, t_us[T], t_us[T] / t_us[1], t_us[T] / T);
    if (ref.has(1, T) && ref.has(1, 1))
      std::printf("  %14.1f  %10.2f\n", ref.us.at(1).at(T), ref.us.at(1).at(T) / ref.us.at(1).at(1));
    else
      std::printf("  %14s  %10s\n", "-", "-");
  }
  if (ops) {
    if (op_times[0].total_us() == 0) {
      std::printf("\n  --ops: no op timeline from the %s backend (the CPU backend records one)\n", device.c_str());
    } else {
      std::printf("\n  forward time per op (us, mean of 200 forwards, wall time on the calling thread)\n");
      std::printf("  %-22s %10s %10s %10s %12s\n", "op", "T=1", ("T=" + std::to_string(max_t)).c_str(), "ratio",
                  "extra/token");
      for (int k = 0; k <= cpu::kOpKinds; ++k) {
        const bool total = k == cpu::kOpKinds;
        const double a = total ? op_times[0].total_us() : op_times[0].us[k];
        const double b = total ? op_times[1].total_us() : op_times[1].us[k];
        if (!total && a == 0 && b == 0) continue;
        std::printf("  %-22s %10.1f %10.1f %10.2f %12.1f\n",
                    total ? "total" : std::string(cpu::op_name(static_cast<cpu::Op>(k))).c_str(), a, b,
                    a > 0 ? b / a : 0.0, max_t > 1 ? (b - a) / (max_t - 1) : 0.0);
      }
    }
  }
  std::printf("  llama.cpp: %s\n",
              ref.why.empty() ? (ref.engine + ", one llama_decode of T tokens, all logits").c_str() : ref.why.c_str());
  if (!out_path.empty()) {
    nlohmann::json j = {{"bench", "decode"},
                        {"model", model_path},
                        {"device", device},
                        {"kernels", kernels},
                        {"prompt_tokens", prompt_tokens},
                        {"new_tokens", new_tokens},
                        {"prefill_tok_s", median(prefill_tps)},
                        {"decode_tok_s", median(decode_tps)},
                        {"threads", current_threads()},
                        {"step_us", st},
                        {"step_draft_us", dr},
                        {"step_verify_us", ve},
                        {"step_forward_us", fw},
                        {"forward_us", std::vector<double>(t_us.begin() + 1, t_us.end())}};
    if (ref.why.empty()) {
      std::vector<double> l;
      for (int T = 1; T <= max_t; ++T) l.push_back(ref.has(1, T) ? ref.us.at(1).at(T) : 0.0);
      j["llamacpp_engine"] = ref.engine;
      j["llamacpp_forward_us"] = l;
    }
    std::ofstream(out_path, std::ios::app) << j.dump() << "\n";
  }
  return 0;
}

// B caches of `capacity` tokens, each holding `prompt` (the context a verification block is timed over).
struct PrefilledBatch {
  std::vector<std::unique_ptr<KVCache>> caches;
  std::vector<KVCache*> ptrs;
};

PrefilledBatch prefilled_batch(Model& model, int B, std::span<const TokenId> prompt, int capacity) {
  PrefilledBatch p;
  ForwardResult fr;
  for (int b = 0; b < B; ++b) {
    p.caches.push_back(model.new_cache(capacity));
    model.forward(*p.caches.back(), {.tokens = prompt, .n_logits = 0}, fr);
    p.ptrs.push_back(p.caches.back().get());
  }
  return p;
}

// One forward_batch of `reqs` over the batch's caches, timed (time_us), each cache cut back to `context`
// after every repetition.
double time_block(Model& model, const PrefilledBatch& batch, std::span<const ForwardRequest> reqs,
                  std::vector<ForwardResult>& out, int context, int min_ms) {
  return time_us(
      [&] {
        model.forward_batch(batch.ptrs, reqs, out);
        for (KVCache* cache : batch.ptrs) cache->truncate(context);
      },
      min_ms);
}

// One ragged batch (sequence b verifies blocks[b] tokens) timed against what the cost table charges for it:
// CostTable::ragged_forward_us over a table of the uniform blocks of floor(N/B) and floor(N/B) + 1 tokens at
// the same B and context, timed in the same invocation (three alternating rounds, the median of each).
struct RaggedTiming {
  std::vector<int> blocks;
  int tokens = 0;
  double measured_us = 0, priced_us = 0;
};

std::vector<RaggedTiming> time_ragged(Model& model, const std::vector<std::vector<int>>& raggeds,
                                      const std::vector<TokenId>& ids, int context, int longest, int min_ms) {
  std::vector<RaggedTiming> out;
  for (const std::vector<int>& blocks : raggeds) {
    const int B = static_cast<int>(blocks.size());
    int N = 0;
    for (int t : blocks) N += t;
    const int lo = N / B;
    const PrefilledBatch batch = prefilled_batch(model, B, std::span(ids).first(context), context + longest);
    std::vector<ForwardResult> res(B);
    const auto timed = [&](const std::vector<int>& lengths) {
      std::vector<ForwardRequest> reqs;
      for (int t : lengths) reqs.push_back({.tokens = std::span(ids).subspan(context, t)});
      return time_block(model, batch, reqs, res, context, min_ms);
    };
    // Uniform blocks of lo and lo + 1 tokens (lo = 0 cannot happen: every block has >= 1 token).
    std::array<std::vector<double>, 3> rounds;
    for (int round = 0; round < 3; ++round) {
      rounds[0].push_back(timed(blocks));
      rounds[1].push_back(timed(std::vector<int>(B, lo)));
      rounds[2].push_back(timed(std::vector<int>(B, lo + 1)));
    }
    CostTable table;
    table.source = "bench verify --ragged";
    table.tokens = {lo, lo + 1};
    table.batch = {B};
    table.context = {context};
    table.forward = {median(rounds[1]), median(rounds[2])};
    out.push_back({blocks, N, median(rounds[0]), table.ragged_forward_us(N, B, context)});
  }
  return out;
}

int bench_verify(const std::vector<std::string>& args) {
  std::string model_path, out_path, batches_text, llamacpp, stat;
  std::vector<std::string> ragged_text;
  int max_k = 15, context = 128, min_ms = 300;
  BackendOptions backend;
  po::options_description desc(
      "specdec bench verify: the cost of one batched forward over B sequences x (k+1) tokens relative to\n"
      "B x 1 token (verifying k draft tokens per sequence), k = 1..max-k, for each batch size B\n\n"
      "usage: specdec bench verify --model PATH [options]\n\noptions");
  desc.add_options()("help,h", "show this help")("model,m", po::value(&model_path)->required(), "model file");
  backend.add_to(desc);
  desc.add_options()("batch", po::value(&batches_text)->default_value("1,4,16"),
                     "batch sizes B, a comma-separated list")("max-k", po::value(&max_k)->default_value(8),
                                                              "largest number of draft tokens k")(
      "context", po::value(&context)->default_value(128), "tokens already cached per sequence before the block")(
      "min-ms", po::value(&min_ms)->default_value(300), "time each configuration for at least this long (median)")(
      "llamacpp", po::value(&llamacpp)->default_value("auto"),
      "python with llama-cpp-python for llama.cpp's cost of the same blocks: auto | off | a python executable")(
      "stat", po::value(&stat)->default_value("median"),
      "median | min of the repeated block timings (min: on a machine with other load)")(
      "ragged", po::value(&ragged_text)->composing(),
      "a ragged batch: each sequence's block length, e.g. 1,1,1,1,1,1,3,3 (repeatable); timed against the "
      "cost table's price for it (CostTable::ragged_forward_us over the uniform blocks around it, timed "
      "in the same invocation)")("out", po::value(&out_path), "append one JSON line per (B, k) to this file");
  if (!parse_options(args, desc)) return 0;
  const std::vector<int> batches = parse_ints(batches_text, "--batch");
  std::vector<std::vector<int>> raggeds;
  for (const std::string& r : ragged_text) raggeds.push_back(parse_ints(r, "--ragged"));
  SPECDEC_CHECK(max_k >= 1 && context >= 1 && min_ms >= 0, "--max-k >= 1, --context >= 1 and --min-ms >= 0, got ",
                max_k, ", ", context, ", ", min_ms);
  SPECDEC_CHECK(stat == "median" || stat == "min", "--stat median or min, got '", stat, "'");
  g_stat_min = stat == "min";
  backend.apply();
  const std::string& device = backend.device;

  auto loaded = load_model(model_path);
  const ModelConfig& c = loaded->config;
  int longest = max_k + 1;
  for (const std::vector<int>& r : raggeds) longest = std::max(longest, *std::max_element(r.begin(), r.end()) + 1);
  SPECDEC_CHECK(context + longest <= c.max_seq_len,
                "--context + the longest block (--max-k + 1, --ragged) <= the model's context of ", c.max_seq_len,
                ", got ", context + longest);
  const std::unique_ptr<Model> target = experiments::make_model(loaded, device);
  Model& model = *target;
  // Token ids only matter for their rows of the embedding: a fixed pseudo-random sequence, no tokenizer.
  std::vector<TokenId> ids(context + longest);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<TokenId>((i * 7919 + 13) % c.vocab_size);
  const std::vector<TokenId> prompt(ids.begin(), ids.begin() + context);

  // us[bi][k]: one forward over B x (k+1) tokens, all logits returned (the verifier reads every row).
  std::vector<std::vector<double>> us(batches.size(), std::vector<double>(max_k + 1));
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const int B = batches[bi];
    const PrefilledBatch batch = prefilled_batch(model, B, prompt, context + max_k + 1);
    std::vector<ForwardResult> out(B);
    for (int k = 0; k <= max_k; ++k) {
      const std::vector<TokenId> block(ids.begin() + context, ids.begin() + context + k + 1);
      const std::vector<ForwardRequest> reqs(B, ForwardRequest{.tokens = block});
      us[bi][k] = time_block(model, batch, reqs, out, context, min_ms);
    }
  }

  const std::vector<RaggedTiming> ragged = time_ragged(model, raggeds, ids, context, longest, min_ms);

  std::vector<int> ts;
  for (int k = 0; k <= max_k; ++k) ts.push_back(k + 1);
  const LlamaCppBlocks ref = run_llamacpp_blocks(llamacpp, model_path, context, ts, batches, current_threads(), min_ms);
  // one sequence, one token: the base of the "x 1x1" columns (B = 1 if measured, else llama.cpp's missing)
  const auto b1 = std::find(batches.begin(), batches.end(), 1);
  const double one = b1 != batches.end() ? us[b1 - batches.begin()][0] : 0.0;
  const double ref_one = ref.has(1, 1) ? ref.us.at(1).at(1) : 0.0;

  std::printf("specdec bench verify: %s (%s) on %s, %s, %d threads, %d cached tokens per sequence, %s over >= %d ms\n",
              model_path.c_str(), c.describe().c_str(), device.c_str(), backend_name(device).c_str(), current_threads(),
              context, stat.c_str(), min_ms);
  std::printf(
      "  T = k+1 tokens per sequence; cost xBx1 = forward over B x T tokens / over B x 1; x1x1 = / over 1 x 1 "
      "(needs B = 1 in --batch)\n");
  for (size_t bi = 0; bi < batches.size(); ++bi) {
    const int B = batches[bi];
    std::printf("\n  B=%d\n  %3s  %12s %7s %7s  %14s %7s %7s\n", B, "T", "specdec us", "xBx1", "x1x1", "llama.cpp us",
                "xBx1", "x1x1");
    for (int k = 0; k <= max_k; ++k) {
      std::printf("  %3d  %12.1f %7.2f", k + 1, us[bi][k], us[bi][k] / us[bi][0]);
      if (one > 0)
        std::printf(" %7.2f", us[bi][k] / one);
      else
        std::printf(" %7s", "-");
      if (ref.has(B, k + 1) && ref.has(B, 1)) {
        const double l = ref.us.at(B).at(k + 1);
        std::printf("  %14.1f %7.2f", l, l / ref.us.at(B).at(1));
        if (ref_one > 0)
          std::printf(" %7.2f\n", l / ref_one);
        else
          std::printf(" %7s\n", "-");
      } else {
        std::printf("  %14s %7s %7s\n", "-", "-", "-");
      }
    }
  }
  std::printf("  llama.cpp: %s\n", ref.why.empty()
                                       ? (ref.engine + ", one llama_decode of B x T tokens, all logits").c_str()
                                       : ref.why.c_str());
  if (!ragged.empty()) {
    std::printf(
        "\n  ragged batches: measured against the cost table's price (CostTable::ragged_forward_us of the\n"
        "  uniform blocks of floor(N/B) and floor(N/B) + 1 tokens, timed with it)\n");
    std::printf("  %-28s %3s %4s  %12s %12s %8s\n", "blocks", "B", "N", "ragged us", "table us", "ratio");
    for (const RaggedTiming& r : ragged) {
      std::string blocks;
      for (int t : r.blocks) blocks += (blocks.empty() ? "" : ",") + std::to_string(t);
      std::printf("  %-28s %3zu %4d  %12.1f %12.1f %8.3f\n", blocks.c_str(), r.blocks.size(), r.tokens, r.measured_us,
                  r.priced_us, r.measured_us / r.priced_us);
    }
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
                            {"threads", current_threads()},
                            {"forward_us", us[bi][k]},
                            {"cost_vs_1", us[bi][k] / us[bi][0]}};
        if (ref.has(batches[bi], k + 1)) j["llamacpp_forward_us"] = ref.us.at(batches[bi]).at(k + 1);
        f << j.dump() << "\n";
      }
  }
  return 0;
}

}  // namespace

int bench_costs(const std::vector<std::string>& args);  // experiments/cmd_bench_costs.cpp

int cmd_bench(const std::vector<std::string>& args) {
  const std::string usage =
      "a benchmark name: specdec bench decode|verify|costs --model PATH (see specdec bench decode --help, "
      "specdec bench verify --help, specdec bench costs --help)";
  SPECDEC_CHECK(!args.empty(), usage);
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (args[0] == "decode") return bench_decode(rest);
  if (args[0] == "verify") return bench_verify(rest);
  if (args[0] == "costs") return bench_costs(rest);
  if (args[0] == "--help" || args[0] == "-h") {
    std::cout << "specdec bench: benchmarks that print a table (and append JSON lines with --out)\n\n"
                 "  specdec bench decode --model PATH [--device cpu|cuda]   AR tokens/s and the cost of a T-token "
                 "forward\n"
                 "  specdec bench verify --model PATH [--device cpu|cuda] [--batch 1,4,16] [--max-k 15]\n"
                 "                                                         cost of B x (k+1) tokens vs B x 1\n"
                 "  specdec bench costs --model PATH [--out results/costs.json]   the cost table of the cost_model "
                 "policy\n";
    return 0;
  }
  SPECDEC_FAIL(usage, "; got '", args[0], "'");
}

}  // namespace specdec::cli
