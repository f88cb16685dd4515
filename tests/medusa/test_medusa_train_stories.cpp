// The Medusa trainer on a real target, stories260K: features from the model's own forward over greedy
// continuations of a few prompts (final-norm hidden states and the top-k of its next-token distribution,
// what `specdec collect` stores), the LM head from its weights; two heads trained briefly must lower the
// held-out loss below the untrained heads' (which repeat the target's next-token prediction).
#include <catch2/catch.hpp>

#include "drafters/medusa/train_medusa.h"
#include "tests/medusa/stories_features.h"

using namespace specdec;
using namespace specdec::medusa;

namespace {

constexpr int kTopK = 8;

void add_sequence(train::FeatureData& d, const std::string& prompt, int n) {
  const test::StoriesSequence seq = test::stories_sequence(prompt, n, kTopK);
  const int T = static_cast<int>(seq.tokens.size()), V = d.vocab_size, H = d.hidden_size;
  REQUIRE(seq.hidden.size() == static_cast<size_t>(T) * H);
  d.tokens.insert(d.tokens.end(), seq.tokens.begin(), seq.tokens.end());
  d.hidden.insert(d.hidden.end(), seq.hidden.begin(), seq.hidden.end());
  d.topk_ids.insert(d.topk_ids.end(), seq.topk_ids.begin(), seq.topk_ids.end());
  d.topk_probs.insert(d.topk_probs.end(), seq.topk_probs.begin(), seq.topk_probs.end());
  d.offsets.push_back(d.offsets.back() + T);
  d.prompt_len.push_back(seq.prompt_len);
  // The feature is the final-norm state: the LM head alone maps it to the logits.
  static const std::vector<float> lm = lm_head_f32(*test::stories().loaded);
  for (int t : {0, T - 1}) {
    const float* h = seq.hidden.data() + static_cast<size_t>(t) * H;
    for (int v : {0, 7, V - 1}) {
      double z = 0;
      for (int i = 0; i < H; ++i) z += static_cast<double>(lm[static_cast<size_t>(v) * H + i]) * h[i];
      CHECK(z == Approx(seq.logits[static_cast<size_t>(t) * V + v]).epsilon(1e-3).margin(1e-3));
    }
  }
}

}  // namespace

TEST_CASE("stories260K: two heads trained briefly lower the held-out loss") {
  auto& s = test::stories();
  train::FeatureData d;
  d.hidden_size = s.model.config().dim;
  d.vocab_size = s.model.config().vocab_size;
  d.topk = kTopK;
  d.feature = "final_norm";
  d.offsets.push_back(0);
  for (const std::string& p : test::stories_prompts()) add_sequence(d, p, 60);

  const std::vector<float> lm = lm_head_f32(*s.loaded);
  MedusaTrainConfig c;
  c.n_heads = 2;
  c.n_layers = 1;
  c.epochs = 6;
  c.batch = 64;
  c.lr = 3e-3f;
  c.warmup = 5;
  c.seed = 1;
  c.threads = 1;
  c.heldout_fraction = 0.25;
  const MedusaTrainResult r = train_medusa(d, lm, c);
  REQUIRE(r.epochs.size() == 7);
  REQUIRE(r.heldout_rows > 0);
  for (int k = 0; k < 2; ++k) {
    const HeadMetrics& before = r.epochs.front().heldout[k];
    const HeadMetrics& after = r.epochs.back().heldout[k];
    INFO("head " << k << ": held-out loss " << before.loss << " -> " << after.loss << ", top-1 " << before.topk[0]
                 << " -> " << after.topk[0]);
    CHECK(after.loss < 0.9 * before.loss);
    CHECK(after.topk[0] >= before.topk[0]);
  }
}
