// The specdec command-line tool: subcommands, each a function taking its own arguments.
// Boost.Program_options lives here only, never in the library.
#pragma once

#include <string>
#include <vector>

namespace specdec::cli {

// argv without the program and subcommand names. Returns the process exit code.
int cmd_generate(const std::vector<std::string>& args);

// Sets the number of OpenMP threads when n > 0.
void set_threads(int n);

}  // namespace specdec::cli
