// specdec run: run an experiment config (a sweep of drafters x k x temperatures against the AR baseline
// on a prompt set) and log every request to HDF5. Parsing only; the work is experiments/runner.cpp.
#include <iostream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "experiments/cli.h"
#include "specdec_version.h"
#include "experiments/config.h"
#include "experiments/runner.h"

namespace po = boost::program_options;

namespace specdec::cli {

int cmd_run(const std::vector<std::string>& args_in) {
  std::vector<std::string> args = args_in;
  // --section.key=value overrides are not Boost options (their names are open-ended): take them out first.
  const std::vector<experiments::ConfigOverride> overrides = experiments::take_overrides(args);

  std::string config_path, out, shard;
  bool resume = false, quiet = false;
  po::options_description desc(
      "specdec run: run an experiment config and log every request to HDF5\n\n"
      "usage: specdec run CONFIG.ini [--section.key=value ...] [--out FILE.h5] [--resume] [--shard i/n] [--quiet]\n\n"
      "For each temperature (and seed) the runner decodes every prompt with the AR baseline (run ar_t<T>) and\n"
      "with every drafter x k (run <drafter>_k<k>_t<T>), prompt by prompt, the AR run first. Each finished\n"
      "request is appended to the log at once: a killed run keeps every finished request, and --resume\n"
      "continues it. --section.key=value overrides a key of the config file, e.g. --run.k=2,4\n"
      "--prompts.per_category=1 --drafter.early_exit.layers=4.\n\noptions");
  desc.add_options()("help,h", "show this help (and every config key)")(
      "config", po::value(&config_path), "the experiment config (INI), e.g. experiments/configs/default.ini")(
      "out,o", po::value(&out), "the HDF5 log (default: [run] out, else results/<name>.h5)")(
      "resume", po::bool_switch(&resume),
      "continue an existing log: skip finished (run, request) pairs (the config must be the same)")(
      "shard", po::value(&shard),
      "run only the prompts whose index % n == i (i/n, e.g. 0/4); join the shard "
      "logs with specdec merge")("quiet,q", po::bool_switch(&quiet),
                                 "no progress display (the summary is still printed)");
  po::positional_options_description pos;
  pos.add("config", 1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\nconfig keys (--section.key=value on the command line overrides the file):\n"
              << experiments::config_keys_help() << "\n";
    return 0;
  }
  po::notify(vm);
  SPECDEC_CHECK(!config_path.empty(), "a config file: specdec run CONFIG.ini (see specdec run --help)");

  const experiments::ExperimentConfig cfg = experiments::load_experiment_config(config_path, overrides);
  experiments::RunnerOptions opts;
  opts.out = out;
  opts.resume = resume;
  opts.quiet = quiet;
  opts.version = SPECDEC_GIT_SHA;
  if (!shard.empty()) std::tie(opts.shard_index, opts.shard_count) = experiments::parse_shard(shard);
  return experiments::run_experiment(cfg, opts);
}

}  // namespace specdec::cli
