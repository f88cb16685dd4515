// Fabricated requests for the results-log tests: a deterministic DecodeResult per (request id, salt) with
// chains, trees and empty proposals, and the rows a reader must get back for it (the reference the
// writer is checked against, built here independently of the writer).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "experiments/results_log.h"

namespace specdec::test::results {

using namespace specdec::results;

inline FileInfo file_info(const std::string& config = "[model]\npath = stories260K.bin\n\n[sweep]\nk = 1,4\n") {
  return {.specdec_version = "abc1234",
          .config_text = config,
          .host_json = R"({"cpu": "test", "cores": 2, "gpu": "", "driver": "", "cuda": "", "cublas": ""})",
          .seeds = "0,1",
          .start_time = "2024-01-02T03:04:05Z"};
}

inline RunInfo spec_run() {
  return {"ngram_k4_t0",
          {{"drafter", "ngram"},
           {"drafter_options", "n=3"},
           {"k", "4"},
           {"temperature", "0"},
           {"top_k", "0"},
           {"top_p", "1"},
           {"rule", "greedy"},
           {"lossless", "1"},
           {"baseline", "0"},
           {"target", "stories260K"}}};
}
inline RunInfo ar_run() {
  return {"ar_t0",
          {{"drafter", "none"},
           {"drafter_options", ""},
           {"k", "0"},
           {"temperature", "0"},
           {"top_k", "0"},
           {"top_p", "1"},
           {"rule", "greedy"},
           {"lossless", "1"},
           {"baseline", "1"},
           {"target", "stories260K"}}};
}

// A request with 1..9 steps; step proposals of 0..4 nodes, trees when (id + step) % 3 == 0.
inline DecodeResult make_result(int64_t id, int salt = 0) {
  DecodeResult r;
  const int n_steps = 1 + static_cast<int>((id * 7 + salt) % 9);
  r.prompt_tokens = 5 + static_cast<int>(id % 4);
  int ctx = r.prompt_tokens;
  for (int s = 0; s < n_steps; ++s) {
    StepRecord st;
    st.step = s;
    const int n = static_cast<int>((id + s + salt) % 5);
    const bool tree = n >= 3 && (id + s) % 3 == 0;
    st.n_proposed = n;
    st.context_len = ctx;
    st.t_draft_us = 10.5 * (s + 1) + id;
    st.t_verify_us = 100.25 + s + 0.5 * salt;
    st.t_forward_us = 90.125 + s;
    st.k_policy = (n + salt) % 4;
    st.k_expected = 1 + 0.375 * st.k_policy;
    std::vector<int32_t> depth(n, 1);
    for (int i = 0; i < n; ++i) {
      DraftTokenRecord d;
      d.node = i;
      d.parent = tree ? (i == 0 ? -1 : (i - 1) / 2) : i - 1;
      d.depth = d.parent < 0 ? 1 : depth[d.parent] + 1;
      depth[i] = d.depth;
      st.max_depth = std::max(st.max_depth, d.depth);
      d.token = static_cast<TokenId>((id * 31 + s * 7 + i + salt) % 512);
      d.p_target = 0.125 * ((i + s) % 8);
      d.q_draft = 1.0 - 0.0625 * i;
      d.u = (i % 2) ? -1.0 : 0.5 + 0.01 * s;
      d.visited = i <= 1;
      d.accepted = i == 0 && s % 2 == 0;
      d.p_test = d.p_target / 3;  // every column distinct, so a swapped or dropped one is seen
      d.threshold = i % 2 ? 0.09 : -1.0;
      d.passed = i <= 1 && s % 3 != 1;
      st.nodes.push_back(d);
    }
    st.n_accepted = (n > 0 && s % 2 == 0) ? 1 : 0;
    // A request with id % 5 == 4 stops on the first token of its last step: that step emits 1 token
    // although it accepted more (n_emitted < n_accepted + 1).
    st.n_emitted = (id % 5 == 4 && s == n_steps - 1) ? 1 : st.n_accepted + 1;
    ctx += st.n_accepted + 1;
    for (int i = 0; i < st.n_emitted; ++i) r.tokens.push_back(static_cast<TokenId>((id * 13 + s * 5 + i) % 512));
    r.steps.push_back(std::move(st));
  }
  r.stopped = id % 5 == 4;
  r.prefill_seconds = 0.001 * static_cast<double>(id + 1);
  r.decode_seconds = 0.01 * n_steps;
  return r;
}

inline RequestRecord make_record(int64_t id, const DecodeResult& res) {
  RequestRecord rec;
  rec.request_id = id;
  rec.prompt_id = "spec_bench:" + std::to_string(80 + id / 2);
  rec.category = (id % 2) ? "summarization" : "qa";
  rec.repeat = static_cast<int32_t>(id % 2);
  rec.prompt_tokens = res.prompt_tokens;
  rec.prefill_s = res.prefill_seconds;
  rec.decode_s = res.decode_seconds;
  rec.wall_time_s = rec.prefill_s + rec.decode_s;
  rec.stopped = res.stopped;
  rec.result = &res;
  rec.batch_size = 1;
  rec.timing = {.invocation = "20240102T030405Z-42-0000abcd",
                .host = "testhost",
                .host_cores = 2,
                .load_avg = 0.25 * static_cast<double>(id % 3),
                .threads = 2,
                .device = "cpu",
                .logged_at = 1.7e9 + static_cast<double>(id)};
  if (id % 2) {  // odd ids as from a batched run: an arrival and each step's batched step, size, emission time
    rec.arrival_s = 0.5 * static_cast<double>(id);
    for (size_t s = 0; s < res.steps.size(); ++s)
      rec.step_load.push_back({.batch_step = static_cast<int32_t>(10 + 2 * s),
                               .batch_size = static_cast<int32_t>(2 + id % 3),
                               .t_emit_s = rec.arrival_s + 0.25 * static_cast<double>(s + 1)});
  }
  return rec;
}

// Appends request `id` (content from make_result(id, salt)) to `run`.
inline void append_request(ResultsLog& log, const std::string& run, int64_t id, int salt = 0) {
  const DecodeResult res = make_result(id, salt);
  log.append(run, make_record(id, res));
}

// What read_all must return for these requests of this run (in this order).
inline RunData expected_run(const RunInfo& info, const std::vector<int64_t>& ids, int salt = 0) {
  RunData d;
  d.info = info;
  for (int64_t id : ids) {
    const DecodeResult res = make_result(id, salt);
    const RequestRecord rec = make_record(id, res);
    d.requests.push_back({.request_id = id,
                          .prompt_id = rec.prompt_id,
                          .category = rec.category,
                          .repeat = rec.repeat,
                          .prompt_tokens = rec.prompt_tokens,
                          .new_tokens = static_cast<int32_t>(res.tokens.size()),
                          .wall_time_s = rec.wall_time_s,
                          .prefill_s = rec.prefill_s,
                          .decode_s = rec.decode_s,
                          .steps = static_cast<int32_t>(res.steps.size()),
                          .tau = res.tau(),
                          .stopped = rec.stopped,
                          .invocation = rec.timing.invocation,
                          .host = rec.timing.host,
                          .host_cores = rec.timing.host_cores,
                          .load_avg = rec.timing.load_avg,
                          .threads = rec.timing.threads,
                          .device = rec.timing.device,
                          .logged_at = rec.timing.logged_at,
                          .arrival_s = rec.arrival_s});
    for (const auto& s : res.steps) {
      const StepLoad load = rec.step_load.empty() ? StepLoad{} : rec.step_load[s.step];
      bool tree = false;
      for (const auto& n : s.nodes) tree = tree || n.parent != n.node - 1;
      d.steps.push_back({.request_id = id,
                         .step = s.step,
                         .n_proposed = s.n_proposed,
                         .n_accepted = s.n_accepted,
                         .n_emitted = s.n_emitted,
                         .tree_nodes = tree ? static_cast<int32_t>(s.nodes.size()) : 0,
                         .max_depth = s.max_depth,
                         .t_draft_us = s.t_draft_us,
                         .t_verify_us = s.t_verify_us,
                         .context_len = s.context_len,
                         .batch_size = load.batch_size,
                         .k_policy = s.k_policy,
                         .t_forward_us = s.t_forward_us,
                         .batch_step = load.batch_step,
                         .t_emit_s = load.t_emit_s,
                         .k_expected = s.k_expected});
      for (const auto& n : s.nodes)
        d.draft_tokens.push_back({.request_id = id,
                                  .step = s.step,
                                  .node = n.node,
                                  .parent = n.parent,
                                  .depth = n.depth,
                                  .token = n.token,
                                  .p_target = n.p_target,
                                  .q_draft = n.q_draft,
                                  .u = n.u,
                                  .visited = n.visited,
                                  .accepted = n.accepted,
                                  .p_test = n.p_test,
                                  .threshold = n.threshold,
                                  .passed = n.passed});
    }
    d.outputs[id] = res.tokens;
  }
  return d;
}

inline std::vector<int64_t> iota_ids(int64_t n) {
  std::vector<int64_t> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(i);
  return v;
}

}  // namespace specdec::test::results
