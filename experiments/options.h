// The command-line options that specdec generate and specdec bench (decode and verify) share, each flag
// and its help text written once: --threads and --device (every one of them), and, where a command samples,
// --temperature, --top-k, --top-p, --seed, --rule and --rule-opt. specdec run takes none of these as flags:
// its config's keys set them ([target] device and threads, [run] temperatures, ...) and --section.key=value
// overrides those (experiments/config.h). A command that wants another default than the members' sets the
// member before add_to / add_*_to: the value there is the default the help shows. Also parse_key_values.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/program_options/options_description.hpp>

#include "core/sampling/sampling.h"
#include "core/speculative/acceptance.h"
#include "experiments/cli.h"

namespace specdec::cli {

// Where the target runs: --threads, --device.
struct BackendOptions {
  int threads = 0;  // 0 = OMP_NUM_THREADS or all cores
  std::string device = "cpu";

  // Adds --threads and --device, bound to the members.
  void add_to(boost::program_options::options_description& desc);
  // After parsing: sets the OpenMP threads; an unknown device, or cuda that is not there, is a one-line
  // error naming --device and the value.
  void apply() const;
};

// How a command samples and accepts drafts: --temperature, --top-k, --top-p, --seed; --rule, --rule-opt.
struct SamplingOptions {
  SamplingParams sampling;
  uint64_t seed = 0;
  std::string rule;                    // "" = greedy at temperature 0, else speculative
  std::vector<std::string> rule_opts;  // key=value

  // Adds --temperature, --top-k, --top-p and --seed, bound to the members.
  void add_sampling_to(boost::program_options::options_description& desc);
  // Adds --rule and --rule-opt, bound to the members.
  void add_rule_to(boost::program_options::options_description& desc);
  // After parsing: a one-line error naming the sampling parameter out of range.
  void validate() const { sampling.validate(); }
  // The acceptance rule with its options, checked against the sampling parameters; throws a one-line
  // error for an unknown rule, option or a combination the rule does not take.
  std::unique_ptr<AcceptanceRule> make_rule() const;
};

// "key=value" items -> {key: value}; what names the flag in the error for an item without '='.
std::map<std::string, std::string> parse_key_values(const std::vector<std::string>& items, const std::string& what);

}  // namespace specdec::cli
