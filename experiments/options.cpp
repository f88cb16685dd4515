// The option group generate and bench share (options.h), and the CLI's parsing helpers of cli.h.
#include "experiments/options.h"

#include <omp.h>

#include <iostream>

#include <boost/program_options.hpp>

#include "core/error.h"
#include "experiments/backend.h"
#include "verifiers/rules.h"

namespace po = boost::program_options;

namespace specdec::cli {

void BackendOptions::add_to(po::options_description& desc) {
  desc.add_options()("threads", po::value(&threads)->default_value(threads),
                     "CPU threads; 0 = OMP_NUM_THREADS or all cores")(
      "device", po::value(&device)->default_value(device),
      "where the target (and any model-based drafter) runs: cpu | cuda | cuda:N (needs a CUDA build and a GPU)");
}

void BackendOptions::apply() const {
  set_threads(threads);
  experiments::check_device(device);
}

void SamplingOptions::add_sampling_to(po::options_description& desc) {
  desc.add_options()("temperature", po::value(&sampling.temperature)->default_value(sampling.temperature),
                     "sampling temperature; 0 = greedy")(
      "top-k", po::value(&sampling.top_k)->default_value(sampling.top_k), "keep the k most likely tokens; 0 = off")(
      "top-p", po::value(&sampling.top_p)->default_value(sampling.top_p), "nucleus sampling mass; 1 = off")(
      "seed,s", po::value(&seed)->default_value(seed), "random seed (sampling at temperature > 0)");
}

void SamplingOptions::add_rule_to(po::options_description& desc) {
  desc.add_options()("rule", po::value(&rule)->default_value(rule),
                     "acceptance rule (specdec list-rules; default: greedy at temperature 0, else speculative)")(
      "rule-opt", po::value(&rule_opts)->composing(),
      "an acceptance rule option key=value (repeatable), e.g. "
      "--rule typical --rule-opt epsilon=0.05");
}

std::unique_ptr<AcceptanceRule> SamplingOptions::make_rule() const {
  const std::string name = !rule.empty() ? rule : sampling.greedy() ? "greedy" : "speculative";
  auto r =
      verifiers::make_acceptance_rule(name, DrafterOptions(parse_key_values(rule_opts, "--rule-opt"), "rule." + name));
  r->check(sampling);
  return r;
}

void set_threads(int n) {
  if (n > 0) omp_set_num_threads(n);
}

bool parse_options(const std::vector<std::string>& args, const po::options_description& desc,
                   const po::positional_options_description* pos) {
  po::command_line_parser parser(args);
  parser.options(desc);
  if (pos) parser.positional(*pos);
  po::variables_map vm;
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    std::cout << desc << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

std::map<std::string, std::string> parse_key_values(const std::vector<std::string>& items, const std::string& what) {
  std::map<std::string, std::string> kv;
  for (const auto& item : items) {
    const size_t eq = item.find('=');
    SPECDEC_CHECK(eq != std::string::npos && eq > 0, what, " as key=value, got '", item, "'");
    kv[item.substr(0, eq)] = item.substr(eq + 1);
  }
  return kv;
}

}  // namespace specdec::cli
