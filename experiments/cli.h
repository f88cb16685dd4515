// The specdec command-line tool: subcommands, each a function taking its own arguments.
// Boost.Program_options lives here only, never in the library.
#pragma once

#include <string>
#include <vector>

#include <boost/program_options/options_description.hpp>
#include <boost/program_options/positional_options.hpp>

namespace specdec::cli {

// argv without the program and subcommand names. Returns the process exit code.
int cmd_generate(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);         // experiments/cmd_report.cpp
int cmd_run(const std::vector<std::string>& args);            // experiments/cmd_run.cpp
int cmd_merge(const std::vector<std::string>& args);          // experiments/cmd_merge.cpp
int cmd_repair(const std::vector<std::string>& args);         // experiments/cmd_merge.cpp
int cmd_submit(const std::vector<std::string>& args);         // experiments/cmd_submit.cpp
int cmd_list_drafters(const std::vector<std::string>& args);  // experiments/cmd_list_drafters.cpp
int cmd_list_rules(const std::vector<std::string>& args);     // experiments/cmd_list_drafters.cpp
int cmd_collect(const std::vector<std::string>& args);        // experiments/cmd_collect.cpp
int cmd_train(const std::vector<std::string>& args);          // experiments/cmd_train.cpp

// The helpers below are defined in experiments/options.cpp, beside the option group the commands share.

// Sets the number of OpenMP threads when n > 0.
void set_threads(int n);

// Parses a subcommand's args against desc (and pos, if given, for positional arguments). With --help:
// prints desc and returns false (the subcommand then returns 0); otherwise stores the values in the
// variables desc binds, checks the required options (throws) and returns true.
bool parse_options(const std::vector<std::string>& args, const boost::program_options::options_description& desc,
                   const boost::program_options::positional_options_description* pos = nullptr);

}  // namespace specdec::cli
