// The experiment runner: grid expansion, prompt preparation, the prompt-major decode loop with
// immediate logging, --resume / --shard, and the end-of-run summary (read back from the log itself, so
// it covers earlier sessions of a resumed run too).
#include "experiments/runner.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/loading.h"
#include "core/speculative/batch_decoder.h"
#include "core/speculative/decoder.h"
#include "core/speculative/policy.h"
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
  for (uint64_t x : seeds) {  // appended piece by piece: GCC 12 warns (-Wrestrict) on "," + std::to_string(x)
    if (!s.empty()) s += ',';
    s += std::to_string(x);
  }
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
                          bool lossless, uint64_t verify_stream, const CostTable* costs) {
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
  a["baseline"] = r.is_baseline() ? "1" : "0";
  a["aa_control"] = r.aa ? "1" : "0";
  a["baseline_run"] = grid[r.baseline].name;
  a["target"] = cfg.model;
  a["seed"] = std::to_string(r.seed);
  // The verifier's stream: seed, or reference_run_seed(seed) for oracle / synthetic (core/speculative/drafter.h).
  a["verify_seed"] = std::to_string(verify_stream);
  a["max_new_tokens"] = std::to_string(cfg.max_new_tokens);
  a["max_tree_nodes"] = std::to_string(cfg.max_tree_nodes);
  a["chat"] = chat ? "1" : "0";
  // Batching, load and policy (docs/hdf5-schema.md): batch_size 0 = unbatched.
  a["batch_size"] = std::to_string(r.batch_size);
  a["load"] = r.batch_size > 0 ? r.load.text() : "";
  std::snprintf(buf, sizeof buf, "%g", r.load.rate);
  a["arrival_rate"] = r.load.kind == LoadSpec::Kind::kPoisson ? buf : "";
  a["arrivals"] = r.load.kind == LoadSpec::Kind::kFile ? cfg.arrivals : "";
  // [run] interleave: the run's times are on its own clock (docs/batching.md "Interleaved runs").
  a["interleaved"] = r.batch_size > 0 && cfg.interleave ? "1" : "0";
  a["policy"] = r.policy;
  a["policy_spec"] = r.policy.empty() ? "" : cfg.policy_spec(r.policy, r.k);
  a["cost_table"] = costs ? costs->to_json() : "";  // the oracle's costs (the report's regret)
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
    if (base != by_name.end() && r.compared()) {
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
        notes.push_back(r.name + ": " + std::to_string(sp.outliers.size()) +
                        " request(s) with an outlying speedup ratio");
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
      "greedy outputs equal to AR's (docs/metrics.md)\n");
  if (std::any_of(grid.begin(), grid.end(), [](const RunSpec& r) { return r.batch_size > 0; }))
    std::printf(
        "batched runs: speedup is against the AR run of the same batch size and load; `specdec report` gives\n"
        "their throughput, TTFT, inter-token latency, goodput and regret\n");
  std::printf("results: %s\n", path.c_str());
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

std::string LoadSpec::tag() const {
  if (kind == Kind::kPoisson) return "r" + temperature_tag(static_cast<float>(rate));
  return kind == Kind::kFile ? "arr" : "";
}

std::string LoadSpec::text() const {
  return kind == Kind::kPoisson ? "poisson" : kind == Kind::kFile ? "file" : "closed";
}

std::vector<RunSpec> expand_grid(const ExperimentConfig& cfg) {
  std::vector<RunSpec> grid;
  const bool seed_tag = cfg.seeds.size() > 1;
  // Unbatched: one "batch size" 0 and no load; batched: every batch size x every load.
  const std::vector<int> batches = cfg.batched() ? cfg.batch_sizes : std::vector<int>{0};
  std::vector<LoadSpec> loads;
  for (double rate : cfg.arrival_rates) loads.push_back({LoadSpec::Kind::kPoisson, rate});
  if (!cfg.arrivals.empty()) loads.push_back({LoadSpec::Kind::kFile, 0});
  if (loads.empty()) loads.push_back({});
  const std::vector<std::string> policies = cfg.policies.empty() ? std::vector<std::string>{""} : cfg.policies;
  for (float t : cfg.temperatures)
    for (uint64_t seed : cfg.seeds)
      for (int batch : batches)
        for (const LoadSpec& load : loads) {
          std::string suffix = batch > 0 ? "_b" + std::to_string(batch) : "";
          if (batch > 0 && !load.tag().empty()) suffix += "_" + load.tag();
          suffix += "_t" + temperature_tag(t) + (seed_tag ? "_s" + std::to_string(seed) : "");
          const int baseline = static_cast<int>(grid.size());
          // The AR run decodes through the same loop and rule (no draft: the rule only picks the target's token).
          grid.push_back({"ar" + suffix, -1, 0, t, seed, cfg.rule_for(t), baseline, batch, load, ""});
          if (cfg.aa_control)
            grid.push_back({"ar_aa" + suffix, -1, 0, t, seed, cfg.rule_for(t), baseline, batch, load, "", true});
          for (size_t d = 0; d < cfg.drafter_configs.size(); ++d)
            for (int k : cfg.k)
              for (const std::string& policy : policies)
                grid.push_back({cfg.drafter_configs[d].name + "_k" + std::to_string(k) +
                                    (policy.empty() ? "" : "_" + policy) + suffix,
                                static_cast<int>(d), k, t, seed, cfg.rule_for(t), baseline, batch, load, policy});
        }
  return grid;
}

std::vector<size_t> interleave_order(size_t n, uint64_t seed, uint64_t round) {
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t{0});
  // Fisher-Yates with draws of our own (std::shuffle's use of the engine is the library's choice): the same
  // order on every platform.
  std::mt19937_64 gen(seed ^ (0x9e3779b97f4a7c15ULL * (round + 1)));
  for (size_t i = n; i > 1; --i) {
    const size_t j = static_cast<size_t>(gen() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

std::vector<double> poisson_arrivals(size_t n, double rate, uint64_t seed) {
  SPECDEC_CHECK(rate > 0 && std::isfinite(rate), "an arrival rate > 0, got ", rate);
  std::mt19937_64 gen(seed);
  std::vector<double> t;
  double now = 0;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) {
      const double u = static_cast<double>(gen() >> 11) * 0x1.0p-53;  // in [0, 1)
      now += -std::log1p(-u) / rate;
    }
    t.push_back(now);
  }
  return t;
}

std::vector<double> read_arrivals(const std::string& path, size_t n) {
  std::ifstream in(path);
  SPECDEC_CHECK(in.good(), path, ": cannot open the arrivals file ([run] arrivals)");
  std::vector<double> t;
  std::string line;
  for (int line_no = 1; t.size() < n && std::getline(in, line); ++line_no) {
    const size_t b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    const size_t e = line.find_last_not_of(" \t\r");
    const std::string text = line.substr(b, e - b + 1);
    char* end = nullptr;
    const double x = std::strtod(text.c_str(), &end);
    SPECDEC_CHECK(end == text.c_str() + text.size() && std::isfinite(x) && x >= 0 && (t.empty() || x >= t.back()), path,
                  ":", line_no, ": '", text, "': expected an arrival time in seconds, >= 0 and >= the one before");
    t.push_back(x);
  }
  SPECDEC_CHECK(t.size() == n, path, ": ", t.size(), " arrival times for ", n,
                " requests ([run] arrivals needs one per request, in request order)");
  return t;
}

namespace {

// One experiment (or one shard of it) in phases, which run() calls in this order: check_inputs,
// load_target, check_drafters, prepare_prompts, plan_runs, open_log, plan_shard, then run_prompt for each
// prompt of the shard, and finish. The members are what a phase hands on to the later ones.
class Runner {
 public:
  Runner(const ExperimentConfig& cfg, const RunnerOptions& opts)
      : cfg_(cfg),
        opts_(opts),
        config_dir_(cfg.source.empty() ? fs::path() : fs::path(cfg.source).parent_path()),
        out_path_(opts.out.empty() ? cfg.out_path() : opts.out) {}

  int run() {
    check_inputs();
    load_target();
    check_drafters();
    prepare_prompts();
    plan_runs();
    open_log();
    plan_shard();
    for (int p : shard_prompts_) run_prompt(prepared_[p]);
    run_batched();
    finish();
    return 0;
  }

 private:
  // A prompt of the shard and the target's prefill of it, computed (and timed) once, when the first run
  // needs it, and copied by every run and repeat: the same forward over the same tokens gives the same
  // bits, so this changes no output, only the sweep's time. Each run's prefill_s is this measured time
  // (+ its copy).
  struct PromptState {
    const PreparedPrompt& pp;
    std::unique_ptr<KVCache> prefix;
    double prefix_seconds = 0;
  };
  // One request: a repeat of a prompt; ran: some (run, request) pair of it was decoded by this invocation.
  struct Request {
    PromptState& prompt;
    int rep;
    int64_t id;
    bool ran = false;
  };

  void check_inputs();
  void load_target();
  void check_drafters();
  void prepare_prompts();
  bool accept_prompt(const Prompt& p, std::map<std::string, std::vector<TokenId>>& ids_of) const;
  void plan_runs();
  void open_log();
  void plan_shard();
  void print_header() const;
  void run_prompt(const PreparedPrompt& pp);
  void run_group(size_t b, Request& q);
  DecodeResult baseline_tokens(size_t b, Request& q, bool need_reference);
  const KVCache* prefilled(PromptState& ps);
  DecodeOptions decode_options(const RunSpec& r, const Request& q) const;
  DecodeResult decode(const RunSpec& r, Drafter* drafter, Request& q);
  std::function<std::unique_ptr<Drafter>()> drafter_maker(const RunSpec& r, const Request& q,
                                                          const std::vector<TokenId>* reference);
  void run_batched();
  void run_batched_group(size_t b, std::vector<Request>& requests);
  void run_interleaved_group(size_t b, std::vector<Request>& requests);
  std::map<int64_t, std::vector<TokenId>> reference_tokens(size_t b, std::vector<Request>& requests);
  class LoadRun;
  std::vector<double> arrival_times(const RunSpec& r, size_t n) const;
  void log_result(size_t r, const DecodeResult& res, Request& q, double arrival_s = -1,
                  std::vector<results::StepLoad> step_load = {});
  void finish();

  const ExperimentConfig& cfg_;
  const RunnerOptions& opts_;
  const fs::path config_dir_;
  const std::string out_path_;
  std::vector<const DrafterInfo*> infos_;  // per cfg_.drafter_configs
  // load_target: the target and its tokenizer; model-based drafters run on the target's device.
  std::string model_path_;
  std::shared_ptr<const LoadedModel> loaded_;
  std::unique_ptr<Model> target_;
  ModelFactory drafter_models_;
  // What the drafters share across the requests of this experiment (ngram's corpus index), for its length.
  DrafterSharedState drafter_shared_;
  std::unique_ptr<Tokenizer> tok_;
  std::unique_ptr<CostTable> costs_;  // [run] cost_table; null when none
  // What the policies of each run's sequences share (cost_model pool = run), by run name.
  mutable std::map<std::string, std::shared_ptr<PolicyShared>> policy_shared_;
  bool chat_ = false;
  int ctx_ = 0;
  // prepare_prompts (prepared_ points into prompts_)
  std::vector<Prompt> prompts_;
  std::vector<PreparedPrompt> prepared_;
  // plan_runs: the grid, its rules, and (--resume) the AR outputs logged before
  std::vector<RunSpec> grid_;
  std::map<std::string, std::unique_ptr<AcceptanceRule>> rules_;
  std::map<std::string, std::map<int64_t, std::vector<TokenId>>> logged_ar_;
  // open_log, plan_shard
  std::unique_ptr<results::ResultsLog> log_;
  std::vector<int> shard_prompts_;
  std::vector<std::set<int64_t>> finished_;  // per grid_ run: its finished request ids
  int64_t total_ = 0, already_ = 0;
  std::unique_ptr<Progress> progress_;
  std::string device_name_;  // the GPU's name, else cfg_.device: where each request was timed
};

// What can be checked without the model first: drafter types, the output file, the sampling parameters.
void Runner::check_inputs() {
  SPECDEC_CHECK(opts_.shard_count >= 1 && opts_.shard_index >= 0 && opts_.shard_index < opts_.shard_count,
                "a shard i/n with 0 <= i < n, got ", opts_.shard_index, "/", opts_.shard_count);
  DrafterRegistry& registry = drafters::default_registry();
  infos_ = resolve_drafter_types(cfg_, registry);
  std::error_code ec;
  SPECDEC_CHECK(opts_.resume || !fs::exists(out_path_, ec), out_path_,
                ": the results file exists; pass --resume to continue it, or another --out");
  if (opts_.resume && fs::exists(out_path_, ec)) check_same_config(out_path_, cfg_.to_ini());
  for (float t : cfg_.temperatures) {
    SamplingParams sp{t, cfg_.top_k, cfg_.top_p};
    sp.validate();
  }
  if (cfg_.threads > 0) omp_set_num_threads(cfg_.threads);
  check_device(cfg_.device, "[target] device");
  if (!cfg_.cost_table.empty()) {
    const std::string path = find_input_file(cfg_.cost_table, config_dir_);
    try {
      costs_ = std::make_unique<CostTable>(CostTable::load(path));
    } catch (const Error& e) {
      SPECDEC_FAIL("[run] cost_table = ", cfg_.cost_table, ": ", e.what());
    }
  }
}

void Runner::load_target() {
  model_path_ = find_model_file(cfg_.model, config_dir_, "model");
  loaded_ = load_model(model_path_);
  target_ = make_model(loaded_, cfg_.device, "[target] device");
  drafter_models_ = model_factory(cfg_.device);
  const std::string tok_path = cfg_.tokenizer.empty() ? "" : find_model_file(cfg_.tokenizer, config_dir_, "tokenizer");
  tok_ = load_tokenizer(*loaded_, tok_path);
  chat_ = cfg_.chat.value_or(tok_->chat_template() != ChatTemplateKind::kPlain);
  ctx_ = target_->config().max_seq_len;
}

// Every drafter made once up front, so a bad option fails before the sweep (and before any note).
void Runner::check_drafters() {
  const std::vector<TokenId> no_reference;
  for (size_t d = 0; d < cfg_.drafter_configs.size(); ++d) {
    DrafterEnv env{.target = target_.get(),
                   .tokenizer = tok_.get(),
                   .sampling = {},
                   .seed = 0,
                   .request = 0,
                   .reference = &no_reference,
                   .max_context = std::min(ctx_, 64),
                   .make_model = drafter_models_,
                   .shared = &drafter_shared_,
                   .target_path = model_path_};
    make_drafter(cfg_.drafter_configs[d], *infos_[d], env);
    // Each policy with this drafter's row of the cost table: a misspelt option, or a row the table lacks, fails now.
    for (const std::string& policy : cfg_.policies)
      for (int k : cfg_.k) {
        try {
          make_policy(cfg_.policy_spec(policy, k), PolicyEnv{.costs = costs_.get(), .drafter = infos_[d]->name});
        } catch (const UnknownOptionError& e) {
          const std::string suggestion = closest_match(e.key(), e.known());
          SPECDEC_FAIL(
              "[policy.", policy, "] ", e.key(), ": unknown option; ", policy, " knows ",
              [&] {
                std::string known;
                for (const auto& x : e.known()) known += (known.empty() ? "" : ", ") + x;
                return known;
              }(),
              suggestion.empty() ? "" : "; did you mean '" + suggestion + "'?");
        } catch (const Error& e) {
          SPECDEC_FAIL("[run] policy = ", policy, " with drafter ", cfg_.drafter_configs[d].name, ": ", e.what());
        }
      }
  }
}

// Prompts -> token ids.
void Runner::prepare_prompts() {
  std::map<std::string, std::vector<TokenId>> ids_of;
  prompts_ = load_prompts(cfg_.prompt_sets, cfg_.per_category, cfg_.categories, config_dir_,
                          [&](const Prompt& p) { return accept_prompt(p, ids_of); });
  for (const Prompt& p : prompts_) prepared_.push_back({&p, std::move(ids_of.at(p.id))});
  SPECDEC_CHECK(!prepared_.empty(), "at least one prompt to run; every prompt was filtered out or skipped");
}

// A prompt's token ids into ids_of. An over-long prompt is skipped (max_prompt_tokens; the next one of its
// category takes its place: returns false) or an error (longer than the context).
bool Runner::accept_prompt(const Prompt& p, std::map<std::string, std::vector<TokenId>>& ids_of) const {
  std::vector<TokenId> ids = tok_->encode_user_turn(p.text, chat_);
  if (ids.empty()) {
    SPECDEC_CHECK(tok_->bos() >= 0, "prompt ", p.id, " encodes to no tokens and the tokenizer has no BOS");
    ids.push_back(tok_->bos());
  }
  const int n = static_cast<int>(ids.size());
  if (cfg_.max_prompt_tokens > 0 && n > cfg_.max_prompt_tokens) {
    std::fprintf(stderr, "note: skipping prompt %s: %d tokens > [prompts] max_prompt_tokens = %d\n", p.id.c_str(), n,
                 cfg_.max_prompt_tokens);
    return false;
  }
  SPECDEC_CHECK(n < ctx_, "prompt ", p.id, " has ", n, " tokens, more than the model's context of ", ctx_,
                " allows (set [prompts] max_prompt_tokens to skip long prompts)");
  ids_of[p.id] = std::move(ids);
  return true;
}

// The grid and its rules; on --resume, the AR outputs the oracle / synthetic runs may need, read back
// before the log reopens the file.
void Runner::plan_runs() {
  grid_ = expand_grid(cfg_);
  if (!cfg_.arrivals.empty()) {  // a bad or short arrivals file fails before anything is logged
    size_t shard_prompts = 0;
    for (size_t i = 0; i < prepared_.size(); ++i)
      shard_prompts += static_cast<int>(i) % opts_.shard_count == opts_.shard_index;
    read_arrivals(find_input_file(cfg_.arrivals, config_dir_), shard_prompts * static_cast<size_t>(cfg_.repeats));
  }
  for (const RunSpec& r : grid_)
    if (!rules_.count(r.rule)) rules_[r.rule] = verifiers::make_acceptance_rule(r.rule, cfg_.rule_options_for(r.rule));
  const bool any_reference = std::any_of(infos_.begin(), infos_.end(), [](auto* i) { return i->needs_reference; });
  std::error_code ec;
  if (opts_.resume && any_reference && fs::exists(out_path_, ec)) {
    for (auto& run : results::read_all(out_path_))
      if (run.info.attrs.count("baseline") && run.info.attrs.at("baseline") == "1")
        logged_ar_[run.info.name] = std::move(run.outputs);
  }
}

void Runner::open_log() {
  if (fs::path(out_path_).has_parent_path()) fs::create_directories(fs::path(out_path_).parent_path());
  const results::FileInfo file_info{opts_.version, cfg_.to_ini(), host_json(cfg_.device), join_seeds(cfg_.seeds),
                                    iso_utc_now()};
  log_ = results::ResultsLog::open(out_path_, file_info, opts_.resume);
  std::vector<results::RunInfo> run_infos;
  for (const RunSpec& r : grid_)
    run_infos.push_back(run_info(cfg_, r, grid_, chat_, rules_.at(r.rule)->lossless(),
                                 verify_seed(r.drafter >= 0 ? infos_[r.drafter] : nullptr, r.seed), costs_.get()));
  log_->declare_runs(run_infos);
}

// Requests of this shard: prompt-major, request_id = prompt_index * repeats + repeat; what is done already,
// the header, the progress display.
void Runner::plan_shard() {
  for (int i = 0; i < static_cast<int>(prepared_.size()); ++i)
    if (i % opts_.shard_count == opts_.shard_index) shard_prompts_.push_back(i);
  finished_.resize(grid_.size());
  for (size_t r = 0; r < grid_.size(); ++r) finished_[r] = log_->finished(grid_[r].name);
  for (int p : shard_prompts_)
    for (int rep = 0; rep < cfg_.repeats; ++rep)
      for (size_t r = 0; r < grid_.size(); ++r) {
        ++total_;
        already_ += finished_[r].count(static_cast<int64_t>(p) * cfg_.repeats + rep);
      }
  const Progress::Mode mode = Progress::detect(opts_.quiet);
  if (mode != Progress::Mode::kQuiet) print_header();
  progress_ = std::make_unique<Progress>(mode, total_, already_);
  // When and where each request was timed: this invocation's id, the host, its load, threads and device.
  const DeviceDescription device_desc = describe_device(cfg_.device);
  device_name_ = device_desc.gpu.empty() || device_desc.gpu == "none" ? cfg_.device : device_desc.gpu;
}

void Runner::print_header() const {
  std::printf("specdec run %s: %zu prompts%s x %d repeat(s) x %zu runs = %lld (run, request) pairs%s\n",
              cfg_.name.c_str(), prepared_.size(),
              opts_.shard_count > 1
                  ? (" (shard " + std::to_string(opts_.shard_index) + "/" + std::to_string(opts_.shard_count) + ": " +
                     std::to_string(shard_prompts_.size()) + ")")
                        .c_str()
                  : "",
              cfg_.repeats, grid_.size(), static_cast<long long>(total_),
              already_ ? (", " + std::to_string(already_) + " already done").c_str() : "");
  std::printf("target %s (%s) on %s, chat template %s; log %s\n", model_path_.c_str(),
              target_->config().describe().c_str(), cfg_.device.c_str(), chat_ ? "on" : "off", out_path_.c_str());
  std::fflush(stdout);
}

// Every repeat of one prompt: for each AR baseline of the grid, it and its drafter runs.
void Runner::run_prompt(const PreparedPrompt& pp) {
  const int p = static_cast<int>(&pp - prepared_.data());
  PromptState ps{pp, nullptr};
  for (int rep = 0; rep < cfg_.repeats; ++rep) {
    Request q{ps, rep, static_cast<int64_t>(p) * cfg_.repeats + rep};
    for (size_t b = 0; b < grid_.size(); ++b)  // b: an AR baseline; its drafter runs follow it in the grid
      if (grid_[b].is_baseline() && grid_[b].batch_size == 0) run_group(b, q);
    if (q.ran) progress_->request_done(pp.prompt->id + " (" + pp.prompt->category + ")");
  }
}

// The AR run b and the drafter runs after it in the grid, for one request: AR first (its tokens are the
// reference of the oracle / synthetic drafters), then each drafter run not finished yet.
void Runner::run_group(size_t b, Request& q) {
  std::vector<size_t> pending;
  bool need_reference = false;
  for (size_t r = b + 1; r < grid_.size() && grid_[r].drafter >= 0; ++r)
    if (!finished_[r].count(q.id)) {
      pending.push_back(r);
      need_reference |= infos_[grid_[r].drafter]->needs_reference;
    }
  const DecodeResult ar = baseline_tokens(b, q, need_reference);
  for (size_t r : pending) {
    auto drafter = drafter_maker(grid_[r], q, &ar.tokens)();
    const DecodeResult res = decode(grid_[r], drafter.get(), q);
    log_result(r, res, q);
  }
}

// Makes run r's drafter for request q (reference: the AR run's tokens of the request).
std::function<std::unique_ptr<Drafter>()> Runner::drafter_maker(const RunSpec& r, const Request& q,
                                                                const std::vector<TokenId>* reference) {
  const DrafterEnv env{.target = target_.get(),
                       .tokenizer = tok_.get(),
                       .sampling = {r.temperature, cfg_.top_k, cfg_.top_p},
                       .seed = r.seed,
                       .request = static_cast<uint64_t>(q.id),
                       .reference = reference,
                       .max_context = static_cast<int>(q.prompt.pp.ids.size()) + cfg_.max_new_tokens + r.k + 1,
                       .make_model = drafter_models_,
                       .shared = &drafter_shared_,
                       .target_path = model_path_};
  return
      [env, &dc = cfg_.drafter_configs[r.drafter], info = infos_[r.drafter]] { return make_drafter(dc, *info, env); };
}

// The AR run b of a request: decoded and logged unless finished; a finished one's tokens only when a
// pending drafter run needs them as its reference (else empty).
DecodeResult Runner::baseline_tokens(size_t b, Request& q, bool need_reference) {
  DecodeResult ar;
  if (!finished_[b].count(q.id)) {
    ar = decode(grid_[b], nullptr, q);
    log_result(b, ar, q);
  } else if (need_reference) {
    // Finished before a kill: its tokens come back from the log (or, failing that, are decoded again,
    // deterministically, without logging them twice).
    const std::vector<TokenId>* logged = nullptr;
    if (auto it = logged_ar_.find(grid_[b].name); it != logged_ar_.end())
      if (auto jt = it->second.find(q.id); jt != it->second.end()) logged = &jt->second;
    if (logged)
      ar.tokens = *logged;
    else
      ar = decode(grid_[b], nullptr, q);
  }
  return ar;
}

// The target's cache after the prompt's tokens but the last (computed once per prompt); null for a
// one-token prompt.
const KVCache* Runner::prefilled(PromptState& ps) {
  const int n = static_cast<int>(ps.pp.ids.size()) - 1;
  if (n < 1) return nullptr;
  if (!ps.prefix) {
    const auto t0 = std::chrono::steady_clock::now();
    ps.prefix = target_->new_cache(n);
    ForwardResult fr;
    target_->forward(*ps.prefix, {.tokens = std::span<const TokenId>(ps.pp.ids).first(n), .n_logits = 0}, fr);
    ps.prefix_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return ps.prefix.get();
}

// How run r decodes request q (either loop): limits, sampling, the verifier's stream, stops, the policy.
DecodeOptions Runner::decode_options(const RunSpec& r, const Request& q) const {
  const DrafterInfo* info = r.drafter >= 0 ? infos_[r.drafter] : nullptr;
  DecodeOptions d;
  d.max_new_tokens = cfg_.max_new_tokens;
  d.k = std::max(r.k, 1);
  d.max_tree_nodes = cfg_.max_tree_nodes;
  d.sampling = {r.temperature, cfg_.top_k, cfg_.top_p};
  d.seed = verify_seed(info, r.seed);
  d.request = static_cast<uint64_t>(q.id);
  d.is_stop = [this](TokenId t) { return tok_->is_end_of_generation(t); };
  if (!r.policy.empty()) {
    d.policy = cfg_.policy_spec(r.policy, r.k);
    d.costs = costs_.get();
    d.cost_drafter = info->name;
    std::shared_ptr<PolicyShared>& shared = policy_shared_[r.name];  // one per run
    if (!shared) shared = std::make_shared<PolicyShared>();
    d.policy_shared = shared;
  }
  return d;
}

DecodeResult Runner::decode(const RunSpec& r, Drafter* drafter, Request& q) {
  DecodeOptions d = decode_options(r, q);
  d.prefilled = prefilled(q.prompt);
  d.prefilled_seconds = q.prompt.prefix_seconds;
  return speculative_decode(*target_, drafter, *rules_.at(r.rule), q.prompt.pp.ids, d);
}

// ---- batched runs ---------------------------------------------------------------------------------------
// Run-major: for each AR baseline of the grid (one per temperature, seed, batch size and load), it and then
// its drafter runs, each over all the shard's requests in the batched loop under the run's load.
void Runner::run_batched() {
  std::deque<PromptState> prompts;  // stable addresses: Requests refer to them
  std::vector<Request> requests;    // request_id order
  for (int p : shard_prompts_) {
    prompts.push_back(PromptState{prepared_[p], nullptr});
    for (int rep = 0; rep < cfg_.repeats; ++rep)
      requests.push_back(Request{prompts.back(), rep, static_cast<int64_t>(p) * cfg_.repeats + rep});
  }
  for (size_t b = 0; b < grid_.size(); ++b)
    if (grid_[b].is_baseline() && grid_[b].batch_size > 0) run_batched_group(b, requests);
}

// A batched run's clock, in seconds since the run started: the wall clock, or (an interleaved run) the run's
// own, which runs only between resume() and pause() and jumps over idle time instead of waiting.
class RunClock {
 public:
  explicit RunClock(bool own) : own_(own), t0_(Clock::now()) {}
  double now() const {
    const double since = std::chrono::duration<double>(Clock::now() - t0_).count();
    return own_ ? base_ + (running_ ? since : 0.0) : since;
  }
  void resume() {
    if (!own_ || running_) return;
    t0_ = Clock::now();
    running_ = true;
  }
  void pause() {
    if (!own_ || !running_) return;
    base_ = now();
    running_ = false;
  }
  // Nothing to do until t: the wall clock sleeps, the own clock moves to t at once (resumed from there).
  void wait_until(double t) {
    if (!own_) {
      std::this_thread::sleep_for(std::chrono::duration<double>(t - now()));
      return;
    }
    base_ = std::max(now(), t);
    t0_ = Clock::now();
    running_ = true;
  }

 private:
  using Clock = std::chrono::steady_clock;
  bool own_;
  bool running_ = false;
  Clock::time_point t0_;  // the wall clock's start; the own clock's last resume
  double base_ = 0;       // the own clock's seconds before the last resume
};

// Batched run r over the requests it has not finished, in the batched loop, one turn at a time: B =
// r.batch_size sequences in flight, each request submitted at the first step after its arrival time (closed
// loop: all at 0, so a finished sequence is replaced by the next request at once). Every request is logged
// when it finishes, with its arrival and, per step, the batched step, its batch size and when its tokens were
// emitted, all on the run's clock (its decode_s too). tokens: the finished requests' tokens (the reference of
// the drafter runs after an AR run).
class Runner::LoadRun {
 public:
  LoadRun(Runner& runner, size_t r, std::vector<Request>& requests,
          const std::map<int64_t, std::vector<TokenId>>& references, bool own_clock)
      : rn_(runner),
        r_(r),
        run_(runner.grid_[r]),
        references_(references),
        clock_(own_clock),
        // No sequence waits for room in a step: a block is at most 1 + max(k, max_tree_nodes) tokens.
        dec_(*runner.target_,
             {.max_sequences = run_.batch_size,
              .max_tokens_per_step = run_.batch_size * (1 + std::max(run_.k, runner.cfg_.max_tree_nodes))}) {
    for (Request& q : requests)
      if (!rn_.finished_[r].count(q.id)) pending_.push_back(&q);
    arrivals_ = rn_.arrival_times(run_, pending_.size());
    loads_.resize(pending_.size());
  }

  bool done() const { return next_ >= pending_.size() && dec_.idle(); }

  // Admits the requests that have arrived (idle: waits for the next one), runs one batched step and logs the
  // requests it finished. Requires !done(). Only the turn's own work runs on an own clock.
  void turn() {
    clock_.resume();
    admit_arrived();
    while (dec_.idle()) {
      clock_.wait_until(arrivals_[next_]);
      admit_arrived();
    }
    dec_.step();
    const double emitted_at = clock_.now();
    const BatchStepRecord& step = dec_.steps().back();
    for (int32_t ticket : step.tickets) {
      loads_[ticket].push_back({.batch_step = step.step, .batch_size = step.n_sequences, .t_emit_s = emitted_at});
      if (!dec_.finished(ticket)) continue;
      DecodeResult res = dec_.take_result(ticket);
      rn_.log_result(r_, res, *pending_[ticket], arrivals_[ticket], std::move(loads_[ticket]));
      tokens[pending_[ticket]->id] = std::move(res.tokens);
    }
    clock_.pause();
  }

  std::map<int64_t, std::vector<TokenId>> tokens;

 private:
  void admit_arrived() {
    for (const double now = clock_.now(); next_ < pending_.size() && arrivals_[next_] <= now; ++next_) {
      Request& q = *pending_[next_];
      const auto ref = references_.find(q.id);
      BatchRequest br{
          .prompt = q.prompt.pp.ids, .opts = rn_.decode_options(run_, q), .rule = rn_.rules_.at(run_.rule).get()};
      br.opts.clock = [this] { return clock_.now(); };
      if (run_.drafter >= 0)
        br.make_drafter = rn_.drafter_maker(run_, q, ref == references_.end() ? nullptr : &ref->second);
      dec_.submit(std::move(br));
    }
  }

  Runner& rn_;
  const size_t r_;
  const RunSpec& run_;
  const std::map<int64_t, std::vector<TokenId>>& references_;
  RunClock clock_;
  BatchDecoder dec_;
  std::vector<Request*> pending_;
  std::vector<double> arrivals_;                       // by ticket (= index in pending_)
  std::vector<std::vector<results::StepLoad>> loads_;  // by ticket
  size_t next_ = 0;                                    // the next request to submit
};

// One load, one run after another on the wall clock: the AR run, then its drafter runs.
void Runner::run_batched_group(size_t b, std::vector<Request>& requests) {
  if (cfg_.interleave) return run_interleaved_group(b, requests);
  const std::map<int64_t, std::vector<TokenId>> none;
  LoadRun ar_run(*this, b, requests, none, false);
  while (!ar_run.done()) ar_run.turn();
  std::map<int64_t, std::vector<TokenId>> ar = std::move(ar_run.tokens);
  if (auto it = logged_ar_.find(grid_[b].name); it != logged_ar_.end())  // --resume: finished before a kill
    for (const auto& [id, tokens] : it->second) ar.emplace(id, tokens);
  for (size_t r = b + 1; r < grid_.size() && grid_[r].compared(); ++r) {
    LoadRun run(*this, r, requests, ar, false);
    while (!run.done()) run.turn();
  }
}

// One load, its runs interleaved ([run] interleave): in each round every unfinished run takes a turn (one
// batched step), each on its own clock, so a slow spell of the machine falls on all of them. The order of a
// round's turns is a fresh permutation (interleave_order): a turn is slowed by what the turn before it left in
// the caches, and in a fixed order each run would always follow the same neighbour. A drafter that reads the
// AR run's tokens gets them beforehand, decoded alone outside every clock.
void Runner::run_interleaved_group(size_t b, std::vector<Request>& requests) {
  std::map<int64_t, std::vector<TokenId>> refs;
  size_t end = b + 1;
  for (; end < grid_.size() && grid_[end].compared(); ++end)
    if (grid_[end].drafter >= 0 && infos_[grid_[end].drafter]->needs_reference && refs.empty())
      refs = reference_tokens(b, requests);
  std::deque<LoadRun> runs;  // stable addresses: their requests' clocks refer to them
  for (size_t r = b; r < end; ++r) runs.emplace_back(*this, r, requests, refs, true);
  bool any = true;  // a run took a turn in the last round
  for (uint64_t round = 0; any; ++round) {
    any = false;
    for (size_t i : interleave_order(runs.size(), grid_[b].seed, round)) {
      if (runs[i].done()) continue;
      runs[i].turn();
      any = true;
    }
  }
}

// The AR run b's tokens of every request: logged before a kill (--resume), else decoded alone (unlogged,
// untimed; bit-identical to the batched loop's, which is batch-invariant).
std::map<int64_t, std::vector<TokenId>> Runner::reference_tokens(size_t b, std::vector<Request>& requests) {
  std::map<int64_t, std::vector<TokenId>> refs;
  const auto logged = logged_ar_.find(grid_[b].name);
  for (Request& q : requests) {
    if (logged != logged_ar_.end())
      if (auto it = logged->second.find(q.id); it != logged->second.end()) {
        refs[q.id] = it->second;
        continue;
      }
    refs[q.id] = decode(grid_[b], nullptr, q).tokens;
  }
  return refs;
}

std::vector<double> Runner::arrival_times(const RunSpec& r, size_t n) const {
  switch (r.load.kind) {
    case LoadSpec::Kind::kPoisson:
      return poisson_arrivals(n, r.load.rate, r.seed);
    case LoadSpec::Kind::kFile:
      return read_arrivals(find_input_file(cfg_.arrivals, config_dir_), n);
    case LoadSpec::Kind::kClosed:
      break;
  }
  return std::vector<double>(n, 0.0);
}

// Appends the (run r, request) pair to the log at once and counts it done.
void Runner::log_result(size_t r, const DecodeResult& res, Request& q, double arrival_s,
                        std::vector<results::StepLoad> step_load) {
  const Prompt& prompt = *q.prompt.pp.prompt;
  results::RequestRecord rec;
  rec.request_id = q.id;
  rec.prompt_id = prompt.id;
  rec.category = prompt.category;
  rec.repeat = q.rep;
  rec.prompt_tokens = res.prompt_tokens;
  rec.prefill_s = res.prefill_seconds;
  rec.decode_s = res.decode_seconds;
  rec.wall_time_s = res.prefill_seconds + res.decode_seconds;
  rec.stopped = res.stopped;
  rec.result = &res;
  rec.timing = results::current_timing_context(device_name_, omp_get_max_threads());
  rec.batch_size = std::max(1, grid_[r].batch_size);
  rec.arrival_s = arrival_s;
  rec.step_load = std::move(step_load);
  log_->append(grid_[r].name, rec);
  finished_[r].insert(q.id);
  q.ran = true;
  progress_->pair_done(static_cast<int64_t>(res.tokens.size()), grid_[r].name + " " + prompt.id);
}

void Runner::finish() {
  progress_->finish();
  log_->close();
  print_summary(grid_, out_path_);
}

}  // namespace

int run_experiment(const ExperimentConfig& cfg, const RunnerOptions& opts) { return Runner(cfg, opts).run(); }

}  // namespace specdec::experiments
