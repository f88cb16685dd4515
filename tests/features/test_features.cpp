// Target features through the decode loop (FeatureSpec, TargetFeatures): what a drafter is handed equals
// what a plain forward over the same tokens computes, row for row, at the positions the interface names;
// nothing is handed when nothing is asked; the LM head alone reproduces the forward's logits.
#include <catch2/catch.hpp>

#include <cmath>

#include "core/error.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;

namespace {

// A drafter that reads features and proposes with an inner drafter (ngram: real accepted paths of
// varying length), recording every TargetFeatures it is handed with the sequence it belongs to.
class RecordingDrafter final : public Drafter {
 public:
  RecordingDrafter(FeatureSpec spec, std::unique_ptr<Drafter> inner)
      : spec_(std::move(spec)), inner_(std::move(inner)) {}
  FeatureSpec features() const override { return spec_; }
  void begin(std::span<const TokenId> prompt, const TargetFeatures& f) override {
    seq.assign(prompt.begin(), prompt.end());
    record(f, static_cast<int>(prompt.size()) - 1);
    inner_->begin(prompt, {});
  }
  DraftProposal propose(int max_tokens) override { return inner_->propose(max_tokens); }
  void accept(std::span<const TokenId> emitted, const TargetFeatures& f) override {
    record(f, static_cast<int>(emitted.size()));
    // Row i predicts emitted[i]: it is the state after position first_pos + i, and the sequence so far
    // ends at position first_pos (the pass's first token).
    REQUIRE(f.first_pos == static_cast<int>(seq.size()) - 1);
    seq.insert(seq.end(), emitted.begin(), emitted.end());
    inner_->accept(emitted, {});
  }

  struct Record {
    int first_pos, rows, width;
    std::vector<float> data;
  };
  std::vector<Record> records;
  std::vector<TokenId> seq;

 private:
  void record(const TargetFeatures& f, int expected_rows) {
    if (!spec_.empty()) REQUIRE(f.rows == expected_rows);
    if (spec_.empty()) REQUIRE(f.rows == 0);
    REQUIRE(f.data.size() == static_cast<size_t>(f.rows) * f.width);
    records.push_back({f.first_pos, f.rows, f.width, {f.data.begin(), f.data.end()}});
  }
  FeatureSpec spec_;
  std::unique_ptr<Drafter> inner_;
};

}  // namespace

TEST_CASE("the features a drafter is handed are the target's states at the named positions", "[features]") {
  auto& s = test::stories();
  const int H = s.model.config().dim;
  const std::vector<int32_t> layers = {1, 3};
  const FeatureSpec spec{.final_norm = true, .layers = {1, 3}};
  auto rule = verifiers::make_greedy_rule();
  DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get()};
  auto inner = make_drafter(drafters::default_registry().get("ngram"), env, DrafterOptions({}, "ngram"));
  RecordingDrafter rec(spec, std::move(inner));
  DecodeOptions d;
  d.max_new_tokens = 60;
  d.k = 4;
  const DecodeResult res = speculative_decode(s.model, &rec, *rule, s.prompt, d);
  REQUIRE(res.accepted_draft_tokens() > 0);  // some steps hand more than one row

  // The reference: one forward over the whole sequence (the batch-invariant forward gives each row the
  // same bits whatever block it was computed in).
  auto cache = s.model.new_cache(static_cast<int>(rec.seq.size()));
  ForwardResult full;
  s.model.forward(*cache, {.tokens = rec.seq, .n_logits = 0, .want_hidden = true, .layer_outputs = layers}, full);
  const int width = spec.width(H);
  REQUIRE(width == 3 * H);
  int rows_checked = 0;
  for (const auto& r : rec.records) {
    REQUIRE(r.width == width);
    for (int i = 0; i < r.rows; ++i) {
      const int pos = r.first_pos + i;
      const float* got = r.data.data() + static_cast<size_t>(i) * width;
      const float* hid = full.hidden.data() + static_cast<size_t>(pos) * H;
      for (int j = 0; j < H; ++j) REQUIRE(got[j] == hid[j]);
      for (size_t l = 0; l < layers.size(); ++l) {
        const float* lo = full.layer_outputs.data() + (static_cast<size_t>(pos) * layers.size() + l) * H;
        for (int j = 0; j < H; ++j) REQUIRE(got[(1 + l) * H + j] == lo[j]);
      }
      ++rows_checked;
    }
  }
  // begin's rows (positions 0..n-2) and one row per emitted token of every step but the last.
  REQUIRE(rows_checked >=
          static_cast<int>(s.prompt.size()) - 1 + static_cast<int>(res.tokens.size()) - res.steps.back().n_emitted);
}

TEST_CASE("a drafter that asks for no features is handed none, and decodes as before", "[features]") {
  auto& s = test::stories();
  auto rule = verifiers::make_greedy_rule();
  DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get()};
  DecodeOptions d;
  d.max_new_tokens = 40;
  auto plain = make_drafter(drafters::default_registry().get("ngram"), env, DrafterOptions({}, "ngram"));
  const auto a = speculative_decode(s.model, plain.get(), *rule, s.prompt, d);
  RecordingDrafter rec(FeatureSpec{},
                       make_drafter(drafters::default_registry().get("ngram"), env, DrafterOptions({}, "ngram")));
  const auto b = speculative_decode(s.model, &rec, *rule, s.prompt, d);
  REQUIRE(a.tokens == b.tokens);
  for (const auto& r : rec.records) REQUIRE(r.rows == 0);
}

TEST_CASE("layer outputs: the last layer's output, normed, is the final hidden state; bad layers are refused",
          "[features]") {
  auto& s = test::stories();
  const ModelConfig& c = s.model.config();
  const int H = c.dim, L = c.n_layers;
  const std::vector<int32_t> last = {L - 1};
  auto cache = s.model.new_cache(64);
  ForwardResult fr;
  s.model.forward(*cache, {.tokens = s.prompt, .want_hidden = true, .layer_outputs = last}, fr);
  const float* g = s.loaded->weights.final_norm.f32();
  for (size_t t = 0; t < s.prompt.size(); ++t) {
    const float* x = fr.layer_outputs.data() + t * H;
    double ss = 0;
    for (int j = 0; j < H; ++j) ss += static_cast<double>(x[j]) * x[j];
    const double inv = 1.0 / std::sqrt(ss / H + c.rms_eps);
    for (int j = 0; j < H; ++j) REQUIRE(fr.hidden[t * H + j] == Approx(x[j] * inv * g[j]).margin(1e-5));
  }
  const std::vector<int32_t> bad = {L};
  auto c2 = s.model.new_cache(64);
  REQUIRE_THROWS_WITH(s.model.forward(*c2, {.tokens = s.prompt, .layer_outputs = bad}, fr),
                      Catch::Contains("layer outputs of layers 0..") && Catch::Contains(std::to_string(L)));
}

TEST_CASE("lm_head on the forward's hidden states gives the forward's logits bit for bit", "[features]") {
  auto& s = test::stories();
  const int V = s.model.config().vocab_size;
  auto cache = s.model.new_cache(64);
  ForwardResult fr;
  s.model.forward(*cache, {.tokens = s.prompt, .want_hidden = true}, fr);
  std::vector<float> logits;
  s.model.lm_head(fr.hidden, static_cast<int>(s.prompt.size()), logits);
  REQUIRE(logits.size() == s.prompt.size() * V);
  REQUIRE(logits == fr.logits);
  REQUIRE_THROWS_WITH(s.model.lm_head(fr.hidden, 1, logits), Catch::Contains("lm_head"));
}
