// Metrics of a results log (results_metrics.h); definitions in docs/metrics.md.
#include "experiments/results_metrics.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

namespace specdec::results {

double median_of(std::vector<double> v) {
  if (v.empty()) return kNaN;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

namespace {

// The run's own threads are part of the load average, and the 1-minute average lags: a run using every core
// reads about host_cores on a quiet machine. Loaded = a quarter more runnable threads than cores on average.
bool loaded(const RequestRow& r) { return r.host_cores > 0 && r.load_avg > kLoadedFactor * r.host_cores; }

double point_of(const std::vector<const SpeedupPair*>& pairs, bool e2e) {
  double ar = 0, run = 0;
  for (const auto* p : pairs) {
    ar += e2e ? p->ar_e2e_per_token : p->ar_s_per_token;
    run += e2e ? p->run_e2e_per_token : p->run_s_per_token;
  }
  return pairs.empty() || run <= 0 ? kNaN : ar / run;
}

}  // namespace

SpecStats run_stats(const RunData& run, const std::string* category) {
  std::set<int64_t> ids;
  for (const auto& q : run.requests)
    if (!category || q.category == *category) ids.insert(q.request_id);
  // (request, step) -> the step's draft tokens, to find the node below the accepted path
  std::map<std::pair<int64_t, int32_t>, std::vector<const DraftTokenRow*>> nodes;
  for (const auto& d : run.draft_tokens)
    if (ids.count(d.request_id)) nodes[{d.request_id, d.step}].push_back(&d);
  SpecStats st;
  for (const auto& s : run.steps) {
    if (!ids.count(s.request_id)) continue;
    bool below = s.max_depth > s.n_accepted;  // a chain
    if (auto it = nodes.find({s.request_id, s.step}); it != nodes.end()) {
      int32_t end = -1;
      for (const auto* d : it->second)
        if (d->accepted && d->depth == s.n_accepted) end = d->node;
      if (s.n_accepted == 0 || end >= 0) {
        below = false;
        for (const auto* d : it->second) below = below || (d->depth == s.n_accepted + 1 && d->parent == end);
      }
    }
    st.add_step(s.n_proposed, s.n_accepted, s.n_emitted, s.max_depth, below);
  }
  return st;
}

Speedup speedup(const RunData& run, const RunData& baseline, const std::string* category) {
  Speedup out;
  std::map<int64_t, const RequestRow*> base;
  for (const auto& q : baseline.requests) base[q.request_id] = &q;
  for (const auto& q : run.requests) {
    if (category && q.category != *category) continue;
    auto it = base.find(q.request_id);
    if (it == base.end()) {
      ++out.n_unpaired;
      continue;
    }
    const RequestRow& a = *it->second;
    if (a.invocation != q.invocation) {
      ++out.n_cross_invocation;
      continue;
    }
    if (a.new_tokens <= 0 || q.new_tokens <= 0 || q.decode_s <= 0) {
      ++out.n_no_tokens;
      continue;
    }
    SpeedupPair p;
    p.request_id = q.request_id;
    p.prompt_id = q.prompt_id;
    p.repeat = q.repeat;
    p.ar_s_per_token = a.decode_s / a.new_tokens;
    p.run_s_per_token = q.decode_s / q.new_tokens;
    p.ar_e2e_per_token = a.wall_time_s / a.new_tokens;
    p.run_e2e_per_token = q.wall_time_s / q.new_tokens;
    p.loaded = loaded(a) || loaded(q);
    out.n_loaded += p.loaded ? 1 : 0;
    out.pairs.push_back(p);
  }
  std::vector<const SpeedupPair*> all;
  std::map<int32_t, std::vector<const SpeedupPair*>> by_repeat;
  std::vector<double> logs;
  for (const auto& p : out.pairs) {
    all.push_back(&p);
    by_repeat[p.repeat].push_back(&p);
    logs.push_back(std::log(p.ratio()));
  }
  out.point = point_of(all, false);
  out.e2e = point_of(all, true);
  for (const auto& [rep, ps] : by_repeat) out.per_repeat[rep] = point_of(ps, false);
  if (!logs.empty()) out.median = std::exp(median_of(logs));
  if (static_cast<int>(logs.size()) >= kOutlierMinPairs) {
    const double med = median_of(logs);
    std::vector<double> dev;
    for (double l : logs) dev.push_back(std::fabs(l - med));
    const double mad = median_of(dev);
    for (size_t i = 0; i < logs.size(); ++i) {
      const bool out_i = mad > 0 ? 0.6745 * dev[i] / mad > kOutlierZ : dev[i] > 1e-12;
      if (out_i) out.outliers.push_back(out.pairs[i].request_id);
    }
  }
  return out;
}

std::vector<OracleStep> oracle_steps(const RunData& run) {
  std::vector<OracleStep> out;
  out.reserve(run.steps.size());
  // One forward_batch: its batch_step and its emission time (a resumed or sharded run numbers its batched
  // steps from 0 again, at other times).
  std::map<std::pair<int32_t, double>, int64_t> groups;
  for (const StepRow& s : run.steps) {
    int64_t group = -1;
    if (s.batch_step >= 0)
      group = groups.try_emplace({s.batch_step, s.t_emit_s}, static_cast<int64_t>(groups.size())).first->second;
    out.push_back({.seq = static_cast<int32_t>(s.request_id),
                   .batch_size = std::max(s.batch_size, 1),
                   .context_len = s.context_len,
                   .k_proposed = s.tree_nodes > 0 ? s.max_depth : s.n_proposed,
                   .n_accepted = s.n_accepted,
                   .n_emitted = s.n_emitted,
                   .group = group});
  }
  return out;
}

}  // namespace specdec::results
