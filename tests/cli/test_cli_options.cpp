// The option group generate and bench (decode, verify) share (experiments/options.h), through the specdec
// binary: each shared flag is listed by every command that takes it with the same help text and default,
// and a bad value of it is the same one-line error in each of them.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "tests/support/run.h"

using namespace specdec::test;

namespace {

// The commands of the group, with arguments enough to get past their required options: nothing is loaded
// before the shared flags are checked, so the model file need not exist.
struct Command {
  std::string name, args;
};
const std::vector<Command> kCommands = {
    {"generate", "--model /nonexistent.gguf"},
    {"bench decode", "--model /nonexistent.gguf"},
    {"bench verify", "--model /nonexistent.gguf"},
};

// One option's entry in a Boost help text ("--device arg (=cpu)  where ..."): its first line and the
// lines it wraps onto (indented past the option column), with runs of white space made one space, as the
// column the description starts at depends on the command's longest option. "" when the flag is missing.
std::string help_entry(const std::string& help, const std::string& flag) {
  std::istringstream in(help);
  std::string entry;
  bool inside = false;
  for (std::string line; std::getline(in, line);) {
    const bool option_line = line.rfind("  -", 0) == 0;
    if (option_line) {
      if (inside) break;
      // "  --device arg" or "  -s [ --seed ] arg": the flag followed by a space
      inside = line.find(" --" + flag + " ") != std::string::npos;
    } else if (inside && line.rfind("   ", 0) != 0) {
      break;
    }
    if (inside) entry += " " + line;
  }
  std::string squeezed;
  std::istringstream words(entry);
  for (std::string w; words >> w;) squeezed += (squeezed.empty() ? "" : " ") + w;
  return squeezed;
}

// The message of a one-line error, without "specdec <command>: error: " and Boost's " (see specdec ... --help)".
std::string error_message(const RunResult& r) {
  std::string m = r.err;
  const size_t at = m.find("error: ");
  if (at != std::string::npos) m = m.substr(at + 7);
  while (!m.empty() && (m.back() == '\n' || m.back() == '\r')) m.pop_back();
  const size_t see = m.find(" (see specdec ");
  if (see != std::string::npos) m = m.substr(0, see);
  return m;
}

}  // namespace

TEST_CASE("the shared flags have the same help text and default in every command", "[cli][options]") {
  std::vector<std::string> helps;
  for (const Command& c : kCommands) {
    const RunResult r = run(specdec_bin() + " " + c.name + " --help");
    INFO(c.name << ": " << r.err);
    REQUIRE(r.exit_code == 0);
    helps.push_back(r.out);
  }
  for (const char* flag : {"threads", "device"}) {
    const std::string first = help_entry(helps[0], flag);
    INFO("--" << flag << " in " << kCommands[0].name << ": " << first);
    CHECK_THAT(first, Catch::StartsWith(std::string("--") + flag + " arg (="));
    for (size_t i = 1; i < kCommands.size(); ++i) {
      INFO(kCommands[i].name);
      CHECK(help_entry(helps[i], flag) == first);
    }
  }
  // The sampling and rule flags: generate's (bench does not sample).
  for (const char* flag : {"temperature", "top-k", "top-p", "seed", "rule", "rule-opt"}) {
    INFO("--" << flag);
    CHECK_THAT(help_entry(helps[0], flag), Catch::Contains(std::string("--") + flag + " ") && Catch::Contains(" arg"));
  }
  CHECK_THAT(help_entry(helps[0], "device"), Catch::Contains("cpu | cuda | cuda:N"));
}

TEST_CASE("a bad value of a shared flag is the same one-line error in every command", "[cli][options]") {
  struct Bad {
    std::string flags, expect;
  };
  const std::vector<Bad> bad = {
      {"--device nope", "unknown device 'nope' (--device)"},
      {"--threads many", "'--threads' is invalid"},
  };
  for (const Bad& b : bad) {
    std::string first;
    for (const Command& c : kCommands) {
      const RunResult r = run(specdec_bin() + " " + c.name + " " + c.args + " " + b.flags);
      INFO(c.name << " " << b.flags << ": " << r.err);
      CHECK(r.exit_code != 0);
      CHECK(r.exit_code < 128);  // an error exit, not a crash
      CHECK(count_lines(r.err) == 1);
      CHECK_THAT(r.err, Catch::Contains(b.expect));
      if (first.empty())
        first = error_message(r);
      else
        CHECK(error_message(r) == first);
    }
  }
  // The sampling flags, in the one command that takes them: a one-line error naming the parameter.
  const std::vector<Bad> bad_sampling = {
      {"--temperature -1", "temperature must be a finite number >= 0 (0 = greedy), got -1"},
      {"--top-k -2", "top_k must be >= 0 (0 = off), got -2"},
      {"--top-p 0", "top_p must be in (0, 1] (1 = off), got 0"},
  };
  for (const Bad& b : bad_sampling) {
    const RunResult r = run(specdec_bin() + " generate " + kCommands[0].args + " " + b.flags);
    INFO(b.flags << ": " << r.err);
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code < 128);
    CHECK(count_lines(r.err) == 1);
    CHECK_THAT(r.err, Catch::Contains(b.expect));
  }
}
