// The runner's pieces without a model: the grid of runs (names, order, baselines, rules), --shard
// parsing, and the progress display in both modes.
#include <algorithm>
#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
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

TEST_CASE("batched: per batch size and load an AR baseline, then every drafter x k x policy", "[runner][grid]") {
  const auto grid = expand_grid(parse({{"run.drafters", "ngram"},
                                       {"run.k", "4"},
                                       {"run.batch_size", "1,4"},
                                       {"run.arrival_rate", "2,8"},
                                       {"run.policy", "fixed,adaptive"}}));
  std::vector<std::string> names;
  for (const auto& r : grid) names.push_back(r.name);
  CHECK(names == std::vector<std::string>{"ar_b1_r2_t0", "ngram_k4_fixed_b1_r2_t0", "ngram_k4_adaptive_b1_r2_t0",  //
                                          "ar_b1_r8_t0", "ngram_k4_fixed_b1_r8_t0", "ngram_k4_adaptive_b1_r8_t0",  //
                                          "ar_b4_r2_t0", "ngram_k4_fixed_b4_r2_t0", "ngram_k4_adaptive_b4_r2_t0",  //
                                          "ar_b4_r8_t0", "ngram_k4_fixed_b4_r8_t0", "ngram_k4_adaptive_b4_r8_t0"});
  for (const auto& r : grid) {
    INFO(r.name);
    const RunSpec& base = grid[r.baseline];
    CHECK(base.drafter == -1);
    CHECK(base.batch_size == r.batch_size);  // AR at the same batch size and load: like with like
    CHECK(base.load.kind == LoadSpec::Kind::kPoisson);
    CHECK(base.load.rate == r.load.rate);
    CHECK(base.policy.empty());
  }
  CHECK(grid[2].policy == "adaptive");
  CHECK(grid[10].batch_size == 4);
  CHECK(grid[10].load.rate == 8);

  // [run] aa_control: each AR run followed by its A/A control, compared with it, not a baseline itself.
  const auto aa = expand_grid(
      parse({{"run.drafters", "ngram"}, {"run.k", "2"}, {"run.batch_size", "1,4"}, {"run.aa_control", "true"}}));
  std::vector<std::string> aa_names;
  for (const auto& r : aa) aa_names.push_back(r.name);
  CHECK(aa_names == std::vector<std::string>{"ar_b1_t0", "ar_aa_b1_t0", "ngram_k2_b1_t0", "ar_b4_t0", "ar_aa_b4_t0",
                                             "ngram_k2_b4_t0"});
  CHECK(aa[1].aa);
  CHECK(aa[1].drafter == -1);
  CHECK(aa[1].baseline == 0);
  CHECK(aa[4].baseline == 3);
  CHECK(aa[1].compared());
  CHECK_FALSE(aa[1].is_baseline());
  CHECK(aa[3].is_baseline());
  CHECK_FALSE(aa[3].compared());
  CHECK(aa[5].baseline == 3);

  // Closed loop: no load tag; unbatched runs keep today's names.
  const auto closed = expand_grid(parse({{"run.drafters", "ngram"}, {"run.k", "2"}, {"run.batch_size", "2"}}));
  CHECK(closed[1].name == "ngram_k2_b2_t0");
  CHECK(closed[1].load.kind == LoadSpec::Kind::kClosed);
  const auto plain = expand_grid(parse({{"run.drafters", "ngram"}, {"run.k", "2"}}));
  CHECK(plain[1].name == "ngram_k2_t0");
  CHECK(plain[1].batch_size == 0);
}

TEST_CASE("interleaved turns: a seeded permutation per round, no run always after the same one", "[runner][grid]") {
  constexpr size_t n = 5;
  constexpr int rounds = 4000;
  CHECK(interleave_order(n, 3, 0) == interleave_order(n, 3, 0));
  CHECK(interleave_order(1, 3, 0) == std::vector<size_t>{0});
  CHECK(interleave_order(0, 3, 0).empty());
  int differ = 0, first0 = 0;
  int follows[n][n] = {};  // follows[i][j]: rounds in which run j's turn came right after run i's
  for (int r = 0; r < rounds; ++r) {
    const auto o = interleave_order(n, 3, r);
    auto sorted = o;
    std::sort(sorted.begin(), sorted.end());
    REQUIRE(sorted == std::vector<size_t>{0, 1, 2, 3, 4});  // a permutation
    differ += o != interleave_order(n, 4, r);
    first0 += o[0] == 0;
    for (size_t p = 1; p < n; ++p) ++follows[o[p - 1]][o[p]];
  }
  CHECK(differ > rounds / 2);  // the seed matters
  // A uniform permutation: run 0 first in 1/5 of the rounds, j right after i in 1/5 (800 of 4000, sd 25).
  CHECK(std::abs(first0 - rounds / 5) < 150);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      INFO("run " << j << " after run " << i);
      CHECK(std::abs(follows[i][j] - rounds / 5) < 150);
    }
}

TEST_CASE("arrivals: Poisson from the seed, or from a file", "[runner][grid]") {
  const auto a = poisson_arrivals(2000, 4.0, 7);
  CHECK(a == poisson_arrivals(2000, 4.0, 7));  // seeded
  CHECK(a != poisson_arrivals(2000, 4.0, 8));
  CHECK(a[0] == 0);
  double sum = 0;
  for (size_t i = 1; i < a.size(); ++i) {
    CHECK(a[i] >= a[i - 1]);
    sum += a[i] - a[i - 1];
  }
  // The mean gap of 1999 Exp(4) draws: 0.25 with a standard error of 0.25 / sqrt(1999) = 0.0056.
  CHECK(sum / 1999 == Approx(0.25).margin(0.03));

  const std::string path = (specdec::test::scratch_dir("runner_grid") / "arrivals.txt").string();
  std::ofstream(path) << "# seconds\n0\n0.5\n\n0.5\n2\n";
  CHECK(read_arrivals(path, 3) == std::vector<double>{0, 0.5, 0.5});
  CHECK(read_arrivals(path, 4) == std::vector<double>{0, 0.5, 0.5, 2});
  auto error_of = [](auto f) {
    try {
      f();
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  CHECK_THAT(error_of([&] { read_arrivals(path, 5); }), Catch::Contains(path + ": 4 arrival times for 5 requests"));
  std::ofstream(path) << "0\n1\n0.5\n";
  CHECK_THAT(error_of([&] { read_arrivals(path, 3); }),
             Catch::Contains(path + ":3: '0.5': expected an arrival time in seconds"));
  std::ofstream(path) << "0\nsoon\n";
  CHECK_THAT(error_of([&] { read_arrivals(path, 2); }), Catch::Contains(path + ":2: 'soon'"));
  CHECK_THAT(error_of([] { read_arrivals("/nonexistent/a.txt", 1); }),
             Catch::Contains("/nonexistent/a.txt: cannot open the arrivals file"));
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

TEST_CASE("the load sweep configs parse; the CUDA one is the CPU one on the GPU", "[runner][grid]") {
  const std::string dir = std::string(SPECDEC_SOURCE_DIR) + "/experiments/configs/";
  const ExperimentConfig cpu = load_experiment_config(dir + "load_sweep.ini");
  const ExperimentConfig gpu = load_experiment_config(dir + "load_sweep_cuda.ini");
  const auto grid = expand_grid(cpu);
  // 4 batch sizes x 2 arrival rates, each: AR, its A/A control + 3 drafters (ngram, medusa, eagle) x 3 draft
  // lengths x 2 policies.
  CHECK(grid.size() == 4 * 2 * 20);
  CHECK(cpu.aa_control);
  CHECK(cpu.k == std::vector<int>{1, 2, 4});
  CHECK(cpu.batch_sizes == std::vector<int>{1, 2, 4, 8});
  CHECK(cpu.policies == std::vector<std::string>{"fixed", "cost_model"});
  CHECK(cpu.device == "cpu");
  CHECK(gpu.device == "cuda");
  ExperimentConfig same = gpu;
  same.device = cpu.device;
  same.name = cpu.name;
  same.cost_table = cpu.cost_table;
  same.source = cpu.source;
  CHECK(same.to_ini() == cpu.to_ini());
}
