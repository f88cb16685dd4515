// The oracle over a finished run's step records and the regret of the policy that made them.
#include "core/speculative/oracle.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

#include "core/error.h"

namespace specdec {

std::vector<OracleStep> oracle_steps(const DecodeResult& result, int32_t seq) {
  std::vector<OracleStep> out;
  for (const StepRecord& r : result.steps)
    out.push_back({.seq = seq,
                   .batch_size = 1,
                   .context_len = r.context_len,
                   .k_proposed = r.n_proposed,
                   .n_accepted = r.n_accepted,
                   .n_emitted = r.n_emitted});
  return out;
}

std::vector<OracleStep> oracle_steps(const BatchResult& run) {
  std::vector<OracleStep> out;
  for (const BatchStepRecord& b : run.steps) {
    SPECDEC_CHECK(b.tickets.size() == b.seq_steps.size(), "a batch step record with one seq_step per ticket, step ",
                  b.step, " has ", b.tickets.size(), " tickets and ", b.seq_steps.size(), " seq_steps");
    for (size_t i = 0; i < b.tickets.size(); ++i) {
      const int32_t t = b.tickets[i], j = b.seq_steps[i];
      SPECDEC_CHECK(t >= 0 && t < static_cast<int32_t>(run.results.size()), "batch step ", b.step, ": a ticket in 0..",
                    run.results.size() - 1, ", got ", t);
      const std::vector<StepRecord>& steps = run.results[t].steps;
      SPECDEC_CHECK(j >= 0 && j < static_cast<int32_t>(steps.size()), "batch step ", b.step, ", ticket ", t,
                    ": a step index in 0..", steps.size() - 1, ", got ", j);
      const StepRecord& r = steps[j];
      out.push_back({.seq = t,
                     .batch_size = b.n_sequences,
                     .context_len = r.context_len,
                     .k_proposed = r.n_proposed,
                     .n_accepted = r.n_accepted,
                     .n_emitted = r.n_emitted,
                     .group = b.step});
    }
  }
  return out;
}

double OracleResult::regret() const {
  if (achieved_tokens <= 0) return 0;
  return oracle_tps() / achieved_tps() - 1;
}

int32_t emitted_if(const OracleStep& s, int k) {
  const int kk = std::min(k, s.k_proposed);  // past the proposal: censored, scored as the proposal
  return std::min(std::min(s.n_accepted, kk) + 1, s.n_emitted);
}

namespace {

// One unit of the modelled time: a step on its own, or a batched step's members together.
struct Unit {
  std::vector<size_t> members;  // step indices
  bool joint = false;
  int context = 0;  // a joint unit's mean C (rounded, as plan_batch)
};

// A joint unit's best choices at ratio lambda: maximise sum_i tok_i(k_i) - lambda * (F(sum (k_i + 1)) +
// sum_i D(k_i, G)), G the number of members that draft (k_i > 0: they draft as one group, each at the
// per-sequence cost of a group of G, CostTable::drafter_us). For each G, dynamic programming over the
// members' total draft m and the count of drafting members (F depends on the total only), keeping the plans
// where exactly G draft. Fills k (per member) and returns (tokens, us).
std::pair<double, double> best_joint(const Unit& u, std::span<const OracleStep> steps, const CostTable& costs,
                                     const std::string& drafter, double lambda, std::vector<int32_t>& k) {
  const size_t n = u.members.size();
  const int B = static_cast<int>(n);
  int total = 0;
  for (size_t i : u.members) total += steps[i].k_proposed;
  constexpr double kNone = -INFINITY;
  const size_t W = static_cast<size_t>(total + 1) * (n + 1);  // (running total, drafting so far)
  std::vector<double> dp(W), next(W);
  std::vector<std::vector<int>> pick(n, std::vector<int>(W));  // member's k at each (running total, count)
  double best_v = kNone;
  int best_G = 0, best_m = 0;
  std::vector<std::vector<int>> best_pick;
  for (int G = 0; G <= B; ++G) {
    std::fill(dp.begin(), dp.end(), kNone);
    dp[0] = 0;
    int reach = 0;
    for (size_t j = 0; j < n; ++j) {
      const OracleStep& s = steps[u.members[j]];
      std::vector<double> value(s.k_proposed + 1);
      for (int c = 0; c <= s.k_proposed; ++c)
        value[c] = emitted_if(s, c) - lambda * costs.drafter_us(drafter, c, std::max(G, 1));
      std::fill(next.begin(), next.end(), kNone);
      std::fill(pick[j].begin(), pick[j].end(), -1);
      for (int t = 0; t <= reach + s.k_proposed; ++t)
        for (size_t g = 0; g <= std::min<size_t>(j + 1, G); ++g)
          for (int c = 0; c <= std::min(s.k_proposed, t); ++c) {
            const size_t g0 = g - (c > 0 ? 1 : 0);
            if ((c > 0 && g == 0) || t - c > reach) continue;
            const double prev = dp[static_cast<size_t>(t - c) * (n + 1) + g0];
            if (prev == kNone) continue;
            const double v = prev + value[c];
            double& slot = next[static_cast<size_t>(t) * (n + 1) + g];
            if (v > slot) {  // strict: the member's smaller c on a tie
              slot = v;
              pick[j][static_cast<size_t>(t) * (n + 1) + g] = c;
            }
          }
      reach += s.k_proposed;
      dp.swap(next);
    }
    for (int m = 0; m <= total; ++m) {
      const double d = dp[static_cast<size_t>(m) * (n + 1) + G];
      if (d == kNone) continue;
      const double v = d - lambda * costs.ragged_forward_us(B + m, B, u.context);
      if (v > best_v) {  // strict: the smaller G, then the smaller total, on a tie
        best_v = v;
        best_G = G;
        best_m = m;
        best_pick = pick;
      }
    }
  }
  double tok = 0, us = costs.ragged_forward_us(B + best_m, B, u.context);
  int g = best_G;
  for (size_t j = n; j-- > 0;) {
    const int c = best_pick[j][static_cast<size_t>(best_m) * (n + 1) + g];
    const OracleStep& s = steps[u.members[j]];
    k[u.members[j]] = c;
    tok += emitted_if(s, c);
    us += costs.drafter_us(drafter, c, c > 0 ? best_G : 1);
    best_m -= c;
    g -= c > 0 ? 1 : 0;
  }
  return {tok, us};
}

}  // namespace

OracleResult oracle(std::span<const OracleStep> steps, const CostTable& costs, const std::string& drafter) {
  costs.validate("cost table (" + costs.source + ")");
  OracleResult res;
  const size_t n = steps.size();
  for (size_t s = 0; s < n; ++s) {
    const OracleStep& st = steps[s];
    SPECDEC_CHECK(st.k_proposed >= 0 && st.n_accepted >= 0 && st.n_accepted <= st.k_proposed && st.n_emitted >= 0 &&
                      st.n_emitted <= st.n_accepted + 1 && st.batch_size >= 1,
                  "oracle step ", s,
                  ": 0 <= n_accepted <= k_proposed, n_emitted <= n_accepted + 1, batch_size >= 1; got ",
                  "k_proposed = ", st.k_proposed, ", n_accepted = ", st.n_accepted, ", n_emitted = ", st.n_emitted,
                  ", batch_size = ", st.batch_size);
  }
  // The units, in order of their first step: a group whose size is its members' batch size is one joint
  // unit; every other step is a unit of its own.
  std::vector<Unit> units;
  {
    std::map<int64_t, std::vector<size_t>> by_group;
    for (size_t s = 0; s < n; ++s) {
      if (steps[s].group < 0) continue;
      by_group[steps[s].group].push_back(s);
    }
    std::vector<char> done(n, 0);
    for (size_t s = 0; s < n; ++s) {
      if (done[s]) continue;
      const std::vector<size_t>* g = steps[s].group >= 0 ? &by_group.at(steps[s].group) : nullptr;
      bool joint = g != nullptr;
      if (joint)
        for (size_t i : *g) joint = joint && steps[i].batch_size == static_cast<int32_t>(g->size());
      if (!joint) {
        units.push_back({.members = {s}});
        done[s] = 1;
        continue;
      }
      Unit u{.members = *g, .joint = true};
      double c = 0;
      for (size_t i : *g) c += steps[i].context_len, done[i] = 1;
      u.context = static_cast<int>(std::lround(c / static_cast<double>(g->size())));
      units.push_back(std::move(u));
    }
  }
  // Per step on its own, every candidate's tokens and cost, computed once.
  std::vector<std::vector<double>> tok(n), us(n);
  for (const Unit& u : units) {
    if (u.joint) continue;
    const OracleStep& st = steps[u.members[0]];
    for (int k = 0; k <= st.k_proposed; ++k) {
      tok[u.members[0]].push_back(emitted_if(st, k));
      us[u.members[0]].push_back(costs.step_us(drafter, k, st.batch_size, st.context_len));
    }
  }
  // The run's own choices: what was proposed.
  res.k.resize(n);
  for (size_t s = 0; s < n; ++s) res.k[s] = steps[s].k_proposed;
  for (const Unit& u : units) {
    if (!u.joint) {
      const size_t s = u.members[0];
      res.achieved_tokens += tok[s].back();
      res.achieved_us += us[s].back();
      continue;
    }
    int blocks = 0, drafting = 0;
    for (size_t s : u.members) drafting += steps[s].k_proposed > 0 ? 1 : 0;
    for (size_t s : u.members) {
      const int c = steps[s].k_proposed;
      res.achieved_tokens += emitted_if(steps[s], c);
      res.achieved_us += costs.drafter_us(drafter, c, c > 0 ? drafting : 1);
      blocks += c + 1;
    }
    res.achieved_us += costs.ragged_forward_us(blocks, static_cast<int>(u.members.size()), u.context);
  }
  res.oracle_tokens = res.achieved_tokens;
  res.oracle_us = res.achieved_us;
  if (n == 0 || res.oracle_us <= 0) return res;

  // Dinkelbach: at the current ratio lambda, choose per unit argmax tokens - lambda * us; the new sums'
  // ratio is >= lambda (the previous choices score 0 there), equal only at the optimum. Starting from the
  // run's own choices makes the oracle >= the achieved throughput by construction. Finitely many choices:
  // it stops; the iteration cap only guards against floating-point cycling.
  double lambda = res.oracle_tokens / res.oracle_us;
  for (int iter = 0; iter < 100; ++iter) {
    std::vector<int32_t> k(n);
    double t_sum = 0, u_sum = 0;
    for (const Unit& u : units) {
      if (u.joint) {
        const auto [t, c] = best_joint(u, steps, costs, drafter, lambda, k);
        t_sum += t;
        u_sum += c;
        continue;
      }
      const size_t s = u.members[0];
      int best = 0;
      double best_v = tok[s][0] - lambda * us[s][0];
      for (int c = 1; c <= steps[s].k_proposed; ++c) {
        const double v = tok[s][c] - lambda * us[s][c];
        if (v > best_v) {
          best_v = v;
          best = c;
        }
      }
      k[s] = best;
      t_sum += tok[s][best];
      u_sum += us[s][best];
    }
    if (u_sum <= 0) break;
    const double next = t_sum / u_sum;
    if (!(next > lambda * (1 + 1e-15))) {
      if (next >= lambda) {  // the same optimum with other ties: keep the smaller choices found now
        res.k = std::move(k);
        res.oracle_tokens = t_sum;
        res.oracle_us = u_sum;
      }
      break;
    }
    lambda = next;
    res.k = std::move(k);
    res.oracle_tokens = t_sum;
    res.oracle_us = u_sum;
  }
  return res;
}

}  // namespace specdec
