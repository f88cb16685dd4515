// The metric definitions of docs/metrics.md: SpecStats (tau counts emitted tokens, one denominator per
// acceptance name, per-position rates, the peers' figures), DecodeResult's summary, the speedup (per
// emitted token, paired by request and by invocation, end to end as a second figure, median and outliers),
// and the column list every reader loads (experiments/report/schema.json equals schema_json()).
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/speculative/decoder.h"
#include "core/speculative/stats.h"
#include "experiments/results_metrics.h"
#include "experiments/results_schema.h"
#include "tests/results/results_fixtures.h"
#include "tests/support/assets.h"

using namespace specdec;
using namespace specdec::results;
namespace fs = std::filesystem;
using Approx = Catch::Detail::Approx;

namespace {

StepRecord chain_step(int proposed, int accepted, int emitted) {
  StepRecord s;
  s.n_proposed = proposed;
  s.n_accepted = accepted;
  s.n_emitted = emitted;
  s.max_depth = proposed;
  for (int i = 0; i < proposed; ++i)
    s.nodes.push_back({.node = i, .parent = i - 1, .depth = i + 1, .token = 10 + i, .accepted = i < accepted});
  return s;
}

RequestRow request(int64_t id, const std::string& prompt, int repeat, int tokens, double decode_s,
                   const std::string& invocation = "A", double prefill_s = 0.5) {
  RequestRow r;
  r.request_id = id;
  r.prompt_id = prompt;
  r.category = "qa";
  r.repeat = repeat;
  r.new_tokens = tokens;
  r.decode_s = decode_s;
  r.prefill_s = prefill_s;
  r.wall_time_s = prefill_s + decode_s;
  r.invocation = invocation;
  r.host_cores = 4;
  r.load_avg = 1.0;
  return r;
}

}  // namespace

TEST_CASE("tau counts the tokens a step emitted: a request that stops mid-block", "[metrics]") {
  // Three steps of a chain of 4: accepted 4 (+ bonus), 1 (+ correction), and 3 of which the stop token
  // was the first: that step emitted 1 token, not 4.
  DecodeResult r;
  r.steps = {chain_step(4, 4, 5), chain_step(4, 1, 2), chain_step(4, 3, 1)};
  r.tokens.assign(5 + 2 + 1, 7);
  r.stopped = true;
  CHECK(r.tau() == Approx(8.0 / 3.0));  // emitted / steps; the old (accepted + steps) / steps gave 11/3
  CHECK(r.tau() * r.steps.size() == Approx(static_cast<double>(r.tokens.size())));
  const SpecStats st = r.stats();
  CHECK(st.emitted() == 8);
  CHECK(st.accepted() == 8);
  CHECK(r.accepted_draft_tokens() == 8);
  CHECK(r.drafted_tokens() == 12);
  CHECK(st.tau_no_bonus() == Approx(8.0 / 3.0 - 1.0));
  // Spec-Bench's #MAT counts the verification's accept length, stop or not: (8 + 3) / 3.
  CHECK(st.specbench_mat() == Approx(11.0 / 3.0));
  CHECK(st.sglang_accept_length() == Approx(8.0 / 3.0));
}

TEST_CASE("acceptance: one denominator per name, trees included", "[metrics]") {
  // A tree of 5 nodes, depth 3: root children 0 and 1; 2 and 3 under 0; 4 under 2. Accepted path 0 -> 2.
  StepRecord t;
  t.n_proposed = 5;
  t.n_accepted = 2;
  t.n_emitted = 3;
  t.max_depth = 3;
  t.nodes = {{.node = 0, .parent = -1, .depth = 1, .accepted = true},
             {.node = 1, .parent = -1, .depth = 1},
             {.node = 2, .parent = 0, .depth = 2, .accepted = true},
             {.node = 3, .parent = 0, .depth = 2},
             {.node = 4, .parent = 2, .depth = 3}};
  SpecStats st;
  st.add(t);
  st.add(chain_step(2, 0, 1));
  st.add(chain_step(0, 0, 1));  // a step without a proposal (no n-gram match)
  CHECK(st.steps() == 3);
  CHECK(st.drafted() == 7);
  CHECK(st.accepted() == 2);
  CHECK(st.depth() == 5);
  CHECK(st.draft_steps() == 2);
  CHECK(st.acc_rate() == Approx(2.0 / 7.0));    // every proposed node
  CHECK(st.depth_rate() == Approx(2.0 / 5.0));  // the proposals' depth
  // Positions: 1 proposed by 2 steps, accepted by 1; 2 by 2 / 1; 3 by 1 / 0.
  CHECK(st.p_uncond(1) == Approx(0.5));
  CHECK(st.p_uncond(2) == Approx(0.5));
  CHECK(st.p_uncond(3) == Approx(0.0));
  // Conditional: position 3 was tried below the accepted path (node 4 under node 2).
  CHECK(st.reached_at(3) == 1);
  CHECK(st.p_cond(3) == Approx(0.0));
  CHECK(st.reached_at(2) == 1);  // the chain step rejected position 1: position 2 was never reached
  CHECK(st.p_cond(2) == Approx(1.0));
  // vLLM: mean acceptance length 1 + accepted / drafts (steps that proposed), per position / drafts.
  CHECK(st.vllm_mean_acceptance_length() == Approx(2.0));
  CHECK(st.vllm_position_rate(1) == Approx(0.5));
  CHECK(st.llamacpp_accept() == Approx(2.0 / 7.0));
  // Merging equals adding every step to one accumulator.
  SpecStats a, b;
  a.add(t);
  b.add(chain_step(2, 0, 1));
  b.add(chain_step(0, 0, 1));
  a += b;
  CHECK(a.p_cond(3) == st.p_cond(3));
  CHECK(a.tau() == st.tau());
  CHECK(a.vllm_position_rate(2) == st.vllm_position_rate(2));
}

TEST_CASE("speedup: decode time per emitted token, paired by request and invocation", "[metrics]") {
  RunData ar, run;
  // AR: 1 s per 100 tokens. The run emits fewer tokens on request 1 (T > 0): per token it is still 2x.
  ar.requests = {request(0, "p:0", 0, 100, 1.0), request(1, "p:1", 0, 100, 1.0), request(2, "p:2", 0, 100, 1.0)};
  run.requests = {request(0, "p:0", 0, 100, 0.5), request(1, "p:1", 0, 50, 0.25), request(2, "p:2", 0, 100, 0.5)};
  Speedup sp = speedup(run, ar);
  REQUIRE(sp.pairs.size() == 3);
  CHECK(sp.point == Approx(2.0));  // the old sum-of-wall-times ratio gave 3.5 / 2.75 = 1.27
  CHECK(sp.median == Approx(2.0));
  // End to end: (1.5 / 100) / (1.0 / 100) for requests 0 and 2, (1.5 / 100) / (0.75 / 50) for 1.
  CHECK(sp.e2e == Approx((0.015 * 3) / (0.01 + 0.015 + 0.01)));
  // Request 2's baseline timed by another invocation (a --resume): left out, and counted.
  ar.requests[2].invocation = "B";
  sp = speedup(run, ar);
  CHECK(sp.pairs.size() == 2);
  CHECK(sp.n_cross_invocation == 1);
  // Spread over repeats: each repeat's own figure.
  ar.requests = {request(0, "p:0", 0, 100, 1.0), request(1, "p:0", 1, 100, 1.0)};
  run.requests = {request(0, "p:0", 0, 100, 0.5), request(1, "p:0", 1, 100, 0.25)};
  sp = speedup(run, ar);
  CHECK(sp.per_repeat.at(0) == Approx(2.0));
  CHECK(sp.per_repeat.at(1) == Approx(4.0));
}

TEST_CASE("speedup: a planted outlier is flagged, the median resists it, loaded requests are counted", "[metrics]") {
  RunData ar, run;
  for (int i = 0; i < 8; ++i) {
    ar.requests.push_back(request(i, "p:" + std::to_string(i), 0, 100, 1.0 + 0.01 * i));
    run.requests.push_back(request(i, "p:" + std::to_string(i), 0, 100, 0.5 + 0.004 * i));
  }
  run.requests[5].decode_s = 10.0;  // timed while something else ran
  run.requests[6].load_avg = 9.0;   // > 4 cores
  const Speedup sp = speedup(run, ar);
  REQUIRE(sp.outliers.size() == 1);
  CHECK(sp.outliers[0] == 5);
  CHECK(sp.median > 1.9);
  CHECK(sp.point < 1.0);
  CHECK(sp.n_loaded == 1);
}

TEST_CASE("a log from two invocations, one slowed, gives the clean log's speedup (cross pairs left out)",
          "[metrics][results]") {
  using namespace specdec::test::results;
  const auto dir = specdec::test::scratch_dir("metrics");
  auto write = [&](const std::string& name, int n_requests, bool second_invocation) {
    const std::string path = (dir / name).string();
    for (const char* suffix : {"", ".journal", ".lock", ".partial"}) fs::remove(path + suffix);
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec_run(), ar_run()});
    for (int64_t id = 0; id < n_requests; ++id) {
      const DecodeResult ar = make_result(id, 1), res = make_result(id);
      RequestRecord a = make_record(id, ar), r = make_record(id, res);
      a.decode_s = 0.002 * static_cast<double>(ar.tokens.size());
      r.decode_s = 0.001 * static_cast<double>(res.tokens.size()) * (1.0 + 0.1 * static_cast<double>(id % 3));
      if (second_invocation && id >= 6) {  // the run was killed after request 5; --resume, on a busier machine
        r.timing.invocation = "second";
        r.decode_s *= 3.0;
      }
      log->append(ar_run().name, a);
      log->append(spec_run().name, r);
    }
    log->close();
    return read_all(path);
  };
  const auto clean = write("clean.h5", 6, false), mixed = write("mixed.h5", 9, true);
  const Speedup c = speedup(clean[0], clean[1]), m = speedup(mixed[0], mixed[1]);
  CHECK(m.n_cross_invocation == 3);
  CHECK(m.pairs.size() == c.pairs.size());
  CHECK(m.point == Approx(c.point).epsilon(1e-12));
  CHECK(m.median == Approx(c.median).epsilon(1e-12));
}

TEST_CASE("experiments/report/schema.json is the column list derived from results_schema.h", "[metrics][schema]") {
  const fs::path file = fs::path(SPECDEC_SOURCE_DIR) / "experiments/report/schema.json";
  std::ifstream in(file);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string want = schema_json();
  if (ss.str() != want) {
    const fs::path fresh = specdec::test::scratch_dir("metrics") / "schema.json";
    std::ofstream(fresh) << want;
    FAIL_CHECK(file.string() << " is out of date with experiments/results_schema.h; regenerate it: cp "
                             << fresh.string() << " " << file.string());
  }
}
