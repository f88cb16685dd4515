// Prompt sets on the real files: counts and categories of Spec-Bench, MT-Bench and GSM8K, stable ids,
// per-category limits in file order, category filters, a user's .jsonl, and one-line errors.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "experiments/prompts.h"
#include "tests/support/errors.h"
#include "tests/support/run.h"

using namespace specdec;
using namespace specdec::experiments;

namespace {

using test::error_or_empty;

std::map<std::string, int> count_categories(const std::vector<Prompt>& ps) {
  std::map<std::string, int> n;
  for (const auto& p : ps) ++n[p.category];
  return n;
}

std::string write_file(const std::string& name, const std::string& text) {
  const auto p = (test::scratch_dir("runner_prompts") / name).string();
  std::ofstream(p, std::ios::binary) << text;
  return p;
}

}  // namespace

TEST_CASE("Spec-Bench: 480 prompts in its six tasks of 80 (the 8 MT-Bench categories grouped)", "[runner][prompts]") {
  const auto ps = load_prompt_set("spec_bench");
  REQUIRE(ps.size() == 480);
  const auto n = count_categories(ps);
  CHECK(n.size() == 6);
  for (const char* c : {"mt_bench", "translation", "summarization", "qa", "math_reasoning", "rag"})
    CHECK(n.at(c) == 80);
  CHECK(ps[0].id == "spec_bench:81");
  CHECK(ps[0].set == "spec_bench");
  CHECK(ps[0].category == "mt_bench");
  CHECK(ps[0].text.rfind("Compose an engaging travel blog post about a recent trip to Hawaii", 0) == 0);
  std::set<std::string> ids;
  for (const auto& p : ps) ids.insert(p.id);
  CHECK(ids.size() == ps.size());
}

TEST_CASE("MT-Bench: 80 prompts, 8 categories of 10; the first turn", "[runner][prompts]") {
  const auto ps = load_prompt_set("mt_bench");
  REQUIRE(ps.size() == 80);
  const auto n = count_categories(ps);
  CHECK(n.size() == 8);
  for (const auto& [c, k] : n) CHECK(k == 10);
  CHECK(ps[0].id == "mt_bench:81");
  CHECK(ps[0].text.rfind("Compose an engaging", 0) == 0);
  // The second turn, on request.
  const auto second = load_prompt_set("mt_bench", {}, 1);
  CHECK(second[0].text.rfind("Rewrite your previous response", 0) == 0);
}

TEST_CASE("GSM8K: 1319 questions, category gsm8k, ids by line index", "[runner][prompts]") {
  const auto ps = load_prompt_set("gsm8k");
  REQUIRE(ps.size() == 1319);
  CHECK(count_categories(ps) == std::map<std::string, int>{{"gsm8k", 1319}});
  CHECK(ps[0].id == "gsm8k:0");
  CHECK(ps[1318].id == "gsm8k:1318");
  CHECK(ps[0].text.rfind("Janet", 0) == 0);
}

TEST_CASE("per-category limits take the first prompts in file order; ids are stable", "[runner][prompts]") {
  const auto two = load_prompts({"gsm8k", "mt_bench"}, 2, {});
  REQUIRE(two.size() == 2 + 8 * 2);
  CHECK(two[0].id == "gsm8k:0");
  CHECK(two[1].id == "gsm8k:1");
  CHECK(two[2].id == "mt_bench:81");  // writing 81, 82; roleplay 91, 92; ...
  CHECK(two[3].id == "mt_bench:82");
  CHECK(two[4].id == "mt_bench:91");
  const auto again = load_prompts({"gsm8k", "mt_bench"}, 2, {});
  for (size_t i = 0; i < two.size(); ++i) CHECK(again[i].id == two[i].id);

  // A limit is per (set, category): MT-Bench's writing and Spec-Bench's mt_bench task each keep theirs.
  const auto both = load_prompts({"spec_bench", "mt_bench"}, 1, {"writing", "mt_bench"});
  REQUIRE(both.size() == 2);
  CHECK(both[0].id == "spec_bench:81");
  CHECK(both[1].id == "mt_bench:81");

  const auto coding = load_prompts({"mt_bench", "spec_bench"}, 0, {"coding", "rag"});
  CHECK(count_categories(coding) == std::map<std::string, int>{{"coding", 10}, {"rag", 80}});

  const auto few = load_prompts({"spec_bench"}, 8, {});
  CHECK(few.size() == 6 * 8);

  CHECK_THAT(error_or_empty([] { load_prompts({"mt_bench"}, 0, {"codng"}); }),
             Catch::Contains("unknown category 'codng'") && Catch::Contains("coding"));
  CHECK_THAT(error_or_empty([] {
               load_prompts({"gsm8k", "gsm8k"}, 0, {});
             }),
             Catch::Contains("two sets named 'gsm8k'"));
}

TEST_CASE("a user's .jsonl: prompt/text fields, ids by line, category = the set", "[runner][prompts]") {
  const std::string path = write_file("mine.jsonl",
                                      "{\"prompt\": \"Once upon a time\"}\n\n"
                                      "{\"text\": \"The dog\", \"category\": \"animals\"}\n"
                                      "{\"question\": \"Why?\", \"id\": \"q7\"}\n");
  const auto ps = load_prompt_set(path);
  REQUIRE(ps.size() == 3);
  CHECK(ps[0].id == "mine:0");
  CHECK(ps[0].category == "mine");
  CHECK(ps[0].text == "Once upon a time");
  CHECK(ps[1].id == "mine:1");
  CHECK(ps[1].category == "animals");
  CHECK(ps[2].id == "mine:q7");

  const std::string bad = write_file("bad.jsonl", "{\"prompt\": \"a\"}\n{not json\n");
  std::string e = error_or_empty([&] { load_prompt_set(bad); });
  CHECK_THAT(e, Catch::Contains("bad.jsonl:2: not a JSON object"));
  CHECK(test::count_lines(e) == 1);
  const std::string no_prompt = write_file("noprompt.jsonl", "{\"answer\": \"42\"}\n");
  CHECK_THAT(error_or_empty([&] { load_prompt_set(no_prompt); }),
             Catch::Contains("noprompt.jsonl:1: no prompt (expected a field turns, question, prompt or text)"));
  const std::string dup = write_file("dup.jsonl", "{\"prompt\": \"a\", \"id\": 1}\n{\"prompt\": \"b\", \"id\": 1}\n");
  CHECK_THAT(error_or_empty([&] { load_prompt_set(dup); }), Catch::Contains("prompt id 'dup:1' appears twice"));
  CHECK_THAT(error_or_empty([] { load_prompt_set("/nonexistent/p.jsonl"); }),
             Catch::Contains("/nonexistent/p.jsonl: cannot open prompt set"));
}

TEST_CASE("set names resolve under the assets folder; relative paths fall back to the repository",
          "[runner][prompts]") {
  CHECK(prompt_set_path("gsm8k") == (assets_dir() / "data" / "prompts" / "gsm8k_test.jsonl").string());
  // A path relative to the repository root, from another working directory.
  const std::string rel = "experiments/configs/stories_smoke.ini";
  CHECK(std::filesystem::exists(find_input_file(rel)));
  CHECK(std::filesystem::exists(find_input_file("models/stories260K/tok512.bin")));  // under the assets folder
  CHECK(find_input_file("/abs/missing") == "/abs/missing");
  CHECK(find_input_file("no/such/file") == "no/such/file");
}
