// Features of stories260K for the Medusa tests, as `specdec collect` stores them: per position of greedy
// continuations of a few prompts, the final-norm hidden state and the top-k of the next-token distribution.
#pragma once

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "drafters/train/features.h"
#include "tests/support/stories.h"

namespace specdec::test {

// One sequence: the prompt (with BOS), then n greedy tokens. hidden T x H, topk ids / probs T x topk.
struct StoriesSequence {
  std::vector<int32_t> tokens;
  int prompt_len = 0;
  std::vector<float> hidden, logits;
  std::vector<int32_t> topk_ids;
  std::vector<float> topk_probs;
};

inline StoriesSequence stories_sequence(const std::string& prompt, int n, int topk) {
  auto& s = stories();
  StoriesSequence seq;
  std::vector<TokenId> tokens = s.tok->encode(prompt, /*add_bos=*/true);
  seq.prompt_len = static_cast<int>(tokens.size());
  {
    auto cache = s.model.new_cache(seq.prompt_len + n + 1);
    ForwardResult out;
    s.model.forward(*cache, {.tokens = tokens, .n_logits = 1}, out);
    for (int i = 0; i < n; ++i) {
      tokens.push_back(
          static_cast<TokenId>(std::max_element(out.logits.begin(), out.logits.end()) - out.logits.begin()));
      const TokenId next[1] = {tokens.back()};
      s.model.forward(*cache, {.tokens = next, .n_logits = 1}, out);
    }
  }
  const int T = static_cast<int>(tokens.size()), V = s.model.config().vocab_size;
  auto cache = s.model.new_cache(T);
  ForwardResult out;
  s.model.forward(*cache, {.tokens = tokens, .want_hidden = true}, out);
  for (int t = 0; t < T; ++t) {
    const float* z = out.logits.data() + static_cast<size_t>(t) * V;
    const float zmax = *std::max_element(z, z + V);
    double sum = 0;
    for (int v = 0; v < V; ++v) sum += std::exp(static_cast<double>(z[v] - zmax));
    std::vector<int> ids(V);
    std::iota(ids.begin(), ids.end(), 0);
    std::partial_sort(ids.begin(), ids.begin() + topk, ids.end(),
                      [&](int a, int b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
    for (int j = 0; j < topk; ++j) {
      seq.topk_ids.push_back(ids[j]);
      seq.topk_probs.push_back(static_cast<float>(std::exp(static_cast<double>(z[ids[j]] - zmax)) / sum));
    }
  }
  seq.tokens.assign(tokens.begin(), tokens.end());
  seq.hidden = std::move(out.hidden);
  seq.logits = std::move(out.logits);
  return seq;
}

inline const std::vector<std::string>& stories_prompts() {
  static const std::vector<std::string> p = {
      "Once upon a time", "The little dog", "Lily wanted to",  "Tom and his mom",
      "One day, a bird",  "The sun was",    "Sam found a box", "There was a big tree",
      "The cat liked to", "Anna and Ben",   "A small boy",     "The girl saw",
      "In the park",      "Mom said",       "The fish",        "Max had a red ball"};
  return p;
}

// A features file of stories260K as `specdec collect` writes it: each of stories_prompts() continued greedily
// by n tokens, top-k labels, attributed to the target with sha256 target_sha. Returns path.
inline std::string write_stories_features(const std::string& path, const std::string& target_sha, int n, int topk) {
  auto& s = stories();
  train::FeatureFileInfo info;
  info.hidden_size = s.model.config().dim;
  info.vocab_size = s.model.config().vocab_size;
  info.topk = topk;
  info.target_path = stories_model();
  info.target_sha256 = target_sha;
  train::FeatureWriter w(path, info);
  for (const std::string& p : stories_prompts()) {
    const StoriesSequence seq = stories_sequence(p, n, topk);
    w.append(seq.tokens, seq.prompt_len, seq.hidden, seq.topk_ids, seq.topk_probs);
  }
  w.commit();
  return path;
}

}  // namespace specdec::test
