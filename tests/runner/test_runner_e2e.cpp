// specdec run end to end on experiments/configs/stories_smoke.ini through the specdec binary: the log holds
// every run and request, greedy outputs equal the AR run's, a run killed mid-way keeps every finished
// request and --resume completes it to what an uninterrupted run holds, shards merged equal one run, and
// every mistake is a one-line error.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "core/speculative/policy.h"
#include "experiments/results_log.h"
#include "experiments/results_metrics.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::test;
namespace fs = std::filesystem;

namespace {

const std::vector<std::string> kRuns = {
    "ar_t0", "ngram_k2_t0", "ngram_k4_t0", "early_exit_k2_t0", "early_exit_k4_t0", "oracle_k2_t0", "oracle_k4_t0"};
constexpr int kRequests = 16;  // GSM8K 2 + MT-Bench 2 x 7 categories (no extraction prompt fits in 256 tokens)

std::string smoke_config() { return std::string(SPECDEC_SOURCE_DIR) + "/experiments/configs/stories_smoke.ini"; }

// One OpenMP thread: the 260K model gains nothing from more, and spinning threads on a busy machine make
// every step slow.
std::string run_cmd(const std::string& extra) {
  return "OMP_NUM_THREADS=1 " + specdec_bin() + " run '" + smoke_config() + "' " + extra;
}

std::string fresh(const std::string& name) {
  const fs::path p = scratch_dir("runner_e2e") / name;
  fs::remove(p);
  return p.string();
}

// run() from tests/support/run.h, but capturing into this test's own scratch folder: run() shares one
// stdout/stderr file pair among all test binaries, which ctest -j runs at the same time.
RunResult sh(const std::string& cmd) {
  const auto dir = scratch_dir("runner_e2e");
  const std::string out = (dir / "stdout").string(), err = (dir / "stderr").string();
  const int status = std::system((cmd + " >'" + out + "' 2>'" + err + "' </dev/null").c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

// The uninterrupted run every other test compares with (made once per process).
const std::vector<results::RunData>& reference() {
  static const std::vector<results::RunData> data = [] {
    const std::string out = fresh("full.h5");
    const auto r = sh(run_cmd("--quiet --out '" + out + "'"));
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return results::read_all(out);
  }();
  return data;
}
std::string reference_path() {
  reference();
  return (scratch_dir("runner_e2e") / "full.h5").string();
}

// `data` restricted to the requests `keep` lists per run.
std::vector<results::RunData> only(const std::vector<results::RunData>& data,
                                   const std::map<std::string, std::set<int64_t>>& keep) {
  std::vector<results::RunData> out;
  for (const auto& run : data) {
    results::RunData r;
    r.info = run.info;
    const auto it = keep.find(run.info.name);
    const std::set<int64_t> ids = it == keep.end() ? std::set<int64_t>{} : it->second;
    for (const auto& q : run.requests)
      if (ids.count(q.request_id)) r.requests.push_back(q);
    for (const auto& s : run.steps)
      if (ids.count(s.request_id)) r.steps.push_back(s);
    for (const auto& d : run.draft_tokens)
      if (ids.count(d.request_id)) r.draft_tokens.push_back(d);
    for (const auto& [id, toks] : run.outputs)
      if (ids.count(id)) r.outputs[id] = toks;
    out.push_back(std::move(r));
  }
  return out;
}

std::map<std::string, std::set<int64_t>> finished_of(const std::vector<results::RunData>& data) {
  std::map<std::string, std::set<int64_t>> m;
  for (const auto& run : data)
    for (const auto& q : run.requests) m[run.info.name].insert(q.request_id);
  return m;
}

const results::RunData& find_run(const std::vector<results::RunData>& data, const std::string& name) {
  for (const auto& r : data)
    if (r.info.name == name) return r;
  FAIL("no run " << name);
  throw;
}

// One finished request of a logged run, back as the DecodeResult the runner appended.
DecodeResult decode_result_of(const results::RunData& run, int64_t id) {
  DecodeResult res;
  res.tokens = run.outputs.at(id);
  for (const auto& s : run.steps) {
    if (s.request_id != id) continue;
    StepRecord rec;
    rec.step = s.step;
    rec.n_proposed = s.n_proposed;
    rec.n_accepted = s.n_accepted;
    rec.n_emitted = s.n_emitted;
    rec.max_depth = s.max_depth;
    rec.context_len = s.context_len;
    rec.t_draft_us = s.t_draft_us;
    rec.t_verify_us = s.t_verify_us;
    for (const auto& d : run.draft_tokens)
      if (d.request_id == id && d.step == s.step)
        rec.nodes.push_back({.node = d.node,
                             .parent = d.parent,
                             .depth = d.depth,
                             .token = d.token,
                             .p_target = d.p_target,
                             .q_draft = d.q_draft,
                             .u = d.u,
                             .visited = d.visited,
                             .accepted = d.accepted});
    res.steps.push_back(std::move(rec));
  }
  return res;
}

}  // namespace

TEST_CASE("specdec run logs every run and request; greedy outputs equal the AR run's", "[runner][e2e]") {
  const std::string out = fresh("smoke.h5");
  const auto r = sh(run_cmd("--out '" + out + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // Plain progress lines (stdout is not a terminal), the summary and the path.
  CHECK_THAT(r.out, Catch::Contains("specdec run stories_smoke: 16 prompts x 1 repeat(s) x 7 runs = 112"));
  CHECK_THAT(r.out, Catch::Contains("progress: 7/112") && Catch::Contains("done gsm8k:0 (gsm8k)"));
  CHECK_THAT(r.out, Catch::Contains("results: " + out));
  for (const auto& name : kRuns) CHECK_THAT(r.out, Catch::Contains("\n" + name + " "));
  CHECK_THAT(r.out, Catch::Contains("16/16"));
  CHECK_THAT(r.err, Catch::Contains("note: skipping prompt mt_bench:132: 651 tokens > [prompts] max_prompt_tokens"));

  const auto data = results::read_all(out);
  REQUIRE(data.size() == kRuns.size());
  for (size_t i = 0; i < kRuns.size(); ++i) CHECK(data[i].info.name == kRuns[i]);  // the grid's order
  const results::RunData& ar = data[0];
  CHECK(ar.info.attrs.at("baseline") == "1");
  CHECK(ar.info.attrs.at("drafter") == "none");
  const auto& oracle4 = find_run(data, "oracle_k4_t0");
  CHECK(oracle4.info.attrs.at("drafter") == "oracle");
  CHECK(oracle4.info.attrs.at("k") == "4");
  CHECK(oracle4.info.attrs.at("rule") == "greedy");
  CHECK(oracle4.info.attrs.at("lossless") == "1");
  CHECK(oracle4.info.attrs.at("baseline") == "0");
  CHECK(oracle4.info.attrs.at("baseline_run") == "ar_t0");
  CHECK(find_run(data, "early_exit_k2_t0").info.attrs.at("drafter_options") == "layers=2");

  std::vector<std::string> prompt_ids;
  for (const auto& q : ar.requests) prompt_ids.push_back(q.prompt_id);
  REQUIRE(prompt_ids.size() == kRequests);
  CHECK(prompt_ids[0] == "gsm8k:0");
  CHECK(prompt_ids[1] == "gsm8k:1");
  CHECK(prompt_ids[2] == "mt_bench:81");
  CHECK(std::find(prompt_ids.begin(), prompt_ids.end(), "mt_bench:132") == prompt_ids.end());  // skipped: too long

  for (const auto& run : data) {
    INFO(run.info.name);
    REQUIRE(run.requests.size() == kRequests);
    for (int64_t id = 0; id < kRequests; ++id) {
      INFO("request " << id);
      const auto& q = run.requests[id];
      CHECK(q.request_id == id);                        // prompt-major order, ids identical across runs
      CHECK(q.prompt_id == ar.requests[id].prompt_id);  // so runs pair up
      CHECK(q.new_tokens == 32);
      REQUIRE(run.outputs.count(id));
      CHECK(run.outputs.at(id) == ar.outputs.at(id));  // greedy: lossless
      int steps = 0, accepted = 0, emitted = 0;
      for (const auto& s : run.steps)
        if (s.request_id == id) {
          ++steps;
          accepted += s.n_accepted;
          emitted += s.n_emitted;
          CHECK(s.n_emitted >= 1);
          CHECK(s.n_emitted <= s.n_accepted + 1);
          if (run.info.name.rfind("oracle", 0) == 0) CHECK(s.n_accepted == s.n_proposed);  // the upper bound
        }
      CHECK(q.steps == steps);
      CHECK(accepted + steps >= q.new_tokens);
      CHECK(emitted == q.new_tokens);                                               // n_emitted adds up to the output
      CHECK(q.tau == Catch::Detail::Approx(static_cast<double>(emitted) / steps));  // tau counts emitted tokens
      // When and where it was timed: one invocation id for every row of this process.
      CHECK(q.invocation == ar.requests[0].invocation);
      CHECK(!q.invocation.empty());
      CHECK(!q.host.empty());
      CHECK(q.host_cores >= 1);
      CHECK(q.threads >= 1);
      CHECK(q.device == "cpu");
      CHECK(q.logged_at > 1.7e9);  // after 2023-11
      if (&run == &ar) CHECK(steps == q.new_tokens);
    }
  }
  CHECK(find_run(data, "oracle_k4_t0").requests[0].tau > 3.0);

  const auto info = results::read_info(out);
  CHECK_THAT(info.config_text, Catch::Contains("[drafter.oracle]\ntype = oracle\n") &&
                                   Catch::Contains("max_prompt_tokens = 256") && Catch::Contains("k = 2, 4"));
  CHECK(info.seeds == "0");
  CHECK(!info.specdec_version.empty());
  CHECK(info.start_time.size() == 20);
  CHECK(info.start_time.back() == 'Z');
  const auto host = nlohmann::json::parse(info.host_json);
  CHECK(!host.at("cpu").get<std::string>().empty());
  CHECK(host.at("cores").get<int>() >= 1);
  CHECK(host.at("gpu") == "none");

  // An uninterrupted run is reproducible: the same requests, tokens and step events (timings aside).
  CHECK(results::diff_runs(data, reference(), /*ignore_timings=*/true).empty());
}

TEST_CASE("a run killed mid-way keeps every finished request; --resume completes it", "[runner][e2e][resume]") {
  const auto& ref = reference();
  const std::string out = fresh("killed.h5");
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    const int devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, STDERR_FILENO);
    close(fds[0]);
    setenv("OMP_NUM_THREADS", "1", 1);
    const std::string bin = specdec_bin(), cfg = smoke_config();
    execl(bin.c_str(), bin.c_str(), "run", cfg.c_str(), "--out", out.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(fds[1]);
  // Kill right after the first "done" line: by then the first request's runs are logged and flushed.
  FILE* child_out = fdopen(fds[0], "r");
  std::string seen;
  char line[4096];
  bool killed = false;
  while (std::fgets(line, sizeof line, child_out)) {
    seen += line;
    if (std::string(line).find(" done ") != std::string::npos) {
      kill(pid, SIGKILL);
      killed = true;
      break;
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  std::fclose(child_out);
  INFO(seen);
  REQUIRE(killed);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);

  // Every finished request reads back, and equals the uninterrupted run's.
  const auto partial = results::read_all(out);
  const auto done = finished_of(partial);
  size_t n_done = 0;
  for (const auto& [run, ids] : done) n_done += ids.size();
  INFO(n_done << " (run, request) pairs finished before the kill");
  CHECK(n_done >= kRuns.size());             // the first request, every run
  CHECK(n_done < kRuns.size() * kRequests);  // killed before the end
  CHECK(done.at("ar_t0").count(0));
  CHECK(results::diff_runs(partial, only(ref, done), /*ignore_timings=*/true).empty());

  const auto r = sh(run_cmd("--resume --out '" + out + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("already finished (resumed)"));
  const auto resumed = results::read_all(out);
  CHECK(results::diff_runs(resumed, ref, /*ignore_timings=*/true).empty());
  // The two processes' rows carry different invocation ids; a pair split between them is left out of
  // the speedup, and the summary says how many.
  std::set<std::string> invocations;
  for (const auto& run : resumed)
    for (const auto& q : run.requests) invocations.insert(q.invocation);
  CHECK(invocations.size() == 2);
  for (const auto& run : resumed) {
    if (run.info.attrs.at("baseline") == "1") continue;
    const results::Speedup sp = results::speedup(run, find_run(resumed, "ar_t0"));
    CHECK(sp.pairs.size() + sp.n_cross_invocation == kRequests);
    if (sp.n_cross_invocation > 0)
      CHECK_THAT(r.out, Catch::Contains(run.info.name + ": " + std::to_string(sp.n_cross_invocation) +
                                        " request(s) left out of the speedup"));
  }

  // Resuming a finished run does nothing.
  const auto again = sh(run_cmd("--resume --quiet --out '" + out + "'"));
  REQUIRE(again.exit_code == 0);
  CHECK(results::diff_runs(results::read_all(out), ref, /*ignore_timings=*/true).empty());
}

TEST_CASE("--resume takes the oracle's reference from the logged AR run", "[runner][e2e][resume]") {
  // A log in which only the AR run of request 3 finished (as if killed right after it): resuming must
  // run the oracle of request 3 against the logged AR tokens without logging the AR run twice.
  const auto& ref = reference();
  const std::string out = fresh("ar_only.h5");
  {
    const auto info = results::read_info(reference_path());
    auto log = results::ResultsLog::open(out, info, /*resume=*/false);
    std::vector<results::RunInfo> runs;
    for (const auto& run : ref) runs.push_back(run.info);
    log->declare_runs(runs);
    const results::RunData& ar = ref[0];
    const DecodeResult res = decode_result_of(ar, 3);
    const auto& q = ar.requests[3];
    results::RequestRecord rec;
    rec.request_id = 3;
    rec.prompt_id = q.prompt_id;
    rec.category = q.category;
    rec.prompt_tokens = q.prompt_tokens;
    rec.wall_time_s = q.wall_time_s;
    rec.prefill_s = q.prefill_s;
    rec.decode_s = q.decode_s;
    rec.stopped = q.stopped;
    rec.result = &res;
    log->append("ar_t0", rec);
    log->close();
  }
  const auto r = sh(run_cmd("--resume --quiet --out '" + out + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(results::diff_runs(results::read_all(out), ref, /*ignore_timings=*/true).empty());
}

TEST_CASE("shards 0/2 and 1/2 merged hold exactly what one run holds", "[runner][e2e][shard]") {
  const auto& ref = reference();
  const std::string s0 = fresh("shard0.h5"), s1 = fresh("shard1.h5"), merged = fresh("merged.h5");
  const auto r0 = sh(run_cmd("--quiet --shard 0/2 --out '" + s0 + "'"));
  const auto r1 = sh(run_cmd("--quiet --shard=1/2 --out '" + s1 + "'"));
  INFO(r0.err << r1.err);
  REQUIRE(r0.exit_code == 0);
  REQUIRE(r1.exit_code == 0);
  const auto d0 = results::read_all(s0), d1 = results::read_all(s1);
  for (const auto& run : d0) {
    CHECK(run.requests.size() == kRequests / 2);
    for (const auto& q : run.requests) CHECK(q.request_id % 2 == 0);  // prompt index % 2 == 0 (one repeat)
  }
  for (const auto& run : d1)
    for (const auto& q : run.requests) CHECK(q.request_id % 2 == 1);

  const auto m = sh(specdec_bin() + " merge '" + s0 + "' '" + s1 + "' -o '" + merged + "'");
  INFO(m.err);
  REQUIRE(m.exit_code == 0);
  CHECK_THAT(m.out, Catch::Contains("merged 2 file(s) into " + merged));
  CHECK(results::diff_runs(results::read_all(merged), ref, /*ignore_timings=*/true).empty());
}

TEST_CASE("specdec run and merge: help, and one-line errors for every mistake", "[runner][e2e][badinput]") {
  const auto top = sh(specdec_bin() + " --help");
  CHECK_THAT(top.out, Catch::Contains("  run ") && Catch::Contains("  merge "));
  const auto help = sh(specdec_bin() + " run --help");
  REQUIRE(help.exit_code == 0);
  for (const char* s : {"--resume", "--shard", "--out", "--quiet", "--section.key=value", "[target]", "[run]",
                        "[prompts]", "[drafter.NAME]", "max_prompt_tokens", "temperatures", "per_category"})
    CHECK_THAT(help.out, Catch::Contains(s));
  const auto mhelp = sh(specdec_bin() + " merge --help");
  REQUIRE(mhelp.exit_code == 0);
  CHECK_THAT(mhelp.out, Catch::Contains("-o [ --out ]"));

  const std::string existing = reference_path();
  const std::string copy = fresh("copy.h5");
  fs::copy_file(existing, copy);
  const std::string unused = fresh("unused.h5");
  struct Case {
    std::string name, cmd, expect;
  };
  const std::vector<Case> cases = {
      {"unknown key", run_cmd("--out " + unused + " --run.temprature=0"), "did you mean 'run.temperatures'?"},
      {"bad value", run_cmd("--out " + unused + " --run.k=two"), "[run] k = 'two'"},
      {"unknown drafter", run_cmd("--out " + unused + " --drafter.ngram.type=ngarm"),
       "known drafters: draft_model, eagle, early_exit, medusa, ngram, oracle, synthetic"},
      {"drafter option typo", run_cmd("--out " + unused + " --drafter.ngram.max_m=2"),
       "[drafter.ngram] unknown key 'max_m'; this section knows: corpus, max_n, min_n; did you mean 'max_n'?"},
      {"drafter option value", run_cmd("--out " + unused + " --drafter.early_exit.layers=9"), "[drafter.early_exit]"},
      {"output exists", run_cmd("--out " + existing), "pass --resume"},
      {"resume with another config", run_cmd("--resume --out " + copy + " --run.max_new_tokens=16"), copy},
      {"bad shard", run_cmd("--out " + unused + " --shard 2/2"), "--shard as i/n"},
      {"prompt over the context", run_cmd("--out " + unused + " --prompts.max_prompt_tokens=0"),
       "prompt mt_bench:132 has 651 tokens, more than the model's context of 512"},
      {"missing model", run_cmd("--out " + unused + " --target.model=nothere.bin"), "nothere.bin: model not found"},
      {"missing config", specdec_bin() + " run /nonexistent/c.ini", "/nonexistent/c.ini: cannot open"},
      {"no config", specdec_bin() + " run", "a config file"},
      {"merge into an existing file", specdec_bin() + " merge " + copy + " -o " + existing, existing},
  };
  for (const auto& c : cases) {
    INFO(c.name << ": " << c.cmd);
    const auto r = sh(c.cmd);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code < 128);
    CHECK_THAT(r.err, Catch::Contains(c.expect));
    CHECK(count_lines(r.err) == 1);
  }
  CHECK(!fs::exists(unused));  // nothing was created by a failed start
}

namespace {

// A cost table with the shape of `specdec bench costs` output, by construction (not measured): a forward
// costs 1000 us + 100 us per token verified + 50 us per sequence, a draft 10 us per token.
std::string write_cost_table() {
  CostTable t;
  t.source = "test_runner_e2e (synthetic)";
  t.tokens = {1, 2, 4, 8};
  t.batch = {1, 2, 4};
  t.context = {0, 512};
  for (int T : t.tokens)
    for (int B : t.batch)
      for (size_t c = 0; c < t.context.size(); ++c) t.forward.push_back(1000.0 + 100.0 * T * B + 50.0 * B);
  for (const char* d : {"ngram", "oracle"}) t.drafters[d] = {0, 10, 20, 30, 40};
  const std::string path = (scratch_dir("runner_e2e") / "costs.json").string();
  t.save(path);
  return path;
}

// A batched run's invariants: every request's steps emitted later and later, in later and later batched
// steps, after its arrival; every batched step's rows agree on its size (the rows that carry it) and time.
void check_batched_times(const results::RunData& run, int batch) {
  INFO(run.info.name);
  CHECK(run.info.attrs.at("batch_size") == std::to_string(batch));
  std::map<int64_t, double> arrival;
  for (const auto& q : run.requests) {
    CHECK(q.arrival_s >= 0);
    arrival[q.request_id] = q.arrival_s;
  }
  std::map<int64_t, const results::StepRow*> last;
  std::map<int32_t, std::vector<const results::StepRow*>> by_batch_step;
  for (const auto& s : run.steps) {
    by_batch_step[s.batch_step].push_back(&s);
    CHECK(s.batch_size >= 1);
    CHECK(s.batch_size <= batch);
    CHECK(s.t_forward_us > 0);
    const results::StepRow* prev = last[s.request_id];
    if (prev) {
      CHECK(s.t_emit_s > prev->t_emit_s);
      CHECK(s.batch_step > prev->batch_step);
    } else {
      CHECK(s.t_emit_s > arrival.at(s.request_id));  // the first token comes after the arrival
    }
    last[s.request_id] = &s;
  }
  for (const auto& [step, rows] : by_batch_step) {
    INFO("batch step " << step);
    CHECK(step >= 0);
    CHECK(static_cast<int32_t>(rows.size()) == rows[0]->batch_size);
    for (const auto* s : rows) CHECK(s->t_emit_s == rows[0]->t_emit_s);
  }
}

// The per-step decisions and outcomes of two runs of the same requests (timings aside).
void check_same_steps(const results::RunData& a, const results::RunData& b) {
  INFO(a.info.name << " vs " << b.info.name);
  REQUIRE(a.outputs.size() == b.outputs.size());
  CHECK(a.outputs == b.outputs);
  std::map<std::pair<int64_t, int32_t>, const results::StepRow*> steps_of_b;
  for (const auto& s : b.steps) steps_of_b[{s.request_id, s.step}] = &s;
  REQUIRE(a.steps.size() == b.steps.size());
  for (const auto& s : a.steps) {
    const results::StepRow* t = steps_of_b.at({s.request_id, s.step});
    CHECK(s.n_proposed == t->n_proposed);
    CHECK(s.n_accepted == t->n_accepted);
    CHECK(s.n_emitted == t->n_emitted);
    CHECK(s.context_len == t->context_len);
  }
}

}  // namespace

TEST_CASE("batched runs: each request's tokens and steps are the unbatched run's; times and batches consistent",
          "[runner][e2e][batch]") {
  const std::string costs = write_cost_table();
  const std::string out = fresh("batched.h5");
  const auto r = sh(run_cmd("--quiet --out '" + out +
                            "' --run.drafters=ngram,oracle --run.k=4 --run.batch_size=1,4 "
                            "--run.policy=fixed,cost_model --run.cost_table='" +
                            costs + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto data = results::read_all(out);
  const std::vector<std::string> names = {"ar_b1_t0",
                                          "ngram_k4_fixed_b1_t0",
                                          "ngram_k4_cost_model_b1_t0",
                                          "oracle_k4_fixed_b1_t0",
                                          "oracle_k4_cost_model_b1_t0",
                                          "ar_b4_t0",
                                          "ngram_k4_fixed_b4_t0",
                                          "ngram_k4_cost_model_b4_t0",
                                          "oracle_k4_fixed_b4_t0",
                                          "oracle_k4_cost_model_b4_t0"};
  REQUIRE(data.size() == names.size());
  const auto& ref = reference();
  for (size_t i = 0; i < names.size(); ++i) {
    const results::RunData& run = data[i];
    CHECK(run.info.name == names[i]);
    CHECK(run.requests.size() == static_cast<size_t>(kRequests));
    const int batch = i < 5 ? 1 : 4;
    check_batched_times(run, batch);
    CHECK(run.info.attrs.at("load") == "closed");
    CHECK(run.info.attrs.at("baseline_run") == (batch == 1 ? "ar_b1_t0" : "ar_b4_t0"));
    for (const auto& q : run.requests) CHECK(q.arrival_s == 0);  // closed loop: all there at the start
    const std::string policy = run.info.attrs.at("policy");
    CHECK(run.info.attrs.at("cost_table").find("test_runner_e2e (synthetic)") != std::string::npos);
    if (run.info.attrs.at("drafter") == "none") {
      check_same_steps(run, find_run(ref, "ar_t0"));
    } else if (policy == "fixed") {
      // The batched loop and the fixed policy change no decision and no bit: the unbatched k = 4 run's steps.
      check_same_steps(run, find_run(ref, run.info.attrs.at("drafter") + "_k4_t0"));
      for (const auto& s : run.steps) {
        CHECK(s.k_policy <= 4);  // 4, or what is left of max_new_tokens near the end
        CHECK(s.n_proposed <= s.k_policy);
        if (s.step == 0) CHECK(s.k_policy == 4);
      }
    } else {
      CHECK(policy == "cost_model");
      CHECK(run.info.attrs.at("policy_spec") == "cost_model k_max=4");
      CHECK(run.outputs == find_run(ref, "ar_t0").outputs);  // greedy: lossless under any policy
      for (const auto& s : run.steps) {
        CHECK(s.k_policy >= 0);
        CHECK(s.k_policy <= 4);
        CHECK(s.n_proposed <= s.k_policy);
      }
    }
  }
  // Batch 4 closed loop: four sequences verified together while 4 or more requests remain.
  CHECK(find_run(data, "ngram_k4_fixed_b4_t0").steps.front().batch_size == 4);
}

TEST_CASE("open-loop load: Poisson arrivals, the same for AR, its A/A control and the drafter runs",
          "[runner][e2e][batch]") {
  const std::string out = fresh("open_loop.h5");
  const auto r = sh(run_cmd("--quiet --out '" + out + "' --run.drafters=ngram --run.k=2 --run.batch_size=4 " +
                            "--run.arrival_rate=200 --run.aa_control=true"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  auto data = results::read_all(out);
  REQUIRE(data.size() == 3);
  CHECK(data[0].info.name == "ar_b4_r200_t0");
  // The A/A control: a second AR run of the same load, compared with the first (not a baseline itself).
  const results::RunData aa = data[1];
  CHECK(aa.info.name == "ar_aa_b4_r200_t0");
  CHECK(aa.info.attrs.at("baseline") == "0");
  CHECK(data[0].info.attrs.at("baseline") == "1");
  CHECK(aa.info.attrs.at("aa_control") == "1");
  CHECK(aa.info.attrs.at("baseline_run") == "ar_b4_r200_t0");
  CHECK(aa.info.attrs.at("drafter") == "none");
  check_same_steps(aa, find_run(reference(), "ar_t0"));
  for (const auto& q : aa.requests) CHECK(q.arrival_s == data[0].requests[&q - aa.requests.data()].arrival_s);
  check_batched_times(aa, 4);
  data.erase(data.begin() + 1);
  CHECK(data[1].info.name == "ngram_k2_b4_r200_t0");
  std::map<int64_t, double> ar_arrival;
  for (const auto& q : data[0].requests) ar_arrival[q.request_id] = q.arrival_s;
  REQUIRE(ar_arrival.size() == static_cast<size_t>(kRequests));
  CHECK(ar_arrival.begin()->second == 0);
  double prev = 0;
  for (const auto& [id, t] : ar_arrival) {  // request_id order is arrival order
    CHECK(t >= prev);
    prev = t;
  }
  CHECK(prev > 0);
  for (const auto& q : data[1].requests) CHECK(q.arrival_s == ar_arrival.at(q.request_id));
  for (const auto& run : data) {
    CHECK(run.info.attrs.at("load") == "poisson");
    CHECK(run.info.attrs.at("arrival_rate") == "200");
    check_batched_times(run, 4);
  }
  check_same_steps(data[1], find_run(reference(), "ngram_k2_t0"));
}

TEST_CASE("open-loop load from a file of arrival times", "[runner][e2e][batch]") {
  const fs::path times = scratch_dir("runner_e2e") / "arrivals.txt";
  {
    std::ofstream f(times);
    f << "# seconds from the run's start, one per request in request order\n";
    for (int i = 0; i < kRequests; ++i) f << 0.005 * i << "\n";
  }
  const std::string out = fresh("arrivals.h5");
  const auto r = sh(run_cmd("--quiet --out '" + out + "' --run.drafters= --run.batch_size=3 --run.arrivals='" +
                            times.string() + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const auto data = results::read_all(out);
  REQUIRE(data.size() == 1);
  const results::RunData& ar = data[0];
  CHECK(ar.info.name == "ar_b3_arr_t0");
  CHECK(ar.info.attrs.at("load") == "file");
  CHECK(ar.info.attrs.at("arrivals") == times.string());
  REQUIRE(ar.requests.size() == static_cast<size_t>(kRequests));
  std::vector<int64_t> ids;
  for (const auto& q : ar.requests) ids.push_back(q.request_id);
  std::sort(ids.begin(), ids.end());
  std::map<int64_t, double> arrival;
  for (const auto& q : ar.requests) arrival[q.request_id] = q.arrival_s;
  for (size_t i = 0; i < ids.size(); ++i) CHECK(arrival.at(ids[i]) == Approx(0.005 * static_cast<double>(i)));
  check_batched_times(ar, 3);
  check_same_steps(ar, find_run(reference(), "ar_t0"));

  // Fewer times than requests: a one-line error naming the file.
  { std::ofstream(times) << "0\n1\n"; }
  const auto bad = sh(run_cmd("--quiet --out '" + fresh("arrivals_bad.h5") +
                              "' --run.drafters= --run.batch_size=3 --run.arrivals='" + times.string() + "'"));
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains(times.string() + ": 2 arrival times for 16 requests"));
  CHECK_FALSE(fs::exists(scratch_dir("runner_e2e") / "arrivals_bad.h5"));  // refused before the log is made
}

namespace {

// Runs `specdec run` with the extra arguments; its wall-clock seconds.
double timed_run(const std::string& extra) {
  const auto t0 = std::chrono::steady_clock::now();
  const auto r = sh(run_cmd(extra));
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return seconds;
}

// The last emission of a batched run, seconds on its clock.
double last_emit(const results::RunData& run) {
  double t = 0;
  for (const auto& s : run.steps) t = std::max(t, s.t_emit_s);
  return t;
}

}  // namespace

TEST_CASE("interleaved runs: the same tokens and steps as alone, each timed on its own clock", "[runner][e2e][batch]") {
  // Ten runs of one load (AR and its A/A control; ngram and oracle at k = 2, 4, fixed and cost_model) take turns;
  // the oracle reads the AR tokens.
  const std::string costs = write_cost_table();
  const std::string out = fresh("interleaved.h5");
  const double wall = timed_run("--quiet --out '" + out +
                                "' --run.drafters=ngram,oracle --run.k=2,4 --run.policy=fixed,cost_model "
                                "--run.cost_table='" +
                                costs + "' --run.batch_size=4 --run.interleave=true --run.aa_control=true");
  const auto data = results::read_all(out);
  REQUIRE(data.size() == 10);  // and the A/A control, a second AR run
  CHECK(data[0].info.name == "ar_b4_t0");
  CHECK(data[1].info.name == "ar_aa_b4_t0");
  const auto& ref = reference();
  double spans = 0;
  for (const auto& run : data) {
    INFO(run.info.name);
    CHECK(run.info.attrs.at("interleaved") == "1");
    CHECK(run.requests.size() == static_cast<size_t>(kRequests));
    check_batched_times(run, 4);
    const std::string drafter = run.info.attrs.at("drafter");
    if (run.info.attrs.at("policy") == "cost_model")
      CHECK(run.outputs == find_run(ref, "ar_t0").outputs);  // greedy: lossless
    else
      check_same_steps(run,
                       find_run(ref, drafter == "none" ? "ar_t0" : drafter + "_k" + run.info.attrs.at("k") + "_t0"));
    // A request's decode_s is on its run's clock too: within the time from its arrival to its last token.
    std::map<int64_t, double> finish;
    for (const auto& s : run.steps) finish[s.request_id] = std::max(finish[s.request_id], s.t_emit_s);
    for (const auto& q : run.requests) CHECK(q.decode_s <= finish.at(q.request_id) - q.arrival_s + 1e-6);
    spans += last_emit(run);
  }
  // Each run's clock ran only in its own turns: the ten spans add up to less than the command took. On a
  // clock shared by the runs each span would be about the whole group's time, ten times that in sum.
  CHECK(spans < wall);
}

TEST_CASE("interleaved runs under an open-loop load jump over idle time instead of waiting", "[runner][e2e][batch]") {
  const std::string out = fresh("interleaved_open.h5");
  const double wall = timed_run("--quiet --out '" + out +
                                "' --run.drafters=ngram --run.k=2 --run.batch_size=2 --run.arrival_rate=0.5 "
                                "--run.interleave=true");
  const auto data = results::read_all(out);
  REQUIRE(data.size() == 2);
  double last_arrival = 0;
  for (const auto& q : data[0].requests) last_arrival = std::max(last_arrival, q.arrival_s);
  CHECK(last_arrival > 10);  // 16 requests at 0.5/s: about 30 s of arrivals
  for (const auto& run : data) {
    INFO(run.info.name);
    check_batched_times(run, 2);
    CHECK(last_emit(run) > last_arrival);
  }
  std::map<int64_t, double> ar_arrival;
  for (const auto& q : data[0].requests) ar_arrival[q.request_id] = q.arrival_s;
  for (const auto& q : data[1].requests) CHECK(q.arrival_s == ar_arrival.at(q.request_id));  // the same load
  check_same_steps(data[1], find_run(reference(), "ngram_k2_t0"));
  // The wall clock would have waited for the last arrival; the own clocks skipped the idle stretches.
  CHECK(wall < last_arrival / 3);
}
