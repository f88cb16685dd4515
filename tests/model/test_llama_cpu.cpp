// The CPU forward on stories260K: block = steps, tree = chains, rollback = fresh decode.
// The kernels are batch-invariant (kernels/cpu/ops.h), so these equalities are exact, not within 1e-5.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "core/backends/cpu/llama_cpu.h"
#include "tests/support/assets.h"

using namespace specdec;

namespace {

LlamaCpu& stories() {
  static LlamaCpu model(load_model(test::stories_model()));
  return model;
}

// Logits of each token when fed one at a time.
std::vector<std::vector<float>> step_by_step(Model& m, KVCache& cache, const std::vector<TokenId>& toks) {
  std::vector<std::vector<float>> rows;
  ForwardResult r;
  for (TokenId t : toks) {
    m.forward(cache, {.tokens = {&t, 1}}, r);
    rows.push_back(r.logits);
  }
  return rows;
}

float max_abs_diff(const float* a, const float* b, size_t n) {
  float d = 0.f;
  for (size_t i = 0; i < n; ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

const std::vector<TokenId> kPrompt = {1, 403, 407, 261, 378, 434, 288, 265};  // BOS + a few tokens

}  // namespace

TEST_CASE("stories260K loads with the expected config", "[model]") {
  const ModelConfig& c = stories().config();
  CHECK(c.dim == 64);
  CHECK(c.hidden_dim == 172);
  CHECK(c.n_layers == 5);
  CHECK(c.n_heads == 8);
  CHECK(c.n_kv_heads == 4);
  CHECK(c.vocab_size == 512);
  CHECK(c.max_seq_len == 512);
  CHECK(c.tied_embeddings);
}

TEST_CASE("T tokens in one block equal T single-token steps", "[model]") {
  Model& m = stories();
  const int V = m.config().vocab_size;
  auto c1 = m.new_cache(64), c2 = m.new_cache(64);
  const auto steps = step_by_step(m, *c1, kPrompt);
  ForwardResult block;
  m.forward(*c2, {.tokens = kPrompt}, block);
  REQUIRE(block.logits.size() == kPrompt.size() * V);
  for (size_t t = 0; t < kPrompt.size(); ++t)
    REQUIRE(max_abs_diff(block.logits.data() + t * V, steps[t].data(), V) == 0.0f);
  REQUIRE(c1->size() == c2->size());
}

TEST_CASE("a three-branch tree in one pass equals each branch run alone as a chain", "[model]") {
  Model& m = stories();
  const int V = m.config().vocab_size;
  // Tree after the prompt: root a; branches a-b-c, a-d, a-e-f (node order is a topological order).
  //   idx: 0=a 1=b 2=c 3=d 4=e 5=f
  const std::vector<TokenId> nodes = {300, 310, 320, 330, 340, 350};
  const std::vector<int32_t> parents = {-1, 0, 1, 0, 0, 4};
  const std::vector<std::vector<int>> branches = {{0, 1, 2}, {0, 3}, {0, 4, 5}};

  auto tree_cache = m.new_cache(64);
  ForwardResult r;
  m.forward(*tree_cache, {.tokens = kPrompt}, r);
  const int n_past = tree_cache->size();
  std::vector<uint8_t> mask;
  std::vector<int32_t> pos;
  build_tree_mask(parents, n_past, mask, pos);
  ForwardResult tree;
  m.forward(*tree_cache, {.tokens = nodes, .positions = pos, .mask = mask}, tree);

  for (const auto& br : branches) {
    auto chain_cache = m.new_cache(64);
    m.forward(*chain_cache, {.tokens = kPrompt}, r);
    std::vector<TokenId> chain;
    for (int i : br) chain.push_back(nodes[i]);
    ForwardResult cr;
    m.forward(*chain_cache, {.tokens = chain}, cr);
    for (size_t j = 0; j < br.size(); ++j)
      REQUIRE(max_abs_diff(tree.logits.data() + static_cast<size_t>(br[j]) * V, cr.logits.data() + j * V, V) == 0.0f);
  }

  SECTION("compacting the cache to one branch continues exactly like that chain") {
    const std::vector<int32_t> keep = {0, 4, 5};
    tree_cache->compact(n_past, keep);
    REQUIRE(tree_cache->size() == n_past + 3);
    auto chain_cache = m.new_cache(64);
    m.forward(*chain_cache, {.tokens = kPrompt}, r);
    const std::vector<TokenId> chain = {300, 340, 350};
    m.forward(*chain_cache, {.tokens = chain}, r);
    const TokenId next = 360;
    ForwardResult a, b;
    m.forward(*tree_cache, {.tokens = {&next, 1}}, a);
    m.forward(*chain_cache, {.tokens = {&next, 1}}, b);
    REQUIRE(max_abs_diff(a.logits.data(), b.logits.data(), V) == 0.0f);
  }
}

TEST_CASE("rolling back the KV cache then decoding again equals a fresh decode", "[model]") {
  Model& m = stories();
  const int V = m.config().vocab_size;
  auto cache = m.new_cache(64);
  ForwardResult r;
  m.forward(*cache, {.tokens = kPrompt}, r);
  const std::vector<TokenId> wrong = {500, 501, 502};
  m.forward(*cache, {.tokens = wrong}, r);
  cache->truncate(static_cast<int>(kPrompt.size()));
  const std::vector<TokenId> right = {290, 291};
  ForwardResult after_rollback, fresh;
  m.forward(*cache, {.tokens = right}, after_rollback);

  auto clean = m.new_cache(64);
  std::vector<TokenId> all = kPrompt;
  all.insert(all.end(), right.begin(), right.end());
  m.forward(*clean, {.tokens = all, .n_logits = 2}, fresh);
  REQUIRE(fresh.logits.size() == 2u * V);
  REQUIRE(max_abs_diff(after_rollback.logits.data(), fresh.logits.data(), 2u * V) == 0.0f);
}

TEST_CASE("a batch of sequences equals each sequence alone", "[model]") {
  Model& m = stories();
  const int V = m.config().vocab_size;
  auto a = m.new_cache(64), b = m.new_cache(64), a1 = m.new_cache(64), b1 = m.new_cache(64);
  const std::vector<TokenId> sa = {1, 400, 401}, sb = {1, 410, 411, 412, 413};
  std::vector<ForwardRequest> reqs = {{.tokens = sa}, {.tokens = sb, .n_logits = 1, .want_hidden = true}};
  std::vector<KVCache*> caches = {a.get(), b.get()};
  std::vector<ForwardResult> out(2);
  m.forward_batch(caches, reqs, out);
  ForwardResult ra, rb;
  m.forward(*a1, {.tokens = sa}, ra);
  m.forward(*b1, {.tokens = sb, .n_logits = 1, .want_hidden = true}, rb);
  REQUIRE(out[0].logits.size() == 3u * V);
  REQUIRE(out[1].logits.size() == 1u * V);
  REQUIRE(out[1].hidden.size() == 5u * m.config().dim);
  REQUIRE(max_abs_diff(out[0].logits.data(), ra.logits.data(), 3u * V) == 0.0f);
  REQUIRE(max_abs_diff(out[1].logits.data(), rb.logits.data(), V) == 0.0f);
}

TEST_CASE("early exit: a cache over the first L layers runs only those layers", "[model]") {
  Model& m = stories();
  const int V = m.config().vocab_size;
  auto full = m.new_cache(64), early = m.new_cache(64, 2), early2 = m.new_cache(64, 2);
  ForwardResult rf, re, re2;
  m.forward(*full, {.tokens = kPrompt}, rf);
  m.forward(*early, {.tokens = kPrompt}, re);
  m.forward(*early2, {.tokens = kPrompt}, re2);
  REQUIRE(max_abs_diff(re.logits.data(), re2.logits.data(), kPrompt.size() * V) == 0.0f);
  REQUIRE(max_abs_diff(re.logits.data(), rf.logits.data(), kPrompt.size() * V) > 1e-3f);
}

TEST_CASE("forward rejects bad input without touching the cache", "[model]") {
  Model& m = stories();
  auto cache = m.new_cache(8);
  ForwardResult r;
  const std::vector<TokenId> bad = {1, 512};
  REQUIRE_THROWS_WITH(m.forward(*cache, {.tokens = bad}, r), Catch::Contains("token ids in 0..511"));
  REQUIRE(cache->size() == 0);
  const std::vector<TokenId> nine(9, 5);
  REQUIRE_THROWS_WITH(m.forward(*cache, {.tokens = nine}, r), Catch::Contains("context of at most 8"));
  REQUIRE(cache->size() == 0);
  REQUIRE_THROWS_WITH(m.new_cache(513), Catch::Contains("max_seq_len"));
}
