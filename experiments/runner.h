// The experiment runner behind `specdec run`: expands a config into its grid of runs (per temperature
// and seed: the AR baseline "ar_t<T>" and every drafter x k "<drafter>_k<k>_t<T>"), decodes every request
// prompt-major (the AR run first: its tokens are the reference of the oracle / synthetic drafters of the
// same request), appends each finished (run, request) to the HDF5 ResultsLog at once, and prints a
// summary (tau, acceptance, tokens/s, speedup over AR per run).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "experiments/config.h"

namespace specdec::experiments {

struct RunnerOptions {
  std::string out;                       // the log; empty = cfg.out_path()
  bool resume = false;                   // continue `out`, skipping finished (run, request) pairs
  int shard_index = 0, shard_count = 1;  // run the prompts whose index % shard_count == shard_index
  bool quiet = false;                    // no progress display
  std::string version = "unknown";       // specdec_version attribute (git sha)
};

// "i/n" -> {i, n}, 0 <= i < n. Throws a one-line error naming the text otherwise.
std::pair<int, int> parse_shard(const std::string& text);

// One configuration of the sweep: /runs/<name> in the log.
struct RunSpec {
  std::string name;  // "ar_t0", "ngram_k4_t0.7"; "..._s<seed>" appended when the config has several seeds
  int drafter = -1;  // index into cfg.drafter_configs; -1 = the AR baseline
  int k = 0;         // draft tokens per step (0 for AR)
  float temperature = 0.f;
  uint64_t seed = 0;
  std::string rule;  // greedy | speculative | typical
  int baseline = 0;  // index (in the grid) of the AR run with this temperature and seed
};

// The runs in execution order: for each temperature, for each seed: the AR baseline, then every drafter
// (config order) x k (config order).
std::vector<RunSpec> expand_grid(const ExperimentConfig& cfg);

// "%g" of a temperature as it appears in run names: 0 -> "0", 0.7 -> "0.7".
std::string temperature_tag(float temperature);

// Runs the whole experiment (or one shard of it). Throws specdec::Error on a user's mistake (after
// keeping everything logged so far). Returns the process exit code.
int run_experiment(const ExperimentConfig& cfg, const RunnerOptions& opts);

}  // namespace specdec::experiments
