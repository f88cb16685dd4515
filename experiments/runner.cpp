// The experiment runner: grid expansion, prompt preparation, the prompt-major decode loop with
// immediate logging, --resume / --shard, and the end-of-run summary (read back from the log itself, so
// it covers earlier sessions of a resumed run too).
#include "experiments/runner.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <charconv>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "experiments/backend.h"
#include "experiments/progress.h"
#include "experiments/prompts.h"
#include "experiments/results_log.h"
#include "experiments/results_metrics.h"
#include "verifiers/rules.h"

namespace specdec::experiments {
namespace fs = std::filesystem;
namespace {

struct PreparedPrompt {
  const Prompt* prompt;
  std::vector<TokenId> ids;
};

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) != 0) continue;
    const size_t colon = line.find(':');
    if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
  }
  return "unknown";
}

std::string host_json(const std::string& device) {
  nlohmann::json h;
  h["cpu"] = cpu_model();
  h["cores"] = std::thread::hardware_concurrency();
  h["threads"] = omp_get_max_threads();
  const DeviceDescription d = describe_device(device);  // "none" unless the target runs on a GPU
  h["device"] = device;
  h["gpu"] = d.gpu;
  h["driver"] = d.driver;
  h["cuda"] = d.cuda;
  h["cublas"] = d.cublas;
  return h.dump();
}

std::string iso_utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string join_seeds(const std::vector<uint64_t>& seeds) {
  std::string s;
  for (uint64_t x : seeds) s += (s.empty() ? "" : ",") + std::to_string(x);
  return s;
}

std::string options_text(const DrafterConfig& dc) {
  std::string s;
  for (const auto& [k, v] : dc.options) s += (s.empty() ? "" : ", ") + k + "=" + v;
  return s;
}

// The model (or tokenizer) file: as given, else beside the config, else under the repository root.
std::string find_model_file(const std::string& path, const fs::path& config_dir, const char* what) {
  const std::string found = find_input_file(path, config_dir);
  std::error_code ec;
  SPECDEC_CHECK(fs::exists(found, ec), path, ": ", what,
                " not found (looked in the working directory, beside the config, under the repository root ",
                source_dir().string(), " and the assets folder ", assets_dir().string(),
                "; scripts/setup fetches the default model)");
  return found;
}

results::RunInfo run_info(const ExperimentConfig& cfg, const RunSpec& r, const std::vector<RunSpec>& grid, bool chat,
                          bool lossless,
                          uint64_t verify_stream) {
  results::RunInfo info{r.name, {}};
  auto& a = info.attrs;
  const DrafterConfig* dc = r.drafter >= 0 ? &cfg.drafter_configs[r.drafter] : nullptr;
  a["drafter"] = dc ? dc->type : "none";
  a["drafter_name"] = dc ? dc->name : "none";
  a["drafter_options"] = dc ? options_text(*dc) : "";
  a["k"] = std::to_string(r.k);
  a["temperature"] = temperature_tag(r.temperature);
  a["top_k"] = std::to_string(cfg.top_k);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", cfg.top_p);
  a["top_p"] = buf;
  a["rule"] = r.rule;
  {
    const DrafterOptions rule_options = cfg.rule_options_for(r.rule);  // named: values() refers into it
    std::string ro;
    for (const auto& [k, v] : rule_options.values()) ro += (ro.empty() ? "" : ", ") + k + "=" + v;
    a["rule_options"] = ro;
  }
  a["lossless"] = lossless ? "1" : "0";
  a["baseline"] = dc ? "0" : "1";
  a["baseline_run"] = grid[r.baseline].name;
  a["target"] = cfg.model;
  a["seed"] = std::to_string(r.seed);
  // The verifier's stream: seed, or reference_run_seed(seed) for oracle / synthetic (core/speculative/drafter.h).
  a["verify_seed"] = std::to_string(verify_stream);
  a["max_new_tokens"] = std::to_string(cfg.max_new_tokens);
  a["max_tree_nodes"] = std::to_string(cfg.max_tree_nodes);
  a["chat"] = chat ? "1" : "0";
  return info;
}

// --resume continues a log only with the config that started it (before anything slow happens).
void check_same_config(const std::string& path, const std::string& ini) {
  const std::string logged = results::read_info(path).config_text;
  if (logged == ini) return;
  std::istringstream a(logged), b(ini);
  std::string la, lb, section;
  while (true) {
    const bool ga = static_cast<bool>(std::getline(a, la)), gb = static_cast<bool>(std::getline(b, lb));
    if (!ga && !gb) break;
    if (ga && la.rfind('[', 0) == 0) section = la;
    if (!ga || !gb || la != lb)
      SPECDEC_FAIL(path, ": written with another config; --resume needs the same config and overrides (in ", section,
                   " the log has '", ga ? la : "", "', this run has '", gb ? lb : "", "')");
  }
}

// ---- summary -------------------------------------------------------------------------------------------

void print_summary(const std::vector<RunSpec>& grid, const std::string& path) {
  const auto data = results::read_all(path);
  std::map<std::string, const results::RunData*> by_name;
  for (const auto& d : data) by_name[d.info.name] = &d;
  int w = 3;
  for (const RunSpec& r : grid) w = std::max(w, static_cast<int>(r.name.size()));
  std::printf("\n%-*s %8s %8s %7s %8s %10s %8s %8s %8s %10s\n", w, "run", "requests", "tokens", "tau", "acc_rate",
              "tok/s", "speedup", "e2e", "median", "same as AR");
  std::vector<std::string> notes;
  for (const RunSpec& r : grid) {
    auto it = by_name.find(r.name);
    if (it == by_name.end()) continue;
    const results::RunData& d = *it->second;
    // Every figure from SpecStats / results::speedup (docs/metrics.md), as `specdec report` computes them.
    const SpecStats st = results::run_stats(d);
    double decode_s = 0;
    for (const auto& q : d.requests) decode_s += q.decode_s;
    char accept[16] = "-", speedup[16] = "-", e2e[16] = "-", median[16] = "-", same[24] = "-";
    if (r.drafter >= 0 && st.drafted() > 0) std::snprintf(accept, sizeof accept, "%.1f%%", 100.0 * st.acc_rate());
    auto base = by_name.find(grid[r.baseline].name);
    if (base != by_name.end() && r.drafter >= 0) {
      const results::Speedup sp = results::speedup(d, *base->second);
      if (!sp.pairs.empty()) {
        std::snprintf(speedup, sizeof speedup, "%.2fx", sp.point);
        std::snprintf(e2e, sizeof e2e, "%.2fx", sp.e2e);
        std::snprintf(median, sizeof median, "%.2fx", sp.median);
      }
      if (sp.n_cross_invocation > 0)
        notes.push_back(r.name + ": " + std::to_string(sp.n_cross_invocation) +
                        " request(s) left out of the speedup: their AR baseline was timed by another invocation");
      if (!sp.outliers.empty())
        notes.push_back(r.name + ": " + std::to_string(sp.outliers.size()) + " request(s) with an outlying speedup ratio");
      if (sp.n_loaded > 0)
        notes.push_back(r.name + ": " + std::to_string(sp.n_loaded) +
                        " request(s) timed while the load average exceeded 1.25 x the host's cores");
      int paired = 0, identical = 0;
      for (const auto& q : d.requests) {
        auto ao = base->second->outputs.find(q.request_id);
        auto ro = d.outputs.find(q.request_id);
        if (ao == base->second->outputs.end() || ro == d.outputs.end()) continue;
        ++paired;
        identical += ao->second == ro->second;
      }
      if (paired > 0 && r.temperature == 0.f) std::snprintf(same, sizeof same, "%d/%d", identical, paired);
    }
    std::printf("%-*s %8zu %8lld %7.3f %8s %10.1f %8s %8s %8s %10s\n", w, r.name.c_str(), d.requests.size(),
                static_cast<long long>(st.emitted()), st.steps() > 0 ? st.tau() : 0.0, accept,
                decode_s > 0 ? st.emitted() / decode_s : 0.0, speedup, e2e, median, same);
  }
  for (const auto& n : notes) std::printf("note: %s\n", n.c_str());
  std::printf(
      "\ntau: emitted tokens per target pass; acc_rate: accepted / drafted tokens (every tree node); tok/s: emitted\n"
      "tokens / decode time; speedup: sum of AR decode s/token over the sum of the run's, paired by request and\n"
      "timed by the same invocation; e2e: the same with prefill; median: of per-request ratios; same as AR:\n"
      "greedy outputs equal to AR's (docs/metrics.md)\n"
      "results: %s\n",
      path.c_str());
}

}  // namespace

std::pair<int, int> parse_shard(const std::string& text) {
  const size_t slash = text.find('/');
  int i = -1, n = -1;
  if (slash != std::string::npos) {
    const auto a = std::from_chars(text.data(), text.data() + slash, i);
    const auto b = std::from_chars(text.data() + slash + 1, text.data() + text.size(), n);
    if (a.ptr != text.data() + slash || b.ptr != text.data() + text.size() || a.ec != std::errc() ||
        b.ec != std::errc())
      i = n = -1;
  }
  SPECDEC_CHECK(n >= 1 && i >= 0 && i < n, "--shard as i/n with 0 <= i < n (e.g. 0/4), got '", text, "'");
  return {i, n};
}

std::string temperature_tag(float t) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", static_cast<double>(t));
  return buf;
}

std::vector<RunSpec> expand_grid(const ExperimentConfig& cfg) {
  std::vector<RunSpec> grid;
  const bool seed_tag = cfg.seeds.size() > 1;
  for (float t : cfg.temperatures) {
    for (uint64_t seed : cfg.seeds) {
      const std::string suffix = "_t" + temperature_tag(t) + (seed_tag ? "_s" + std::to_string(seed) : "");
      const int baseline = static_cast<int>(grid.size());
      // The AR run decodes through the same loop and rule (no draft: the rule only picks the target's token).
      grid.push_back({"ar" + suffix, -1, 0, t, seed, cfg.rule_for(t), baseline});
      for (size_t d = 0; d < cfg.drafter_configs.size(); ++d)
        for (int k : cfg.k)
          grid.push_back({cfg.drafter_configs[d].name + "_k" + std::to_string(k) + suffix, static_cast<int>(d), k, t,
                          seed, cfg.rule_for(t), baseline});
    }
  }
  return grid;
}

int run_experiment(const ExperimentConfig& cfg, const RunnerOptions& opts) {
  const fs::path config_dir = cfg.source.empty() ? fs::path() : fs::path(cfg.source).parent_path();
  const std::string out_path = opts.out.empty() ? cfg.out_path() : opts.out;
  SPECDEC_CHECK(opts.shard_count >= 1 && opts.shard_index >= 0 && opts.shard_index < opts.shard_count,
                "a shard i/n with 0 <= i < n, got ", opts.shard_index, "/", opts.shard_count);

  // What can be checked without the model first: drafter types, the output file, the sampling parameters.
  DrafterRegistry& registry = drafters::default_registry();
  const std::vector<const DrafterInfo*> infos = resolve_drafter_types(cfg, registry);
  std::error_code ec;
  SPECDEC_CHECK(opts.resume || !fs::exists(out_path, ec), out_path,
                ": the results file exists; pass --resume to continue it, or another --out");
  if (opts.resume && fs::exists(out_path, ec)) check_same_config(out_path, cfg.to_ini());
  for (float t : cfg.temperatures) {
    SamplingParams sp{t, cfg.top_k, cfg.top_p};
    sp.validate();
  }
  if (cfg.threads > 0) omp_set_num_threads(cfg.threads);
  check_device(cfg.device, "[target] device");

  // The target and its tokenizer; model-based drafters run on the target's device.
  const std::string model_path = find_model_file(cfg.model, config_dir, "model");
  auto loaded = load_model(model_path);
  const std::unique_ptr<Model> target_model = make_model(loaded, cfg.device, "[target] device");
  Model& target = *target_model;
  const ModelFactory drafter_models = model_factory(cfg.device);
  // What the drafters share across the requests of this experiment (ngram's corpus index), for its length.
  DrafterSharedState drafter_shared;
  const std::string tok_path = cfg.tokenizer.empty() ? "" : find_model_file(cfg.tokenizer, config_dir, "tokenizer");
  auto tok = load_tokenizer(*loaded, tok_path);
  const bool chat = cfg.chat.value_or(tok->chat_template() != ChatTemplateKind::kPlain);
  const int ctx = target.config().max_seq_len;

  // Every drafter made once up front, so a bad option fails before the sweep (and before any note).
  {
    const std::vector<TokenId> no_reference;
    for (size_t d = 0; d < cfg.drafter_configs.size(); ++d) {
      DrafterEnv env{.target = &target, .tokenizer = tok.get(), .sampling = {}, .seed = 0, .request = 0,
                     .reference = &no_reference, .max_context = std::min(ctx, 64), .make_model = drafter_models,
                     .shared = &drafter_shared, .target_path = model_path};
      make_drafter(cfg.drafter_configs[d], *infos[d], env);
    }
  }

  // Prompts -> token ids. An over-long prompt is skipped (max_prompt_tokens; the next one of its category
  // takes its place) or an error (longer than the context).
  std::map<std::string, std::vector<TokenId>> ids_of;
  auto accept = [&](const Prompt& p) {
    std::string text = p.text;
    if (chat) {
      const ChatMessage msg{"user", p.text};
      text = tok->apply_chat_template({&msg, 1}, true);
    }
    std::vector<TokenId> ids = tok->encode(text, tok->add_bos_default(), /*parse_special=*/chat);
    if (ids.empty()) {
      SPECDEC_CHECK(tok->bos() >= 0, "prompt ", p.id, " encodes to no tokens and the tokenizer has no BOS");
      ids.push_back(tok->bos());
    }
    const int n = static_cast<int>(ids.size());
    if (cfg.max_prompt_tokens > 0 && n > cfg.max_prompt_tokens) {
      std::fprintf(stderr, "note: skipping prompt %s: %d tokens > [prompts] max_prompt_tokens = %d\n", p.id.c_str(), n,
                   cfg.max_prompt_tokens);
      return false;
    }
    SPECDEC_CHECK(n < ctx, "prompt ", p.id, " has ", n, " tokens, more than the model's context of ", ctx,
                  " allows (set [prompts] max_prompt_tokens to skip long prompts)");
    ids_of[p.id] = std::move(ids);
    return true;
  };
  const std::vector<Prompt> prompts =
      load_prompts(cfg.prompt_sets, cfg.per_category, cfg.categories, config_dir, accept);
  std::vector<PreparedPrompt> prepared;
  for (const Prompt& p : prompts) prepared.push_back({&p, std::move(ids_of.at(p.id))});
  SPECDEC_CHECK(!prepared.empty(), "at least one prompt to run; every prompt was filtered out or skipped");

  // The grid and its rules.
  const std::vector<RunSpec> grid = expand_grid(cfg);
  std::map<std::string, std::unique_ptr<AcceptanceRule>> rules;
  for (const RunSpec& r : grid)
    if (!rules.count(r.rule)) rules[r.rule] = verifiers::make_acceptance_rule(r.rule, cfg.rule_options_for(r.rule));

  // Resume: AR outputs the oracle / synthetic runs may need, read back before the log reopens the file.
  std::map<std::string, std::map<int64_t, std::vector<TokenId>>> logged_ar;
  const bool any_reference = std::any_of(infos.begin(), infos.end(), [](auto* i) { return i->needs_reference; });
  if (opts.resume && any_reference && fs::exists(out_path, ec)) {
    for (auto& run : results::read_all(out_path))
      if (run.info.attrs.count("baseline") && run.info.attrs.at("baseline") == "1")
        logged_ar[run.info.name] = std::move(run.outputs);
  }

  if (fs::path(out_path).has_parent_path()) fs::create_directories(fs::path(out_path).parent_path());
  const results::FileInfo file_info{opts.version, cfg.to_ini(), host_json(cfg.device), join_seeds(cfg.seeds), iso_utc_now()};
  auto log = results::ResultsLog::open(out_path, file_info, opts.resume);
  std::vector<results::RunInfo> run_infos;
  for (const RunSpec& r : grid)
    run_infos.push_back(run_info(cfg, r, grid, chat, rules.at(r.rule)->lossless(),
                                 verify_seed(r.drafter >= 0 ? infos[r.drafter] : nullptr, r.seed)));
  log->declare_runs(run_infos);

  // Requests of this shard: prompt-major, request_id = prompt_index * repeats + repeat.
  std::vector<int> shard_prompts;
  for (int i = 0; i < static_cast<int>(prepared.size()); ++i)
    if (i % opts.shard_count == opts.shard_index) shard_prompts.push_back(i);
  std::vector<std::set<int64_t>> finished(grid.size());
  for (size_t r = 0; r < grid.size(); ++r) finished[r] = log->finished(grid[r].name);
  int64_t total = 0, already = 0;
  for (int p : shard_prompts)
    for (int rep = 0; rep < cfg.repeats; ++rep)
      for (size_t r = 0; r < grid.size(); ++r) {
        ++total;
        already += finished[r].count(static_cast<int64_t>(p) * cfg.repeats + rep);
      }

  const Progress::Mode mode = Progress::detect(opts.quiet);
  if (mode != Progress::Mode::kQuiet) {
    std::printf("specdec run %s: %zu prompts%s x %d repeat(s) x %zu runs = %lld (run, request) pairs%s\n",
                cfg.name.c_str(), prepared.size(),
                opts.shard_count > 1 ? (" (shard " + std::to_string(opts.shard_index) + "/" +
                                        std::to_string(opts.shard_count) + ": " + std::to_string(shard_prompts.size()) +
                                        ")").c_str()
                                     : "",
                cfg.repeats, grid.size(), static_cast<long long>(total),
                already ? (", " + std::to_string(already) + " already done").c_str() : "");
    std::printf("target %s (%s) on %s, chat template %s; log %s\n", model_path.c_str(),
                target.config().describe().c_str(), cfg.device.c_str(), chat ? "on" : "off", out_path.c_str());
    std::fflush(stdout);
  }
  Progress progress(mode, total, already);
  // When and where each request was timed: this invocation's id, the host, its load, threads and device.
  const DeviceDescription device_desc = describe_device(cfg.device);
  const std::string device_name = device_desc.gpu.empty() || device_desc.gpu == "none" ? cfg.device : device_desc.gpu;
  auto timing_context = [&] { return results::current_timing_context(device_name, omp_get_max_threads()); };

  for (int p : shard_prompts) {
    const PreparedPrompt& pp = prepared[p];
    // The target's prefill of this prompt, computed (and timed) once, when the first run needs it, and
    // copied by every run and repeat: the same forward over the same tokens gives the same bits, so this
    // changes no output, only the sweep's time. Each run's prefill_s is this measured time (+ its copy).
    std::unique_ptr<KVCache> prefix;
    double prefix_seconds = 0;
    auto prefilled = [&]() -> const KVCache* {
      const int n = static_cast<int>(pp.ids.size()) - 1;
      if (n < 1) return nullptr;
      if (!prefix) {
        const auto t0 = std::chrono::steady_clock::now();
        prefix = target.new_cache(n);
        ForwardResult fr;
        target.forward(*prefix, {.tokens = std::span<const TokenId>(pp.ids).first(n), .n_logits = 0}, fr);
        prefix_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      return prefix.get();
    };
    for (int rep = 0; rep < cfg.repeats; ++rep) {
      const int64_t request_id = static_cast<int64_t>(p) * cfg.repeats + rep;
      bool ran = false;
      auto decode = [&](const RunSpec& r, Drafter* drafter) {
        const DrafterInfo* info = r.drafter >= 0 ? infos[r.drafter] : nullptr;
        DecodeOptions d;
        d.max_new_tokens = cfg.max_new_tokens;
        d.k = std::max(r.k, 1);
        d.max_tree_nodes = cfg.max_tree_nodes;
        d.sampling = {r.temperature, cfg.top_k, cfg.top_p};
        d.seed = verify_seed(info, r.seed);
        d.request = static_cast<uint64_t>(request_id);
        d.is_stop = [&](TokenId t) { return tok->is_end_of_generation(t); };
        d.prefilled = prefilled();
        d.prefilled_seconds = prefix_seconds;
        return speculative_decode(target, drafter, *rules.at(r.rule), pp.ids, d);
      };
      auto log_result = [&](size_t r, const DecodeResult& res) {
        results::RequestRecord rec;
        rec.request_id = request_id;
        rec.prompt_id = pp.prompt->id;
        rec.category = pp.prompt->category;
        rec.repeat = rep;
        rec.prompt_tokens = res.prompt_tokens;
        rec.prefill_s = res.prefill_seconds;
        rec.decode_s = res.decode_seconds;
        rec.wall_time_s = res.prefill_seconds + res.decode_seconds;
        rec.stopped = res.stopped;
        rec.result = &res;
        rec.timing = timing_context();
        log->append(grid[r].name, rec);
        finished[r].insert(request_id);
        ran = true;
        progress.pair_done(static_cast<int64_t>(res.tokens.size()), grid[r].name + " " + pp.prompt->id);
      };

      for (size_t b = 0; b < grid.size(); ++b) {
        if (grid[b].drafter >= 0) continue;  // b: an AR baseline; its drafter runs follow it in the grid
        std::vector<size_t> pending;
        bool need_reference = false;
        for (size_t r = b + 1; r < grid.size() && grid[r].drafter >= 0; ++r)
          if (!finished[r].count(request_id)) {
            pending.push_back(r);
            need_reference |= infos[grid[r].drafter]->needs_reference;
          }
        DecodeResult ar;
        if (!finished[b].count(request_id)) {
          ar = decode(grid[b], nullptr);
          log_result(b, ar);
        } else if (need_reference) {
          // Finished before a kill: its tokens come back from the log (or, failing that, are decoded again,
          // deterministically, without logging them twice).
          const std::vector<TokenId>* logged = nullptr;
          if (auto it = logged_ar.find(grid[b].name); it != logged_ar.end())
            if (auto jt = it->second.find(request_id); jt != it->second.end()) logged = &jt->second;
          if (logged)
            ar.tokens = *logged;
          else
            ar = decode(grid[b], nullptr);
        }
        for (size_t r : pending) {
          const RunSpec& run = grid[r];
          const DrafterEnv env{.target = &target, .tokenizer = tok.get(),
                               .sampling = {run.temperature, cfg.top_k, cfg.top_p}, .seed = run.seed,
                               .request = static_cast<uint64_t>(request_id), .reference = &ar.tokens,
                               .max_context = static_cast<int>(pp.ids.size()) + cfg.max_new_tokens + run.k + 1,
                               .make_model = drafter_models, .shared = &drafter_shared, .target_path = model_path};
          auto drafter = make_drafter(cfg.drafter_configs[run.drafter], *infos[run.drafter], env);
          const DecodeResult res = decode(run, drafter.get());
          log_result(r, res);
        }
      }
      if (ran) progress.request_done(pp.prompt->id + " (" + pp.prompt->category + ")");
    }
  }
  progress.finish();
  log->close();
  print_summary(grid, out_path);
  return 0;
}

}  // namespace specdec::experiments
