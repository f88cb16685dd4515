// specdec submit: a sharded sweep on a Slurm cluster. Writes an array job (one `specdec run --shard i/N
// --resume` per task, requeue-safe) and a merge job that runs after every task succeeded, submits both with
// sbatch and prints their ids. The scripts are plain files in the sweep's folder: what runs is what they say.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "core/sha256.h"
#include "drafters/register_builtin.h"
#include "experiments/cli.h"
#include "experiments/config.h"
#include "experiments/prompts.h"

extern char** environ;

namespace po = boost::program_options;
namespace fs = std::filesystem;

namespace specdec::cli {
namespace {

// Everything the two job scripts name, as absolute paths: the jobs may start hours later, from another
// working directory, on another node that mounts the same file system.
struct Sweep {
  std::string name;           // [run] name
  fs::path specdec;           // this binary
  fs::path config;            // the config file as submitted
  std::string config_sha256;  // its contents at submission
  fs::path workdir;           // where `specdec submit` ran: relative paths in the config resolve as there
  fs::path dir;               // the sweep's folder: scripts, shard logs, merged.h5
  int shards = 0;
  std::vector<std::string> overrides;  // --section.key=value, passed on to every shard

  fs::path shard_log(int i) const { return dir / ("shard-" + std::to_string(i) + ".h5"); }
  fs::path merged() const { return dir / "merged.h5"; }
  fs::path shards_script() const { return dir / "shards.sbatch"; }
  fs::path merge_script() const { return dir / "merge.sbatch"; }
};

// s as one word for bash: as it is when it holds only characters the shell takes literally, else in single
// quotes, each ' written as '\''.
std::string quote(const std::string& s) {
  if (!s.empty() && s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-+=.,:/@%") ==
                        std::string::npos)
    return s;
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

std::string join_quoted(const std::vector<std::string>& words) {
  std::string out;
  for (const auto& w : words) {
    if (!out.empty()) out += ' ';
    out += quote(w);
  }
  return out;
}

// The checks `specdec run` would fail on first, done now rather than in every queued task: the config (keys,
// values, overrides), the drafter types, and that the model, tokenizer and prompt files exist. Relative paths
// resolve as the runner resolves them (working directory, beside the config, repository, assets), from the
// same working directory the jobs use.
experiments::ExperimentConfig check_config(const std::string& path,
                                           const std::vector<experiments::ConfigOverride>& overrides) {
  const experiments::ExperimentConfig cfg = experiments::load_experiment_config(path, overrides);
  experiments::resolve_drafter_types(cfg, drafters::default_registry());
  const fs::path config_dir = fs::path(path).parent_path();
  auto require = [&](const std::string& file, const char* key) {
    std::error_code ec;
    SPECDEC_CHECK(file.empty() || fs::exists(experiments::find_input_file(file, config_dir), ec), path, ": ", key,
                  " = ", file, ": no such file (looked in the working directory, beside the config, under the ",
                  "repository and in the assets folder)");
  };
  require(cfg.model, "[target] model");
  require(cfg.tokenizer, "[target] tokenizer");
  for (const auto& set : cfg.prompt_sets) {
    std::error_code ec;
    SPECDEC_CHECK(fs::exists(experiments::prompt_set_path(set, config_dir), ec), path, ": [prompts] sets: '", set,
                  "' not found (expected spec_bench, mt_bench, gsm8k or a path to a .jsonl file)");
  }
  return cfg;
}

// The lines both scripts open with after their #SBATCH block: stop at the first failing command, and refuse
// to run when the config is not the one submitted (an edit after submission would mix two configs in one
// sweep; the runner's own check on --resume covers only what the log records).
std::string prologue(const Sweep& s) {
  std::ostringstream os;
  os << "set -eu\n"
     << "config=" << quote(s.config.string()) << "\n"
     << "if [ \"$(sha256sum < \"$config\" | cut -d' ' -f1)\" != " << s.config_sha256 << " ]; then\n"
     << "  echo \"specdec submit: $config changed since the sweep was submitted (sha256 was " << s.config_sha256
     << "): restore it, or submit the new config as another sweep\" >&2\n"
     << "  exit 1\n"
     << "fi\n";
  return os.str();
}

std::string sbatch_header(const Sweep& s, const std::string& what, const std::string& job_name) {
  std::ostringstream os;
  os << "#!/bin/bash\n"
     << "# specdec submit: " << what << " of the sweep " << s.name << " (" << s.shards << " shards) in "
     << s.dir.string() << "\n"
     << "#SBATCH --job-name=" << job_name << "\n"
     << "#SBATCH --chdir=" << s.workdir.string() << "\n";
  return os.str();
}

// One array task per shard. --requeue: a task the cluster stops (preemption, a node failure) starts again
// and --resume continues its log from the last finished request instead of starting over; its output log
// is appended to, so it keeps both attempts.
std::string shards_script(const Sweep& s) {
  std::ostringstream os;
  os << sbatch_header(s, "one shard per array task", "specdec-" + s.name) << "#SBATCH --array=0-" << s.shards - 1
     << "\n"
     << "#SBATCH --requeue\n"
     << "#SBATCH --open-mode=append\n"
     << "#SBATCH --output=" << (s.dir / "shard-%a.log").string() << "\n"
     << prologue(s) << "i=$SLURM_ARRAY_TASK_ID\n"
     << "echo \"specdec submit: shard $i/" << s.shards << " of " << s.name
     << ", start ${SLURM_RESTART_COUNT:-0} on $(hostname) at $(date -u +%FT%TZ)\"\n"
     << "# OpenMP threads = the CPUs Slurm gave the task (--cpus-per-task), unless OMP_NUM_THREADS is set\n"
     << "if [ -n \"${SLURM_CPUS_PER_TASK:-}\" ] && [ -z \"${OMP_NUM_THREADS:-}\" ]; then\n"
     << "  export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK\n"
     << "fi\n"
     << "exec " << quote(s.specdec.string()) << " run \"$config\" --shard \"$i/" << s.shards << "\" --resume --out "
     << quote(s.dir.string()) << "/shard-\"$i\".h5";
  if (!s.overrides.empty()) os << " " << join_quoted(s.overrides);
  os << "\n";
  return os.str();
}

// Joins the shard logs. It writes merged.h5.partial and renames it, so a merge killed half-way (and
// requeued) never leaves a merged.h5 that looks complete.
std::string merge_script(const Sweep& s) {
  std::vector<std::string> inputs;
  for (int i = 0; i < s.shards; ++i) inputs.push_back(s.shard_log(i).string());
  std::ostringstream os;
  os << sbatch_header(s, "the merge job", "specdec-" + s.name + "-merge") << "#SBATCH --requeue\n"
     << "#SBATCH --output=" << (s.dir / "merge.log").string() << "\n"
     << prologue(s) << "merged=" << quote(s.merged().string()) << "\n"
     << "rm -f \"$merged.partial\"\n"
     << quote(s.specdec.string()) << " merge " << join_quoted(inputs) << " -o \"$merged.partial\"\n"
     << "mv \"$merged.partial\" \"$merged\"\n";
  return os.str();
}

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  SPECDEC_CHECK(out.good(), path.string(), ": cannot write the job script");
}

struct Output {
  int exit_code = -1;
  std::string out, err;
};

std::string read_all(FILE* f) {
  std::string s;
  std::rewind(f);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
  return s;
}

// Runs argv[0] (looked up on PATH) with stdout and stderr captured in unnamed temporary files, which never
// fill up the way a pipe nobody reads does. Throws when the program cannot be started.
Output run_program(const std::vector<std::string>& argv) {
  FILE* out = std::tmpfile();
  FILE* err = std::tmpfile();
  SPECDEC_CHECK(out && err, "cannot create a temporary file for ", argv[0], "'s output: ", std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, fileno(out), STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, fileno(err), STDERR_FILENO);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  Output r;
  if (rc == 0) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    r.out = read_all(out);
    r.err = read_all(err);
  }
  std::fclose(out);
  std::fclose(err);
  SPECDEC_CHECK(rc != ENOENT, argv[0],
                " not found on PATH (Slurm's client commands; --dry-run writes the job scripts without submitting)");
  SPECDEC_CHECK(rc == 0, "cannot run ", argv[0], ": ", std::strerror(rc));
  return r;
}

std::string first_line(const std::string& s) {
  const size_t start = s.find_first_not_of(" \t\r\n");
  if (start == std::string::npos) return "";
  return s.substr(start, s.find_first_of("\r\n", start) - start);
}

// sbatch --parsable ... SCRIPT; returns the job id ("123", from "123" or "123;cluster"). `after` ends the
// error message (what was submitted already).
std::string sbatch(const std::vector<std::string>& args, const std::string& what, const std::string& after = "") {
  const Output r = run_program(args);
  SPECDEC_CHECK(r.exit_code == 0, "sbatch failed for ", what, " (exit ", r.exit_code, "): ", first_line(r.err), after);
  std::string id = first_line(r.out);
  id = id.substr(0, id.find(';'));
  SPECDEC_CHECK(!id.empty() && id.find_first_not_of("0123456789") == std::string::npos, "sbatch --parsable for ", what,
                " printed '", first_line(r.out), "', expected a job id", after);
  return id;
}

std::vector<std::string> sbatch_command(const std::vector<std::string>& options, const std::vector<std::string>& extra,
                                        const fs::path& script) {
  std::vector<std::string> cmd = {"sbatch", "--parsable"};
  cmd.insert(cmd.end(), options.begin(), options.end());
  cmd.insert(cmd.end(), extra.begin(), extra.end());
  cmd.push_back(script.string());
  return cmd;
}

// The merge job's dependency: it starts once every task of the array exited 0, and is cancelled (rather
// than left pending forever) when one failed.
std::vector<std::string> after_array(const std::string& array_id) {
  return {"--dependency=afterok:" + array_id, "--kill-on-invalid-dep=yes"};
}

void check_sbatch_options(const std::vector<std::string>& options, const char* flag) {
  for (const auto& o : options)
    SPECDEC_CHECK(o.size() > 1 && o[0] == '-', flag, " as one sbatch option (e.g. ", flag, "=--partition=gpu), got '",
                  o, "'");
}

}  // namespace

int cmd_submit(const std::vector<std::string>& args_in) {
  std::vector<std::string> args = args_in;
  const std::vector<experiments::ConfigOverride> overrides = experiments::take_overrides(args);
  std::string config_path, out;
  int shards = 0;
  std::vector<std::string> sbatch_args, shard_args;
  bool dry_run = false;
  po::options_description desc(
      "specdec submit: run an experiment config as a sharded sweep on a Slurm cluster\n\n"
      "usage: specdec submit CONFIG.ini --shards N [--out DIR] [--sbatch-arg=OPTION ...] [--dry-run]\n"
      "                      [--section.key=value ...]\n\n"
      "Writes DIR/shards.sbatch, an array job whose task i runs `specdec run CONFIG --shard i/N --resume\n"
      "--out DIR/shard-i.h5` (a requeued task resumes its log), and DIR/merge.sbatch, which joins the shard\n"
      "logs into DIR/merged.h5 once every task succeeded; submits both with sbatch and prints their ids.\n"
      "The config is checked now, and its sha256 is recorded: a job refuses to start if the file has changed\n"
      "since (submit an edited config as another sweep). Submitting again into the same DIR resumes its shard\n"
      "logs. See docs/slurm.md.\n\noptions");
  desc.add_options()("help,h", "show this help")("config", po::value(&config_path), "the experiment config (INI)")(
      "shards,n", po::value(&shards), "number of shards = array tasks (each runs the prompts whose index % N == i)")(
      "out,o", po::value(&out), "the sweep's folder (default: results/<name>-slurm)")(
      "sbatch-arg", po::value(&sbatch_args)->composing(),
      "an sbatch option for both jobs, e.g. --sbatch-arg=--partition=gpu --sbatch-arg=--time=2:00:00 (repeatable)")(
      "shard-sbatch-arg", po::value(&shard_args)->composing(),
      "an sbatch option for the shard tasks only, e.g. --shard-sbatch-arg=--gres=gpu:1 (repeatable)")(
      "dry-run", po::bool_switch(&dry_run), "write the scripts and print the sbatch commands; submit nothing");
  po::positional_options_description pos;
  pos.add("config", 1);
  if (!parse_options(args, desc, &pos)) return 0;
  SPECDEC_CHECK(!config_path.empty(), "a config file: specdec submit CONFIG.ini --shards N (see --help)");
  SPECDEC_CHECK(shards >= 1, "--shards N with N >= 1 (one array task per shard), got ", shards);
  check_sbatch_options(sbatch_args, "--sbatch-arg");
  check_sbatch_options(shard_args, "--shard-sbatch-arg");

  const experiments::ExperimentConfig cfg = check_config(config_path, overrides);
  Sweep s;
  s.name = cfg.name;
  s.specdec = fs::read_symlink("/proc/self/exe");
  s.config = fs::absolute(config_path).lexically_normal();
  s.config_sha256 = sha256_file(config_path);
  s.workdir = fs::current_path();
  s.dir = fs::absolute(out.empty() ? "results/" + cfg.name + "-slurm" : out).lexically_normal();
  s.shards = shards;
  for (const auto& o : overrides) s.overrides.push_back("--" + o.key + "=" + o.value);
  // #SBATCH lines are split at whitespace, and sbatch expands % in --output.
  for (const fs::path& p : {s.workdir, s.dir})
    SPECDEC_CHECK(p.string().find_first_of(" \t\n%") == std::string::npos, p.string(),
                  ": a path without spaces or % for the job scripts (#SBATCH lines); run from, or pass --out, another");
  SPECDEC_CHECK(!fs::exists(s.merged()), s.merged().string(),
                ": this sweep is merged already; pass another --out (or remove the file to merge again)");
  std::error_code ec;
  fs::create_directories(s.dir, ec);
  SPECDEC_CHECK(!ec, s.dir.string(), ": cannot create the sweep's folder: ", ec.message());
  write_file(s.shards_script(), shards_script(s));
  write_file(s.merge_script(), merge_script(s));

  std::printf("specdec submit %s: %d shard(s), scripts in %s\n", s.name.c_str(), shards, s.dir.c_str());
  std::vector<std::string> shard_options = sbatch_args;
  shard_options.insert(shard_options.end(), shard_args.begin(), shard_args.end());
  if (dry_run) {
    std::printf("dry run, nothing submitted; the commands:\n  %s\n  %s\n",
                join_quoted(sbatch_command(shard_options, {}, s.shards_script())).c_str(),
                join_quoted(sbatch_command(sbatch_args, after_array("<shards job id>"), s.merge_script())).c_str());
    return 0;
  }
  const std::string array_id = sbatch(sbatch_command(shard_options, {}, s.shards_script()), "the shard array job");
  const std::string merge_id = sbatch(
      sbatch_command(sbatch_args, after_array(array_id), s.merge_script()), "the merge job",
      "; the shard array job " + array_id + " is submitted (scancel " + array_id +
          " drops it; sbatch --dependency=afterok:" + array_id + " " + s.merge_script().string() + " merges its logs)");
  std::printf(
      "  shards: job %s (array 0-%d), logs %s/shard-<i>.h5, output %s/shard-<i>.log\n"
      "  merge:  job %s, after every shard succeeded -> %s\n"
      "watch:   squeue -j %s,%s    tail -f %s/shard-*.log\n",
      array_id.c_str(), shards - 1, s.dir.c_str(), s.dir.c_str(), merge_id.c_str(), s.merged().c_str(),
      array_id.c_str(), merge_id.c_str(), s.dir.c_str());
  return 0;
}

}  // namespace specdec::cli
