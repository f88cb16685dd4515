// The runner's pieces without a model: the grid of runs (names, order, baselines, rules), --shard
// parsing, and the progress display in both modes.
#include <catch2/catch.hpp>

#include <cstdio>
#include <sstream>

#include "core/error.h"
#include "experiments/progress.h"
#include "experiments/runner.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::experiments;

namespace {

ExperimentConfig parse(const std::vector<ConfigOverride>& overrides) {
  std::istringstream in(
      "[target]\nmodel = m.bin\n[run]\ndrafters = ngram, oracle\nk = 2, 4\n[prompts]\nsets = gsm8k\n");
  return parse_experiment_config(in, "grid.ini", overrides);
}

std::string read_file(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s.push_back(static_cast<char>(c));
  return s;
}

}  // namespace

TEST_CASE("the grid: per temperature the AR baseline, then every drafter x k", "[runner][grid]") {
  const auto grid = expand_grid(parse({{"run.temperatures", "0, 0.7"}}));
  std::vector<std::string> names;
  for (const auto& r : grid) names.push_back(r.name);
  CHECK(names == std::vector<std::string>{"ar_t0", "ngram_k2_t0", "ngram_k4_t0", "oracle_k2_t0", "oracle_k4_t0",
                                          "ar_t0.7", "ngram_k2_t0.7", "ngram_k4_t0.7", "oracle_k2_t0.7",
                                          "oracle_k4_t0.7"});
  for (const auto& r : grid) {
    INFO(r.name);
    const RunSpec& base = grid[r.baseline];
    CHECK(base.drafter == -1);
    CHECK(base.temperature == r.temperature);
    CHECK(base.seed == r.seed);
    CHECK(r.rule == (r.temperature == 0.f ? "greedy" : "speculative"));
  }
  CHECK(grid[0].k == 0);
  CHECK(grid[2].drafter == 0);
  CHECK(grid[2].k == 4);
  CHECK(grid[3].drafter == 1);
  CHECK(grid[6].baseline == 5);

  const auto typical = expand_grid(parse({{"run.rule", "typical"}}));
  for (const auto& r : typical) CHECK(r.rule == "typical");
}

TEST_CASE("several seeds name the runs _s<seed>, each with its own baseline", "[runner][grid]") {
  const auto grid = expand_grid(parse({{"run.seeds", "3,5"}, {"run.drafters", "ngram"}, {"run.k", "2"}}));
  std::vector<std::string> names;
  for (const auto& r : grid) names.push_back(r.name);
  CHECK(names == std::vector<std::string>{"ar_t0_s3", "ngram_k2_t0_s3", "ar_t0_s5", "ngram_k2_t0_s5"});
  CHECK(grid[3].baseline == 2);
  CHECK(grid[3].seed == 5);

  const auto ar_only = expand_grid(parse({{"run.drafters", ""}}));
  REQUIRE(ar_only.size() == 1);
  CHECK(ar_only[0].name == "ar_t0");
}

TEST_CASE("--shard i/n", "[runner][grid]") {
  CHECK(parse_shard("0/1") == std::pair<int, int>{0, 1});
  CHECK(parse_shard("3/4") == std::pair<int, int>{3, 4});
  for (const char* bad : {"4/4", "-1/4", "1/0", "1", "a/b", "1/2/3", "1/2x", ""}) {
    INFO(bad);
    try {
      parse_shard(bad);
      FAIL("no error");
    } catch (const Error& e) {
      CHECK_THAT(e.what(), Catch::Contains("--shard as i/n") && Catch::Contains(std::string("'") + bad + "'"));
    }
  }
}

TEST_CASE("progress: an updating line on a terminal, plain lines otherwise", "[runner][progress]") {
  CHECK(Progress::format_duration(0) == "0:00");
  CHECK(Progress::format_duration(75) == "1:15");
  CHECK(Progress::format_duration(3725) == "1:02:05");
  CHECK(Progress::detect(true) == Progress::Mode::kQuiet);

  FILE* term = std::tmpfile();
  {
    Progress p(Progress::Mode::kTerminal, 4, 1, term);
    p.pair_done(10, "ar_t0 gsm8k:0");
    p.note("note: something");
    p.pair_done(10, "ngram_k2_t0 gsm8k:0");
    p.pair_done(10, "ngram_k4_t0 gsm8k:0");
    p.request_done("gsm8k:0");
    p.finish();
  }
  const std::string t = read_file(term);
  std::fclose(term);
  CHECK_THAT(t, Catch::Contains("\r[") && Catch::Contains("4/4 (100%)") && Catch::Contains("tok/s") &&
                    Catch::Contains("elapsed") && Catch::Contains("ETA") && Catch::Contains("note: something\n") &&
                    Catch::Contains("[########################]"));
  CHECK(t.back() == '\n');

  FILE* plain = std::tmpfile();
  {
    Progress p(Progress::Mode::kPlain, 4, 2, plain);
    p.pair_done(5, "ar_t0 gsm8k:1");
    p.pair_done(5, "ngram_k2_t0 gsm8k:1");
    p.request_done("gsm8k:1 (gsm8k)");
    p.finish();
  }
  const std::string s = read_file(plain);
  std::fclose(plain);
  CHECK(s.find('\r') == std::string::npos);
  CHECK_THAT(s, Catch::Contains("progress: 2/4 already finished (resumed)\n") &&
                    Catch::Contains("progress: 4/4 (100%)") && Catch::Contains("done gsm8k:1 (gsm8k)\n") &&
                    Catch::Contains("finished\n"));
  CHECK(test::count_lines(s) == 3);

  FILE* quiet = std::tmpfile();
  {
    Progress p(Progress::Mode::kQuiet, 1, 0, quiet);
    p.pair_done(1, "x");
    p.request_done("x");
    p.finish();
  }
  CHECK(read_file(quiet).empty());
  std::fclose(quiet);
}
