// specdec submit on a real one-node Slurm cluster (slurm_cluster.h): experiments/configs/stories_smoke.ini in
// 3 shards (an array job and a merge job), and the merged log holds what one `specdec run` of the config holds
// (same runs, requests, steps and tokens); a requeued shard task resumes its complete log instead of failing
// on it or starting over; tasks refuse a config edited after submission and the merge job is then cancelled;
// no process the test started is left. Skips (exit 77) only where Slurm cannot start.
#include <catch2/catch.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>

#include "experiments/results_log.h"
#include "tests/slurm/slurm_cluster.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::test;
namespace fs = std::filesystem;

namespace {

constexpr int kShards = 3;
constexpr double kJobSeconds = 90;  // the sweep takes ~10 s here: the rest is slack for a loaded machine

std::string smoke_config() { return std::string(SPECDEC_SOURCE_DIR) + "/experiments/configs/stories_smoke.ini"; }

[[noreturn]] void skip(const std::string& why) {
  std::printf("skipping the Slurm test: %s\n", why.c_str());
  std::fflush(stdout);
  std::exit(77);
}

// The id after `label` in specdec submit's output ("  shards: job 12 (array 0-2) ...").
std::string job_id(const std::string& out, const std::string& label) {
  std::smatch m;
  const std::regex re(label + ": +job ([0-9]+)");
  return std::regex_search(out, m, re) ? m[1].str() : "";
}

// JobState of every job scontrol lists for `id` (one per array task), in its order; a job it has forgotten
// lists nothing.
std::vector<std::string> job_states(const std::string& id) {
  const std::string out = run("scontrol show job -o " + id).out;
  std::vector<std::string> states;
  const std::regex re("JobState=([A-Z_]+)");
  for (auto it = std::sregex_iterator(out.begin(), out.end(), re); it != std::sregex_iterator(); ++it)
    states.push_back((*it)[1].str());
  return states;
}

bool all_done(const std::vector<std::string>& states) {
  if (states.empty()) return false;
  for (const auto& s : states)
    if (s == "PENDING" || s == "RUNNING" || s == "CONFIGURING" || s == "COMPLETING" || s == "REQUEUED") return false;
  return true;
}

std::string sweep_logs(const fs::path& dir) {
  std::string out;
  for (const char* f : {"shard-0.log", "shard-1.log", "shard-2.log", "merge.log"})
    out += std::string("\n--- ") + f + ":\n" + slurp((dir / f).string());
  return out;
}

// A fresh folder under /tmp: munged's socket path must stay short.
fs::path make_temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "specdec-slurm-XXXXXX").string();
  REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
  return tmpl;
}

}  // namespace

TEST_CASE("specdec submit on a one-node Slurm cluster: 3 shards merge to one run's log; a requeued shard resumes",
          "[slurm]") {
  if (const std::string p = SlurmCluster::missing_program(); !p.empty())
    skip(p + " not found (Debian: apt-get install slurm-wlm munge; scripts/setup installs them)");
  if (::geteuid() != 0) skip("the cluster's slurmd runs jobs as root here, and this process is not root");

  const fs::path runtime = make_temp_dir();
  const fs::path sweep = scratch_dir("slurm") / "sweep";
  const std::string single = (scratch_dir("slurm") / "single.h5").string();
  fs::remove_all(sweep);
  fs::remove(single);
  INFO("the cluster's folder (its daemons' logs; kept after a failure): " << runtime.string());
  bool reached_end = false;
  {
    SlurmCluster cluster(runtime);
    if (const std::string why = cluster.start(); !why.empty()) {
      cluster.stop();
      skip("Slurm did not start: " + why);
    }

    const RunResult sub = run(specdec_bin() + " submit '" + smoke_config() + "' --shards " + std::to_string(kShards) +
                              " --out '" + sweep.string() + "'");
    INFO(sub.out << sub.err);
    REQUIRE(sub.exit_code == 0);
    const std::string array_id = job_id(sub.out, "shards"), merge_id = job_id(sub.out, "merge");
    REQUIRE(!array_id.empty());
    REQUIRE(!merge_id.empty());
    CHECK_THAT(sub.out, Catch::Contains("squeue -j " + array_id + "," + merge_id));

    // Every shard task and then the merge job finish.
    const bool finished = wait_until([&] { return all_done(job_states(merge_id)); }, kJobSeconds);
    INFO(sweep_logs(sweep) << "\ndaemons:" << cluster.last_lines());
    REQUIRE(finished);
    CHECK(job_states(array_id) == std::vector<std::string>(kShards, "COMPLETED"));
    REQUIRE(job_states(merge_id) == std::vector<std::string>{"COMPLETED"});
    for (int i = 0; i < kShards; ++i)
      CHECK_THAT(slurp((sweep / ("shard-" + std::to_string(i) + ".log")).string()),
                 Catch::Contains("shard " + std::to_string(i) + "/3 of stories_smoke, start 0"));

    // The merged log against one process running the whole config.
    const RunResult one =
        run("OMP_NUM_THREADS=1 " + specdec_bin() + " run '" + smoke_config() + "' --quiet --out '" + single + "'");
    INFO(one.err);
    REQUIRE(one.exit_code == 0);
    const auto merged = results::read_all((sweep / "merged.h5").string());
    const auto reference = results::read_all(single);
    REQUIRE(reference.size() == 7);  // AR + 3 drafters x k = 2, 4
    for (const auto& r : reference) CHECK(r.requests.size() == 16);
    CHECK(results::diff_runs(merged, reference, /*ignore_timings=*/true) == "");
    CHECK(results::read_info((sweep / "merged.h5").string()).config_text == results::read_info(single).config_text);

    // A requeued task (preemption, a node failure) starts its script again: --resume must take the complete
    // log as it is (without it the run refuses an existing file and the task fails). The requeue delays the
    // task's start by Slurm's own two minutes; StartTime=now lifts that.
    const std::string shard0 = (sweep / "shard-0.h5").string();
    const auto before = results::read_all(shard0);
    REQUIRE(run("scontrol requeue " + array_id + "_0").exit_code == 0);
    REQUIRE(run("scontrol update jobid=" + array_id + "_0 StartTime=now").exit_code == 0);
    const bool rerun = wait_until(
        [&] {
          return all_done(job_states(array_id + "_0")) &&
                 slurp((sweep / "shard-0.log").string()).find("start 1") != std::string::npos;
        },
        kJobSeconds);
    INFO(slurp((sweep / "shard-0.log").string()));
    REQUIRE(rerun);
    CHECK(job_states(array_id + "_0") == std::vector<std::string>{"COMPLETED"});
    CHECK(results::diff_runs(results::read_all(shard0), before, /*ignore_timings=*/false) == "");

    // A config edited after submission: its tasks refuse to run (the sha256 the scripts recorded), and the
    // merge job is cancelled rather than left pending. The array is held until the edit is made.
    const fs::path edited = scratch_dir("slurm") / "edited";
    fs::remove_all(edited);
    fs::create_directories(edited);
    const std::string copy = (edited / "smoke.ini").string();
    fs::copy_file(smoke_config(), copy);
    const RunResult held = run(specdec_bin() + " submit '" + copy + "' --shards 2 --out '" +
                               (edited / "sweep").string() + "' --shard-sbatch-arg=--hold");
    INFO(held.out << held.err);
    REQUIRE(held.exit_code == 0);
    const std::string held_array = job_id(held.out, "shards"), held_merge = job_id(held.out, "merge");
    std::ofstream(copy, std::ios::app) << "# edited after submission\n";
    REQUIRE(run("scontrol release " + held_array).exit_code == 0);
    const bool refused =
        wait_until([&] { return all_done(job_states(held_array)) && all_done(job_states(held_merge)); }, kJobSeconds);
    INFO(sweep_logs(edited / "sweep"));
    REQUIRE(refused);
    CHECK(job_states(held_array) == std::vector<std::string>{"FAILED", "FAILED"});
    CHECK(job_states(held_merge) == std::vector<std::string>{"CANCELLED"});
    CHECK_THAT(slurp((edited / "sweep" / "shard-0.log").string()),
               Catch::Contains(copy + " changed since the sweep was submitted"));
    CHECK(!fs::exists(edited / "sweep" / "shard-0.h5"));

    cluster.stop();
    reached_end = true;
  }
  CHECK(descendants().empty());
  // Kept after a failure: the daemons' logs are there.
  if (reached_end) fs::remove_all(runtime);
}
