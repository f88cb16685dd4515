// specdec bench costs through the binary: on stories260K with a tiny grid it writes a cost table that
// CostTable::load reads back with the requested grids, a positive forward cost at every point and a drafter row
// per requested drafter reaching --k-max (times are noisy: only structure and signs are checked, never timings);
// a progress line per point and pass; with --fit monotone (the default) costs never fall as T, B, C or k grow;
// bad lists and names are one-line errors before anything is timed; a drafter that reads its prompt lazily
// (eagle) gets a backlog price, the others none. bench verify --ragged: a row per ragged batch, priced by the
// cost table's ragged_forward_us over uniform blocks timed with it.
#include <catch2/catch.hpp>

#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "core/speculative/policy.h"
#include "tests/eagle_drafter/fitted_eagle.h"
#include "tests/support/run.h"

using namespace specdec::test;

namespace {

std::string costs_cmd(const std::string& extra) {
  return specdec_bin() + " bench costs --model '" + stories_model() + "' --tokenizer '" + stories_tokenizer() +
         "' --min-ms 0 " + extra;
}

}  // namespace

TEST_CASE("bench costs prices the backlog of a drafter that reads its prompt lazily", "[cli][bench]") {
  const std::string out = (scratch_dir("cli_bench_costs_backlog") / "costs.json").string();
  const auto r =
      run(costs_cmd("--tokens 1,2 --batch 1 --context 0 --drafters ngram,eagle --k-max 1 --new-tokens 12 "
                    "--passes 1 -o eagle.weights='" +
                    fitted_eagle_weights() + "' --out '" + out + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("eagle reads its backlog"));
  const specdec::CostTable t = specdec::CostTable::load(out);
  REQUIRE(t.drafters_backlog.size() == 1);  // ngram reads what it is handed at once: no entry
  REQUIRE(t.drafters_backlog.count("eagle") == 1);
  CHECK(t.drafters_backlog.at("eagle") > 0);
  CHECK(t.backlog_us("eagle", 10) == Approx(10 * t.drafters_backlog.at("eagle")));
}

TEST_CASE("bench costs writes a cost table CostTable::load reads", "[cli][bench]") {
  const std::string out = (scratch_dir("cli_bench_costs") / "sub" / "costs.json").string();
  std::filesystem::remove_all(std::filesystem::path(out).parent_path());
  const auto r =
      run(costs_cmd("--tokens 1,2,5 --batch 1,3 --context 0,16,40 --drafters ngram,early_exit --k-max 3 "
                    "--new-tokens 12 --passes 2 --out '" +
                    out + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // One progress line per point and pass: 3 x 2 x 3 forwards, 2 x 3 drafter points and early exit's 3 at
  // B = 3 (it drafts batched: Drafter::batch_key; ngram does not), twice.
  CHECK(count_lines(r.err) == 54);
  CHECK_THAT(r.err, Catch::Contains("[1/54] pass 1/2 forward") && Catch::Contains("[24/54] pass 1/2 drafter "
                                                                                  "early_exit k=3"));
  CHECK_THAT(r.err, Catch::Contains("[27/54] pass 1/2 drafter early_exit k=3 B=3: "));
  CHECK_THAT(r.err, Catch::Contains("[54/54] pass 2/2 drafter early_exit k=3 B=3"));
  CHECK_THAT(r.out, Catch::Contains("early_exit drafting batched"));
  CHECK_THAT(r.out, Catch::Contains("C=40") && Catch::Contains("B=3") && Catch::Contains("early_exit"));
  CHECK_THAT(r.out, Catch::Contains("passes: 2") && Catch::Contains("monotone fit: "));
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
  CHECK_THAT(t.source, Catch::Contains("stories260K") && Catch::Contains("median of 2 pass(es), monotone fit"));
  // The monotone fit: never cheaper with more tokens, sequences or context, nor with a longer draft.
  for (size_t ti = 0; ti < 3; ++ti)
    for (size_t bi = 0; bi < 2; ++bi)
      for (size_t ci = 0; ci < 3; ++ci) {
        const double here = t.forward_us(t.tokens[ti], t.batch[bi], t.context[ci]);
        if (ti + 1 < 3) CHECK(t.forward_us(t.tokens[ti + 1], t.batch[bi], t.context[ci]) >= here);
        if (bi + 1 < 2) CHECK(t.forward_us(t.tokens[ti], t.batch[bi + 1], t.context[ci]) >= here);
        if (ci + 1 < 3) CHECK(t.forward_us(t.tokens[ti], t.batch[bi], t.context[ci + 1]) >= here);
      }
  for (const auto& [name, row] : t.drafters)
    for (size_t k = 1; k < row.size(); ++k) CHECK(row[k] >= row[k - 1]);
  REQUIRE(t.drafters_batched.size() == 1);
  REQUIRE(t.drafters_batched.count("early_exit") == 1);
  REQUIRE(t.drafters_batched.at("early_exit").size() == 1);
  const std::vector<double>& b3 = t.drafters_batched.at("early_exit").at(3);
  REQUIRE(b3.size() == 4);
  CHECK(b3[0] == 0);
  for (size_t k = 1; k < b3.size(); ++k) CHECK(b3[k] >= b3[k - 1]);
  CHECK(t.drafter_us("early_exit", 2, 3) == b3[2]);
  // The table is usable by the policy that reads it.
  CHECK(specdec::make_policy("cost_model k_max=3", {.costs = &t, .drafter = "ngram"}) != nullptr);

  // No drafters: no tokenizer needed.
  const auto none =
      run(specdec_bin() + " bench costs --model '" + stories_model() +
          "' --min-ms 0 --tokens 1 --batch 1 --context 8 --drafters '' --passes 1 --fit none --out '" + out + "'");
  INFO(none.err);
  REQUIRE(none.exit_code == 0);
  CHECK(count_lines(none.err) == 1);
  CHECK_THAT(none.err, Catch::Contains("[1/1] forward T=1 B=1 C=8"));
  CHECK_THAT(none.out, Catch::Contains("as measured (--fit none)"));
  CHECK(specdec::CostTable::load(out).drafters.empty());
}

TEST_CASE("bench costs --acceptance-prompts: each drafter's acceptance by position on training prompts",
          "[cli][bench]") {
  const std::string out = (scratch_dir("cli_bench_costs_acceptance") / "costs.json").string();
  const auto r =
      run(costs_cmd("--tokens 1,2 --batch 1 --context 0 --drafters ngram,early_exit --k-max 3 "
                    "--new-tokens 16 --passes 1 --acceptance-prompts data/train/gsm8k_train.jsonl,"
                    "data/train/self_instruct_user_oriented.jsonl --acceptance-per-file 2 --out '" +
                    out + "'"));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("acceptance by position on training prompts"));
  const specdec::CostTable t = specdec::CostTable::load(out);
  REQUIRE(t.acceptance.size() == 2);
  for (const char* name : {"ngram", "early_exit"}) {
    const std::vector<double>& a = t.acceptance.at(name);
    REQUIRE(a.size() == 3);  // positions 1 .. --k-max
    for (double x : a) CHECK((x >= 0 && x <= 1));
  }
  // Early exit on stories260K (its exit layer's argmax) agrees with the target often: positions 1.. are
  // accepted at a rate between "never" and "always".
  CHECK(t.acceptance.at("early_exit")[0] > 0);
  CHECK(t.acceptance.at("early_exit")[0] < 1);
  CHECK_THAT(t.acceptance_source, Catch::Contains("gsm8k_train.jsonl (2)") &&
                                      Catch::Contains("self_instruct_user_oriented.jsonl (2)") &&
                                      Catch::Contains("drafted steps: ngram ") && Catch::Contains(" early_exit "));

  // An evaluation set is refused before anything is timed, naming the file; so is a bad count.
  const auto refused =
      run(costs_cmd("--tokens 1 --batch 1 --context 0 --drafters ngram --k-max 1 --passes 1 "
                    "--acceptance-prompts data/prompts/spec_bench_question.jsonl --out '" +
                    out + "'"));
  CHECK((refused.exit_code > 0 && refused.exit_code < 128));
  CHECK(count_lines(refused.err) == 1);
  CHECK_THAT(refused.err, Catch::Contains("spec_bench_question.jsonl") && Catch::Contains("refused as training data"));
  const auto none = run(costs_cmd("--tokens 1 --batch 1 --context 0 --drafters '' --acceptance-prompts x.jsonl"));
  CHECK(count_lines(none.err) == 1);
  CHECK_THAT(none.err, Catch::Contains("--acceptance-prompts needs at least one drafter"));
}

TEST_CASE("bench costs: help, and one-line errors for bad lists and names", "[cli][bench][badinput]") {
  const auto help = run(specdec_bin() + " bench costs --help");
  CHECK(help.exit_code == 0);
  for (const char* opt : {"--tokens", "--batch", "--context", "--drafters", "--drafter-opt", "--k-max", "--passes",
                          "--fit", "--out", "--device"})
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
      {"--passes 0 --context 8", "--passes >= 1, got 0"},
      {"--fit cubic --context 8", "--fit monotone or none, got 'cubic'"},
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

TEST_CASE("bench verify --ragged times a ragged batch against the cost table's price for it", "[cli][bench]") {
  const auto r = run(specdec_bin() + " bench verify --model '" + stories_model() +
                     "' --batch 2 --max-k 1 --context 16 --min-ms 0 --llamacpp off --ragged 1,3 --ragged 2,2,1");
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  // One row per --ragged: its blocks, B, N and two positive times (never compared: timings are noise here).
  std::istringstream in(r.out.substr(r.out.find("ragged batches")));
  std::map<std::string, std::vector<double>> rows;
  for (std::string line; std::getline(in, line);) {
    std::istringstream f(line);
    std::string blocks;
    double b = 0, n = 0, measured = 0, priced = 0, ratio = 0;
    if (f >> blocks >> b >> n >> measured >> priced >> ratio) rows[blocks] = {b, n, measured, priced, ratio};
  }
  REQUIRE(rows.size() == 2);
  CHECK(rows.at("1,3")[0] == 2);
  CHECK(rows.at("1,3")[1] == 4);
  CHECK(rows.at("2,2,1")[0] == 3);
  CHECK(rows.at("2,2,1")[1] == 5);
  for (const auto& [blocks, v] : rows) {
    INFO(blocks);
    CHECK(v[2] > 0);
    CHECK(v[3] > 0);
    CHECK(v[4] == Approx(v[2] / v[3]).epsilon(0.01));
  }
  // A block of no tokens is a one-line error naming the option.
  const auto bad = run(specdec_bin() + " bench verify --model '" + stories_model() + "' --ragged 1,0");
  CHECK(bad.exit_code != 0);
  CHECK_THAT(bad.err, Catch::Contains("--ragged as a comma-separated list of integers >= 1, got '1,0'"));
  CHECK(count_lines(bad.err) == 1);
}
