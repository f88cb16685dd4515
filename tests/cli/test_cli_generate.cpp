// specdec generate end to end: help texts, generated text, and one-line errors for bad input.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "tests/support/run.h"

using namespace specdec::test;

namespace {

std::string generate_cmd(const std::string& model, const std::string& tokenizer, const std::string& extra = "") {
  return specdec_bin() + " generate --model '" + model + "' --tokenizer '" + tokenizer + "' " + extra;
}

std::string write_bytes(const std::string& name, const std::string& bytes) {
  const auto p = (scratch_dir("cli") / name).string();
  std::ofstream(p, std::ios::binary) << bytes;
  return p;
}

}  // namespace

TEST_CASE("specdec --help and generate --help explain every option", "[cli]") {
  auto top = run(specdec_bin() + " --help");
  REQUIRE(top.exit_code == 0);
  REQUIRE_THAT(top.out, Catch::Contains("generate"));
  auto gen = run(specdec_bin() + " generate --help");
  REQUIRE(gen.exit_code == 0);
  for (const char* opt : {"--model", "--tokenizer", "--prompt", "--max-new-tokens", "--temperature", "--top-k",
                          "--top-p", "--seed", "--threads", "--chat"})
    REQUIRE_THAT(gen.out, Catch::Contains(opt));
  auto unknown = run(specdec_bin() + " frobnicate");
  REQUIRE(unknown.exit_code != 0);
  REQUIRE_THAT(unknown.err, Catch::Contains("unknown command 'frobnicate'"));
}

TEST_CASE("specdec generate streams the golden text and ends with tokens/s", "[cli]") {
  const auto r = run(generate_cmd(stories_model(), stories_tokenizer(), "--max-new-tokens 200"));
  REQUIRE(r.exit_code == 0);
  const std::string golden = slurp(asset("models/stories260K/golden_greedy_bos_200.txt"));
  REQUIRE(r.out == golden);
  REQUIRE_THAT(r.err, Catch::Contains("200 new tokens") && Catch::Contains("tok/s"));

  const auto p = run(generate_cmd(stories_model(), stories_tokenizer(),
                                  "--prompt 'Once upon a time' -n 20 --temperature 0.8 --seed 7"));
  const auto q = run(generate_cmd(stories_model(), stories_tokenizer(),
                                  "--prompt 'Once upon a time' -n 20 --temperature 0.8 --seed 7"));
  REQUIRE(p.exit_code == 0);
  REQUIRE(p.out.rfind("Once upon a time", 0) == 0);
  REQUIRE(p.out == q.out);  // same seed, same text
}

TEST_CASE("bad input gives a one-line error naming the file and a non-zero exit", "[cli][badinput]") {
  const std::string model_bytes = slurp(stories_model());
  struct Case {
    std::string name, model, tokenizer, expect;
  };
  std::vector<Case> cases = {
      {"truncated checkpoint", write_bytes("trunc.bin", model_bytes.substr(0, model_bytes.size() / 2)),
       stories_tokenizer(), "truncated"},
      {"wrong magic", write_bytes("magic.bin", "XXXX" + model_bytes.substr(4)), stories_tokenizer(), "magic"},
      {"missing tokenizer", stories_model(), "/nonexistent/tok512.bin", "/nonexistent/tok512.bin"},
      {"tokenizer of another size", stories_model(),
       write_bytes("tok_small.bin", slurp(stories_tokenizer()).substr(0, 3000)), "tok_small.bin"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    const auto r = run(generate_cmd(c.model, c.tokenizer, "-n 5"));
    CHECK(r.exit_code != 0);
    CHECK(r.exit_code < 128);  // an error exit, not a crash signal
    CHECK_THAT(r.err, Catch::Contains(c.expect));
    CHECK(count_lines(r.err) == 1);
  }
  const auto bad_opt = run(specdec_bin() + " generate --model x --temperature -1");
  CHECK(bad_opt.exit_code != 0);
  CHECK(count_lines(bad_opt.err) == 1);
  const auto long_prompt = run(
      generate_cmd(stories_model(), stories_tokenizer(), "--prompt \"$(printf 'a b c d %.0s' $(seq 1 300))\" -n 5"));
  CHECK(long_prompt.exit_code != 0);
  CHECK_THAT(long_prompt.err, Catch::Contains("context of 512"));
  CHECK(count_lines(long_prompt.err) == 1);
}
