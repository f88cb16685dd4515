// specdec merge: join the HDF5 logs of a sharded sweep (specdec run --shard i/n) into one file.
#include <cstdio>
#include <iostream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "experiments/cli.h"
#include "experiments/results_log.h"

namespace po = boost::program_options;

namespace specdec::cli {

int cmd_merge(const std::vector<std::string>& args) {
  std::vector<std::string> inputs;
  std::string output;
  po::options_description desc(
      "specdec merge: join shard logs of one experiment into one HDF5 file\n\n"
      "usage: specdec merge A.h5 B.h5 ... -o ALL.h5\n\n"
      "The inputs must come from the same config (their config attributes must match); runs are joined by\n"
      "name, a (run, request) pair present twice is an error, and the output must not exist yet.\n\noptions");
  desc.add_options()
      ("help,h", "show this help")
      ("inputs", po::value(&inputs)->multitoken(), "the shard logs")
      ("out,o", po::value(&output), "the merged log (must not exist)");
  po::positional_options_description pos;
  pos.add("inputs", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(desc).positional(pos).run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return 0;
  }
  po::notify(vm);
  SPECDEC_CHECK(!inputs.empty(), "at least one input log: specdec merge A.h5 B.h5 ... -o ALL.h5");
  SPECDEC_CHECK(!output.empty(), "an output file: -o ALL.h5");
  results::merge(inputs, output);
  std::printf("merged %zu file(s) into %s\n", inputs.size(), output.c_str());
  return 0;
}

}  // namespace specdec::cli
