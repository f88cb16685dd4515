// experiments/timed_turns.h: the calls are made in turns after one warm-up round, each function keeps the
// median (or smallest) of its own figures, and a drift of the machine's speed while they are timed leaves the
// ratio between them as it is (timed one after another it would not).
#include <catch2/catch.hpp>

#include <chrono>

#include "experiments/timed_turns.h"

using specdec::experiments::timed_in_turns;

TEST_CASE("timed_in_turns: one warm-up round, then at least three rounds in turns; median or smallest",
          "[cli][bench]") {
  std::vector<int> order;
  std::vector<std::vector<double>> figures = {{100, 5, 1, 3}, {200, 30, 10, 20}};  // the first: the warm-up
  std::vector<size_t> next(2, 0);
  std::vector<std::function<double()>> fs;
  for (int i = 0; i < 2; ++i)
    fs.emplace_back([&, i] {
      order.push_back(i);
      return figures[i][next[i]++];
    });
  const std::vector<double> median = timed_in_turns(fs, 0, false);
  CHECK(order == std::vector<int>{0, 1, 0, 1, 0, 1, 0, 1});
  CHECK(median == std::vector<double>{3, 20});  // the warm-up's 100 and 200 left out
  order.clear();
  next.assign(2, 0);
  CHECK(timed_in_turns(fs, 0, true) == std::vector<double>{1, 10});
}

TEST_CASE("timed_in_turns: a drift of the machine's speed leaves the ratio of two costs as it is", "[cli][bench]") {
  // Two "costs" of 1 and 2 units, each call's figure scaled by a slowdown that grows call by call from 1 to 3
  // over the 2 x 101 timed calls (a VM slowing down; a counted clock, so the test does not hang on the
  // machine's own speed). In turns, both medians come from neighbouring calls; timed one after another, the
  // second looks far dearer than it is.
  int calls = 0;
  const auto slowdown = [&] { return 1 + 2.0 * calls++ / 202; };
  const std::vector<std::function<double()>> fs = {[&] { return 1 * slowdown(); }, [&] { return 2 * slowdown(); }};
  const std::vector<double> us = timed_in_turns(fs, 0, false, 101);
  CHECK(us[1] / us[0] == Approx(2).epsilon(0.01));
  CHECK(us[0] > 1.9);  // the drift was there: the median call ran slowed down (by ~2x)

  calls = 0;
  const double first = timed_in_turns({fs[0]}, 0, false, 101)[0];
  const double second = timed_in_turns({fs[1]}, 0, false, 101)[0];
  CHECK(second / first > 3);  // one after another: ~3.3 instead of 2
}
