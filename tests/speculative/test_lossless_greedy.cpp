// Greedy losslessness: for every built-in drafter and k in {1, 2, 4, 8} (chains, and trees for the model
// drafters), speculative decoding emits exactly the AR greedy tokens on stories260K prompts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <fstream>
#include <map>

#include "core/backends/cpu/llama_cpu.h"
#include "core/error.h"
#include "core/generate.h"
#include "core/loading.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "tests/eagle_drafter/random_eagle.h"
#include "tests/support/assets.h"
#include "tests/support/medusa_heads.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

struct Fixture {
  std::shared_ptr<const LoadedModel> loaded = load_model(test::stories_model());
  LlamaCpu model{loaded};
  std::unique_ptr<Tokenizer> tok = load_tokenizer(*loaded, test::stories_tokenizer());
};
Fixture& fx() {
  static Fixture f;
  return f;
}

const std::vector<std::string> kPrompts = {"Once upon a time", "Lily and Tom went to the park. They saw",
                                           "The little dog was sad because", ""};

const std::string& medusa_heads_file() { return test::random_medusa_heads(fx().model.config(), "lossless_medusa"); }
const std::string& eagle_weights_file() { return test::random_eagle_weights(fx().model.config(), "lossless_eagle"); }

struct DrafterCase {
  std::string name;
  std::map<std::string, std::string> opts;
};

// Greedy decoding of kPrompts[0], 64 new tokens, k draft tokens per step: the AR reference (ar), and
// speculative runs with a built-in drafter.
struct FirstPromptGreedy {
  Fixture& f = fx();
  std::unique_ptr<AcceptanceRule> rule = verifiers::make_greedy_rule();
  std::vector<TokenId> prompt = f.tok->encode(kPrompts[0], true);
  DecodeOptions d;
  DecodeResult ar;

  explicit FirstPromptGreedy(int k) {
    d.max_new_tokens = 64;
    d.k = k;
    ar = speculative_decode(f.model, nullptr, *rule, prompt, d);
  }
  // The drafter `name` built with opts (sharing `shared` with the others made so, when given).
  DecodeResult run(const std::string& name, const std::map<std::string, std::string>& opts,
                   DrafterSharedState* shared = nullptr) const {
    DrafterEnv env{.target = &f.model, .tokenizer = f.tok.get(), .shared = shared};
    auto drafter = drafters::default_registry().get(name).factory(env, DrafterOptions(opts, name));
    return speculative_decode(f.model, drafter.get(), *rule, prompt, d);
  }
};

}  // namespace

TEST_CASE("AR through the decode loop equals generate()", "[speculative]") {
  auto& f = fx();
  auto rule = verifiers::make_greedy_rule();
  for (const auto& text : kPrompts) {
    const auto prompt = f.tok->encode(text, true);
    GenerateOptions g;
    g.max_new_tokens = 48;
    const auto ref = generate(f.model, prompt, g);
    DecodeOptions d;
    d.max_new_tokens = 48;
    const auto ar = speculative_decode(f.model, nullptr, *rule, prompt, d);
    REQUIRE(ar.tokens == ref.tokens);
    REQUIRE(ar.steps.size() == ref.tokens.size());
    REQUIRE(ar.tau() == 1.0);
  }
}

TEST_CASE("every drafter is lossless at greedy for k in {1,2,4,8}, under every lossless rule",
          "[speculative][lossless]") {
  auto& f = fx();
  const std::string model_path = test::stories_model();
  const std::vector<DrafterCase> cases = {
      {"ngram", {}},
      {"ngram", {{"max_n", "4"}, {"min_n", "2"}}},
      {"draft_model", {{"model", model_path}}},
      {"draft_model", {{"model", model_path}, {"layers", "2"}, {"tree_width", "2"}, {"tree_depth", "3"}}},
      {"early_exit", {{"layers", "2"}}},
      {"early_exit", {{"layers", "3"}, {"tree_width", "3"}, {"tree_depth", "2"}}},
      {"early_exit", {{"layers", "2"}, {"min_confidence", "0.3"}}},
      {"synthetic", {{"acceptance", "0.9,0.7,0.5"}}},
      {"oracle", {}},
      {"medusa", {{"heads", medusa_heads_file()}}},
      {"medusa", {{"heads", medusa_heads_file()}, {"tree_nodes", "6"}}},
      {"eagle", {{"weights", eagle_weights_file()}}},
      {"eagle", {{"weights", eagle_weights_file()}, {"tree", "static"}, {"branching", "3,2,1"}}},
      {"eagle", {{"weights", eagle_weights_file()}, {"tree", "dynamic"}, {"depth", "4"}, {"topk", "3"}}},
      {"eagle", {{"weights", eagle_weights_file()}, {"tree", "static"}, {"branching", "3,2,1"}, {"dtype", "q8_0"}}},
  };
  auto& registry = drafters::default_registry();
  // Every registered drafter has a case here: a new one fails this test until it gets one.
  for (const DrafterInfo* info : registry.list()) {
    INFO("registered drafter '" << info->name << "' has no case in this test");
    CHECK(std::any_of(cases.begin(), cases.end(), [&](const DrafterCase& c) { return c.name == info->name; }));
  }
  // Every lossless rule of the registry decodes greedily at temperature 0 (speculative with a one-hot p).
  std::vector<std::unique_ptr<AcceptanceRule>> rules;
  for (const verifiers::RuleInfo* r : verifiers::rule_registry().list())
    if (r->lossless) rules.push_back(verifiers::make_acceptance_rule(r->name));
  REQUIRE(rules.size() >= 2);
  auto greedy = verifiers::make_greedy_rule();
  for (const auto& text : kPrompts) {
    const auto prompt = f.tok->encode(text, true);
    DecodeOptions base;
    base.max_new_tokens = 64;
    const auto ar = speculative_decode(f.model, nullptr, *greedy, prompt, base);
    for (const auto& rule : rules)
      for (const auto& c : cases) {
        for (int k : {1, 2, 4, 8}) {
          DrafterEnv env{
              .target = &f.model, .tokenizer = f.tok.get(), .reference = &ar.tokens, .target_path = model_path};
          auto drafter = make_drafter(registry.get(c.name), env, DrafterOptions(c.opts, c.name));
          DecodeOptions d = base;
          d.k = k;
          const auto spec = speculative_decode(f.model, drafter.get(), *rule, prompt, d);
          INFO("drafter " << c.name << " k=" << k << " rule " << rule->name() << " prompt '" << text << "'");
          REQUIRE(spec.tokens == ar.tokens);
          REQUIRE(spec.tau() >= 1.0);
          // proposal_depth (what the cost model scores a node budget by): no proposal of k nodes is deeper,
          // and one of all k nodes is exactly that deep except in a dynamic tree, which may grow narrower
          const int depth = drafter->proposal_depth(k);
          const bool dynamic = c.opts.count("tree") && c.opts.at("tree") == "dynamic";
          for (const StepRecord& st : spec.steps) {
            REQUIRE(st.max_depth <= depth);
            if (st.n_proposed == k && !dynamic) REQUIRE(st.max_depth == depth);
          }
          if (c.name == "oracle") REQUIRE(spec.steps.size() <= (ar.tokens.size() + k) / (k + 1) + 1);
          if (c.name == "draft_model" && c.opts.size() == 1)
            REQUIRE(spec.accepted_draft_tokens() == spec.drafted_tokens());
        }
      }
  }
}

TEST_CASE("min_confidence shortens early-exit chains where the draft is unsure, and stays lossless",
          "[speculative][lossless]") {
  const FirstPromptGreedy g(6);
  auto run = [&](const char* conf) { return g.run("early_exit", {{"layers", "4"}, {"min_confidence", conf}}); };
  const auto all = run("0"), sure = run("0.5");
  REQUIRE(sure.tokens == g.ar.tokens);
  REQUIRE(all.tokens == g.ar.tokens);
  INFO("drafted " << all.drafted_tokens() << " -> " << sure.drafted_tokens() << ", accepted "
                  << all.accepted_draft_tokens() << " -> " << sure.accepted_draft_tokens());
  CHECK(sure.drafted_tokens() < all.drafted_tokens());
  // The tokens it drops are the unsure ones: a larger share of what it still drafts is accepted.
  CHECK(static_cast<double>(sure.accepted_draft_tokens()) / std::max(1, sure.drafted_tokens()) >
        static_cast<double>(all.accepted_draft_tokens()) / std::max(1, all.drafted_tokens()));
  // A bad value names the option.
  DrafterEnv env{.target = &g.f.model, .tokenizer = g.f.tok.get()};
  try {
    drafters::default_registry()
        .get("early_exit")
        .factory(env, DrafterOptions({{"min_confidence", "1.5"}}, "drafter.ee"));
    FAIL("min_confidence = 1.5 accepted");
  } catch (const specdec::Error& e) {
    CHECK(std::string(e.what()).find("min_confidence") != std::string::npos);
  }
}

TEST_CASE("ngram with a corpus drafts from it, losslessly; the index is shared through the run's state",
          "[speculative][lossless]") {
  const FirstPromptGreedy g(4);
  // A corpus holding the AR continuation itself: lookups there propose the right tokens.
  const auto corpus = test::scratch_dir("ngram_corpus") / "corpus.txt";
  {
    std::ofstream out(corpus);
    out << g.f.tok->decode(g.ar.tokens);
  }
  DrafterSharedState shared;
  const auto plain = g.run("ngram", {{"min_n", "2"}}, &shared);
  CHECK(shared.size() == 0);
  const auto with_corpus = g.run("ngram", {{"min_n", "2"}, {"corpus", corpus.string()}}, &shared);
  const auto again = g.run("ngram", {{"min_n", "2"}, {"corpus", corpus.string()}}, &shared);  // the shared index
  CHECK(shared.size() == 1);  // one index, owned by the run's shared state, not by the process
  const auto alone = g.run("ngram", {{"min_n", "2"}, {"corpus", corpus.string()}});  // no shared state
  CHECK(alone.tau() == with_corpus.tau());
  REQUIRE(plain.tokens == g.ar.tokens);
  REQUIRE(with_corpus.tokens == g.ar.tokens);
  REQUIRE(again.tokens == g.ar.tokens);
  INFO("tau " << plain.tau() << " -> " << with_corpus.tau());
  CHECK(with_corpus.tau() > plain.tau() + 0.5);
  CHECK(again.tau() == with_corpus.tau());
}

TEST_CASE("a shared prefill (copied cache prefix) decodes exactly as prefilling anew", "[speculative][prefill]") {
  auto& f = fx();
  auto rule = verifiers::make_greedy_rule();
  auto& registry = drafters::default_registry();
  const auto prompt = f.tok->encode(kPrompts[1], true);
  const int n = static_cast<int>(prompt.size()) - 1;
  auto prefix = f.model.new_cache(n);
  ForwardResult fr;
  f.model.forward(*prefix, {.tokens = std::span<const TokenId>(prompt).first(n), .n_logits = 0}, fr);
  for (const char* name : {"ngram", "early_exit"}) {
    for (int k : {1, 4}) {
      DecodeOptions d;
      d.max_new_tokens = 48;
      d.k = k;
      DrafterEnv env{.target = &f.model, .tokenizer = f.tok.get()};
      auto a = registry.get(name).factory(env, DrafterOptions({}, name));
      auto b = registry.get(name).factory(env, DrafterOptions({}, name));
      const auto fresh = speculative_decode(f.model, a.get(), *rule, prompt, d);
      d.prefilled = prefix.get();
      d.prefilled_seconds = 12.5;
      const auto shared = speculative_decode(f.model, b.get(), *rule, prompt, d);
      INFO(name << " k=" << k);
      REQUIRE(shared.tokens == fresh.tokens);
      REQUIRE(shared.steps.size() == fresh.steps.size());
      for (size_t i = 0; i < fresh.steps.size(); ++i) {
        CHECK(shared.steps[i].n_accepted == fresh.steps[i].n_accepted);
        CHECK(shared.steps[i].context_len == fresh.steps[i].context_len);
      }
      CHECK(shared.prefill_seconds >= 12.5);
    }
  }
  CHECK(prefix->size() == n);  // the shared prefix is only read
  // A prefix of another length is refused with a message saying what was expected.
  DecodeOptions d;
  auto other = f.model.new_cache(n + 1);
  f.model.forward(*other, {.tokens = std::span<const TokenId>(prompt), .n_logits = 0}, fr);
  d.prefilled = other.get();
  try {
    speculative_decode(f.model, nullptr, *rule, prompt, d);
    FAIL("a prefix of the wrong length was accepted");
  } catch (const specdec::Error& e) {
    CHECK(std::string(e.what()).find("prefilled cache of the prompt's first") != std::string::npos);
  }
}
