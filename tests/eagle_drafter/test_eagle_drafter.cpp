// The eagle drafter on stories260K with a random EAGLE layer: chains, static and dynamic trees against a plain
// reference (the layer read one pair at a time, no tree mask: each node's distribution from its own path),
// EAGLE-2's tree against a brute-force best-N over all paths, q at T > 0, a reduced draft vocabulary, the
// rollback of the draft's slots on accept, and the one-line errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <numeric>
#include <set>

#include "core/error.h"
#include "core/sampling/sampling.h"
#include "drafters/eagle/eagle.h"
#include "drafters/eagle/eagle_drafter.h"
#include "drafters/eagle/train_eagle.h"
#include "drafters/medusa/train_medusa.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "kernels/cpu/ops.h"
#include "tests/eagle_drafter/fitted_eagle.h"
#include "tests/eagle_drafter/random_eagle.h"
#include "tests/medusa/stories_features.h"
#include "tests/support/assets.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

struct Setup {
  test::Stories& s = test::stories();
  const ModelConfig& cfg = s.model.config();
  const int H = cfg.dim, V = cfg.vocab_size;
  std::string path = test::random_eagle_weights(cfg, "drafter_eagle", 0.1f);
  eagle::EagleWeights w = eagle::load_eagle_weights(path, cfg);
  // "Once upon a time" and 16 greedy tokens: the target's final-norm state at every position.
  test::StoriesSequence seq = test::stories_sequence("Once upon a time", 16, 1);
  const int n = seq.prompt_len;

  std::span<const TokenId> tokens(int first, int count) const {
    return std::span<const TokenId>(seq.tokens).subspan(first, count);
  }
  TargetFeatures rows(int first, int count) const {
    return {
        .first_pos = first,
        .rows = count,
        .width = H,
        .data =
            std::span<const float>(seq.hidden).subspan(static_cast<size_t>(first) * H, static_cast<size_t>(count) * H)};
  }
  std::unique_ptr<eagle::EagleDrafter> make(std::map<std::string, std::string> opts, SamplingParams sp = {},
                                            const std::string& weights = "") {
    opts["weights"] = weights.empty() ? path : weights;
    DrafterEnv env{
        .target = &s.model, .tokenizer = s.tok.get(), .sampling = sp, .seed = 5, .target_path = test::stories_model()};
    auto d = make_drafter(drafters::default_registry().get("eagle"), env, DrafterOptions(opts, "eagle"));
    auto* e = dynamic_cast<eagle::EagleDrafter*>(d.get());
    REQUIRE(e != nullptr);
    d.release();
    return std::unique_ptr<eagle::EagleDrafter>(e);
  }
  // A drafter begun on the sequence's first m tokens.
  std::unique_ptr<eagle::EagleDrafter> begun(int m, std::map<std::string, std::string> opts, SamplingParams sp = {}) {
    auto d = make(std::move(opts), sp);
    d->begin(tokens(0, m), rows(0, m - 1));
    return d;
  }

  // The reference: the layer's predicted state after the first m tokens of the sequence and then the draft
  // path: the committed pairs as one causal block, then each path token's pair on its own.
  std::vector<float> ref_state(int m, std::span<const TokenId> draft) const {
    eagle::EagleCache cache;
    std::vector<float> emb, out(static_cast<size_t>(m - 1) * H);
    std::vector<int32_t> pos(m - 1);
    std::iota(pos.begin(), pos.end(), 1);
    embed(tokens(1, m - 1), emb);
    eagle::eagle_forward(w, cache, emb, rows(0, m - 1).data, pos, {}, out);
    std::vector<float> state(out.end() - H, out.end());
    for (size_t j = 0; j < draft.size(); ++j) {
      embed(draft.subspan(j, 1), emb);
      const int32_t p = m + static_cast<int32_t>(j);
      std::vector<float> next(H);
      eagle::eagle_forward(w, cache, emb, state, {&p, 1}, {}, next);
      state = next;
    }
    return state;
  }
  std::vector<float> ref_logits(int m, std::span<const TokenId> draft) const {
    std::vector<float> lg;
    s.model.lm_head(ref_state(m, draft), 1, lg);
    return lg;
  }
  void embed(std::span<const TokenId> t, std::vector<float>& out) const {
    const WeightTensor& e = s.loaded->weights.tok_embeddings;
    out.resize(t.size() * static_cast<size_t>(H));
    for (size_t i = 0; i < t.size(); ++i)
      cpu::dequantize_row(out.data() + i * H, static_cast<const uint8_t*>(e.data) + t[i] * cpu::row_bytes(e.dtype, H),
                          e.dtype, H);
  }
};

// Ids by descending logit (ties: the lower id).
std::vector<TokenId> ranked(const std::vector<float>& lg) {
  std::vector<TokenId> o(lg.size());
  std::iota(o.begin(), o.end(), 0);
  std::stable_sort(o.begin(), o.end(), [&](TokenId a, TokenId b) { return lg[a] > lg[b]; });
  return o;
}

double log_softmax_at(const std::vector<float>& lg, TokenId t) {
  const double zmax = *std::max_element(lg.begin(), lg.end());
  double s = 0;
  for (const float z : lg) s += std::exp(static_cast<double>(z) - zmax);
  return static_cast<double>(lg[t]) - zmax - std::log(s);
}

// Node i's path of tokens from the root.
std::vector<TokenId> path_of(const DraftProposal& p, int i) {
  std::vector<TokenId> path;
  for (int j = i; j >= 0; j = p.parent(j)) path.insert(path.begin(), p.tokens[j]);
  return path;
}

float max_diff(std::span<const float> a, std::span<const float> b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("eagle's chain: each position's argmax of the layer's readout, read pair by pair", "[eagle]") {
  Setup u;
  auto d = u.begun(u.n, {});
  REQUIRE(d->features().final_norm);
  const DraftProposal p = d->propose(4);
  REQUIRE(p.size() == 4);
  REQUIRE(p.is_chain());
  REQUIRE(p.q.empty());
  std::vector<TokenId> path;
  for (int j = 0; j < 4; ++j) {
    CHECK(p.tokens[j] == argmax(u.ref_logits(u.n, path)));
    path.push_back(p.tokens[j]);
  }
  // The state after the prompt is the reference's.
  CHECK(max_diff(d->predicted(), u.ref_state(u.n, {})) == 0.0f);
}

TEST_CASE("a one-token prompt proposes nothing until accept hands a state", "[eagle]") {
  Setup u;
  auto d = u.make({{"tree", "dynamic"}});
  d->begin(u.tokens(0, 1), {});
  CHECK(d->predicted().empty());
  CHECK(d->propose(4).size() == 0);
  d->accept(u.tokens(1, 1), u.rows(0, 1));
  const DraftProposal p = d->propose(4);
  REQUIRE(p.size() == 4);
  CHECK(p.tokens[0] == argmax(u.ref_logits(2, {})));
}

TEST_CASE("at T > 0 eagle's chain draws from, and reports as q, the filtered draft softmax", "[eagle]") {
  Setup u;
  const SamplingParams sp{.temperature = 0.8f, .top_k = 20};
  auto d = u.begun(u.n, {}, sp);
  const DraftProposal p = d->propose(3);
  REQUIRE(p.size() == 3);
  REQUIRE(p.q.size() == static_cast<size_t>(3 * u.V));
  p.validate(u.V);
  std::vector<TokenId> path;
  for (int j = 0; j < 3; ++j) {
    std::vector<float> probs(u.V);
    logits_to_probs(u.ref_logits(u.n, path), sp, probs);
    for (int v = 0; v < u.V; ++v) REQUIRE(p.q[static_cast<size_t>(j) * u.V + v] == Approx(probs[v]).margin(1e-6));
    CHECK(probs[p.tokens[j]] > 0);
    path.push_back(p.tokens[j]);
  }
}

TEST_CASE("eagle's static tree: the fixed branching's ranks, cut to k in breadth-first order", "[eagle]") {
  Setup u;
  auto d = u.begun(u.n, {{"tree", "static"}, {"branching", "3,2,1"}});
  // 3 children of the root, 2 of each of those, 1 of each of those; 10 nodes take depth 3's first.
  const DraftProposal p = d->propose(10);
  REQUIRE(p.size() == 10);
  CHECK(p.q.empty());
  const std::vector<int32_t> parents = {-1, -1, -1, 0, 0, 1, 1, 2, 2, 3};
  CHECK(p.parents == parents);
  const auto r = ranked(u.ref_logits(u.n, {}));
  for (int i = 0; i < 3; ++i) CHECK(p.tokens[i] == r[i]);
  for (int i = 0; i < 3; ++i) {
    const auto ri = ranked(u.ref_logits(u.n, std::vector<TokenId>{p.tokens[i]}));
    CHECK(p.tokens[3 + 2 * i] == ri[0]);
    CHECK(p.tokens[4 + 2 * i] == ri[1]);
  }
  CHECK(p.tokens[9] == ranked(u.ref_logits(u.n, std::vector<TokenId>{p.tokens[0], p.tokens[3]}))[0]);
  // A smaller budget: a breadth-first prefix.
  d->accept({}, {});  // nothing emitted: the same state again
  const DraftProposal p2 = d->propose(4);
  CHECK(std::vector<int32_t>(p2.parents) == std::vector<int32_t>(parents.begin(), parents.begin() + 4));
  CHECK(std::vector<TokenId>(p2.tokens) == std::vector<TokenId>(p.tokens.begin(), p.tokens.begin() + 4));
}

TEST_CASE("eagle's dynamic tree is the best N paths by cumulative draft probability (brute force)", "[eagle]") {
  Setup u;
  // With topk >= N, EAGLE-2's expansion loses nothing: a node among the best N has fewer than N better siblings
  // and fewer than N better nodes at its depth. The brute force: every path up to depth D whose tokens are among
  // their parent's N best (the same argument), each scored from its own reference state.
  const int N = 6, D = 3;
  struct Path {
    std::vector<TokenId> tokens;
    double score;
  };
  std::vector<Path> all;
  std::function<void(const Path&)> grow = [&](const Path& at) {
    if (static_cast<int>(at.tokens.size()) == D) return;
    const auto lg = u.ref_logits(u.n, at.tokens);
    const auto r = ranked(lg);
    for (int c = 0; c < N; ++c) {
      Path child = at;
      child.tokens.push_back(r[c]);
      child.score += log_softmax_at(lg, r[c]);
      all.push_back(child);
      grow(child);
    }
  };
  grow({{}, 0.0});
  std::stable_sort(all.begin(), all.end(), [](const Path& a, const Path& b) { return a.score > b.score; });
  std::set<std::vector<TokenId>> best;
  for (int i = 0; i < N; ++i) best.insert(all[i].tokens);

  auto d = u.begun(u.n, {{"tree", "dynamic"}, {"depth", std::to_string(D)}, {"topk", std::to_string(N)}});
  const DraftProposal p = d->propose(N);
  REQUIRE(p.size() == N);
  CHECK(p.q.empty());
  std::set<std::vector<TokenId>> got;
  for (int i = 0; i < N; ++i) {
    CHECK(p.parent(i) < i);  // parents precede children
    got.insert(path_of(p, i));
  }
  INFO("the N-th and N+1-th best scores: " << all[N - 1].score << " " << all[N].score);
  REQUIRE(all[N - 1].score - all[N].score > 1e-4);  // no near-tie at the cut (else this case proves little)
  CHECK(got == best);
  // The tree is deeper than one level here (else the case would not test the expansion).
  CHECK(std::any_of(p.parents.begin(), p.parents.end(), [](int32_t x) { return x >= 0; }));
}

TEST_CASE("eagle's dynamic tree with a narrow top-k: every node a top-k child, within depth, parents first",
          "[eagle]") {
  Setup u;
  auto d = u.begun(u.n, {{"tree", "dynamic"}, {"depth", "4"}, {"topk", "2"}});
  const DraftProposal p = d->propose(8);
  REQUIRE(p.size() == 8);
  std::vector<double> score(8);
  for (int i = 0; i < 8; ++i) {
    const int parent = p.parent(i);
    REQUIRE(parent < i);
    auto path = path_of(p, i);
    CHECK(path.size() <= 4u);
    path.pop_back();
    const auto lg = u.ref_logits(u.n, path);
    const auto r = ranked(lg);
    CHECK((p.tokens[i] == r[0] || p.tokens[i] == r[1]));
    score[i] = (parent < 0 ? 0.0 : score[parent]) + log_softmax_at(lg, p.tokens[i]);
    if (parent >= 0) CHECK(score[i] <= score[parent]);
  }
  // Siblings are distinct tokens.
  for (int i = 0; i < 8; ++i)
    for (int j = i + 1; j < 8; ++j)
      if (p.parent(i) == p.parent(j)) CHECK(p.tokens[i] != p.tokens[j]);
}

TEST_CASE("after accept the layer's cache and state equal a fresh drafter's begun on the whole sequence", "[eagle]") {
  Setup u;
  for (const char* tree : {"chain", "static", "dynamic"}) {
    INFO("tree = " << tree);
    auto d = u.begun(u.n, {{"tree", tree}});
    int len = u.n;
    for (const int emitted : {3, 1, 4, 2}) {
      REQUIRE(d->propose(6).size() > 0);
      CHECK(d->cache().n > len - 1);  // the draft's slots are there
      d->accept(u.tokens(len, emitted), u.rows(len - 1, emitted));
      len += emitted;
      auto fresh = u.begun(len, {{"tree", tree}});
      REQUIRE(d->cache().n == len - 1);
      REQUIRE(fresh->cache().n == len - 1);
      const size_t used = static_cast<size_t>(len - 1) * u.w.cfg.kv_dim();
      CHECK(max_diff(std::span<const float>(d->cache().k).first(used),
                     std::span<const float>(fresh->cache().k).first(used)) <= 1e-5f);
      CHECK(max_diff(std::span<const float>(d->cache().v).first(used),
                     std::span<const float>(fresh->cache().v).first(used)) <= 1e-5f);
      REQUIRE(d->predicted().size() == static_cast<size_t>(u.H));
      CHECK(max_diff(d->predicted(), fresh->predicted()) <= 1e-5f);
      // And the next proposal is the fresh drafter's.
      CHECK(d->propose(4).tokens == fresh->propose(4).tokens);
      d->accept({}, {});  // drop the comparison's draft again
    }
  }
}

TEST_CASE("a reduced draft vocabulary reads out the target's LM-head rows of its ids", "[eagle]") {
  Setup u;
  std::vector<int32_t> even;
  for (int v = 0; v < u.V; v += 2) even.push_back(v);
  const std::string reduced = test::random_eagle_weights(u.cfg, "drafter_eagle_even", 0.1f, even);
  const auto best_even = [&](const std::vector<float>& lg) {
    TokenId b = 0;
    for (int v = 0; v < u.V; v += 2)
      if (lg[v] > lg[b]) b = v;
    return b;
  };
  {
    auto d = u.make({}, {}, reduced);
    d->begin(u.tokens(0, u.n), u.rows(0, u.n - 1));
    const DraftProposal p = d->propose(2);
    REQUIRE(p.size() == 2);
    CHECK(p.tokens[0] == best_even(u.ref_logits(u.n, {})));
    CHECK(p.tokens[1] == best_even(u.ref_logits(u.n, std::vector<TokenId>{p.tokens[0]})));
  }
  const SamplingParams sp{.temperature = 1.0f};
  auto d = u.make({}, sp, reduced);
  d->begin(u.tokens(0, u.n), u.rows(0, u.n - 1));
  const DraftProposal p = d->propose(2);
  p.validate(u.V);
  for (int j = 0; j < 2; ++j) {
    CHECK(p.tokens[j] % 2 == 0);
    // q: the softmax over the even ids of the target's own logits of the predicted state, 0 elsewhere.
    const auto lg = u.ref_logits(u.n, std::span<const TokenId>(p.tokens).first(j));
    std::vector<float> lg_even, q_even(even.size());
    for (const int32_t v : even) lg_even.push_back(lg[v]);
    logits_to_probs(lg_even, sp, q_even);
    for (int v = 0; v < u.V; ++v)
      REQUIRE(p.q[static_cast<size_t>(j) * u.V + v] == Approx(v % 2 ? 0.f : q_even[v / 2]).margin(1e-6));
  }
}

TEST_CASE("eagle's bad options and files give one-line errors", "[eagle]") {
  Setup u;
  auto& info = drafters::default_registry().get("eagle");
  const DrafterEnv env{.target = &u.s.model, .target_path = test::stories_model()};
  auto make = [&](std::map<std::string, std::string> opts) {
    return make_drafter(info, env, DrafterOptions(opts, "eagle"));
  };
  REQUIRE_THROWS_WITH(make({}), Catch::Contains("weights = "));
  try {
    make({{"weights", u.path}, {"depht", "3"}});
    FAIL("an unknown key was accepted");
  } catch (const UnknownOptionError& e) {
    CHECK(e.key() == "depht");
    CHECK(std::string(e.what()).find("depht") != std::string::npos);
  }
  REQUIRE_THROWS_WITH(make({{"weights", u.path}, {"tree", "bushy"}}),
                      Catch::Contains("tree") && Catch::Contains("bushy"));
  REQUIRE_THROWS_WITH(make({{"weights", u.path}, {"branching", "2,0"}}), Catch::Contains("branching"));
  REQUIRE_THROWS_WITH(make({{"weights", u.path}, {"topk", "0"}}), Catch::Contains("topk"));
  REQUIRE_THROWS_WITH(make({{"weights", u.path}, {"dtype", "q4_k"}}),
                      Catch::Contains("dtype = f32, q8_0, q4_0 or q4_1") && Catch::Contains("'q4_k'"));
  REQUIRE_THROWS_WITH(make({{"weights", std::string(SPECDEC_TEST_SCRATCH) + "/no_such_eagle.safetensors"}}),
                      Catch::Contains("no_such_eagle.safetensors"));
  REQUIRE_THROWS_WITH(
      make_drafter(info, DrafterEnv{.target = &u.s.model}, DrafterOptions({{"weights", u.path}}, "eagle")),
      Catch::Contains("target_path"));
  // A layer of another hidden size.
  eagle::EagleConfig wide = eagle::EagleConfig::of_target(u.cfg);
  wide.hidden_size *= 2;
  const std::string wide_path = std::string(SPECDEC_TEST_SCRATCH) + "/eagle_wide.safetensors";
  eagle::save_eagle_weights(eagle::init_eagle_weights(wide, 1, 0.1f), wide_path);
  REQUIRE_THROWS_WITH(make({{"weights", wide_path}}), Catch::Contains(wide_path));
  // A layer trained for another target.
  eagle::EagleWeights other = u.w;
  other.metadata_json = R"({"target_sha256": ")" + std::string(64, '0') + R"("})";
  const std::string other_path = std::string(SPECDEC_TEST_SCRATCH) + "/eagle_other_target.safetensors";
  eagle::save_eagle_weights(other, other_path);
  REQUIRE_THROWS_WITH(make({{"weights", other_path}}), Catch::Contains(other_path));
  CHECK(make({{"weights", u.path}}) != nullptr);
}

// Not run by default (ctest -R eagle runs the cases above): the draft time per proposal, printed.
TEST_CASE("eagle draft time per proposal", "[.][eagle][bench]") {
  const char* model_env = std::getenv("SPECDEC_EAGLE_BENCH_MODEL");
  const std::string model_path = model_env ? model_env : test::stories_model();
  auto loaded = load_model(model_path);
  LlamaCpu model{loaded};
  const std::string weights = test::random_eagle_weights(loaded->config, "bench_eagle", 0.05f);
  const int H = loaded->config.dim, n = 64;
  std::vector<TokenId> prompt(n);
  for (int i = 0; i < n; ++i) prompt[i] = (i * 7919 + 1) % loaded->config.vocab_size;
  auto cache = model.new_cache(n);
  ForwardResult fr;
  model.forward(*cache, {.tokens = prompt, .n_logits = 1, .want_hidden = true}, fr);
  const TargetFeatures f{.first_pos = 0,
                         .rows = n - 1,
                         .width = H,
                         .data = std::span<const float>(fr.hidden).first(static_cast<size_t>(n - 1) * H)};
  // The layer alone: one forward of T pairs after the prompt's n - 1, and the target's LM head over T states.
  {
    eagle::EagleWeights w = eagle::load_eagle_weights(weights, loaded->config);
    for (const cpu::DType dtype : {cpu::DType::F32, cpu::DType::Q8_0, cpu::DType::Q4_1})
      for (const int T : {1, 4}) {
        eagle::pack_eagle_matrices(w, dtype);
        std::vector<float> x(static_cast<size_t>(T) * H, 0.1f), out(x.size()), lg;
        std::vector<int32_t> pos(T, n);
        std::vector<double> fwd, lm;
        for (int r = 0; r < 11; ++r) {
          eagle::EagleCache c;
          std::vector<float> pe(static_cast<size_t>(n - 1) * H, 0.1f), po(pe.size());
          std::vector<int32_t> pp(n - 1);
          std::iota(pp.begin(), pp.end(), 1);
          eagle::eagle_forward(w, c, pe, pe, pp, {}, po);
          auto t0 = std::chrono::steady_clock::now();
          eagle::eagle_forward(w, c, x, x, pos, {}, out);
          auto t1 = std::chrono::steady_clock::now();
          model.lm_head(out, T, lg);
          auto t2 = std::chrono::steady_clock::now();
          fwd.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
          lm.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
        }
        std::sort(fwd.begin(), fwd.end());
        std::sort(lm.begin(), lm.end());
        std::printf("%s: T=%d: eagle_forward (%s) %.3f ms, target lm_head %.3f ms (fastest of 11)\n",
                    model_path.c_str(), T, cpu::dtype_info(dtype).name.data(), fwd.front(), lm.front());
      }
  }
  // A reduced draft vocabulary of every 6th id (8192 of SmolLM2's 49152).
  std::vector<int32_t> sixth;
  for (int v = 0; v < loaded->config.vocab_size; v += 6) sixth.push_back(v);
  const std::string reduced = test::random_eagle_weights(loaded->config, "bench_eagle_sixth", 0.05f, sixth);
  struct Case {
    const char* label;
    std::map<std::string, std::string> opts;
    int k;
    bool reduced = false;
  };
  const std::map<std::string, std::string> dynamic = {{"tree", "dynamic"}, {"depth", "5"}, {"topk", "4"}};
  for (const Case& c : {Case{"chain k=4", {{"tree", "chain"}}, 4}, Case{"dynamic 16 nodes depth 5 topk 4", dynamic, 16},
                        Case{"static 16 nodes 4,2,2,1", {{"tree", "static"}}, 16},
                        Case{"chain k=4, draft vocabulary V/6", {{"tree", "chain"}}, 4, true},
                        Case{"dynamic 16 nodes depth 5 topk 4, draft vocabulary V/6", dynamic, 16, true}}) {
    auto opts = c.opts;
    opts["weights"] = c.reduced ? reduced : weights;
    DrafterEnv env{.target = &model, .target_path = model_path};
    auto d = make_drafter(drafters::default_registry().get("eagle"), env, DrafterOptions(opts, "eagle"));
    d->begin(prompt, f);
    // The median and the fastest of 30 proposals (the machine is shared: the fastest is the least disturbed).
    std::vector<double> ms;
    for (int r = 0; r < 31; ++r) {
      d->accept({}, {});
      const auto t0 = std::chrono::steady_clock::now();
      d->propose(c.k);
      if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(ms.begin(), ms.end());
    std::printf("%s: %s: %.3f ms per proposal (median), %.3f ms (fastest)\n", model_path.c_str(), c.label,
                ms[ms.size() / 2], ms.front());
  }
}

TEST_CASE("a layer fitted to stories260K's states drafts tokens the target accepts", "[eagle]") {
  // The decode loop end to end: greedy speculative decoding equals AR, and the drafts are accepted often
  // (a random layer's almost never are: this is what the statistical test's eagle arms use).
  auto& s = test::stories();
  auto rule = verifiers::make_greedy_rule();
  DecodeOptions d;
  d.max_new_tokens = 48;
  const auto ar = speculative_decode(s.model, nullptr, *rule, s.prompt, d);
  std::map<std::string, double> tau;
  for (const std::string tree : {"chain", "dynamic"})
    for (const std::string dtype : {"f32", "q8_0"}) {
      DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get(), .target_path = test::stories_model()};
      auto drafter = make_drafter(
          drafters::default_registry().get("eagle"), env,
          DrafterOptions({{"weights", test::fitted_eagle_weights()}, {"tree", tree}, {"dtype", dtype}}, "eagle"));
      d.k = 4;
      const auto spec = speculative_decode(s.model, drafter.get(), *rule, s.prompt, d);
      INFO("tree = " << tree << ", dtype = " << dtype << ": tau " << spec.tau());
      REQUIRE(spec.tokens == ar.tokens);
      std::printf("fitted eagle layer, %s k=4, %s: tau %.2f\n", tree.c_str(), dtype.c_str(), spec.tau());
      CHECK(spec.tau() > 1.5);
      tau[tree + dtype] = spec.tau();
      if (dtype == "q8_0")  // the packed layer drafts nearly as well (its matrices rounded to 8 bits)
        CHECK(std::abs(tau[tree + "q8_0"] - tau[tree + "f32"]) < 0.1 * tau[tree + "f32"]);
      // The backlog each proposal found (StepRecord::backlog): the prompt's pairs at the first, then the pairs
      // of the step before, every step drafting.
      REQUIRE(spec.steps.size() > 2);
      CHECK(spec.steps[0].backlog == static_cast<int>(s.prompt.size()) - 1);
      for (size_t i = 1; i < spec.steps.size(); ++i)
        if (spec.steps[i].n_proposed > 0 && spec.steps[i - 1].n_proposed > 0)
          CHECK(spec.steps[i].backlog == spec.steps[i - 1].n_emitted);
    }
}

TEST_CASE("held-out chain@d and walk count what the eagle drafter gets accepted on the target's greedy output",
          "[eagle]") {
  // The trainer's held-out figures read depth d >= 2 from the layer's own predicted feature and the next token
  // (evaluate_eagle); the drafter reads its drafted token with its parent's predicted state. On data whose tokens
  // are the target's greedy ones (collect's self mode: the responses) the two must count the same hits at every
  // depth: a difference in the depth >= 2 feature path (position, state or token) shows here.
  auto& s = test::stories();
  const ModelConfig& cfg = s.model.config();
  const int H = cfg.dim;
  const std::string weights = test::fitted_eagle_weights();
  const eagle::EagleWeights w = eagle::load_eagle_weights(weights, cfg);
  train::FeatureData d;
  d.hidden_size = H;
  d.vocab_size = cfg.vocab_size;
  d.topk = 1;
  d.offsets = {0};
  for (const char* prompt : {"Once upon a time", "The little dog", "Sam found a box", "Mom said"}) {
    const test::StoriesSequence seq = test::stories_sequence(prompt, 24, 1);
    d.tokens.insert(d.tokens.end(), seq.tokens.begin(), seq.tokens.end());
    d.offsets.push_back(static_cast<int64_t>(d.tokens.size()));
    d.prompt_len.push_back(seq.prompt_len);
    d.hidden.insert(d.hidden.end(), seq.hidden.begin(), seq.hidden.end());
    d.topk_ids.insert(d.topk_ids.end(), seq.topk_ids.begin(), seq.topk_ids.end());
    d.topk_probs.insert(d.topk_probs.end(), seq.topk_probs.begin(), seq.topk_probs.end());
  }
  std::vector<int> all(d.n_sequences());
  std::iota(all.begin(), all.end(), 0);
  const eagle::EagleMetrics m =
      eagle::evaluate_eagle(w, d, eagle::embedding_f32(*s.loaded), medusa::lm_head_f32(*s.loaded),
                            eagle::eagle_chunks(d, all, 256), 1.f, 0.1f);

  // The drafter begun on every prefix of two tokens or more, a chain of 4 each.
  std::array<int64_t, eagle::kEagleDepths> starts{}, accepted{}, resp_starts{}, resp_accepted{};
  for (int q = 0; q < d.n_sequences(); ++q) {
    const int64_t b = d.offsets[q];
    const int T = static_cast<int>(d.offsets[q + 1] - b), P = d.prompt_len[q];
    for (int n = 2; n <= T; ++n) {  // n committed tokens: pair n - 2 gives the state that drafts token n
      DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get(), .target_path = test::stories_model()};
      auto drafter =
          make_drafter(drafters::default_registry().get("eagle"), env, DrafterOptions({{"weights", weights}}, "eagle"));
      drafter->begin(std::span<const TokenId>(d.tokens).subspan(b, n),
                     {.first_pos = 0,
                      .rows = n - 1,
                      .width = H,
                      .data = std::span<const float>(d.hidden).subspan(b * H, static_cast<size_t>(n - 1) * H)});
      const DraftProposal p = drafter->propose(eagle::kEagleDepths);
      REQUIRE(p.size() == eagle::kEagleDepths);
      bool alive = true;
      for (int depth = 1; depth <= eagle::kEagleDepths && n - 2 + depth < T; ++depth) {
        alive = alive && p.tokens[depth - 1] == d.topk_ids[b + n - 2 + depth];  // the target's argmax there
        ++starts[depth - 1];
        accepted[depth - 1] += alive;
        if (n - 1 >= P - 1) ++resp_starts[depth - 1], resp_accepted[depth - 1] += alive;
      }
    }
  }
  for (int depth = 0; depth < eagle::kEagleDepths; ++depth) {
    INFO("depth " << depth + 1 << ": chain " << m.chain[depth] << ", drafter " << accepted[depth] << " / "
                  << starts[depth]);
    CHECK(m.acc_rows[depth] == starts[depth]);
    CHECK(m.resp_rows[depth] == resp_starts[depth]);
    CHECK(std::llround(m.resp_chain[depth] * resp_starts[depth]) == resp_accepted[depth]);
  }
  // In the prompt the evaluation feeds the prompt's next token where the drafter feeds its own accepted draft
  // (the target's argmax, another token there), so only the responses' figures must agree.
  CHECK(resp_accepted[1] > 0);  // the layer drafts acceptable second tokens: the comparison is not of zeros

  // walk: the decode loop itself (greedy, a chain of 4) over each response; its steps' P(d) (docs/metrics.md)
  // must count what walk counts. Two tokens past the data's end keep the last drafts' depths equal to walk's.
  std::array<int64_t, eagle::kEagleDepths> proposed{}, reached{};
  const auto rule = verifiers::make_greedy_rule();
  for (int q = 0; q < d.n_sequences(); ++q) {
    const int64_t b = d.offsets[q];
    const int T = static_cast<int>(d.offsets[q + 1] - b), P = d.prompt_len[q];
    DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get(), .target_path = test::stories_model()};
    auto drafter =
        make_drafter(drafters::default_registry().get("eagle"), env, DrafterOptions({{"weights", weights}}, "eagle"));
    DecodeOptions opts;
    opts.k = eagle::kEagleDepths;
    opts.max_new_tokens = T - P + 2;
    const DecodeResult r =
        speculative_decode(s.model, drafter.get(), *rule, std::span<const TokenId>(d.tokens).subspan(b, P), opts);
    REQUIRE(std::equal(d.tokens.begin() + b + P, d.tokens.begin() + b + T, r.tokens.begin()));
    for (const StepRecord& st : r.steps)
      for (int depth = 0; depth < std::min(st.n_proposed, eagle::kEagleDepths); ++depth)
        ++proposed[depth], reached[depth] += st.n_accepted > depth;
  }
  for (int depth = 0; depth < eagle::kEagleDepths; ++depth) {
    INFO("depth " << depth + 1 << ": walk " << m.walk[depth] << ", decode " << reached[depth] << " / "
                  << proposed[depth]);
    CHECK(m.walk_rows[depth] == proposed[depth]);
    CHECK(std::llround(m.walk[depth] * proposed[depth]) == reached[depth]);
  }
  CHECK(reached[1] > 0);
  std::printf(
      "fitted eagle layer on greedy stories, responses: acc@1..4 %.3f %.3f %.3f %.3f, chain@1..4 %.3f %.3f %.3f "
      "%.3f, a decode's P(1..4) %.3f %.3f %.3f %.3f\n",
      m.resp_acc[0], m.resp_acc[1], m.resp_acc[2], m.resp_acc[3], m.resp_chain[0], m.resp_chain[1], m.resp_chain[2],
      m.resp_chain[3], m.walk[0], m.walk[1], m.walk[2], m.walk[3]);
}

TEST_CASE("a prompt and accepts queued over several steps give the states of reading each step at once, bit for bit",
          "[eagle]") {
  // begin() and accept() queue their pairs and the next propose reads them in one block; a drafter read after
  // begin and every accept (predicted() reads the queue), one read only when it drafts again, and a fresh one begun on
  // the whole sequence (every pair in one block) hold the same cache and state, bit for bit: the layer's matrices are
  // row-invariant and its attention reads each pair's row alone.
  Setup u;
  for (const char* tree : {"chain", "static", "dynamic"}) {
    INFO("tree = " << tree);
    auto eager = u.begun(u.n, {{"tree", tree}});
    REQUIRE(eager->predicted().size() == static_cast<size_t>(u.H));  // reads the prompt's pairs now
    auto lazy = u.begun(u.n, {{"tree", tree}});
    CHECK(lazy->backlog() == u.n - 1);  // begin() runs no layer: the prompt's pairs wait for a proposal
    int len = u.n;
    for (const int emitted : {2, 1, 3}) {  // three AR-like steps: nothing proposed in between
      eager->accept(u.tokens(len, emitted), u.rows(len - 1, emitted));
      REQUIRE(eager->predicted().size() == static_cast<size_t>(u.H));  // reads the step's pairs now
      CHECK(eager->backlog() == 0);
      lazy->accept(u.tokens(len, emitted), u.rows(len - 1, emitted));
      len += emitted;
    }
    CHECK(lazy->backlog() == len - 1);
    CHECK(lazy->propose(0).tokens.empty());  // an AR step's proposal leaves them queued
    CHECK(lazy->backlog() == len - 1);
    auto fresh = u.begun(len, {{"tree", tree}});
    const DraftProposal p = lazy->propose(6);
    CHECK(lazy->backlog() == 0);
    CHECK(p.tokens == eager->propose(6).tokens);
    CHECK(p.tokens == fresh->propose(6).tokens);
    CHECK(max_diff(lazy->predicted(), eager->predicted()) == 0.0f);
    CHECK(max_diff(lazy->predicted(), fresh->predicted()) == 0.0f);
    const size_t used = static_cast<size_t>(len - 1) * u.w.cfg.kv_dim();
    CHECK(max_diff(std::span<const float>(lazy->cache().k).first(used),
                   std::span<const float>(fresh->cache().k).first(used)) == 0.0f);
    CHECK(max_diff(std::span<const float>(lazy->cache().v).first(used),
                   std::span<const float>(eager->cache().v).first(used)) == 0.0f);
  }
}
