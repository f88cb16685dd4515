// The oracle over a finished run's step records and the regret of the policy that made them.
#include "core/speculative/oracle.h"

#include <algorithm>
#include <cmath>

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
                     .n_emitted = r.n_emitted});
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

OracleResult oracle(std::span<const OracleStep> steps, const CostTable& costs, const std::string& drafter) {
  costs.validate("cost table (" + costs.source + ")");
  OracleResult res;
  const size_t n = steps.size();
  // Per step, every candidate's tokens and cost, computed once.
  std::vector<size_t> first(n + 1, 0);
  for (size_t s = 0; s < n; ++s) {
    const OracleStep& st = steps[s];
    SPECDEC_CHECK(st.k_proposed >= 0 && st.n_accepted >= 0 && st.n_accepted <= st.k_proposed && st.n_emitted >= 0 &&
                      st.n_emitted <= st.n_accepted + 1 && st.batch_size >= 1,
                  "oracle step ", s,
                  ": 0 <= n_accepted <= k_proposed, n_emitted <= n_accepted + 1, batch_size >= 1; got ",
                  "k_proposed = ", st.k_proposed, ", n_accepted = ", st.n_accepted, ", n_emitted = ", st.n_emitted,
                  ", batch_size = ", st.batch_size);
    first[s + 1] = first[s] + static_cast<size_t>(st.k_proposed) + 1;
  }
  std::vector<double> tok(first[n]), us(first[n]);
  for (size_t s = 0; s < n; ++s)
    for (int k = 0; k <= steps[s].k_proposed; ++k) {
      tok[first[s] + k] = emitted_if(steps[s], k);
      us[first[s] + k] = costs.step_us(drafter, k, steps[s].batch_size, steps[s].context_len);
    }
  res.k.resize(n);
  for (size_t s = 0; s < n; ++s) {
    res.k[s] = steps[s].k_proposed;
    res.achieved_tokens += tok[first[s] + steps[s].k_proposed];
    res.achieved_us += us[first[s] + steps[s].k_proposed];
  }
  res.oracle_tokens = res.achieved_tokens;
  res.oracle_us = res.achieved_us;
  if (n == 0 || res.oracle_us <= 0) return res;

  // Dinkelbach: at the current ratio lambda, choose per step argmax tokens - lambda * us; the new sums'
  // ratio is >= lambda (the previous choices score 0 there), equal only at the optimum. Starting from the
  // run's own choices makes the oracle >= the achieved throughput by construction. Finitely many choices:
  // it stops; the iteration cap only guards against floating-point cycling.
  double lambda = res.oracle_tokens / res.oracle_us;
  for (int iter = 0; iter < 100; ++iter) {
    std::vector<int32_t> k(n);
    double t_sum = 0, u_sum = 0;
    for (size_t s = 0; s < n; ++s) {
      int best = 0;
      double best_v = tok[first[s]] - lambda * us[first[s]];
      for (int c = 1; c <= steps[s].k_proposed; ++c) {
        const double v = tok[first[s] + c] - lambda * us[first[s] + c];
        if (v > best_v) {
          best_v = v;
          best = c;
        }
      }
      k[s] = best;
      t_sum += tok[first[s] + best];
      u_sum += us[first[s] + best];
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
