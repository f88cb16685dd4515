// Timing several things that will be compared with each other on a machine whose speed drifts (a shared VM):
// in turns, call by call, so that a slow spell falls on all of them alike. `specdec bench costs` times every
// T of one (B, C) this way (the cost model weighs T against T + 1), and AR against each drafter's k.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

namespace specdec::experiments {

// What each of fs measured of its calls (each call returns its own figure, e.g. microseconds), the calls made
// in turns: f_0, f_1, ..., f_0, f_1, ... One warm-up round (discarded), then rounds until there are at least
// min_rounds and they lasted min_ms per function; per function the median of its calls (use_min: the smallest).
inline std::vector<double> timed_in_turns(const std::vector<std::function<double()>>& fs, int min_ms, bool use_min,
                                          int min_rounds = 3) {
  using Clock = std::chrono::steady_clock;
  for (const auto& f : fs) f();
  std::vector<std::vector<double>> got(fs.size());
  const auto until = Clock::now() + std::chrono::milliseconds(static_cast<int64_t>(min_ms) * std::ssize(fs));
  for (int round = 0; round < min_rounds || Clock::now() < until; ++round)
    for (size_t i = 0; i < fs.size(); ++i) got[i].push_back(fs[i]());
  std::vector<double> out;
  for (auto& g : got) {
    std::sort(g.begin(), g.end());
    out.push_back(use_min ? g.front() : g[g.size() / 2]);
  }
  return out;
}

}  // namespace specdec::experiments
