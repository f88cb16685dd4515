// The medusa drafter: what it proposes from the state it is handed (each head's best tokens; a tree's
// ranks; at T > 0 draws from, and q equal to, each head's filtered softmax), and its one-line errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "core/error.h"
#include "core/sampling/sampling.h"
#include "drafters/medusa/heads.h"
#include "drafters/register_builtin.h"
#include "tests/support/medusa_heads.h"
#include "tests/support/stories.h"

using namespace specdec;

namespace {

struct Setup {
  test::Stories& s = test::stories();
  const int H = s.model.config().dim, V = s.model.config().vocab_size;
  std::string path = test::random_medusa_heads(s.model.config(), "drafter_medusa", 0.2f);
  medusa::MedusaHeads heads = medusa::load_medusa_heads(path, s.model.config());
  std::vector<float> prompt_features;  // rows 0..n-2 of the prompt (final-norm states)

  Setup() {
    auto cache = s.model.new_cache(64);
    ForwardResult fr;
    const auto first = std::span<const TokenId>(s.prompt).first(s.prompt.size() - 1);
    s.model.forward(*cache, {.tokens = first, .n_logits = 0, .want_hidden = true}, fr);
    prompt_features = fr.hidden;
  }
  TargetFeatures features() const {
    return {.first_pos = 0, .rows = static_cast<int>(s.prompt.size()) - 1, .width = H, .data = prompt_features};
  }
  // Head k's logits on the last prompt state, computed here from the heads and the target's LM head.
  std::vector<float> head_logits(int k) {
    std::vector<float> st(H), lg;
    heads.head_state(k, prompt_features.data() + (s.prompt.size() - 2) * H, st.data());
    s.model.lm_head(st, 1, lg);
    return lg;
  }
  std::unique_ptr<Drafter> make(std::map<std::string, std::string> opts, SamplingParams sp = {}) {
    opts["heads"] = path;
    DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get(), .sampling = sp, .seed = 3};
    return make_drafter(drafters::default_registry().get("medusa"), env, DrafterOptions(opts, "medusa"));
  }
};

}  // namespace

TEST_CASE("medusa's chain is each head's most likely token on the last accepted state", "[medusa]") {
  Setup u;
  auto d = u.make({});
  REQUIRE(d->features().final_norm);
  d->begin(u.s.prompt, u.features());
  const DraftProposal p = d->propose(3);
  REQUIRE(p.size() == 3);
  REQUIRE(p.is_chain());
  REQUIRE(p.q.empty());
  for (int k = 0; k < 3; ++k) CHECK(p.tokens[k] == argmax(u.head_logits(k)));
  // More tokens than heads: one per head.
  d->begin(u.s.prompt, u.features());
  CHECK(d->propose(8).size() == u.heads.cfg.n_heads);
  // No state (a one-token prompt hands no features): nothing to propose.
  d->begin(std::span<const TokenId>(u.s.prompt).first(1), {});
  CHECK(d->propose(4).size() == 0);
}

TEST_CASE("medusa's tree takes the ranks of the greedy tree from each head's ranking", "[medusa]") {
  Setup u;
  auto d = u.make({{"tree_nodes", "5"}});
  d->begin(u.s.prompt, u.features());
  const DraftProposal p = d->propose(5);
  REQUIRE(p.size() == 5);
  REQUIRE(!p.is_chain());
  // The table in tests/support/medusa_heads.h: per rank head 0 (.6, .15, .05), head 1 (.5, .1, .05), head 2
  // (.4, .05, .05): nodes (0) .6, (0,0) .3, (1) .15, (0,0,0) .12, (1,0) .075 -> parents -1, 0, -1, 1, 2.
  const std::vector<int32_t> parents = {-1, 0, -1, 1, 2};
  CHECK(p.parents == parents);
  auto ranked = [&](int k) {
    const auto lg = u.head_logits(k);
    std::vector<int32_t> o(lg.size());
    std::iota(o.begin(), o.end(), 0);
    std::stable_sort(o.begin(), o.end(), [&](int a, int b) { return lg[a] > lg[b]; });
    return o;
  };
  const auto r0 = ranked(0), r1 = ranked(1), r2 = ranked(2);
  CHECK(p.tokens[0] == r0[0]);
  CHECK(p.tokens[1] == r1[0]);
  CHECK(p.tokens[2] == r0[1]);
  CHECK(p.tokens[3] == r2[0]);
  CHECK(p.tokens[4] == r1[0]);
  // A smaller budget takes a prefix of the same tree.
  d->begin(u.s.prompt, u.features());
  const DraftProposal p2 = d->propose(2);
  REQUIRE(p2.size() == 2);
  CHECK(std::vector<int32_t>(p.parents.begin(), p.parents.begin() + 2) == p2.parents);
}

TEST_CASE("at T > 0 medusa's chain reports each head's filtered softmax as q", "[medusa]") {
  Setup u;
  const SamplingParams sp{.temperature = 0.8f, .top_k = 20};
  auto d = u.make({}, sp);
  d->begin(u.s.prompt, u.features());
  const DraftProposal p = d->propose(2);
  REQUIRE(p.size() == 2);
  REQUIRE(p.q.size() == static_cast<size_t>(2 * u.V));
  p.validate(u.V);
  for (int k = 0; k < 2; ++k) {
    std::vector<float> probs(u.V);
    logits_to_probs(u.head_logits(k), sp, probs);
    for (int v = 0; v < u.V; ++v) REQUIRE(p.q[static_cast<size_t>(k) * u.V + v] == probs[v]);
    CHECK(probs[p.tokens[k]] > 0);
  }
}

TEST_CASE("medusa's bad options and files give one-line errors", "[medusa]") {
  Setup u;
  DrafterEnv env{.target = &u.s.model};
  auto& info = drafters::default_registry().get("medusa");
  REQUIRE_THROWS_WITH(make_drafter(info, env, DrafterOptions({}, "medusa")), Catch::Contains("heads = "));
  REQUIRE_THROWS_WITH(make_drafter(info, env, DrafterOptions({{"heads", u.path}, {"tree_nodes", "-1"}}, "medusa")),
                      Catch::Contains("tree_nodes >= 0"));
  // Heads without an accuracy table cannot grow a tree.
  medusa::MedusaHeads plain = u.heads;
  plain.metadata_json.clear();
  const std::string no_table = std::string(SPECDEC_TEST_SCRATCH) + "/medusa_no_table.safetensors";
  medusa::save_medusa_heads(plain, no_table);
  REQUIRE_THROWS_WITH(make_drafter(info, env, DrafterOptions({{"heads", no_table}, {"tree_nodes", "4"}}, "medusa")),
                      Catch::Contains(no_table) && Catch::Contains("accuracy_topk"));
  CHECK(make_drafter(info, env, DrafterOptions({{"heads", no_table}}, "medusa")) != nullptr);  // chains need none
  // Heads for another hidden size.
  medusa::HeadsConfig other{.n_heads = 2, .n_layers = 1, .hidden_size = u.H * 2, .vocab_size = u.V};
  const std::string wide = std::string(SPECDEC_TEST_SCRATCH) + "/medusa_wide.safetensors";
  medusa::save_medusa_heads(medusa::init_medusa_heads(other, 1, 0.1f), wide);
  REQUIRE_THROWS_WITH(make_drafter(info, env, DrafterOptions({{"heads", wide}}, "medusa")), Catch::Contains(wide));
}
