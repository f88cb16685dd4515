// specdec submit without a cluster: the job scripts it writes (--dry-run), the sbatch commands it runs and the
// job ids it reads back (a stand-in sbatch on PATH records its arguments), a shard script run by hand (it is
// `specdec run --shard i/N --resume`, and refuses a config edited since submission), and a one-line error
// for every mistake. The real cluster is test_slurm_submit.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "core/sha256.h"
#include "experiments/results_log.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::test;
namespace fs = std::filesystem;

namespace {

std::string smoke_config() { return std::string(SPECDEC_SOURCE_DIR) + "/experiments/configs/stories_smoke.ini"; }

fs::path fresh_dir(const std::string& name) {
  const fs::path p = scratch_dir("submit_cli") / name;
  fs::remove_all(p);
  return p;
}

std::string submit(const std::string& args) { return specdec_bin() + " submit " + args; }

// A folder with an executable `sbatch` that appends its arguments (one line per call) to DIR/calls and
// answers like sbatch --parsable: "4<call number>;cluster", or, at call number `fail_at`, two lines on
// stderr and exit 1.
fs::path fake_sbatch(const std::string& name, int fail_at = 0) {
  const fs::path dir = fresh_dir(name);
  fs::create_directories(dir);
  const fs::path script = dir / "sbatch";
  std::ofstream(script) << "#!/bin/sh\n"
                        << "echo \"$*\" >> '" << (dir / "calls").string() << "'\n"
                        << "n=$(wc -l < '" << (dir / "calls").string() << "')\n"
                        << "if [ \"$n\" = " << fail_at << " ]; then\n"
                        << "  echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2\n"
                        << "  echo 'a second line' >&2\n"
                        << "  exit 1\n"
                        << "fi\n"
                        << "echo \"4$n;cluster\"\n";
  fs::permissions(script, fs::perms::owner_all);
  return dir;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

TEST_CASE("specdec submit --dry-run writes an array job of resumable shards and a merge job", "[submit]") {
  const fs::path dir = fresh_dir("dry");
  const auto r = run(submit("'" + smoke_config() + "' --shards 3 --out '" + dir.string() +
                            "' --dry-run --run.k=2 --sbatch-arg=--time=10 --shard-sbatch-arg=--cpus-per-task=2"));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  // Printed: both sbatch commands, the shard-only option on the first only, nothing submitted.
  CHECK_THAT(r.out, Catch::Contains("dry run, nothing submitted"));
  CHECK_THAT(r.out,
             Catch::Contains("sbatch --parsable --time=10 --cpus-per-task=2 " + (dir / "shards.sbatch").string()));
  CHECK_THAT(r.out, Catch::Contains("sbatch --parsable --time=10 '--dependency=afterok:<shards job id>' "
                                    "--kill-on-invalid-dep=yes " +
                                    (dir / "merge.sbatch").string()));

  const std::string shards = slurp((dir / "shards.sbatch").string());
  const std::string merge = slurp((dir / "merge.sbatch").string());
  const std::string sha = sha256_file(smoke_config());
  for (const std::string& line :
       {std::string("#SBATCH --array=0-2"), std::string("#SBATCH --requeue"),
        "#SBATCH --output=" + (dir / "shard-%a.log").string(), "#SBATCH --chdir=" + fs::current_path().string()})
    CHECK_THAT(shards, Catch::Contains(line + "\n"));
  CHECK_THAT(shards, Catch::Contains("exec " + specdec_bin() + " run \"$config\" --shard \"$i/3\" --resume --out " +
                                     dir.string() + "/shard-\"$i\".h5 --run.k=2\n"));
  CHECK_THAT(shards, Catch::Contains("config=" + smoke_config() + "\n"));
  CHECK_THAT(shards, Catch::Contains(sha));
  CHECK_THAT(merge, Catch::Contains(specdec_bin() + " merge " + (dir / "shard-0.h5").string() + " " +
                                    (dir / "shard-1.h5").string() + " " + (dir / "shard-2.h5").string() +
                                    " -o \"$merged.partial\"\n"));
  CHECK_THAT(merge, Catch::Contains("mv \"$merged.partial\" \"$merged\"\n"));
  CHECK_THAT(merge, Catch::Contains(sha));
  CHECK_THAT(merge, !Catch::Contains("--array"));
}

TEST_CASE("specdec submit runs sbatch for the array, then the merge after it, and prints both ids", "[submit]") {
  const fs::path bin = fake_sbatch("fake_ok");
  const fs::path dir = fresh_dir("submitted");
  const auto r = run("PATH='" + bin.string() + "':$PATH " +
                     submit("'" + smoke_config() + "' --shards 2 --out '" + dir.string() +
                            "' --sbatch-arg=--partition=p1 --shard-sbatch-arg=--gres=gpu:1"));
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  const auto calls = lines_of(slurp((bin / "calls").string()));
  REQUIRE(calls.size() == 2);
  CHECK(calls[0] == "--parsable --partition=p1 --gres=gpu:1 " + (dir / "shards.sbatch").string());
  CHECK(calls[1] == "--parsable --partition=p1 --dependency=afterok:41 --kill-on-invalid-dep=yes " +
                        (dir / "merge.sbatch").string());
  CHECK_THAT(r.out, Catch::Contains("shards: job 41 (array 0-1)"));
  CHECK_THAT(r.out, Catch::Contains("merge:  job 42"));
  CHECK_THAT(r.out, Catch::Contains("squeue -j 41,42"));
}

TEST_CASE("a shard script run by hand is one resumable shard, and refuses a config edited since submission",
          "[submit]") {
  const fs::path dir = fresh_dir("by_hand");
  fs::create_directories(dir);
  const std::string config = (dir / "smoke.ini").string();
  fs::copy_file(smoke_config(), config);
  const auto sub = run(submit("'" + config + "' --shards 2 --out '" + dir.string() + "' --dry-run"));
  INFO(sub.out << sub.err);
  REQUIRE(sub.exit_code == 0);
  const std::string task1 = "OMP_NUM_THREADS=1 SLURM_ARRAY_TASK_ID=1 bash '" + (dir / "shards.sbatch").string() + "'";
  const auto first = run(task1);
  INFO(first.out << first.err);
  REQUIRE(first.exit_code == 0);
  const auto shard1 = results::read_all((dir / "shard-1.h5").string());
  REQUIRE(shard1.size() == 7);
  CHECK(shard1[0].requests.size() == 8);  // prompts 1, 3, ..., 15 of 16
  // Run again (a requeued task): the complete log is resumed, nothing runs twice.
  REQUIRE(run(task1).exit_code == 0);
  CHECK(results::diff_runs(results::read_all((dir / "shard-1.h5").string()), shard1, false) == "");

  std::ofstream(config, std::ios::app) << "# edited after submission\n";
  const auto edited = run(task1);
  CHECK(edited.exit_code == 1);
  CHECK_THAT(edited.err, Catch::Contains(config + " changed since the sweep was submitted"));
  CHECK(count_lines(edited.err) == 1);
}

TEST_CASE("specdec submit: a one-line error for every mistake", "[submit][badinput]") {
  const fs::path dir = fresh_dir("errors");
  const std::string cfg = "'" + smoke_config() + "'";
  const fs::path failing_first = fake_sbatch("fake_fail_1", 1), failing_second = fake_sbatch("fake_fail_2", 2);
  fs::create_directories(dir / "merged");
  std::ofstream(dir / "merged" / "merged.h5") << "";
  struct Case {
    const char* what;
    std::string cmd, expected;
  };
  const std::vector<Case> cases = {
      {"no config", submit("--shards 2 --dry-run"), "a config file"},
      {"no --shards", submit(cfg + " --dry-run"), "--shards N with N >= 1"},
      {"zero shards", submit(cfg + " --shards 0 --dry-run"), "got 0"},
      {"shards not a number", submit(cfg + " --shards two --dry-run"), "--shards"},
      {"missing config", submit("/nonexistent.ini --shards 2 --dry-run"), "/nonexistent.ini"},
      {"unknown key", submit(cfg + " --shards 2 --dry-run --run.kk=2"), "run.kk"},
      {"unknown drafter", submit(cfg + " --shards 2 --dry-run --run.drafters=ngarm"), "ngarm"},
      {"missing model", submit(cfg + " --shards 2 --dry-run --target.model=nowhere.gguf"), "nowhere.gguf"},
      {"missing prompt set", submit(cfg + " --shards 2 --dry-run --prompts.sets=nowhere.jsonl"), "nowhere.jsonl"},
      {"not an sbatch option", submit(cfg + " --shards 2 --dry-run --sbatch-arg=partition"), "'partition'"},
      {"merged already", submit(cfg + " --shards 2 --dry-run --out '" + (dir / "merged").string() + "'"),
       "merged already"},
      {"sbatch not found", "PATH=/nonexistent " + submit(cfg + " --shards 2 --out '" + dir.string() + "'"),
       "sbatch not found on PATH"},
      {"sbatch fails",
       "PATH='" + failing_first.string() + "':$PATH " + submit(cfg + " --shards 2 --out '" + dir.string() + "'"),
       "sbatch failed for the shard array job (exit 1): sbatch: error: Batch job submission failed: Invalid "
       "partition name specified"},
      {"the merge's sbatch fails",
       "PATH='" + failing_second.string() + "':$PATH " + submit(cfg + " --shards 2 --out '" + dir.string() + "'"),
       "the shard array job 41 is submitted (scancel 41"},
  };
  for (const auto& c : cases) {
    INFO(c.what << ": " << c.cmd);
    const auto r = run(c.cmd);
    INFO(r.out << r.err);
    CHECK(r.exit_code != 0);
    CHECK_THAT(r.err, Catch::Contains(c.expected));
    CHECK(count_lines(r.err) == 1);
    CHECK_THAT(r.err, !Catch::Contains("a second line"));
  }
}
