// specdec report RESULTS.h5 [--plots DIR] [--csv FILE] ...: the tables and plots of a results log.
// The analysis lives in Python (experiments/report/specdec_report.py, shared with the notebooks); this
// subcommand runs it with the project's venv interpreter.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "core/error.h"
#include "experiments/cli.h"

namespace specdec::cli {

int cmd_report(const std::vector<std::string>& args) {
  namespace fs = std::filesystem;
  const fs::path root = SPECDEC_SOURCE_DIR;
  const fs::path script = root / "experiments/report/specdec_report.py";
  SPECDEC_CHECK(fs::exists(script), script.string(), ": the report script is missing (is this a full checkout?)");
  std::string python = "python3";
  if (const char* env = std::getenv("SPECDEC_PYTHON"); env && *env)
    python = env;
  else if (fs::exists(root / ".venv/bin/python"))
    python = (root / ".venv/bin/python").string();
  std::vector<std::string> argv_s = {python, script.string()};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  ::execvp(argv[0], argv.data());
  SPECDEC_FAIL(python,
               ": cannot run the report interpreter (run scripts/setup to create .venv, or set SPECDEC_PYTHON)");
}

}  // namespace specdec::cli
