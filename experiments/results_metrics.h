// The metrics of a results log, as the runner's summary prints them: SpecStats per run (and category) and
// the speedup over the AR baseline. docs/metrics.md defines each figure; experiments/report/
// specdec_report.py computes the same from the same rows (tests/report compares the two on one log).
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/speculative/oracle.h"
#include "core/speculative/stats.h"
#include "experiments/results_log.h"

namespace specdec::results {

// A request row is `loaded` when its load_avg exceeds kLoadedFactor x host_cores (docs/metrics.md).
inline constexpr double kLoadedFactor = 1.25;

// SpecStats over a run's steps (only the requests of `category` when given). Whether a step tried the
// position below its accepted path comes from its draft_tokens rows (a step without any: a chain).
SpecStats run_stats(const RunData& run, const std::string* category = nullptr);

// One request decoded by both the run and its AR baseline, timed by the same invocation.
struct SpeedupPair {
  int64_t request_id = 0;
  std::string prompt_id;
  int32_t repeat = 0;
  double ar_s_per_token = 0, run_s_per_token = 0;      // decode_s / new_tokens
  double ar_e2e_per_token = 0, run_e2e_per_token = 0;  // wall_time_s / new_tokens (prefill included)
  bool loaded = false;  // either side was timed while the load average exceeded the host's cores
  double ratio() const { return ar_s_per_token / run_s_per_token; }
};

inline constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The median of v (the mean of the two middle values for an even count); NaN for an empty v.
double median_of(std::vector<double> v);
// Outlier rule on per-request ratios r_i (at least kOutlierMinPairs pairs): the modified z-score
// 0.6745 * |ln r_i - median(ln r)| / MAD > 3.5, MAD = median |ln r_j - median(ln r)| (Iglewicz and Hoaglin);
// with MAD = 0, any r_i whose ln differs from the median.
inline constexpr int kOutlierMinPairs = 5;
inline constexpr double kOutlierZ = 3.5;

struct Speedup {
  std::vector<SpeedupPair> pairs;
  int64_t n_cross_invocation = 0;        // requests left out: the baseline's row was timed by another invocation
  int64_t n_unpaired = 0;                // requests of the run without a baseline row
  int64_t n_no_tokens = 0;               // left out: a side emitted no token
  double point = kNaN;                   // sum_i ar_s_per_token_i / sum_i run_s_per_token_i
  double e2e = kNaN;                     // the same with wall_time_s (prefill included): speedup_e2e
  double median = kNaN;                  // median of the per-request ratios
  std::map<int32_t, double> per_repeat;  // repeat -> point over that repeat's pairs
  std::vector<int64_t> outliers;         // request ids (outlier rule above)
  int64_t n_loaded = 0;                  // pairs timed under a load average above the host's cores
};

// Pairs the run's requests with the baseline's by request_id (only the category's when given).
Speedup speedup(const RunData& run, const RunData& baseline, const std::string* category = nullptr);

// The oracle's view of a logged run (core/speculative/oracle.h; docs/metrics.md "regret"), every step row in
// file order: k_proposed = the proposal's depth for a tree step (tree_nodes > 0), else n_proposed; batch_size
// as logged (at least 1); the group of a batched step is its (batch_step, t_emit_s), -1 without a batch_step.
// experiments/report/specdec_report.py's oracle_steps() is the same.
std::vector<OracleStep> oracle_steps(const RunData& run);

}  // namespace specdec::results
