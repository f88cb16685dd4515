// specdec: entry point. Dispatches to a subcommand; turns every specdec::Error into a one-line message
// on stderr and a non-zero exit code.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include <boost/program_options/errors.hpp>

#include "core/error.h"
#include "experiments/cli.h"
#include "specdec_version.h"

namespace {

struct Command {
  const char* name;
  const char* help;
  int (*run)(const std::vector<std::string>&);
};

const Command kCommands[] = {
    {"generate", "generate text with a model (autoregressive, or speculative with --drafter)",
     specdec::cli::cmd_generate},
    {"bench",
     "benchmarks: `bench decode` (AR tokens/s, cost of a T-token forward), `bench verify` (B x (k+1) vs B x 1), "
     "`bench costs` (the policies' cost table)",
     specdec::cli::cmd_bench},
    {"run", "run an experiment config (drafters x k x temperatures vs AR) and log it to HDF5", specdec::cli::cmd_run},
    {"report", "tables and plots of a results log (specdec report RESULTS.h5 [--plots DIR]; --help)",
     specdec::cli::cmd_report},
    {"merge", "join the HDF5 logs of a sharded run (specdec run --shard i/n)", specdec::cli::cmd_merge},
    {"repair", "complete or rebuild a killed run's results log from its journal (specdec repair RESULTS.h5)",
     specdec::cli::cmd_repair},
    {"submit",
     "run a config as a sharded sweep on Slurm: an array job and a merge job (specdec submit CONFIG --shards N)",
     specdec::cli::cmd_submit},
    {"list-drafters", "list the drafters (built in, and from --plugin PATH.so) with their help",
     specdec::cli::cmd_list_drafters},
    {"collect",
     "collect feature drafters' training data: the target's features and soft labels (specdec collect CONFIG.ini)",
     specdec::cli::cmd_collect},
    {"train", "train a feature drafter on collected data (specdec train medusa CONFIG.ini)", specdec::cli::cmd_train},
    {"list-rules", "list the acceptance rules with their help and options", specdec::cli::cmd_list_rules},
};

void print_usage() {
  std::printf(
      "specdec %s: speculative decoding research framework\n\n"
      "usage: specdec <command> [options]    (specdec <command> --help for its options)\n\ncommands:\n",
      SPECDEC_GIT_SHA);
  for (const Command& c : kCommands) std::printf("  %-14s %s\n", c.name, c.help);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "help")) {
    print_usage();
    return argc < 2 ? 2 : 0;
  }
  if (!std::strcmp(argv[1], "--version")) {
    std::printf("specdec %s\n", SPECDEC_GIT_SHA);
    return 0;
  }
  const std::string name = argv[1];
  for (const Command& c : kCommands) {
    if (name != c.name) continue;
    try {
      return c.run(std::vector<std::string>(argv + 2, argv + argc));
    } catch (const specdec::Error& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "\nspecdec %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const boost::program_options::error& e) {
      std::fprintf(stderr, "specdec %s: error: %s (see specdec %s --help)\n", c.name, e.what(), c.name);
      return 2;
    } catch (const std::exception& e) {
      std::fflush(stdout);
      std::fprintf(stderr, "\nspecdec %s: error: %s\n", c.name, e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "specdec: unknown command '%s'\n\n", argv[1]);
  print_usage();
  return 2;
}
