// plan_batch and cache_layers (core/model/batch_plan.h), the validation and layout both backends run: the rows,
// positions and logits rows of a ragged batch, and each refusal's message. No model: caches are KVCache shells.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "core/model/batch_plan.h"
#include "tests/support/errors.h"

using namespace specdec;
using Catch::Contains;
using test::error_of;

namespace {

// A cache with no storage: plan_batch reads only its size, capacity and layer count.
class ShellCache final : public KVCache {
 public:
  ShellCache(int capacity, int n_layers, int size) : KVCache(capacity, n_layers) { advance(size); }

 protected:
  void move_slot(int, int) override {}
};

// plan_batch reads only the vocabulary and the context of the model.
ModelConfig config() {
  ModelConfig c;
  c.vocab_size = 32;
  c.max_seq_len = 64;
  return c;
}

// Plans reqs over caches of the given sizes (capacity 16, 4 layers).
BatchPlan plan(const std::vector<ForwardRequest>& reqs, const std::vector<int>& sizes) {
  std::vector<ShellCache> shells;
  for (int n : sizes) shells.emplace_back(16, 4, n);
  std::vector<KVCache*> caches;
  for (auto& s : shells) caches.push_back(&s);
  return plan_batch(config(), caches, reqs, reqs.size());
}

const std::vector<TokenId> kTok = {1, 2, 3, 4, 5};

}  // namespace

TEST_CASE("plan_batch lays out a ragged batch: rows, chain and explicit positions, logits rows") {
  const std::vector<int32_t> tree_pos = {7, 8, 8};
  const std::vector<int32_t> layers = {2, 0, 2};
  const std::vector<int32_t> layers_b = {1};
  std::vector<uint8_t> mask(3 * (5 + 3), 1);
  std::vector<ForwardRequest> reqs = {
      {.tokens = {kTok.data(), 2}, .n_logits = -1, .layer_outputs = layers},
      {.tokens = {kTok.data(), 3}, .positions = tree_pos, .mask = mask, .n_logits = 0, .want_hidden = true},
      {.tokens = {kTok.data(), 1}, .n_logits = 1, .layer_outputs = layers_b},
      {.tokens = {kTok.data(), 5}, .n_logits = 2},
      {.tokens = {kTok.data(), 2}, .n_logits = 7},  // more than T: all T
  };
  const BatchPlan p = plan(reqs, {3, 5, 0, 10, 1});
  CHECK(p.B == 5);
  CHECK(p.R == 13);
  CHECK(p.L == 4);
  CHECK(p.max_T == 5);
  CHECK(p.row0 == std::vector<int>{0, 2, 5, 6, 11, 13});
  CHECK(p.T(3) == 5);
  CHECK(p.n_past == std::vector<int>{3, 5, 0, 10, 1});
  // Chains start at the cache's size; the tree keeps its own positions.
  CHECK(p.pos == std::vector<int32_t>{3, 4, 7, 8, 8, 0, 10, 11, 12, 13, 14, 1, 2});
  CHECK(p.sel_first == std::vector<int>{0, 5, 5, 9, 11});
  CHECK(p.sel_n == std::vector<int>{2, 0, 1, 2, 2});
  CHECK(p.n_sel == 7);
  CHECK(p.capture == std::vector<int32_t>{0, 1, 2});
  CHECK(p.mask_bytes == mask.size());
  CHECK(p.any_hidden);
}

TEST_CASE("plan_batch: an empty batch, early exit") {
  const BatchPlan empty = plan({}, {});
  CHECK(empty.B == 0);
  CHECK(empty.R == 0);
  CHECK(empty.row0 == std::vector<int>{0});

  std::vector<ForwardRequest> reqs = {{.tokens = {kTok.data(), 1}, .n_layers = 2},
                                      {.tokens = {kTok.data(), 1}, .n_layers = 2}};
  const BatchPlan p = plan(reqs, {0, 4});
  CHECK(p.L == 2);
  CHECK(!p.any_hidden);
  CHECK(p.capture.empty());
}

TEST_CASE("plan_batch refuses a bad batch with the backends' messages") {
  const ModelConfig c = config();
  ShellCache a(6, 4, 2), b(6, 4, 0), short_cache(6, 2, 0);
  KVCache* two[] = {&a, &b};
  const std::vector<int32_t> bad_layer = {4};
  const std::vector<int32_t> two_pos = {0, 1};
  const std::vector<int32_t> far_pos = {64};
  const std::vector<TokenId> bad_tok = {32};
  const std::vector<uint8_t> mask(5, 1);
  auto one = [&](const ForwardRequest& r) {
    KVCache* ca[] = {&a};
    plan_batch(c, ca, {&r, 1}, 1);
  };

  CHECK_THAT(error_of([&] {
               const ForwardRequest r{.tokens = {kTok.data(), 1}};
               plan_batch(c, two, {&r, 1}, 1);
             }),
             Contains("one cache and one result per request"));
  CHECK_THAT(error_of([&] {
               const ForwardRequest r[2] = {{.tokens = {kTok.data(), 1}}, {.tokens = {kTok.data(), 1}}};
               plan_batch(c, two, r, 1);
             }),
             Contains("one cache and one result per request"));
  CHECK_THAT(error_of([&] {
               KVCache* mixed[] = {&a, &short_cache};
               const ForwardRequest r[2] = {{.tokens = {kTok.data(), 1}}, {.tokens = {kTok.data(), 1}}};
               plan_batch(c, mixed, r, 2);
             }),
             Contains("every cache in a batch with the same layer count (4), got 2"));
  CHECK_THAT(error_of([&] {
               const ForwardRequest r[2] = {{.tokens = {kTok.data(), 1}}, {.tokens = {kTok.data(), 1}, .n_layers = 3}};
               plan_batch(c, two, r, 2);
             }),
             Contains("every request in a batch running the same layers (4), got 3 (request 1)"));
  CHECK_THAT(error_of([&] { one({.n_layers = 5}); }),
             Contains("a forward over 1..4 layers (the cache's), got n_layers = 5"));
  CHECK_THAT(error_of([&] { one({}); }), Contains("at least one token per request, got 0 (request 0)"));
  CHECK_THAT(error_of([&] {
               one({.tokens = {kTok.data(), 1}, .layer_outputs = bad_layer});
             }),
             Contains("layer outputs of layers 0..3 (the layers this forward runs), got 4"));
  CHECK_THAT(error_of([&] {
               one({.tokens = {kTok.data(), 1}, .layer_outputs = bad_layer, .n_layers = 3});
             }),
             Contains("layer outputs of layers 0..2 (the layers this forward runs), got 4"));
  CHECK_THAT(error_of([&] { one({.tokens = kTok}); }), Contains("context of at most 6 tokens, got 2 cached + 5 new"));
  CHECK_THAT(error_of([&] { one({.tokens = bad_tok}); }), Contains("token ids in 0..31, got 32"));
  CHECK_THAT(error_of([&] {
               one({.tokens = {kTok.data(), 1}, .positions = two_pos});
             }),
             Contains("one position per token (1), got 2"));
  CHECK_THAT(error_of([&] {
               one({.tokens = {kTok.data(), 2}, .mask = mask});
             }),
             Contains("a mask of 2x4 entries, got 5"));
  CHECK_THAT(error_of([&] {
               one({.tokens = {kTok.data(), 1}, .positions = far_pos});
             }),
             Contains("positions in 0..63, got 64"));
}

TEST_CASE("cache_layers: the model's layers by default, refusals with the backends' messages") {
  ModelConfig c = config();
  c.n_layers = 4;
  CHECK(cache_layers(c, 8, -1) == 4);
  CHECK(cache_layers(c, 64, 2) == 2);
  CHECK_THAT(error_of([&] { cache_layers(c, 8, 5); }), Contains("cache layers in 1..4, got 5"));
  CHECK_THAT(error_of([&] { cache_layers(c, 8, 0); }), Contains("cache layers in 1..4, got 0"));
  CHECK_THAT(error_of([&] { cache_layers(c, 65, -1); }),
             Contains("context of 1..64 tokens (the model's max_seq_len), got 65"));
  CHECK_THAT(error_of([&] { cache_layers(c, 0, -1); }), Contains("context of 1..64 tokens"));
}
