// specdec merge: join the HDF5 logs of a sharded sweep (specdec run --shard i/n) into one file.
// specdec repair: rebuild a results log whose writer was killed from its write-ahead journal.
#include <cstdio>

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
  desc.add_options()("help,h", "show this help")("inputs", po::value(&inputs)->multitoken(), "the shard logs")(
      "out,o", po::value(&output), "the merged log (must not exist)");
  po::positional_options_description pos;
  pos.add("inputs", -1);
  if (!parse_options(args, desc, &pos)) return 0;
  SPECDEC_CHECK(!inputs.empty(), "at least one input log: specdec merge A.h5 B.h5 ... -o ALL.h5");
  SPECDEC_CHECK(!output.empty(), "an output file: -o ALL.h5");
  results::merge(inputs, output);
  std::printf("merged %zu file(s) into %s\n", inputs.size(), output.c_str());
  return 0;
}

int cmd_repair(const std::vector<std::string>& args) {
  std::string path;
  po::options_description desc(
      "specdec repair: complete or rebuild a results log from its journal\n\n"
      "usage: specdec repair RESULTS.h5\n\n"
      "While `specdec run` writes RESULTS.h5 it keeps RESULTS.h5.journal beside it: every finished request\n"
      "goes to the journal before the HDF5 file. After a kill, the HDF5 file may lack the last request or,\n"
      "rarely, be damaged (HDF5 rewrites metadata in place). repair appends what the file lacks, or keeps a\n"
      "damaged file as RESULTS.h5.damaged and writes a new one, then closes the file cleanly; nothing is run.\n"
      "`specdec run --resume` does the same before it continues.\n\noptions");
  desc.add_options()("help,h", "show this help")("results", po::value(&path), "the results log");
  po::positional_options_description pos;
  pos.add("results", 1);
  if (!parse_options(args, desc, &pos)) return 0;
  SPECDEC_CHECK(!path.empty(), "a results log: specdec repair RESULTS.h5");
  const int64_t n = results::repair(path);
  std::printf("%s: complete, %lld request(s) over all runs\n", path.c_str(), static_cast<long long>(n));
  return 0;
}

}  // namespace specdec::cli
