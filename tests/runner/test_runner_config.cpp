// specdec run configs: INI + --section.key=value overrides, and a one-line error naming the key (with the
// closest known one) for every mistake: unknown keys and sections, bad values, unknown drafters, misspelt
// drafter options.
#include <catch2/catch.hpp>

#include <sstream>

#include "core/error.h"
#include "drafters/register_builtin.h"
#include "experiments/config.h"
#include "tests/support/errors.h"
#include "tests/support/run.h"
#include "verifiers/rules.h"

using namespace specdec;
using namespace specdec::experiments;

namespace {

using test::error_or_empty;

const char* kBase = R"(# a comment
[target]
model = models/stories260K/stories260K.bin
tokenizer = models/stories260K/tok512.bin

[run]
name = t1
drafters = ngram, ee
k = 2,4
temperatures = 0, 0.7
max_new_tokens = 16

[prompts]
sets = gsm8k
per_category = 3

[drafter.ngram]
max_n = 4

[drafter.ee]
type = early_exit
layers = 2
)";

ExperimentConfig parse(const std::string& text, const std::vector<ConfigOverride>& overrides = {}) {
  std::istringstream in(text);
  return parse_experiment_config(in, "test.ini", overrides);
}

std::string parse_error(const std::string& text, const std::vector<ConfigOverride>& overrides = {}) {
  return error_or_empty([&] { parse(text, overrides); });
}

}  // namespace

TEST_CASE("a config file parses into ExperimentConfig with defaults filled in", "[runner][config]") {
  const auto c = parse(kBase);
  CHECK(c.model == "models/stories260K/stories260K.bin");
  CHECK(c.tokenizer == "models/stories260K/tok512.bin");
  CHECK(!c.chat.has_value());
  CHECK(c.name == "t1");
  CHECK(c.drafters == std::vector<std::string>{"ngram", "ee"});
  CHECK(c.k == std::vector<int>{2, 4});
  CHECK(c.temperatures == std::vector<float>{0.f, 0.7f});
  CHECK(c.rule == "auto");
  CHECK(c.rule_for(0.f) == "greedy");
  CHECK(c.rule_for(0.7f) == "speculative");
  CHECK(c.max_new_tokens == 16);
  CHECK(c.seeds == std::vector<uint64_t>{0});
  CHECK(c.repeats == 1);
  CHECK(c.max_tree_nodes == 64);
  CHECK(c.prompt_sets == std::vector<std::string>{"gsm8k"});
  CHECK(c.per_category == 3);
  CHECK(c.out_path() == "results/t1.h5");
  REQUIRE(c.drafter_configs.size() == 2);
  CHECK(c.drafter_configs[0].name == "ngram");
  CHECK(c.drafter_configs[0].type == "ngram");  // type defaults to the section's name
  CHECK(c.drafter_configs[0].options == std::map<std::string, std::string>{{"max_n", "4"}});
  CHECK(c.drafter_configs[1].type == "early_exit");
  CHECK(c.drafter_configs[1].options == std::map<std::string, std::string>{{"layers", "2"}});
}

TEST_CASE("command-line overrides win over the file", "[runner][config]") {
  std::vector<std::string> args = {"cfg.ini",
                                   "--run.k=6",
                                   "--quiet",
                                   "--drafter.ngram.max_n",
                                   "2",
                                   "--out",
                                   "x.h5",
                                   "--target.chat=true",
                                   "--drafter.new.type=oracle"};
  const auto overrides = take_overrides(args);
  CHECK(args == std::vector<std::string>{"cfg.ini", "--quiet", "--out", "x.h5"});
  REQUIRE(overrides.size() == 4);
  CHECK(overrides[0].key == "run.k");
  CHECK(overrides[1].key == "drafter.ngram.max_n");
  CHECK(overrides[1].value == "2");

  auto with_new = overrides;
  with_new.push_back({"run.drafters", "ngram,new"});
  const auto c = parse(kBase, with_new);
  CHECK(c.k == std::vector<int>{6});
  CHECK(c.chat == std::optional<bool>(true));
  CHECK(c.drafter_configs[0].options.at("max_n") == "2");
  REQUIRE(c.drafter_configs.size() == 2);
  CHECK(c.drafter_configs[1].name == "new");
  CHECK(c.drafter_configs[1].type == "oracle");

  // An override of a drafter that run.drafters does not list is a typo (a file may hold unused sections).
  CHECK_THAT(error_or_empty([] {
               parse(kBase, {{"drafter.ngarm.max_n", "2"}});
             }),
             Catch::Contains("--drafter.ngarm.max_n: drafter 'ngarm' is not in run.drafters (ngram, ee)") &&
                 Catch::Contains("did you mean 'drafter.ngram'?"));
  CHECK(parse(std::string(kBase) + "[drafter.unused]\nmax_n = 2\n").drafter_configs.size() == 2);

  std::vector<std::string> dangling = {"--run.k"};
  CHECK_THAT(error_or_empty([&] { take_overrides(dangling); }), Catch::Contains("--run.k=VALUE"));
}

TEST_CASE("the resolved INI text parses back to itself and leaves out the output path", "[runner][config]") {
  auto c = parse(kBase, {{"run.out", "elsewhere.h5"}, {"run.seeds", "1,2"}});
  const std::string ini = c.to_ini();
  CHECK(ini.find("elsewhere") == std::string::npos);
  CHECK_THAT(ini, Catch::Contains("[drafter.ee]\ntype = early_exit\nlayers = 2\n"));
  CHECK_THAT(ini, Catch::Contains("temperatures = 0, 0.7\n"));
  const auto again = parse(ini);
  CHECK(again.to_ini() == ini);
}

TEST_CASE("an unknown key or section names it and suggests the closest known key", "[runner][config]") {
  std::string e = parse_error(std::string(kBase) + "[run]\n");  // a repeated section is fine; check a key
  CHECK(e.empty());

  e = parse_error(kBase, {{"run.temperature", "0.5"}});
  CHECK_THAT(e, Catch::Contains("unknown key 'run.temperature'") && Catch::Contains("from --run.temperature") &&
                    Catch::Contains("did you mean 'run.temperatures'?"));
  CHECK(test::count_lines(e) == 1);

  e = parse_error(std::string(kBase) + "\n[prompts]\nper_categroy = 2\n");
  CHECK_THAT(e, Catch::Contains("unknown key 'prompts.per_categroy'") && Catch::Contains("in test.ini") &&
                    Catch::Contains("did you mean 'prompts.per_category'?"));

  e = parse_error("[targets]\nmodel = m.bin\n");
  CHECK_THAT(e, Catch::Contains("unknown section [targets]") && Catch::Contains("did you mean 'target.model'?"));

  e = parse_error("model = m.bin\n");
  CHECK_THAT(e, Catch::Contains("outside any section") && Catch::Contains("did you mean 'target.model'?"));

  e = parse_error(kBase, {{"run.zzzzzzzz", "1"}});  // nothing close: list the section's keys
  CHECK_THAT(e, Catch::Contains("[run] knows: name, out, drafters, k,"));

  e = parse_error(std::string(kBase) + "[run]\nk = 3\n");
  CHECK_THAT(e, Catch::Contains("'run.k' is set twice"));
}

TEST_CASE("a bad value names the key and the value", "[runner][config]") {
  struct Case {
    std::string key, value, expect;
  };
  const std::vector<Case> cases = {
      {"run.k", "two", "[run] k = 'two': expected a comma-separated list of integers"},
      {"run.k", "2,,4", "[run] k = '2,,4'"},
      {"run.k", "0", "[run] k = '0'"},
      {"run.k", "2,2", "without repeats"},
      {"run.temperatures", "-1", "[run] temperatures = '-1'"},
      {"run.temperatures", "hot", "[run] temperatures = 'hot'"},
      {"run.rule", "greed", "[run] rule = 'greed': expected greedy, speculative, typical or auto"},
      {"run.top_p", "0", "[run] top_p = '0'"},
      {"run.top_p", "1.5", "[run] top_p = '1.5'"},
      {"run.max_new_tokens", "12x", "[run] max_new_tokens = '12x': expected an integer >= 1"},
      {"run.repeats", "0", "[run] repeats = '0'"},
      {"run.seeds", "-3", "[run] seeds = '-3'"},
      {"run.name", "a b", "[run] name = 'a b'"},
      {"run.drafters", "ngram,ngram", "each drafter once"},
      {"target.chat", "maybe", "[target] chat = 'maybe': expected true or false"},
      {"target.threads", "-2", "[target] threads = '-2'"},
      {"prompts.per_category", "many", "[prompts] per_category = 'many'"},
  };
  for (const auto& c : cases) {
    INFO(c.key << " = " << c.value);
    const std::string e = parse_error(kBase, {{c.key, c.value}});
    CHECK_THAT(e, Catch::Contains(c.expect));
    CHECK_THAT(e, Catch::Contains("from --" + c.key));
    CHECK(test::count_lines(e) == 1);
  }
  const std::string in_file = parse_error("[target]\nmodel = m\n[run]\nk = two\n[prompts]\nsets = gsm8k\n");
  CHECK_THAT(in_file, Catch::Contains("[run] k = 'two'") && Catch::Contains("in test.ini"));
  CHECK_THAT(parse_error("[run]\nk = 2\n[prompts]\nsets = gsm8k\n"), Catch::Contains("[target] model is required"));
  CHECK_THAT(parse_error("[target]\nmodel = m\n"), Catch::Contains("[prompts] sets is required"));
  CHECK_THAT(parse_error("[target\nmodel = m\n"), Catch::Contains("test.ini"));  // INI syntax, from Boost.PO
  CHECK_THAT(error_or_empty([] { load_experiment_config("/nonexistent/x.ini"); }),
             Catch::Contains("/nonexistent/x.ini: cannot open"));
}

TEST_CASE("an unknown drafter type lists the known drafters", "[runner][config]") {
  auto c = parse(kBase, {{"drafter.ee.type", "early_exti"}});
  const std::string e = error_or_empty([&] { resolve_drafter_types(c, drafters::default_registry()); });
  CHECK_THAT(e,
             Catch::Contains("[drafter.ee] type = 'early_exti': unknown drafter") &&
                 Catch::Contains("known drafters: draft_model, eagle, early_exit, medusa, ngram, oracle, synthetic") &&
                 Catch::Contains("did you mean 'early_exit'?"));
  CHECK(test::count_lines(e) == 1);

  // A listed drafter without a section: its type is its name.
  c = parse(kBase, {{"run.drafters", "ngarm"}});
  CHECK_THAT(error_or_empty([&] { resolve_drafter_types(c, drafters::default_registry()); }),
             Catch::Contains("[drafter.ngarm] type = 'ngarm'") && Catch::Contains("did you mean 'ngram'?"));

  c = parse(kBase);
  const auto infos = resolve_drafter_types(c, drafters::default_registry());
  REQUIRE(infos.size() == 2);
  CHECK(infos[0]->name == "ngram");
  CHECK(infos[1]->name == "early_exit");
}

TEST_CASE("a misspelt drafter option names the section and the closest option", "[runner][config]") {
  const auto c = parse(kBase, {{"drafter.ngram.max_m", "3"}});
  const DrafterInfo& ngram = drafters::default_registry().get("ngram");
  const DrafterEnv env;  // ngram needs neither target nor tokenizer without a corpus
  const std::string e = error_or_empty([&] { make_drafter(c.drafter_configs[0], ngram, env); });
  CHECK_THAT(e, Catch::Contains("[drafter.ngram] unknown key 'max_m'") && Catch::Contains("did you mean 'max_n'?"));
  CHECK(test::count_lines(e) == 1);

  // Other errors of a factory pass through unchanged.
  const auto bad = parse(kBase, {{"drafter.ngram.max_n", "0"}});
  CHECK_THAT(error_or_empty([&] { make_drafter(bad.drafter_configs[0], ngram, env); }),
             Catch::Contains("[drafter.ngram]"));
  CHECK(make_drafter(parse(kBase).drafter_configs[0], ngram, env) != nullptr);
}

TEST_CASE("edit distance and closest match", "[runner][config]") {
  CHECK(edit_distance("", "") == 0);
  CHECK(edit_distance("abc", "") == 3);
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("max_m", "max_n") == 1);
  CHECK(closest_match("ngarm", {"ngram", "oracle", "synthetic"}) == "ngram");
  CHECK(closest_match("zzzzzz", {"ngram", "oracle"}).empty());
}

TEST_CASE("rule = greedy with a temperature above 0 is refused before anything runs", "[runner][config]") {
  // It used to decode greedily while the run was labelled T = 0.7 and lossless.
  const std::string e = parse_error(kBase, {{"run.rule", "greedy"}, {"run.temperatures", "0,0.7"}});
  CHECK_THAT(e, Catch::Contains("test.ini") && Catch::Contains("rule = greedy") && Catch::Contains("0.7") &&
                    Catch::Contains("temperature 0 only"));
  CHECK(e.find('\n') == std::string::npos);
  CHECK(parse_error(kBase, {{"run.rule", "greedy"}, {"run.temperatures", "0"}}).empty());
  CHECK(parse_error(kBase, {{"run.rule", "auto"}, {"run.temperatures", "0,0.7"}}).empty());
  CHECK(parse_error(kBase, {{"run.rule", "speculative"}, {"run.temperatures", "0.7"}}).empty());
}

TEST_CASE("acceptance rules come from the registry; their options from [rule.NAME]", "[runner][config]") {
  const ExperimentConfig c = parse(kBase, {{"run.rule", "typical"}, {"rule.typical.epsilon", "0.05"}});
  CHECK(c.rule_options.at("typical").at("epsilon") == "0.05");
  CHECK(c.rule_options_for("typical").get_double("epsilon", 0) == 0.05);
  // The resolved INI keeps the section, and parses back to the same options.
  std::istringstream again(c.to_ini());
  CHECK(parse_experiment_config(again, "again.ini", {}).rule_options == c.rule_options);
  // A misspelt option names the section and the closest key; an unknown rule lists the known ones.
  const std::string e = parse_error(kBase, {{"rule.typical.epsilonn", "0.05"}});
  CHECK_THAT(e, Catch::Contains("[rule.typical] unknown key 'epsilonn'") && Catch::Contains("did you mean 'epsilon'"));
  const std::string r = parse_error(kBase, {{"rule.tipical.epsilon", "0.05"}});
  CHECK_THAT(r, Catch::Contains("unknown acceptance rule") && Catch::Contains("did you mean 'rule.typical'"));
  CHECK_THAT(parse_error(kBase, {{"rule.typical.epsilon", "2"}}), Catch::Contains("epsilon in (0, 1]"));
  // Every registered rule is accepted by run.rule, and the rule made from the config reads its options.
  for (const std::string& name : verifiers::rule_registry().names())
    CHECK(parse_error(kBase, {{"run.rule", name}, {"run.temperatures", "0"}}).empty());
  CHECK_THAT(parse_error(kBase, {{"run.rule", "lenient"}}), Catch::Contains("greedy, speculative, typical or auto"));
}

TEST_CASE("batch_size, arrival_rate, arrivals, policy and [policy.NAME] parse, and round-trip", "[runner][config]") {
  const auto c = parse(kBase, {{"run.batch_size", "1, 4,16"},
                               {"run.arrival_rate", "2,0.5"},
                               {"run.policy", "fixed,cost_model"},
                               {"run.cost_table", "costs.json"},
                               {"run.interleave", "true"},
                               {"run.aa_control", "true"},
                               {"policy.cost_model.prior_a", "0.7"}});
  CHECK(c.batch_sizes == std::vector<int>{1, 4, 16});
  CHECK(c.interleave);
  CHECK(c.aa_control);
  CHECK(c.arrival_rates == std::vector<double>{2, 0.5});
  CHECK(c.policies == std::vector<std::string>{"fixed", "cost_model"});
  CHECK(c.cost_table == "costs.json");
  CHECK(c.policy_options.at("cost_model").at("prior_a") == "0.7");
  // The run's k is the policy's k (fixed) or k_max (cost_model) unless its section sets it.
  CHECK(c.policy_spec("fixed", 4) == "fixed k=4");
  CHECK(c.policy_spec("cost_model", 6) == "cost_model k_max=6 prior_a=0.7");
  std::istringstream again(c.to_ini());
  const auto d = parse_experiment_config(again, "again.ini", {});
  CHECK(d.to_ini() == c.to_ini());
  CHECK(d.policy_options == c.policy_options);
  const auto plain = parse(kBase);
  CHECK_FALSE(plain.batched());
  CHECK_FALSE(plain.interleave);
  CHECK_FALSE(plain.aa_control);
  CHECK(plain.policies.empty());
}

TEST_CASE("a bad batching, load or policy key is a one-line error naming it", "[runner][config]") {
  struct Case {
    std::vector<ConfigOverride> overrides;
    std::string expect;
  };
  const std::vector<Case> cases = {
      {{{"run.batch_size", "0"}}, "[run] batch_size = '0': expected a comma-separated list of integers >= 1"},
      {{{"run.batch_size", "4,4"}}, "without repeats"},
      {{{"run.batch_size", "1"}, {"run.arrival_rate", "-2"}}, "[run] arrival_rate = '-2': expected"},
      {{{"run.batch_size", "1"}, {"run.arrival_rate", "fast"}}, "[run] arrival_rate = 'fast'"},
      {{{"run.arrival_rate", "2"}}, "[run] arrival_rate needs [run] batch_size"},
      {{{"run.arrivals", "times.txt"}}, "[run] arrivals needs [run] batch_size"},
      {{{"run.interleave", "true"}}, "[run] interleave needs [run] batch_size"},
      {{{"run.aa_control", "true"}}, "[run] aa_control needs [run] batch_size"},
      {{{"run.batch_size", "2"}, {"run.aa_control", "twice"}}, "[run] aa_control = 'twice': expected true or false"},
      {{{"run.batch_size", "2"}, {"run.interleave", "often"}}, "[run] interleave = 'often': expected true or false"},
      {{{"run.batch_size", "2"}, {"run.arrival_rate", "2"}, {"run.arrivals", "t.txt"}}, "give one of them"},
      {{{"run.policy", "fixd"}}, "[run] policy = 'fixd': expected a comma-separated list of policies ("},
      {{{"run.policy", "cost_model"}}, "[run] policy = cost_model needs [run] cost_table"},
      {{{"run.policy", "fixed"}, {"policy.adaptive.window", "4"}}, "[policy.adaptive] is not in [run] policy"},
      {{{"run.policy", "fixed"}, {"policy.fixd.k", "4"}}, "[policy.fixd] (from --policy.fixd.k): unknown policy"},
  };
  for (const auto& c : cases) {
    INFO(c.expect);
    const std::string e = parse_error(kBase, c.overrides);
    CHECK_THAT(e, Catch::Contains(c.expect));
    CHECK(test::count_lines(e) == 1);
  }
  CHECK_THAT(parse_error(kBase, {{"run.policy", "fixed"}, {"policy.fixd.k", "4"}}),
             Catch::Contains("did you mean 'policy.fixed'?"));
}
