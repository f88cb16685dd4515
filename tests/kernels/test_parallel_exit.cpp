// The pool's workers at process exit. Its own executable: a child must be forked before this process
// has any worker threads (a fork copies the pool's thread handles, not its threads).
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

#include "kernels/cpu/parallel.h"

using specdec::cpu::parallel_for;

// A process that exits right after its first parallel call must not hang: its workers may first run
// after the pool's destructor has bumped the generation they wait on (it hung at exit once in ~50 runs
// of this file before the workers also watched the stop flag). Each child makes the pool grow and
// exits at once; a child still alive after 10 s is a hang.
TEST_CASE("a process exits promptly right after growing the pool", "[kernels]") {
  constexpr int kChildren = 100;
  int hung = 0, failed = 0;
  for (int c = 0; c < kChildren; ++c) {
    std::cout.flush();  // a child's exit flushes what it inherited: nothing to print twice
    std::fflush(nullptr);
    const pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      std::atomic<int> sum{0};
      parallel_for(
          64, [&](int i) { sum += i; }, 8);
      std::exit(sum.load() == 64 * 63 / 2 ? 0 : 3);  // runs the static destructors, as main's return does
    }
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    pid_t r = 0;
    while ((r = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (r == 0) {
      ++hung;
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      break;  // one hang is enough to fail
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      ++failed;
    }
  }
  CHECK(failed == 0);
  REQUIRE(hung == 0);
}
