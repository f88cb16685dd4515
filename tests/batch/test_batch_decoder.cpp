// The batched decode loop (core/speculative/batch_decoder.h) against the single-sequence loop: for batch sizes
// 1, 2, 3, 5 with mixed drafters (AR, ngram, early_exit chain and tree, draft_model, a drafter that reads
// target features; Medusa chains and trees, EAGLE chains and trees, and the model drafters' chains draft
// batched: one propose_batch per group of drafters sharing weights), greedy and sampled (T = 1), requests of different
// lengths that finish at different steps and queued ones that join mid-run, every request's tokens and step records
// (every node's token, parent, verdict and draws) equal speculative_decode's for it alone, bit for bit; the limits
// hold; bad input is a one-line error.
#include <catch2/catch.hpp>

#include <bit>
#include <chrono>
#include <thread>
#include <map>
#include <set>
#include <string>

#include "core/error.h"
#include "core/speculative/batch_decoder.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "tests/eagle_drafter/random_eagle.h"
#include "tests/support/errors.h"
#include "tests/support/medusa_heads.h"
#include "tests/support/steps.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

using test::stories;

// Reads the final-norm state and layer 0's output of every token it is handed, and proposes a chain of two
// tokens drawn from a checksum of all of them: a proposal that differs when any feature bit differs.
class FeatureChecksumDrafter final : public Drafter {
 public:
  explicit FeatureChecksumDrafter(int V) : V_(V) {}
  FeatureSpec features() const override { return {.final_norm = true, .layers = {0}}; }
  void begin(std::span<const TokenId> prompt, const TargetFeatures& f) override {
    for (TokenId t : prompt) mix(static_cast<uint32_t>(t));
    absorb(f);
  }
  DraftProposal propose(int max_tokens) override {
    DraftProposal p;
    for (int i = 0; i < std::min(2, max_tokens); ++i) p.tokens.push_back(static_cast<TokenId>((h_ >> (8 * i)) % V_));
    return p;
  }
  void accept(std::span<const TokenId> accepted, const TargetFeatures& f) override {
    for (TokenId t : accepted) mix(static_cast<uint32_t>(t));
    REQUIRE(f.rows == static_cast<int>(accepted.size()));
    absorb(f);
  }

 private:
  void mix(uint32_t x) { h_ = (h_ ^ x) * 1099511628211ull; }
  void absorb(const TargetFeatures& f) {
    mix(static_cast<uint32_t>(f.first_pos));
    for (float v : f.data) mix(std::bit_cast<uint32_t>(v));
  }
  int V_;
  uint64_t h_ = 1469598103934665603ull;
};

// One request of the mix: which drafter, its prompt, length and options.
struct Spec {
  std::string drafter;  // "" = AR, a registry name, or "features"
  std::map<std::string, std::string> opts;
  std::string prompt;
  int max_new = 40;
  int k = 4;
  bool stop = false;  // stop at the 13th token of its output without a stop token
};

const std::vector<Spec>& mix() {
  static const std::vector<Spec> m = {
      {"", {}, "Once upon a time", 37},
      {"ngram", {}, "Lily and Ben went to the park. Lily and Ben", 52, 4},
      {"early_exit", {{"layers", "3"}}, "The cat", 23, 4},
      {"early_exit", {{"layers", "3"}, {"tree_width", "2"}, {"tree_depth", "3"}}, "One day, a little girl", 45, 8},
      {"draft_model", {{"model", test::stories_model()}, {"layers", "2"}}, "Tom had a big red ball", 30, 3},
      {"features", {}, "Once upon a time there was a dog", 18, 2},
      {"", {}, "Sue", 0},  // nothing to generate: leaves without a step
      {"early_exit", {{"layers", "2"}}, "Once upon a time, in a small house", 60, 5, true},
      {"ngram", {}, "Ben said hello. Ben said", 9, 3},
      {"medusa", {{"heads", "@medusa"}}, "The little bird sang", 26, 3},
      {"medusa", {{"heads", "@medusa"}, {"tree_nodes", "6"}}, "Lily saw a big tree", 33, 6},
      {"medusa", {{"heads", "@medusa"}}, "Once upon a time there was a girl named Sue", 31, 4},
      {"medusa", {{"heads", "@medusa"}, {"tree_nodes", "6"}}, "Ben had a toy car", 20, 5},
      {"eagle", {{"weights", "@eagle"}, {"tree", "static"}}, "Tom and his mom went", 29, 6},
      {"eagle", {{"weights", "@eagle"}, {"tree", "dynamic"}, {"depth", "3"}, {"topk", "2"}}, "The sun was hot", 24, 4},
      {"eagle", {{"weights", "@eagle"}, {"tree", "static"}}, "A little dog ran", 35, 5},
      {"eagle", {{"weights", "@eagle"}}, "Lily and Ben", 22, 3},
      {"draft_model", {{"model", test::stories_model()}, {"layers", "2"}}, "Sue liked to sing", 27, 4},
  };
  return m;
}

// Drafters sharing weights (one DrafterSharedState, as a run's) share a Drafter::batch_key, and so draft
// batched in the batched loop. The keys that proposed in groups of two or more.
std::set<const void*>& batched_keys() {
  static std::set<const void*> keys;
  return keys;
}

struct Mode {
  SamplingParams sampling;
  std::unique_ptr<AcceptanceRule> rule;
};

std::unique_ptr<Drafter> make(const Spec& sp, const SamplingParams& sampling, uint64_t request) {
  auto& s = stories();
  if (sp.drafter.empty()) return nullptr;
  if (sp.drafter == "features") return std::make_unique<FeatureChecksumDrafter>(s.model.config().vocab_size);
  static DrafterSharedState shared;
  DrafterEnv env{.target = &s.model,
                 .tokenizer = s.tok.get(),
                 .sampling = sampling,
                 .seed = 11,
                 .request = request,
                 .shared = &shared,
                 .target_path = test::stories_model()};
  std::map<std::string, std::string> opts = sp.opts;
  for (auto& [key, value] : opts) {
    if (value == "@medusa") value = test::random_medusa_heads(s.model.config(), "batch_medusa", 0.02f);
    if (value == "@eagle") value = test::random_eagle_weights(s.model.config(), "batch_eagle", 0.02f);
  }
  auto d = make_drafter(drafters::default_registry().get(sp.drafter), env, DrafterOptions(opts, sp.drafter));
  if (d->batch_key() == nullptr) return d;
  // Counts the batched calls (and checks the group) around the drafter's own propose_batch.
  class Counting final : public Drafter {
   public:
    explicit Counting(std::unique_ptr<Drafter> d) : d_(std::move(d)) {}
    FeatureSpec features() const override { return d_->features(); }
    void begin(std::span<const TokenId> p, const TargetFeatures& f) override { d_->begin(p, f); }
    DraftProposal propose(int max_tokens) override { return d_->propose(max_tokens); }
    void accept(std::span<const TokenId> a, const TargetFeatures& f) override { d_->accept(a, f); }
    void share_target_cache(KVCache* c) override { d_->share_target_cache(c); }
    const void* batch_key() const override { return d_->batch_key(); }
    void propose_batch(std::span<Drafter* const> group, std::span<const int> max_tokens,
                       std::span<DraftProposal> out) override {
      std::vector<Drafter*> inner;
      for (Drafter* g : group) {
        REQUIRE(g->batch_key() == batch_key());
        inner.push_back(static_cast<Counting*>(g)->d_.get());
      }
      if (group.size() > 1) batched_keys().insert(batch_key());
      d_->propose_batch(inner, max_tokens, out);
    }

   private:
    std::unique_ptr<Drafter> d_;
  };
  return std::make_unique<Counting>(std::move(d));
}

DecodeOptions options_of(const Spec& sp, const SamplingParams& sampling, uint64_t request,
                         const std::vector<TokenId>& unstopped) {
  DecodeOptions o;
  o.max_new_tokens = sp.max_new;
  o.k = sp.k;
  o.sampling = sampling;
  o.seed = 11;
  o.request = request;
  if (sp.stop && unstopped.size() > 12) {
    const TokenId stop = unstopped[12];
    o.is_stop = [stop](TokenId t) { return t == stop; };
  }
  return o;
}

// Runs the mix alone (speculative_decode) and batched under each (B, tokens per step) and compares.
void check_mix(const SamplingParams& sampling, const AcceptanceRule& rule) {
  auto& s = stories();
  const auto& m = mix();
  std::vector<DecodeResult> alone;
  std::vector<DecodeOptions> opts;
  for (size_t i = 0; i < m.size(); ++i) {
    const uint64_t request = 100 + i;
    const std::vector<TokenId> prompt = s.tok->encode(m[i].prompt, true);
    // The stop token: the 13th token of the same run without one (the run with it is that run cut there).
    std::vector<TokenId> unstopped;
    if (m[i].stop) {
      auto d = make(m[i], sampling, request);
      unstopped = speculative_decode(s.model, d.get(), rule, prompt, options_of(m[i], sampling, request, {})).tokens;
    }
    opts.push_back(options_of(m[i], sampling, request, unstopped));
    auto d = make(m[i], sampling, request);
    alone.push_back(speculative_decode(s.model, d.get(), rule, prompt, opts.back()));
  }
  REQUIRE(alone[7].stopped);  // the stop token was exercised
  int accepted = 0;
  for (const auto& r : alone) accepted += r.accepted_draft_tokens();
  REQUIRE(accepted > 0);  // real accepted paths, not only rejections

  const std::vector<std::pair<int, int>> limits = {{1, 256}, {2, 256}, {3, 10}, {5, 12}, {18, 512}};
  for (const auto& [B, max_tokens] : limits) {
    CAPTURE(B, max_tokens);
    batched_keys().clear();
    std::vector<BatchRequest> reqs;
    std::vector<std::vector<TokenId>> streamed(m.size());
    for (size_t i = 0; i < m.size(); ++i) {
      BatchRequest r{.prompt = s.tok->encode(m[i].prompt, true), .opts = opts[i], .rule = &rule};
      if (!m[i].drafter.empty())
        r.make_drafter = [&sp = m[i], sampling, request = opts[i].request] { return make(sp, sampling, request); };
      r.on_tokens = [&out = streamed[i]](std::span<const TokenId> t) { out.insert(out.end(), t.begin(), t.end()); };
      reqs.push_back(std::move(r));
    }
    const BatchResult res =
        batch_decode(s.model, std::move(reqs), {.max_sequences = B, .max_tokens_per_step = max_tokens});
    REQUIRE(res.results.size() == m.size());
    for (size_t i = 0; i < m.size(); ++i) {
      CAPTURE(i, m[i].drafter);
      test::require_same_steps(res.results[i], alone[i]);
      REQUIRE(streamed[i] == alone[i].tokens);
    }

    // Every step of every request was verified in exactly one batch step, in order, and each batch record
    // sums its sequences' records; the limits hold.
    std::vector<int> next_step(m.size(), 0);
    int first_step_of_last = -1, waited = 0;
    for (const BatchStepRecord& b : res.steps) {
      CAPTURE(b.step);
      REQUIRE(b.n_sequences >= 1);
      REQUIRE(b.n_sequences <= B);
      REQUIRE(b.n_in_flight <= B);
      REQUIRE(b.n_sequences <= b.n_in_flight);
      REQUIRE(b.n_tokens <= max_tokens);
      REQUIRE(b.tickets.size() == static_cast<size_t>(b.n_sequences));
      REQUIRE(std::set<int>(b.tickets.begin(), b.tickets.end()).size() == b.tickets.size());
      int tokens = 0, drafted = 0, acc = 0, emitted = 0;
      for (size_t j = 0; j < b.tickets.size(); ++j) {
        const int t = b.tickets[j];
        REQUIRE(b.seq_steps[j] == next_step[t]++);
        const StepRecord& r = res.results[t].steps[b.seq_steps[j]];
        tokens += 1 + r.n_proposed;
        drafted += r.n_proposed;
        acc += r.n_accepted;
        emitted += r.n_emitted;
        if (t == static_cast<int>(m.size()) - 1 && first_step_of_last < 0) first_step_of_last = b.step;
      }
      REQUIRE(b.n_tokens == tokens);
      REQUIRE(b.n_drafted == drafted);
      REQUIRE(b.n_accepted == acc);
      REQUIRE(b.n_emitted == emitted);
      waited += b.n_in_flight - b.n_sequences;
    }
    for (size_t i = 0; i < m.size(); ++i) REQUIRE(next_step[i] == static_cast<int>(alone[i].steps.size()));
    // With every request in flight at once, five keys drafted in groups: the Medusa chains, the Medusa trees,
    // the EAGLE layers (chain, static and dynamic trees alike), the draft model's chains and early exit (the
    // target's first layers: the chains in the target's cache and in their own, the tree alone); one at a
    // time, never.
    if (B >= static_cast<int>(m.size())) REQUIRE(batched_keys().size() == 5);
    if (B == 1) REQUIRE(batched_keys().empty());
    if (B < static_cast<int>(m.size())) REQUIRE(first_step_of_last > 0);  // a queued request joined mid-run
    if (max_tokens < 20) REQUIRE(waited > 0);  // the token limit made some sequence wait a step
  }
}

}  // namespace

TEST_CASE("batched greedy decoding equals speculative_decode for every request", "[batch]") {
  auto greedy = verifiers::make_greedy_rule();
  check_mix({}, *greedy);
}

TEST_CASE("batched sampled decoding (T = 1) equals speculative_decode for every request", "[batch]") {
  auto spec = verifiers::make_speculative_rule();
  check_mix({.temperature = 1.0f}, *spec);
}

TEST_CASE("a request can be submitted while others are in flight", "[batch]") {
  auto& s = stories();
  auto greedy = verifiers::make_greedy_rule();
  BatchDecoder dec(s.model, {.max_sequences = 2, .max_tokens_per_step = 64});
  DecodeOptions o;
  o.max_new_tokens = 20;
  const int a = dec.submit({.prompt = s.prompt, .opts = o, .rule = greedy.get()});
  REQUIRE(dec.step());
  REQUIRE(dec.in_flight() == 1);
  o.max_new_tokens = 8;
  const int b = dec.submit({.prompt = s.tok->encode("The dog", true), .opts = o, .rule = greedy.get()});
  while (dec.step()) {
  }
  REQUIRE(dec.idle());
  REQUIRE_FALSE(dec.step());
  REQUIRE(dec.steps()[1].n_sequences == 2);  // b joined at the next step
  REQUIRE(dec.take_result(a).tokens ==
          speculative_decode(s.model, nullptr, *greedy, s.prompt, {.max_new_tokens = 20}).tokens);
  REQUIRE(dec.take_result(b).tokens.size() == 8);
}

TEST_CASE("bad batch input is a one-line error naming the value", "[batch]") {
  auto& s = stories();
  auto greedy = verifiers::make_greedy_rule();
  const int ctx = s.model.config().max_seq_len;
  REQUIRE_THAT(test::error_of([&] { BatchDecoder(s.model, {.max_sequences = 0}); }),
               Catch::Contains("max_sequences >= 1") && Catch::Contains("got 0"));
  REQUIRE_THAT(test::error_of([&] { BatchDecoder(s.model, {.max_tokens_per_step = 0}); }),
               Catch::Contains("max_tokens_per_step >= 1") && Catch::Contains("got 0"));

  BatchDecoder dec(s.model, {.max_sequences = 2, .max_tokens_per_step = 4});
  DecodeOptions o;
  o.request = 42;
  dec.submit({.prompt = s.prompt, .opts = o, .rule = greedy.get()});
  const std::string too_long = test::error_of(
      [&] { dec.submit({.prompt = std::vector<TokenId>(ctx + 5, 1), .opts = o, .rule = greedy.get()}); });
  REQUIRE_THAT(too_long,
               Catch::Contains("request 1 (id 42)") && Catch::Contains("got " + std::to_string(ctx + 5) + " tokens"));
  REQUIRE(too_long.find('\n') == std::string::npos);
  o.k = 4;  // blocks of 5 tokens under a limit of 4
  const std::string wide = test::error_of([&] {
    dec.submit({.prompt = s.prompt, .opts = o, .rule = greedy.get(), .make_drafter = [] {
                  return std::unique_ptr<Drafter>();
                }});
  });
  REQUIRE_THAT(wide, Catch::Contains("max_tokens_per_step = 4") && Catch::Contains("got k = 4"));
  REQUIRE_THAT(test::error_of([&] { dec.submit({.prompt = s.prompt, .opts = o}); }),
               Catch::Contains("an acceptance rule"));
  REQUIRE_THAT(test::error_of([&] { dec.take_result(0); }), Catch::Contains("still queued or in flight"));
  while (dec.step()) {
  }
  REQUIRE(dec.finished(0));  // the refused requests left nothing behind
  REQUIRE_THAT(test::error_of([&] { dec.finished(1); }), Catch::Contains("got 1"));

  // A drafter factory that makes none fails when the request joins, naming it.
  o.request = 5;
  o.k = 2;
  dec.submit(
      {.prompt = s.prompt, .opts = o, .rule = greedy.get(), .make_drafter = [] { return std::unique_ptr<Drafter>(); }});
  REQUIRE_THAT(test::error_of([&] { dec.step(); }), Catch::Contains("request 1 (id 5)") && Catch::Contains("got none"));
}

TEST_CASE("a step's t_draft_us holds the drafter's propose and its accept of the step's tokens", "[batch]") {
  // A drafter that spends at least 3 ms proposing and 4 ms accepting: every step records at least 7 ms of
  // drafting (a lower bound by construction, not a timing of the machine), alone and batched.
  class Slow final : public Drafter {
   public:
    void begin(std::span<const TokenId>, const TargetFeatures&) override {}
    DraftProposal propose(int) override {
      std::this_thread::sleep_for(std::chrono::milliseconds(3));
      return {.tokens = {1}};
    }
    void accept(std::span<const TokenId>, const TargetFeatures&) override {
      std::this_thread::sleep_for(std::chrono::milliseconds(4));
    }
  };
  auto& s = stories();
  auto greedy = verifiers::make_greedy_rule();
  DecodeOptions o;
  o.max_new_tokens = 6;
  o.k = 1;
  const std::vector<TokenId> prompt = s.tok->encode("Once upon a time", true);
  Slow alone;
  const DecodeResult r = speculative_decode(s.model, &alone, *greedy, prompt, o);
  const BatchResult b = batch_decode(
      s.model,
      {{.prompt = prompt, .opts = o, .rule = greedy.get(), .make_drafter = [] { return std::make_unique<Slow>(); }}},
      {.max_sequences = 1, .max_tokens_per_step = 8});
  for (const DecodeResult* res : {&r, &b.results[0]}) {
    REQUIRE(res->steps.size() >= 3);
    // No stop token here, so the drafter accepted every step's tokens, the last step's included; a step with
    // no draft budget (the last token of the output) did not ask it to propose.
    for (const StepRecord& st : res->steps) CHECK(st.t_draft_us >= (st.n_proposed > 0 ? 7000 : 4000));
    CHECK(res->steps.front().n_proposed == 1);
  }
}
