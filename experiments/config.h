// The experiment config of `specdec run`: an INI file read with Boost.Program_options (sections become
// "section.key") plus command-line overrides --section.key=value, resolved into the plain
// ExperimentConfig the runner consumes. Every mistake (an unknown key or section, a bad value, a
// misspelt drafter option) is a one-line specdec::Error naming the key and the closest known one.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/speculative/drafter.h"

namespace specdec::experiments {

// One [drafter.NAME] section (a section may also be absent: then type = NAME and no options).
struct DrafterConfig {
  std::string name;                            // NAME; runs are named "<NAME>_k<k>_t<T>"
  std::string type;                            // a registered drafter, or plugin:PATH.so:NAME
  std::map<std::string, std::string> options;  // every other key of the section, passed through as-is
  std::string section() const { return "drafter." + name; }
};

struct ExperimentConfig {
  // [target]
  std::string model;
  std::string tokenizer;       // empty: the model carries its own (GGUF) or has one beside it
  std::optional<bool> chat;    // unset = auto: apply the chat template when the tokenizer has one
  int threads = 0;             // 0 = OMP_NUM_THREADS or all cores
  std::string device = "cpu";  // cpu | cuda | cuda:N (experiments/backend.h)
  // [run]
  std::string name;
  std::string out;                    // empty = results/<name>.h5
  std::vector<std::string> drafters;  // [drafter.NAME] names, in the order given
  std::vector<int> k = {4};
  std::vector<float> temperatures = {0.f};
  std::string rule = "auto";  // greedy | speculative | typical | auto (greedy at T = 0, else speculative)
  int top_k = 0;
  float top_p = 1.f;
  int max_new_tokens = 128;
  std::vector<uint64_t> seeds = {0};
  int repeats = 1;
  int max_tree_nodes = 64;
  // Batched decoding under load (docs/batching.md). Empty batch_sizes: every request decoded alone, one after
  // another (the single-sequence loop); else each value is a run axis: B sequences in flight in the batched
  // loop, closed loop (every request there from the start, a finished one replaced by the next) unless
  // arrival_rates or arrivals give an open-loop load.
  std::vector<int> batch_sizes;
  std::vector<double> arrival_rates;  // requests/s, Poisson arrivals seeded by the run's seed; a run axis
  std::string arrivals;               // a file of arrival times (seconds, one per line); a run axis of one value
  // The runs of one batch size and load advance together, a batched step each in turn, each on its own clock
  // (the seconds of its own work; idle, it jumps to the next arrival), so that the machine's drift hits the
  // AR run and the drafter runs it is compared with alike (docs/batching.md "Interleaved runs").
  bool interleave = false;
  bool aa_control = false;  // a second AR run in each batched group, compared with the first (RunSpec::aa)
  // Speculation policies (core/speculative/policy.h), a run axis of drafter runs; empty = none (k every
  // step). policy_options: [policy.NAME] key = value.
  std::vector<std::string> policies;
  std::map<std::string, std::map<std::string, std::string>> policy_options;
  std::string cost_table;  // `specdec bench costs` JSON: the cost_model policy's costs and the report's oracle
  // [prompts]
  std::vector<std::string> prompt_sets;  // spec_bench | mt_bench | gsm8k | a path to a .jsonl file
  int per_category = 0;                  // 0 = every prompt
  std::vector<std::string> categories;   // empty = all
  int max_prompt_tokens = 0;             // 0 = no limit (the model's context still applies)
  // One entry per name in `drafters`, same order.
  std::vector<DrafterConfig> drafter_configs;
  // [rule.NAME] key = value: options of the acceptance rule NAME (verifiers/rules.h), e.g. typical's epsilon.
  std::map<std::string, std::map<std::string, std::string>> rule_options;

  std::string source;  // the config file it came from ("" for a string)

  // The acceptance rule of the runs at this temperature ("auto" resolved).
  std::string rule_for(float temperature) const;
  // The options of rule `name` ([rule.NAME]; empty when the config has none), for make_acceptance_rule.
  DrafterOptions rule_options_for(const std::string& name) const;
  // The policy spec of drafter runs with policy `name` and draft budget k ("NAME key=value ..." for
  // make_policy): [policy.NAME]'s options, and k as the policy's own k / k_max when the section leaves it out.
  std::string policy_spec(const std::string& name, int k) const;
  bool batched() const { return !batch_sizes.empty(); }
  // `out`, or results/<name>.h5.
  std::string out_path() const;
  // The whole resolved config as INI text (every key, defaults included), parseable again. `out` is left
  // out on purpose: it says where results go, not what they are, so shards and resumed runs written to
  // other files share one config text (results::merge and --resume compare it).
  std::string to_ini() const;
};

// A command-line override: key "section.key" (or "drafter.NAME.key"), and its value.
struct ConfigOverride {
  std::string key, value;
};

// Takes the overrides out of a subcommand's arguments: "--section.key=value" and "--section.key value"
// (a long option whose name holds a '.'); everything else stays in args, in order.
std::vector<ConfigOverride> take_overrides(std::vector<std::string>& args);

// Reads an INI config (Boost.Program_options syntax: [section], key = value, # comments) and applies
// the overrides, which win over the file. Throws specdec::Error (one line) on an unreadable file, a
// syntax error, an unknown key or section (with the closest known key), a key set twice in the file, or
// a bad value (naming key and value and what was expected).
ExperimentConfig load_experiment_config(const std::string& path, const std::vector<ConfigOverride>& overrides = {});
ExperimentConfig parse_experiment_config(std::istream& in, const std::string& source,
                                         const std::vector<ConfigOverride>& overrides = {});

// The known keys of [target], [run], [prompts] (for --help and suggestions).
struct ConfigKeyInfo {
  const char* key;  // "section.key"
  const char* default_text;
  const char* help;
};
std::span<const ConfigKeyInfo> config_keys();
std::string config_keys_help();  // a table for --help

// Levenshtein distance (insertions, deletions, substitutions; bytes).
size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to word, or "" when none is close enough to be a plausible typo.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

// Resolves every drafter's type in the registry (loading plugins). An unknown type is an error naming
// the section, listing the known drafters and suggesting the closest.
std::vector<const DrafterInfo*> resolve_drafter_types(const ExperimentConfig& cfg, DrafterRegistry& registry);

// Makes one drafter of a section. A misspelt option (DrafterOptions::check_all_used) becomes an error
// naming the section and the key, with the closest option the drafter knows.
std::unique_ptr<Drafter> make_drafter(const DrafterConfig& dc, const DrafterInfo& info, const DrafterEnv& env);

}  // namespace specdec::experiments
