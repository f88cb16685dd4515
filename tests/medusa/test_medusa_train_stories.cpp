// The Medusa trainer on a real target, stories260K: features from the model's own forward over greedy
// continuations of a few prompts (final-norm hidden states and the top-k of its next-token distribution,
// what `specdec collect` stores), the LM head from its weights; two heads trained briefly must lower the
// held-out loss below the untrained heads' (which repeat the target's next-token prediction).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "drafters/medusa/train_medusa.h"
#include "tests/support/stories.h"

using namespace specdec;
using namespace specdec::medusa;

namespace {

constexpr int kTopK = 8;

// One sequence: the prompt, then `n` greedy tokens; appended to d with its features.
void add_sequence(train::FeatureData& d, const std::string& prompt, int n) {
  auto& s = test::stories();
  std::vector<TokenId> tokens = s.tok->encode(prompt, /*add_bos=*/true);
  const int prompt_len = static_cast<int>(tokens.size());
  {
    auto cache = s.model.new_cache(prompt_len + n + 1);
    ForwardResult out;
    s.model.forward(*cache, {.tokens = tokens, .n_logits = 1}, out);
    for (int i = 0; i < n; ++i) {
      const auto best = std::max_element(out.logits.begin(), out.logits.end()) - out.logits.begin();
      tokens.push_back(static_cast<TokenId>(best));
      const TokenId next[1] = {tokens.back()};
      s.model.forward(*cache, {.tokens = next, .n_logits = 1}, out);
    }
  }
  const int T = static_cast<int>(tokens.size()), V = d.vocab_size, H = d.hidden_size;
  auto cache = s.model.new_cache(T);
  ForwardResult out;
  s.model.forward(*cache, {.tokens = tokens, .want_hidden = true}, out);
  REQUIRE(out.hidden.size() == static_cast<size_t>(T) * H);
  for (int t = 0; t < T; ++t) {
    const float* z = out.logits.data() + static_cast<size_t>(t) * V;
    const float zmax = *std::max_element(z, z + V);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v] - zmax));
    std::vector<int> ids(V);
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + kTopK, ids.end(), [&](int a, int b) { return z[a] > z[b]; });
    for (int j = 0; j < kTopK; ++j) {
      d.topk_ids.push_back(ids[j]);
      d.topk_probs.push_back(static_cast<float>(std::exp(static_cast<double>(z[ids[j]] - zmax)) / sum));
    }
  }
  d.tokens.insert(d.tokens.end(), tokens.begin(), tokens.end());
  d.hidden.insert(d.hidden.end(), out.hidden.begin(), out.hidden.end());
  d.offsets.push_back(d.offsets.back() + T);
  d.prompt_len.push_back(prompt_len);
  // The feature is the final-norm state: the LM head alone maps it to the logits.
  static const std::vector<float> lm = lm_head_f32(*s.loaded);
  for (int t : {0, T - 1}) {
    const float* h = out.hidden.data() + static_cast<size_t>(t) * H;
    for (int v : {0, 7, V - 1}) {
      double z = 0;
      for (int i = 0; i < H; ++i) z += static_cast<double>(lm[static_cast<size_t>(v) * H + i]) * h[i];
      CHECK(z == Approx(out.logits[static_cast<size_t>(t) * V + v]).epsilon(1e-3).margin(1e-3));
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
  const char* prompts[] = {"Once upon a time", "The little dog", "Lily wanted to", "Tom and his mom",
                           "One day, a bird", "The sun was", "Sam found a box", "There was a big tree",
                           "The cat liked to", "Anna and Ben", "A small boy", "The girl saw",
                           "In the park", "Mom said", "The fish", "Max had a red ball"};
  for (const char* p : prompts) add_sequence(d, p, 60);

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
