// check_same_features(a, b): every per-token array of two FeatureData is equal (one CHECK per array).
#pragma once

#include <catch2/catch.hpp>

#include "drafters/train/features.h"

namespace specdec::test {

inline void check_same_features(const specdec::train::FeatureData& a, const specdec::train::FeatureData& b) {
  CHECK(a.tokens == b.tokens);
  CHECK(a.offsets == b.offsets);
  CHECK(a.prompt_len == b.prompt_len);
  CHECK(a.hidden == b.hidden);
  CHECK(a.topk_ids == b.topk_ids);
  CHECK(a.topk_probs == b.topk_probs);
}

}  // namespace specdec::test
