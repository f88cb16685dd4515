// Early exit in the target's own KV cache (ModelDrafterParams::share_target_kv, Drafter::share_target_cache,
// ForwardRequest::n_layers): the drafter that reuses the keys and values the target's verification already
// wrote proposes exactly what the drafter with a cache of its own proposes, step for step (greedy and
// sampled), leaves the target's cache as it found it, and a forward over the first layers of a full cache
// equals a forward over a cache of those layers only, bit for bit.
#include <catch2/catch.hpp>

#include "core/error.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "tests/support/steps.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

DecodeResult decode_early_exit(bool share, const SamplingParams& sampling, const AcceptanceRule& rule,
                               std::map<std::string, std::string> opts, int k) {
  auto& s = test::stories();
  DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get(), .sampling = sampling, .seed = 7};
  opts["share_kv"] = share ? "true" : "false";
  auto d = make_drafter(drafters::default_registry().get("early_exit"), env, DrafterOptions(opts, "early_exit"));
  DecodeOptions o;
  o.max_new_tokens = 80;
  o.k = k;
  o.sampling = sampling;
  o.seed = 7;
  return speculative_decode(s.model, d.get(), rule, s.prompt, o);
}

// Same tokens and, step by step, the same proposals (every node's token, parent and q) and verdicts.
void same_proposals(const DecodeResult& a, const DecodeResult& b) {
  test::require_same_steps(a, b, test::SameSteps::kProposals);
}

}  // namespace

TEST_CASE("early exit in the target's KV cache proposes what it proposes with its own cache", "[early_exit]") {
  auto& s = test::stories();
  const int L = s.model.config().n_layers;
  auto greedy = verifiers::make_greedy_rule();
  DecodeOptions ar_opts;
  ar_opts.max_new_tokens = 80;
  const auto ar = speculative_decode(s.model, nullptr, *greedy, s.prompt, ar_opts);

  for (int layers : {1, L / 2, L - 1}) {
    CAPTURE(layers);
    const std::map<std::string, std::string> chain = {{"layers", std::to_string(layers)}};
    const auto own = decode_early_exit(false, {}, *greedy, chain, 4);
    const auto shared = decode_early_exit(true, {}, *greedy, chain, 4);
    same_proposals(own, shared);
    REQUIRE(shared.tokens == ar.tokens);                               // lossless
    if (layers == L - 1) REQUIRE(shared.accepted_draft_tokens() > 0);  // real accepted paths were exercised

    const std::map<std::string, std::string> tree = {
        {"layers", std::to_string(layers)}, {"tree_width", "2"}, {"tree_depth", "3"}};
    const auto own_t = decode_early_exit(false, {}, *greedy, tree, 8);
    const auto shared_t = decode_early_exit(true, {}, *greedy, tree, 8);
    same_proposals(own_t, shared_t);
    REQUIRE(shared_t.tokens == ar.tokens);
  }

  // Sampled (T = 1, top-k 20): the same q rows and draws, so the same output.
  auto spec = verifiers::make_speculative_rule();
  const SamplingParams t1{.temperature = 1.0f, .top_k = 20};
  const std::map<std::string, std::string> chain = {{"layers", std::to_string(L - 1)}};
  same_proposals(decode_early_exit(false, t1, *spec, chain, 4), decode_early_exit(true, t1, *spec, chain, 4));
}

TEST_CASE("a forward over the first layers of a full cache equals one over a cache of those layers", "[early_exit]") {
  auto& s = test::stories();
  const int L = s.model.config().n_layers, V = s.model.config().vocab_size;
  const std::vector<TokenId> more = {s.prompt[1], s.prompt[2], s.prompt[1]};
  for (int layers = 1; layers < L; ++layers) {
    auto full = s.model.new_cache(64);
    auto part = s.model.new_cache(64, layers);
    ForwardResult a, b;
    s.model.forward(*full, {.tokens = s.prompt}, a);  // every layer: the target's prefill
    s.model.forward(*part, {.tokens = s.prompt}, b);
    s.model.forward(*full, {.tokens = more, .n_layers = layers}, a);
    s.model.forward(*part, {.tokens = more}, b);
    REQUIRE(a.logits.size() == static_cast<size_t>(more.size()) * V);
    REQUIRE(a.logits == b.logits);
  }
  auto cache = s.model.new_cache(64);
  ForwardResult r;
  for (int bad : {0, L + 1}) {
    try {
      s.model.forward(*cache, {.tokens = s.prompt, .n_layers = bad}, r);
      FAIL("n_layers = " << bad << " was accepted");
    } catch (const Error& e) {
      REQUIRE_THAT(e.what(), Catch::Contains("got n_layers = " + std::to_string(bad)));
    }
  }
  REQUIRE(cache->size() == 0);  // nothing appended by a refused forward
}

TEST_CASE("a drafter that leaves the target's KV cache changed is an error naming it", "[early_exit]") {
  auto& s = test::stories();
  // Appends one slot to the target's cache during propose and never hands it back.
  class Leaky final : public Drafter {
   public:
    void share_target_cache(KVCache* c) override { cache_ = c; }
    void begin(std::span<const TokenId>, const TargetFeatures&) override {}
    DraftProposal propose(int) override {
      ForwardResult r;
      const TokenId t = 1;
      test::stories().model.forward(*cache_, {.tokens = {&t, 1}, .n_layers = 1}, r);
      return {};
    }
    void accept(std::span<const TokenId>, const TargetFeatures&) override {}

   private:
    KVCache* cache_ = nullptr;
  } leaky;
  auto greedy = verifiers::make_greedy_rule();
  DecodeOptions o;
  o.max_new_tokens = 8;
  try {
    speculative_decode(s.model, &leaky, *greedy, s.prompt, o);
    FAIL("a leaked slot was accepted");
  } catch (const Error& e) {
    REQUIRE_THAT(e.what(), Catch::Contains("leaves the target's KV cache as it found it"));
  }
}
