// The C++ metrics (SpecStats, results::speedup: what `specdec run` and `generate` print) and the Python
// report (experiments/report/specdec_report.py: what `specdec report` and the notebooks print) compute
// every figure alike on one log: chains, trees, steps without a proposal, a request that stops mid-block,
// a pair timed by two invocations, a planted outlier and a loaded host, and the speculation oracle's regret
// (core/speculative/oracle.h against experiments/report/specdec_load.py) over batched steps of several batch
// sizes under a cost table. This writes the log and the C++ figures as JSON, then runs
// tests/report/check_cpp_parity.py, which compares each figure.
// Exits 77 (CTest: skipped) where no Python with h5py and pandas is found.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "experiments/results_metrics.h"
#include "tests/results/results_fixtures.h"
#include "tests/support/assets.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::test::results;
namespace fs = std::filesystem;

namespace {

std::string python() {
  const fs::path venv = fs::path(SPECDEC_SOURCE_DIR) / ".venv/bin/python";
  return fs::exists(venv) ? venv.string() : "python3";
}

nlohmann::json number(double x) { return std::isnan(x) ? nlohmann::json(nullptr) : nlohmann::json(x); }

nlohmann::json figures(const SpecStats& st) {
  nlohmann::json j = {{"steps", st.steps()},
                      {"emitted", st.emitted()},
                      {"drafted", st.drafted()},
                      {"accepted", st.accepted()},
                      {"depth", st.depth()},
                      {"draft_steps", st.draft_steps()},
                      {"tau", number(st.tau())},
                      {"tau_no_bonus", number(st.tau_no_bonus())},
                      {"acc_rate", number(st.acc_rate())},
                      {"depth_rate", number(st.depth_rate())},
                      {"specbench_mat", number(st.specbench_mat())},
                      {"vllm_acceptance_rate", number(st.vllm_acceptance_rate())},
                      {"vllm_mean_acceptance_length", number(st.vllm_mean_acceptance_length())},
                      {"llamacpp_accept", number(st.llamacpp_accept())},
                      {"sglang_accept_length", number(st.sglang_accept_length())}};
  for (int i = 1; i <= st.max_position(); ++i)
    j["positions"].push_back({{"position", i},
                              {"n_proposed", st.proposed_at(i)},
                              {"n_accepted", st.accepted_at(i)},
                              {"n_reached", st.reached_at(i)},
                              {"p_uncond", number(st.p_uncond(i))},
                              {"p_cond", number(st.p_cond(i))},
                              {"vllm_rate", number(st.vllm_position_rate(i))}});
  return j;
}

}  // namespace

TEST_CASE("C++ and the Python report give the same figures on one log", "[metrics][python]") {
  if (std::system((python() + " -c 'import h5py, pandas' >/dev/null 2>&1").c_str()) != 0) {
    WARN("no Python with h5py and pandas: skipped");
    std::exit(77);
  }
  const auto dir = specdec::test::scratch_dir("metrics_parity");
  const std::string path = (dir / "parity.h5").string(), out = (dir / "cpp_figures.json").string();
  for (const char* suffix : {"", ".journal", ".lock", ".partial"}) fs::remove(path + suffix);
  // A cost table whose grid the steps fall between (nearest T and B, C interpolated and clamped), with
  // drafting costly enough that the oracle would draft less than the fixture did: regret > 0.
  CostTable costs;
  costs.source = "test_metrics_parity";
  costs.tokens = {1, 3, 6};
  costs.batch = {1, 3};
  costs.context = {4, 12, 40};
  for (int T : costs.tokens)
    for (int B : costs.batch)
      for (int C : costs.context) costs.forward.push_back(500.0 + 300.0 * T + 40.0 * B * T + 2.5 * C);
  costs.drafters["ngram"] = {0, 150, 320, 480, 700, 900};
  RunInfo spec = spec_run(), ar = ar_run();
  for (RunInfo* run : {&spec, &ar}) run->attrs["cost_table"] = costs.to_json();
  {
    auto log = ResultsLog::open(path, file_info(), false);
    log->declare_runs({spec, ar});
    for (int64_t id = 0; id < 12; ++id) {
      const DecodeResult ar = make_result(id, 1), res = make_result(id);
      RequestRecord a = make_record(id, ar), r = make_record(id, res);
      a.decode_s = 0.003 * static_cast<double>(ar.tokens.size());
      r.decode_s = 0.001 * static_cast<double>(res.tokens.size()) * (1.0 + 0.02 * static_cast<double>(id % 4));
      r.wall_time_s = r.prefill_s + r.decode_s;
      a.wall_time_s = a.prefill_s + a.decode_s;
      if (id == 3) r.decode_s *= 40.0, r.wall_time_s = r.prefill_s + r.decode_s;  // the planted outlier
      if (id == 9) r.timing.invocation = "resumed";                               // the other invocation
      if (id == 5) r.timing.load_avg = 7.5;                                       // a loaded host (2 cores)
      if (id == 1 || id == 3)  // requests 1 and 3 share their batched steps (B = 2) while both run
        for (size_t s = 0; s < r.step_load.size(); ++s)
          r.step_load[s] = {
              .batch_step = static_cast<int32_t>(100 + s), .batch_size = 2, .t_emit_s = 7.0 + static_cast<double>(s)};
      log->append(ar_run().name, a);
      log->append(spec_run().name, r);
    }
    log->close();
  }
  const auto runs = results::read_all(path);
  const RunData& spec_data = runs[0].info.name == spec_run().name ? runs[0] : runs[1];
  const RunData& ar_data = runs[0].info.name == spec_run().name ? runs[1] : runs[0];
  nlohmann::json j;
  for (const RunData* run : {&spec_data, &ar_data}) {
    nlohmann::json f = figures(results::run_stats(*run));
    const results::Speedup sp = results::speedup(*run, ar_data);
    f["speedup"] = number(sp.point);
    f["speedup_e2e"] = number(sp.e2e);
    f["speedup_median"] = number(sp.median);
    f["n_paired"] = sp.pairs.size();
    f["n_cross_invocation"] = sp.n_cross_invocation;
    f["outliers"] = sp.outliers;
    f["n_loaded"] = sp.n_loaded;
    double lo = NAN, hi = NAN;
    for (const auto& [rep, v] : sp.per_repeat) {
      lo = std::isnan(lo) ? v : std::min(lo, v);
      hi = std::isnan(hi) ? v : std::max(hi, v);
    }
    f["speedup_rep_min"] = number(lo);
    f["speedup_rep_max"] = number(hi);
    const OracleResult o = oracle(results::oracle_steps(*run), costs, run == &ar_data ? "" : "ngram");
    f["regret"] = o.regret();
    f["oracle_tps"] = o.oracle_tps();
    f["achieved_tps"] = o.achieved_tps();
    j[run->info.name] = f;
  }
  CHECK(j[spec_run().name]["regret"].get<double>() > 0.01);  // the oracle has something to find
  {  // Both kinds of oracle step: batched steps whose partners are all logged, and steps costed alone.
    const std::vector<OracleStep> os = results::oracle_steps(spec_data);
    std::map<int64_t, int> size;
    for (const OracleStep& o : os)
      if (o.group >= 0) ++size[o.group];
    int joint = 0, alone = 0;
    for (const OracleStep& o : os) (o.group >= 0 && size[o.group] == o.batch_size ? joint : alone) += 1;
    CHECK(joint >= 4);
    CHECK(alone >= 4);
  }
  // The fixture exercises what it claims to.
  CHECK(j[spec_run().name]["n_cross_invocation"] == 1);
  CHECK(j[spec_run().name]["outliers"] == nlohmann::json::array({3}));
  CHECK(j[spec_run().name]["n_loaded"] == 1);
  CHECK(j[spec_run().name]["specbench_mat"] != j[spec_run().name]["tau"]);  // stops cut some steps
  std::ofstream(out) << j.dump(1);
  const auto r =
      specdec::test::run(python() + " " + SPECDEC_SOURCE_DIR + "/tests/report/check_cpp_parity.py " + path + " " + out);
  INFO(r.out);
  INFO(r.err);
  CHECK(r.exit_code == 0);
}
