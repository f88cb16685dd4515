// Runs a command through the shell and captures stdout, stderr and the exit code (for CLI tests).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/support/assets.h"

namespace specdec::test {

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

inline std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

inline RunResult run(const std::string& cmd) {
  // Unique files per call: ctest -j runs several CLI tests at once.
  static int counter = 0;
  const auto dir = scratch_dir("run");
  const std::string tag = std::to_string(::getpid()) + "_" + std::to_string(counter++);
  const std::string out = (dir / ("stdout_" + tag)).string(), err = (dir / ("stderr_" + tag)).string();
  const int status = std::system((cmd + " >" + out + " 2>" + err + " </dev/null").c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

inline std::string specdec_bin() { return std::string(SPECDEC_BINARY_DIR) + "/experiments/specdec"; }

// Non-empty lines of s.
inline int count_lines(const std::string& s) {
  int n = 0;
  bool content = false;
  for (char c : s) {
    if (c == '\n') {
      n += content;
      content = false;
    } else {
      content = true;
    }
  }
  return n + content;
}

}  // namespace specdec::test
