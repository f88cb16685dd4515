// The experiment runner behind `specdec run`: expands a config into its grid of runs (per temperature
// and seed: the AR baseline "ar_t<T>" and every drafter x k "<drafter>_k<k>_t<T>"; with [run] batch_size,
// arrival_rate / arrivals and policy, per batch size and load an AR baseline and every drafter x k x policy),
// decodes every request (unbatched: prompt-major, one request at a time; batched: run-major, the requests
// of a run decoded together in the batched loop under its load), the AR run first (its tokens are the
// reference of the oracle / synthetic drafters of the same request), appends each finished (run, request)
// to the HDF5 ResultsLog at once, and prints a summary (tau, acceptance, tokens/s, speedup over AR per run).
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

// The load of a batched run: closed loop (every request there at the start), Poisson arrivals at a rate, or
// the arrival times of [run] arrivals.
struct LoadSpec {
  enum class Kind { kClosed, kPoisson, kFile } kind = Kind::kClosed;
  double rate = 0;           // requests/s (kPoisson)
  std::string tag() const;   // in run names: "" (closed), "r<rate>", "arr" (file)
  std::string text() const;  // the run attribute `load`: "closed", "poisson", "file"
};

// One configuration of the sweep: /runs/<name> in the log.
struct RunSpec {
  // "ar_t0", "ngram_k4_t0.7", "ngram_k4_cost_model_b4_r2_t0": drafter, k, policy, "_b<batch>" and the load's
  // tag when batched, temperature; "..._s<seed>" appended when the config has several seeds
  std::string name;
  int drafter = -1;  // index into cfg.drafter_configs; -1 = the AR baseline
  int k = 0;         // draft tokens per step (0 for AR); the draft budget of a policy
  float temperature = 0.f;
  uint64_t seed = 0;
  std::string rule;    // greedy | speculative | typical
  int baseline = 0;    // index (in the grid) of the AR run with this temperature, seed, batch size and load
  int batch_size = 0;  // sequences in flight in the batched loop; 0 = unbatched (each request alone)
  LoadSpec load;       // batched runs only
  std::string policy;  // a drafter run's policy ([run] policy); "" = none
  // [run] aa_control: a second AR run of its batch size and load ("ar_aa..."), compared with the AR run like a
  // drafter run: two runs of the same work, whose speedup is the comparison's noise floor (docs/batching.md).
  bool aa = false;

  bool is_baseline() const { return drafter < 0 && !aa; }
  bool compared() const { return drafter >= 0 || aa; }  // a run that follows its baseline in the grid
};

// The runs in execution order: for each temperature, for each seed: the AR baseline, its A/A control when
// [run] aa_control (batched runs only), then every drafter (config order) x k (config order).
std::vector<RunSpec> expand_grid(const ExperimentConfig& cfg);

// "%g" of a temperature as it appears in run names: 0 -> "0", 0.7 -> "0.7".
std::string temperature_tag(float temperature);

// The order of the turns of round `round` of an interleaved group of n runs ([run] interleave): a permutation
// of 0..n-1 drawn from `seed` and the round, so that no run always follows the same one (a turn is slowed by
// the caches the turn before it left), and the same on every platform.
std::vector<size_t> interleave_order(size_t n, uint64_t seed, uint64_t round);

// Arrival times of n requests, seconds from the run's start. Poisson: t_0 = 0, t_i = t_{i-1} + E_i with
// E_i = -ln(1 - u_i) / rate, u_i the top 53 bits of a std::mt19937_64 seeded with `seed` over 2^53.
std::vector<double> poisson_arrivals(size_t n, double rate, uint64_t seed);
// The first n times of a file (one number of seconds per line; blank lines and # comments skipped): each
// finite, >= 0 and >= the one before. Throws a one-line error naming the file and line, or the count short.
std::vector<double> read_arrivals(const std::string& path, size_t n);

// Runs the whole experiment (or one shard of it). Throws specdec::Error on a user's mistake (after
// keeping everything logged so far). Returns the process exit code.
int run_experiment(const ExperimentConfig& cfg, const RunnerOptions& opts);

}  // namespace specdec::experiments
