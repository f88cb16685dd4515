// specdec bench costs: measures the cost table (core/speculative/policy.h, docs/policies.md) that the
// cost_model policy and the oracle read: the target forward's microseconds for a batch of B sequences each
// verifying T tokens over C cached tokens, on a grid of T x B x C, and each requested drafter's extra cost per
// step when it drafts up to k tokens, k = 1..k-max. Within a pass the points the cost model weighs against
// each other are timed in turns (every T of one B and C; AR and every drafter's k), call by call, so a drift
// of the machine's speed falls on them alike; the whole grid is timed --passes times, pass after pass, and
// each point keeps the median of its passes. --fit monotone (the default) then
// writes the nearest table whose costs never fall as T, B, C or k grow (CostTable::monotone). With
// --acceptance-prompts it also measures each drafter's per-position acceptance on training prompts (the
// cost_model's prior = table; never an evaluation set). Writes the CostTable JSON and prints the table.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <functional>
#include <map>
#include <sstream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/batch_decoder.h"
#include "core/speculative/decoder.h"
#include "core/speculative/policy.h"
#include "drafters/register_builtin.h"
#include "drafters/train/collect.h"
#include "experiments/backend.h"
#include "experiments/cli.h"
#include "experiments/options.h"
#include "experiments/prompts.h"
#include "experiments/timed_turns.h"
#include "experiments/results_metrics.h"
#include "verifiers/rules.h"

namespace po = boost::program_options;

namespace specdec::cli {

int bench_costs(const std::vector<std::string>& args);

namespace {

using Clock = std::chrono::steady_clock;

// "1,2,4" -> {1, 2, 4}: integers >= lo, strictly increasing (the cost table's grids are); a one-line error
// naming the option otherwise.
std::vector<int> grid_of(const std::string& text, const std::string& option, int lo) {
  std::vector<int> grid;
  std::stringstream ss(text);
  const auto bad = [&](const std::string& why) {
    SPECDEC_FAIL(option, " = '", text, "': expected a comma-separated, strictly increasing list of integers >= ", lo,
                 " (", why, ")");
  };
  for (std::string item; std::getline(ss, item, ',');) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (item.empty() || used != item.size()) bad("'" + item + "' is not an integer");
    if (v < lo) bad(std::to_string(v) + " < " + std::to_string(lo));
    if (!grid.empty() && v <= grid.back()) bad(std::to_string(v) + " after " + std::to_string(grid.back()));
    grid.push_back(v);
  }
  if (grid.empty()) bad("empty");
  return grid;
}

std::vector<std::string> names_of(const std::string& text) {
  std::vector<std::string> names;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) names.push_back(item);
  return names;
}

// Microseconds of one call of f.
template <typename F>
double call_us(F&& f) {
  const auto t0 = Clock::now();
  f();
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
}

// A prompt of n tokens: English text repeated, so that ngram finds matches in it as it would in prose.
std::vector<TokenId> fixed_prompt(const Tokenizer& tok, int n) {
  const auto text = tok.encode(
      "Once upon a time there was a little girl who liked to play in the park with her dog. One day the dog ran "
      "after a red ball, and the little girl ran after the dog. ",
      false);
  std::vector<TokenId> ids;
  if (tok.add_bos_default() && tok.bos() >= 0) ids.push_back(tok.bos());
  while (static_cast<int>(ids.size()) < n) ids.insert(ids.end(), text.begin(), text.end());
  ids.resize(n);
  return ids;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M UTC", std::gmtime(&t));
  return buf;
}

// --acceptance-prompts: the training files and how many prompts of each.
struct AcceptancePrompts {
  std::vector<std::string> files;
  int per_file = 8;
  int max_prompt_tokens = 256;  // a longer prompt is skipped (the file's next one is taken)
};

// --acceptance-per-file prompts of each training file (evaluation sets refused, drafters/train/collect.h),
// spread evenly over the file, each as a run encodes it (the tokenizer's chat template, when it has one); `described`
// gets each file's name and count.
std::vector<std::vector<TokenId>> training_prompts(const AcceptancePrompts& ap, const Tokenizer& tok,
                                                   std::string& described) {
  std::vector<std::vector<TokenId>> out;
  const bool chat = tok.chat_template() != ChatTemplateKind::kPlain;
  for (const std::string& f : ap.files) {
    const std::string path = experiments::find_input_file(f);
    train::check_training_file(path);
    const std::vector<train::TrainingRecord> recs = train::load_training_records(path);
    // Slot s starts at record s * size / per_file; an over-long record passes the slot to the next one.
    const size_t per_file = static_cast<size_t>(ap.per_file);
    size_t taken = 0;
    for (size_t i = 0; i < recs.size() && taken < per_file; ++i) {
      i = std::max(i, taken * recs.size() / per_file);
      if (i >= recs.size()) break;
      std::vector<TokenId> ids = tok.encode_user_turn(recs[i].prompt, chat);
      if (ids.empty() || static_cast<int>(ids.size()) > ap.max_prompt_tokens) continue;
      out.push_back(std::move(ids));
      ++taken;
    }
    SPECDEC_CHECK(taken > 0, path, ": no prompt of at most --acceptance-max-prompt = ", ap.max_prompt_tokens,
                  " tokens");
    described += (described.empty() ? "" : ", ") + std::filesystem::path(path).filename().string() + " (" +
                 std::to_string(taken) + ")";
  }
  return out;
}

}  // namespace

int bench_costs(const std::vector<std::string>& args) {
  std::string model_path, tokenizer_path, out_path, tokens_text, batch_text, context_text, drafters_text, stat;
  std::vector<std::string> drafter_opts;
  std::string fit;
  int k_max = 8, min_ms = 100, prompt_tokens = 64, new_tokens = 48, passes = 3;
  BackendOptions backend;
  AcceptancePrompts acceptance;
  std::string acceptance_text;
  po::options_description desc(
      "specdec bench costs: the cost table of the cost_model policy and the oracle (docs/policies.md): the\n"
      "target forward's us for B sequences x T tokens over C cached tokens, and each drafter's extra us per\n"
      "step drafting up to k tokens\n\n"
      "usage: specdec bench costs --model PATH [options]\n\noptions");
  desc.add_options()("help,h", "show this help")("model,m", po::value(&model_path)->required(), "model file")(
      "tokenizer,t", po::value(&tokenizer_path), "tokenizer file (llama2.c models)");
  backend.add_to(desc);
  desc.add_options()("tokens", po::value(&tokens_text)->default_value("1,2,3,4,5,6,7,8,9"),
                     "grid of T, tokens per sequence in one forward (k + 1)")(
      "batch", po::value(&batch_text)->default_value("1,2,4,8"), "grid of B, sequences per forward")(
      "context", po::value(&context_text)->default_value("64,256,1024"), "grid of C, cached tokens per sequence")(
      "drafters", po::value(&drafters_text)->default_value("ngram,early_exit"),
      "drafters to measure, comma-separated (\"\" = none)")(
      "drafter-opt,o", po::value(&drafter_opts)->composing(),
      "a drafter's option NAME.KEY=VALUE (repeatable), e.g. -o medusa.heads=artifacts/medusa_smollm2.safetensors; "
      "the others keep their defaults")("k-max", po::value(&k_max)->default_value(8),
                                        "largest draft length of the drafters' rows")(
      "prompt-tokens", po::value(&prompt_tokens)->default_value(64), "the drafters' fixed prompt, in tokens")(
      "new-tokens", po::value(&new_tokens)->default_value(48), "tokens each drafter decode generates")(
      "min-ms", po::value(&min_ms)->default_value(100), "time each point for at least this long in each pass")(
      "stat", po::value(&stat)->default_value("median"), "median | min of the repeated timings in a pass")(
      "passes", po::value(&passes)->default_value(3),
      "time the whole grid this many times, pass after pass; a point's cost is the median of its passes")(
      "fit", po::value(&fit)->default_value("monotone"),
      "monotone: write the nearest table never falling as T, B, C or k grow | none: as measured")(
      "acceptance-prompts", po::value(&acceptance_text)->default_value(""),
      "training prompt files, comma-separated (data/train/...; evaluation sets are refused): each drafter's "
      "per-position acceptance on them, greedy at k = --k-max, for cost_model prior = table (\"\" = not measured)")(
      "acceptance-per-file", po::value(&acceptance.per_file)->default_value(8), "prompts taken from each file")(
      "acceptance-max-prompt", po::value(&acceptance.max_prompt_tokens)->default_value(256),
      "skip a training prompt longer than this many tokens")(
      "out", po::value(&out_path)->default_value("results/costs.json"), "the cost table's JSON file (overwritten)");
  if (!parse_options(args, desc)) return 0;
  const std::vector<int> ts = grid_of(tokens_text, "--tokens", 1), bs = grid_of(batch_text, "--batch", 1),
                         cs = grid_of(context_text, "--context", 0);
  const std::vector<std::string> drafter_names = names_of(drafters_text);
  // -o NAME.KEY=VALUE: the options of drafter NAME (one of --drafters).
  std::map<std::string, std::map<std::string, std::string>> options_of;
  for (const auto& [name_key, value] : parse_key_values(drafter_opts, "--drafter-opt")) {
    const size_t dot = name_key.find('.');
    SPECDEC_CHECK(dot != std::string::npos && dot > 0 && dot + 1 < name_key.size(), "--drafter-opt '", name_key, "=",
                  value, "': expected NAME.KEY=VALUE, a drafter of --drafters and one of its options");
    const std::string name = name_key.substr(0, dot);
    SPECDEC_CHECK(std::find(drafter_names.begin(), drafter_names.end(), name) != drafter_names.end(), "--drafter-opt '",
                  name_key, "=", value, "': drafter '", name, "' is not in --drafters (", drafters_text, ")");
    options_of[name][name_key.substr(dot + 1)] = value;
  }
  const auto options_for = [&](const std::string& name) {
    const auto it = options_of.find(name);
    return DrafterOptions(it == options_of.end() ? std::map<std::string, std::string>{} : it->second, name);
  };
  SPECDEC_CHECK(k_max >= 1 && min_ms >= 0 && prompt_tokens >= 2 && new_tokens >= 2,
                "--k-max >= 1, --min-ms >= 0, --prompt-tokens >= 2 and --new-tokens >= 2, got ", k_max, ", ", min_ms,
                ", ", prompt_tokens, ", ", new_tokens);
  acceptance.files = names_of(acceptance_text);
  SPECDEC_CHECK(acceptance.files.empty() || !drafter_names.empty(),
                "--acceptance-prompts needs at least one drafter in --drafters");
  SPECDEC_CHECK(acceptance.per_file >= 1 && acceptance.max_prompt_tokens >= 2,
                "--acceptance-per-file >= 1 and --acceptance-max-prompt >= 2, got ", acceptance.per_file, " and ",
                acceptance.max_prompt_tokens);
  SPECDEC_CHECK(stat == "median" || stat == "min", "--stat median or min, got '", stat, "'");
  SPECDEC_CHECK(passes >= 1, "--passes >= 1, got ", passes);
  SPECDEC_CHECK(fit == "monotone" || fit == "none", "--fit monotone or none, got '", fit, "'");
  const bool use_min = stat == "min";
  backend.apply();
  const std::string& device = backend.device;

  auto loaded = load_model(model_path);
  const ModelConfig& cfg = loaded->config;
  SPECDEC_CHECK(cs.back() + ts.back() <= cfg.max_seq_len, "--context ", cs.back(), " + --tokens ", ts.back(),
                " <= the model's context of ", cfg.max_seq_len, " tokens");
  SPECDEC_CHECK(prompt_tokens + new_tokens + k_max + 1 <= cfg.max_seq_len, "--prompt-tokens + --new-tokens + --k-max",
                " + 1 <= the model's context of ", cfg.max_seq_len, " tokens, got ",
                prompt_tokens + new_tokens + k_max + 1);
  const std::unique_ptr<Model> target = experiments::make_model(loaded, device);
  Model& model = *target;
  // The drafters' fixed prompt and its greedy AR output (synthetic and oracle read it); without drafters no
  // tokenizer is needed.
  std::unique_ptr<Tokenizer> tok;
  std::vector<TokenId> prompt;
  std::vector<std::vector<TokenId>> calib;  // --acceptance-prompts, encoded
  std::string calib_described;
  size_t calib_longest = 0;
  auto rule = verifiers::make_greedy_rule();
  DecodeOptions opts;
  opts.max_new_tokens = new_tokens;
  DecodeResult ar;
  if (!drafter_names.empty()) {
    tok = load_tokenizer(*loaded, tokenizer_path);
    prompt = fixed_prompt(*tok, prompt_tokens);
    // Read (and an evaluation set refused) before anything is timed; decoded after the timings.
    if (!acceptance.files.empty()) {
      calib = training_prompts(acceptance, *tok, calib_described);
      for (const auto& p : calib) calib_longest = std::max(calib_longest, p.size());
      SPECDEC_CHECK(static_cast<int>(calib_longest) + new_tokens + k_max + 1 <= cfg.max_seq_len,
                    "--acceptance-prompts: a prompt of ", calib_longest,
                    " tokens + --new-tokens + --k-max + 1 exceeds the model's context of ", cfg.max_seq_len,
                    " tokens (lower --acceptance-max-prompt)");
    }
    ar = speculative_decode(model, nullptr, *rule, prompt, opts);
  }
  // The drafters share their weights as a run's do (so that the batched ones batch).
  DrafterSharedState shared;
  const DrafterEnv env{.target = &model,
                       .tokenizer = tok.get(),
                       .reference = &ar.tokens,
                       .max_context = prompt_tokens + new_tokens + k_max + 1,
                       .make_model = experiments::model_factory(device),
                       .shared = &shared,
                       .target_path = model_path};
  // Every drafter is made once before anything is timed: a bad name or a drafter that needs options is an
  // error now. Those that draft batched (Drafter::batch_key) also get rows at each B >= 2 of the grid.
  std::vector<const DrafterInfo*> infos;
  std::vector<size_t> batched;  // indices into drafter_names
  for (size_t di = 0; di < drafter_names.size(); ++di) {
    infos.push_back(&drafters::default_registry().resolve(drafter_names[di]));
    if (make_drafter(*infos.back(), env, options_for(drafter_names[di]))->batch_key() != nullptr) batched.push_back(di);
  }
  std::vector<int> bs_batched;  // the grid's B >= 2
  for (const int B : bs)
    if (B >= 2) bs_batched.push_back(B);
  if (batched.empty()) bs_batched.clear();

  CostTable table;
  table.source = device + ", " + std::to_string(omp_get_max_threads()) + " threads, " + model_path + " (" +
                 cfg.describe() + "), " + utc_now() + ", " + stat + " per pass, median of " + std::to_string(passes) +
                 " pass(es)" + (fit == "monotone" ? ", monotone fit" : "");
  table.tokens = ts;
  table.batch = bs;
  table.context = cs;
  const size_t n_forward = ts.size() * bs.size() * cs.size();
  const size_t n_batched = batched.size() * bs_batched.size() * k_max;
  const size_t n_points = (n_forward + drafter_names.size() * k_max + n_batched) * passes;
  size_t point = 0;
  const auto pass_tag = [&](int pass) {
    return passes == 1 ? std::string() : "pass " + std::to_string(pass + 1) + "/" + std::to_string(passes) + " ";
  };

  // Token ids only matter for their rows of the embedding: a fixed pseudo-random sequence.
  std::vector<TokenId> ids(cs.back() + ts.back());
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<TokenId>((i * 7919 + 13) % cfg.vocab_size);
  // samples[i]: point i's cost in every pass so far (forward points, then each drafter's k = 1..k_max, then
  // each batched drafter's k = 1..k_max at each B of bs_batched).
  const size_t first_batched = n_forward + drafter_names.size() * k_max;
  std::vector<std::vector<double>> samples(first_batched + n_batched);
  const auto batched_index = [&](size_t j, size_t bi, int k) {
    return first_batched + (j * bs_batched.size() + bi) * k_max + (k - 1);
  };
  const auto forward_pass = [&](int pass) {
    for (size_t bi = 0; bi < bs.size(); ++bi) {
      const int B = bs[bi];
      // B caches of the largest context, filled anew in every pass; each smaller C truncates them (the grid is
      // walked from the largest C) and the timed forward's tokens are truncated away after each call.
      std::vector<std::unique_ptr<KVCache>> caches;
      std::vector<KVCache*> ptrs;
      ForwardResult fr;
      for (int b = 0; b < B; ++b) {
        caches.push_back(model.new_cache(cs.back() + ts.back()));
        if (cs.back() > 0)
          model.forward(*caches.back(),
                        {.tokens = std::span<const TokenId>(ids.data(), static_cast<size_t>(cs.back())), .n_logits = 0},
                        fr);
        ptrs.push_back(caches.back().get());
      }
      std::vector<ForwardResult> out(B);
      for (size_t ci = cs.size(); ci-- > 0;) {
        const int C = cs[ci];
        for (KVCache* c : ptrs) c->truncate(C);
        // Every T of this (B, C) in turns: the cost model weighs T against T + 1.
        std::vector<std::vector<ForwardRequest>> reqs;
        std::vector<std::function<double()>> calls;
        for (const int T : ts) {
          const std::span<const TokenId> block(ids.data() + C, static_cast<size_t>(T));
          reqs.emplace_back(B, ForwardRequest{.tokens = block});
        }
        for (const auto& r : reqs)
          calls.emplace_back([&] {
            return call_us([&] {
              model.forward_batch(ptrs, r, out);
              for (KVCache* c : ptrs) c->truncate(C);
            });
          });
        const std::vector<double> us = experiments::timed_in_turns(calls, min_ms, use_min);
        for (size_t ti = 0; ti < ts.size(); ++ti) {
          samples[(ti * bs.size() + bi) * cs.size() + ci].push_back(us[ti]);
          std::fprintf(stderr, "[%zu/%zu] %sforward T=%d B=%d C=%d: %.1f us\n", ++point, n_points,
                       pass_tag(pass).c_str(), ts[ti], B, C, us[ti]);
        }
      }
    }
  };

  // A drafter whose first proposal reads a backlog (Drafter::backlog: EAGLE's queued prompt) spends more in
  // its first step than in the others: that excess, the first step's t_draft_us less the median of the later
  // drafting steps', is the backlog's cost. It is taken out of the per-step cost below (the backlog is priced
  // apart, per token: CostTable::drafters_backlog) and, per backlog token, collected for the table.
  std::vector<std::vector<double>> backlog_samples(infos.size());
  const auto backlog_excess_us = [](const DecodeResult& r) {
    if (r.steps.size() < 2 || r.steps[0].backlog <= 0) return 0.0;
    std::vector<double> later;
    for (size_t i = 1; i < r.steps.size(); ++i)
      if (r.steps[i].n_proposed > 0) later.push_back(r.steps[i].t_draft_us);
    if (later.empty()) return 0.0;
    return std::max(0.0, r.steps[0].t_draft_us - results::median_of(later));
  };
  // A drafter's cost at k: what a greedy decode drafting up to k tokens spends per step outside the target
  // forward (propose, accept, the acceptance rule over k + 1 rows), less what AR spends there and less its
  // first proposal's backlog; 0 at k = 0. One decode is one call; AR and every drafter's k = 1..k_max are
  // timed in turns.
  const auto outside_us = [&](const DrafterInfo* info, const std::string& name, int k, size_t di) {
    DecodeOptions o = opts;
    o.k = std::max(k, 1);
    const std::unique_ptr<Drafter> d = info ? make_drafter(*info, env, options_for(name)) : nullptr;
    const DecodeResult r = speculative_decode(model, d.get(), *rule, prompt, o);
    double forward = 0;
    for (const StepRecord& st : r.steps) forward += st.t_forward_us;
    const double excess = backlog_excess_us(r);
    if (info && !r.steps.empty() && r.steps[0].backlog > 0) backlog_samples[di].push_back(excess / r.steps[0].backlog);
    return (r.decode_seconds * 1e6 - forward - excess) / static_cast<double>(r.steps.size());
  };
  const auto drafter_pass = [&](int pass) {
    if (drafter_names.empty()) return 0.0;
    std::vector<std::function<double()>> calls{[&] { return outside_us(nullptr, "", 0, 0); }};
    for (size_t di = 0; di < infos.size(); ++di)
      for (int k = 1; k <= k_max; ++k)
        calls.emplace_back([&, di, k] { return outside_us(infos[di], drafter_names[di], k, di); });
    const std::vector<double> us = experiments::timed_in_turns(calls, min_ms, use_min);
    const double ar_us = us[0];
    for (size_t di = 0; di < infos.size(); ++di)
      for (int k = 1; k <= k_max; ++k) {
        const double extra = std::max(0.0, us[1 + di * k_max + (k - 1)] - ar_us);
        samples[n_forward + di * k_max + (k - 1)].push_back(extra);
        std::fprintf(stderr, "[%zu/%zu] %sdrafter %s k=%d: %.1f us per step\n", ++point, n_points,
                     pass_tag(pass).c_str(), drafter_names[di].c_str(), k, extra);
      }
    return ar_us;
  };
  // A batched drafter's cost at k and B: the same per sequence-step, from a batched decode of B copies of
  // the prompt (requests 0 .. B - 1), outside the batched forwards and the prefills; less AR's at that B.
  const auto outside_batched_us = [&](const DrafterInfo* info, const std::string& name, int k, int B) {
    std::vector<BatchRequest> reqs;
    for (int b = 0; b < B; ++b) {
      BatchRequest r{.prompt = prompt, .opts = opts, .rule = rule.get()};
      r.opts.k = std::max(k, 1);
      r.opts.request = static_cast<uint64_t>(b);
      if (info)
        r.make_drafter = [&, info, b] {
          DrafterEnv e = env;
          e.request = static_cast<uint64_t>(b);
          return make_drafter(*info, e, options_for(name));
        };
      reqs.push_back(std::move(r));
    }
    const auto t0 = std::chrono::steady_clock::now();
    const BatchResult res =
        batch_decode(model, std::move(reqs), {.max_sequences = B, .max_tokens_per_step = B * (k + 1)});
    double us = std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
    double seq_steps = 0;
    for (const BatchStepRecord& st : res.steps) {
      us -= st.t_forward_us;
      seq_steps += st.n_sequences;
    }
    for (const DecodeResult& r : res.results) us -= r.prefill_seconds * 1e6 + backlog_excess_us(r);
    return us / seq_steps;
  };
  const auto batched_pass = [&](int pass) {
    for (size_t bi = 0; bi < bs_batched.size(); ++bi) {
      const int B = bs_batched[bi];
      std::vector<std::function<double()>> calls{[&, B] { return outside_batched_us(nullptr, "", 0, B); }};
      for (const size_t di : batched)
        for (int k = 1; k <= k_max; ++k)
          calls.emplace_back([&, di, k, B] { return outside_batched_us(infos[di], drafter_names[di], k, B); });
      const std::vector<double> us = experiments::timed_in_turns(calls, min_ms, use_min);
      for (size_t j = 0; j < batched.size(); ++j)
        for (int k = 1; k <= k_max; ++k) {
          const double extra = std::max(0.0, us[1 + j * k_max + (k - 1)] - us[0]);
          samples[batched_index(j, bi, k)].push_back(extra);
          std::fprintf(stderr, "[%zu/%zu] %sdrafter %s k=%d B=%d: %.1f us per sequence-step\n", ++point, n_points,
                       pass_tag(pass).c_str(), drafter_names[batched[j]].c_str(), k, B, extra);
        }
    }
  };
  std::vector<double> ar_samples;
  for (int pass = 0; pass < passes; ++pass) {
    forward_pass(pass);
    ar_samples.push_back(drafter_pass(pass));
    batched_pass(pass);
  }
  table.forward.resize(n_forward);
  for (size_t i = 0; i < n_forward; ++i) table.forward[i] = results::median_of(samples[i]);
  for (size_t di = 0; di < infos.size(); ++di) {
    std::vector<double>& row = table.drafters[drafter_names[di]];
    row.assign(1, 0.0);
    for (int k = 1; k <= k_max; ++k) row.push_back(results::median_of(samples[n_forward + di * k_max + (k - 1)]));
  }
  for (size_t j = 0; j < batched.size(); ++j)
    for (size_t bi = 0; bi < bs_batched.size(); ++bi) {
      std::vector<double>& row = table.drafters_batched[drafter_names[batched[j]]][bs_batched[bi]];
      row.assign(1, 0.0);
      for (int k = 1; k <= k_max; ++k) row.push_back(results::median_of(samples[batched_index(j, bi, k)]));
    }
  for (size_t di = 0; di < infos.size(); ++di)
    if (!backlog_samples[di].empty())
      table.drafters_backlog[drafter_names[di]] = results::median_of(backlog_samples[di]);
  // Each drafter's acceptance on the training prompts: a greedy decode of every prompt drafting up to k_max
  // tokens each step; a_j = accepted_j / reached_j over all of them, counted as the cost_model's estimator
  // counts its evidence (AcceptanceEstimator, undecayed, a vanishing prior: a position never reached takes
  // the one before it). Not timed; run after the timings so it cannot disturb them.
  if (!calib.empty()) {
    DrafterEnv cenv = env;
    cenv.max_context = static_cast<int>(calib_longest) + new_tokens + k_max + 1;
    cenv.reference = nullptr;  // the fixed prompt's AR output, not these prompts' own
    std::vector<int64_t> drafted(infos.size(), 0);
    for (size_t di = 0; di < infos.size(); ++di) {
      AcceptanceEstimator counts(k_max, 0.5, 1e-9, 1.0);
      for (size_t i = 0; i < calib.size(); ++i) {
        DecodeOptions o = opts;
        o.k = k_max;
        o.request = static_cast<uint64_t>(i);
        cenv.request = static_cast<uint64_t>(i);
        const std::unique_ptr<Drafter> d = make_drafter(*infos[di], cenv, options_for(drafter_names[di]));
        const DecodeResult r = speculative_decode(model, d.get(), *rule, calib[i], o);
        for (const StepRecord& st : r.steps)
          if (st.n_proposed > 0) {
            counts.observe(st.max_depth, st.n_accepted);
            ++drafted[di];
          }
        std::fprintf(stderr, "\racceptance: drafter %s, prompt %zu/%zu", drafter_names[di].c_str(), i + 1,
                     calib.size());
      }
      std::fprintf(stderr, "\n");
      table.acceptance[drafter_names[di]] = counts.estimate();
    }
    table.acceptance_source = calib_described + "; greedy, k = " + std::to_string(k_max) + ", " +
                              std::to_string(new_tokens) + " new tokens each; drafted steps:";
    for (size_t di = 0; di < infos.size(); ++di)
      table.acceptance_source += " " + drafter_names[di] + " " + std::to_string(drafted[di]);
  }
  const double ar_us = results::median_of(ar_samples);
  // The spread of the passes: the largest (max - min) / median of a forward point, the machine's drift over
  // the grid's minutes (passes = 1: none to report).
  double spread = 0;
  for (size_t i = 0; i < n_forward && passes > 1; ++i) {
    const auto [lo, hi] = std::minmax_element(samples[i].begin(), samples[i].end());
    if (table.forward[i] > 0) spread = std::max(spread, (*hi - *lo) / table.forward[i]);
  }
  // The fit: how far it moved the measured medians (the largest change, relative to the measured point).
  std::string fit_line = "as measured (--fit none)";
  if (fit == "monotone") {
    const CostTable fitted = table.monotone();
    size_t moved = 0;
    double largest = 0;
    for (size_t i = 0; i < n_forward; ++i) {
      const double d = std::abs(fitted.forward[i] - table.forward[i]);
      if (d > 1e-9 * std::max(1.0, table.forward[i])) ++moved;
      if (table.forward[i] > 0) largest = std::max(largest, d / table.forward[i]);
    }
    for (const auto& [name, row] : table.drafters)
      for (size_t k = 0; k < row.size(); ++k)
        if (std::abs(fitted.drafters.at(name)[k] - row[k]) > 1e-9 * std::max(1.0, row[k])) ++moved;
    for (const auto& [name, rows] : table.drafters_batched)
      for (const auto& [B, row] : rows)
        for (size_t k = 0; k < row.size(); ++k)
          if (std::abs(fitted.drafters_batched.at(name).at(B)[k] - row[k]) > 1e-9 * std::max(1.0, row[k])) ++moved;
    char buf[160];
    std::snprintf(buf, sizeof buf, "monotone fit: %zu point(s) moved, a forward point by at most %.1f%%", moved,
                  100 * largest);
    fit_line = buf;
    table = fitted;
  }

  std::printf("specdec bench costs: %s\n", table.source.c_str());
  if (passes > 1)
    std::printf("  passes: %d; the largest spread of a forward point over them: %.1f%% of its median\n", passes,
                100 * spread);
  std::printf("  %s\n  target forward, us (B sequences x T tokens over C cached tokens)\n", fit_line.c_str());
  for (size_t ci = 0; ci < cs.size(); ++ci) {
    std::printf("\n  C=%d\n  %4s", cs[ci], "T");
    for (int B : bs) std::printf("  %10s", ("B=" + std::to_string(B)).c_str());
    std::printf("\n");
    for (size_t ti = 0; ti < ts.size(); ++ti) {
      std::printf("  %4d", ts[ti]);
      for (size_t bi = 0; bi < bs.size(); ++bi)
        std::printf("  %10.1f", table.forward[(ti * bs.size() + bi) * cs.size() + ci]);
      std::printf("\n");
    }
  }
  if (!drafter_names.empty()) {
    std::printf("\n  drafters, us per step beyond AR's (%.1f us outside the forward)\n  %4s", ar_us, "k");
    for (const auto& name : drafter_names) std::printf("  %12s", name.c_str());
    std::printf("\n");
    for (int k = 0; k <= k_max; ++k) {
      std::printf("  %4d", k);
      for (const auto& name : drafter_names) std::printf("  %12.1f", table.drafters.at(name)[k]);
      std::printf("\n");
    }
  }
  for (const auto& [name, rows] : table.drafters_batched) {
    std::printf("\n  %s drafting batched, us per sequence-step beyond AR's at the same B\n  %4s  %10s", name.c_str(),
                "k", "B=1");
    for (const auto& [B, row] : rows) std::printf("  %10s", ("B=" + std::to_string(B)).c_str());
    std::printf("\n");
    for (int k = 0; k <= k_max; ++k) {
      std::printf("  %4d  %10.1f", k, table.drafters.at(name)[k]);
      for (const auto& [B, row] : rows) std::printf("  %10.1f", row[k]);
      std::printf("\n");
    }
  }
  if (!table.acceptance.empty()) {
    std::printf("\n  acceptance by position on training prompts (%s)\n  %4s", table.acceptance_source.c_str(), "j");
    for (const auto& [name, a] : table.acceptance) std::printf("  %12s", name.c_str());
    std::printf("\n");
    for (int j = 0; j < k_max; ++j) {
      std::printf("  %4d", j + 1);
      for (const auto& [name, a] : table.acceptance) std::printf("  %12.3f", a[j]);
      std::printf("\n");
    }
  }
  for (const auto& [name, us] : table.drafters_backlog)
    std::printf("\n  %s reads its backlog (its first proposal: the prompt) at %.1f us per token\n", name.c_str(), us);
  const std::filesystem::path dir = std::filesystem::path(out_path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir);
  table.save(out_path);
  std::printf("\n  wrote %s\n", out_path.c_str());
  return 0;
}

}  // namespace specdec::cli
