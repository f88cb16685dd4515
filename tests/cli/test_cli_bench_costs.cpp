// specdec bench costs through the binary: on stories260K with a tiny grid it writes a cost table that
// CostTable::load reads back with the requested grids, a positive forward cost at every point and a drafter row
// per requested drafter reaching --k-max (times are noisy: only structure and signs are checked, never timings);
// a progress line per point; bad lists and names are one-line errors before anything is timed.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "core/speculative/policy.h"
#include "tests/support/run.h"

using namespace specdec::test;

namespace {

std::string costs_cmd(const std::string& extra) {
  return specdec_bin() + " bench costs --model '" + stories_model() + "' --tokenizer '" + stories_tokenizer() +
         "' --min-ms 0 " + extra;
}

}  // namespace

TEST_CASE("bench costs writes a cost table CostTable::load reads", "[cli][bench]") {
  const std::string out = (scratch_dir("cli_bench_costs") / "sub" / "costs.json").string();
  std::filesystem::remove_all(std::filesystem::path(out).parent_path());
  const auto r =
      run(costs_cmd("--tokens 1,2,5 --batch 1,3 --context 0,16,40 --drafters ngram,early_exit --k-max 3 "
                    "--new-tokens 12 --out '" +
                    out + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // One progress line per point: 3 x 2 x 3 forwards and 2 x 3 drafter points.
  CHECK(count_lines(r.err) == 24);
  CHECK_THAT(r.err, Catch::Contains("[24/24] drafter early_exit k=3"));
  CHECK_THAT(r.out, Catch::Contains("C=40") && Catch::Contains("B=3") && Catch::Contains("early_exit"));
  CHECK_THAT(r.out, Catch::Contains("wrote " + out));

  const specdec::CostTable t = specdec::CostTable::load(out);
  CHECK(t.tokens == std::vector<int>{1, 2, 5});
  CHECK(t.batch == std::vector<int>{1, 3});
  CHECK(t.context == std::vector<int>{0, 16, 40});
  REQUIRE(t.forward.size() == 3 * 2 * 3);
  for (double us : t.forward) CHECK(us > 0);
  for (int T : t.tokens)
    for (int B : t.batch)
      for (int C : t.context) CHECK(t.forward_us(T, B, C) > 0);
  REQUIRE(t.drafters.size() == 2);
  for (const char* name : {"ngram", "early_exit"}) {
    INFO(name);
    REQUIRE(t.drafters.count(name) == 1);
    CHECK(t.drafter_k_max(name) == 3);
    CHECK(t.drafter_us(name, 0) == 0);
    for (int k = 1; k <= 3; ++k) CHECK(t.drafter_us(name, k) >= 0);
  }
  CHECK_THAT(t.source, Catch::Contains("stories260K"));
  // The table is usable by the policy that reads it.
  CHECK(specdec::make_policy("cost_model k_max=3", {.costs = &t, .drafter = "ngram"}) != nullptr);

  // No drafters: no tokenizer needed.
  const auto none = run(specdec_bin() + " bench costs --model '" + stories_model() +
                        "' --min-ms 0 --tokens 1 --batch 1 --context 8 --drafters '' --out '" + out + "'");
  INFO(none.err);
  REQUIRE(none.exit_code == 0);
  CHECK(specdec::CostTable::load(out).drafters.empty());
}

TEST_CASE("bench costs: help, and one-line errors for bad lists and names", "[cli][bench][badinput]") {
  const auto help = run(specdec_bin() + " bench costs --help");
  CHECK(help.exit_code == 0);
  for (const char* opt :
       {"--tokens", "--batch", "--context", "--drafters", "--drafter-opt", "--k-max", "--out", "--device"})
    CHECK_THAT(help.out, Catch::Contains(opt));
  CHECK_THAT(run(specdec_bin() + " bench --help").out, Catch::Contains("bench costs"));

  // Each bad argument: an error exit (not a crash) whose stderr is one line holding the expected text.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"--tokens 1,x", "--tokens = '1,x'"},
      {"--tokens 0,1", "--tokens"},
      {"--batch 2,1", "--batch = '2,1'"},
      {"--batch ''", "--batch"},
      {"--context=-1,4", "--context"},
      {"--context 64,600", "the model's context of 512"},
      {"--drafters ngram,nope --context 8", "nope"},
      {"--drafters ngram,draft_model --context 8", "draft_model"},
      {"--k-max 0 --context 8", "--k-max"},
      {"--stat mean --context 8", "--stat"},
      // -o NAME.KEY=VALUE reaches the drafter: its unknown key is the drafter's own error
      {"--drafters ngram --context 8 -o ngram.bogus=1", "bogus"},
      {"--drafters ngram --context 8 -o max_n=3", "NAME.KEY=VALUE"},
      {"--drafters ngram --context 8 -o medusa.heads=x", "'medusa' is not in --drafters"},
  };
  for (const auto& [args, expect] : bad) {
    const auto r = run(costs_cmd(args));
    INFO(args << ": " << r.err);
    CHECK((r.exit_code > 0 && r.exit_code < 128));
    CHECK(count_lines(r.err) == 1);  // non-empty lines
    CHECK_THAT(r.err, Catch::Contains(expect));
  }
}
