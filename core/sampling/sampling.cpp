// Host sampling: temperature / top-k / top-p filtering, inverse-CDF draws and the seeded Sampler.
// The reference for any device sampling kernel (same order of filters, same tie rules, same u mapping).
#include "core/sampling/sampling.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <limits>

#include "core/error.h"
#include "core/sampling/philox.h"

namespace specdec {

namespace {

// A token's rank as one integer: ascending keys = descending logit, then ascending index (the tie rule).
// The high word maps the float's bits to an order-preserving unsigned integer, then complements it.
uint64_t rank_key(float logit, size_t token) {
  uint32_t bits = std::bit_cast<uint32_t>(logit == 0.f ? 0.f : logit);  // -0 ranks with +0
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);           // ascending as unsigned
  return (static_cast<uint64_t>(~bits) << 32) | static_cast<uint32_t>(token);
}
size_t key_token(uint64_t key) { return static_cast<uint32_t>(key); }

// Top-p over the candidates keys[0, n) (weights in probs): the length of the shortest prefix in rank
// order whose mass reaches `threshold` (at least 1), rearranging keys so that this prefix comes first.
// `sorted`: keys[0, n) is already in rank order (after top-k), so a scan suffices. Otherwise a
// mass-weighted quickselect: split the unresolved range at its median rank (nth_element), keep the half
// holding the boundary; O(n) expected, nothing sorted but the last few dozen keys. kept = prefix mass.
size_t top_p_prefix(uint64_t* keys, size_t n, std::span<const float> probs, double threshold, bool sorted,
                    double& kept) {
  size_t s = 0, e = n;  // unresolved range; keys[0, s) are all in the prefix, keys[e, n) all out
  double acc = 0;       // mass of keys[0, s)
  if (!sorted) {
    while (e - s > 64) {
      const size_t mid = s + (e - s) / 2;
      std::nth_element(keys + s, keys + mid, keys + e);
      double half = 0;
      for (size_t j = s; j < mid; ++j) half += probs[key_token(keys[j])];
      if (acc + half >= threshold) {
        e = mid;  // the boundary token is among the higher half
      } else {
        acc += half;
        s = mid;
      }
    }
    std::sort(keys + s, keys + e);
  }
  for (size_t j = s; j < e; ++j) {
    acc += probs[key_token(keys[j])];
    if (acc >= threshold) {
      kept = acc;
      return j + 1;
    }
  }
  // Reached only by double round-off: the threshold sits just under the total, or the re-summation in
  // rank order fell an ulp short of the halves' sum that chose e. Keep keys[0, e), whose mass is acc.
  kept = acc;
  return e;
}

// Top-p over the whole vocabulary (weights already in probs): the rank key of the last token of the
// shortest prefix, in rank order, whose mass reaches `threshold`; kept = the mass up to and including it.
// Bucket the tokens by logit (1024 equal-width buckets from the largest to the smallest finite logit,
// -inf in the last one); the bucket function never decreases along the rank order, so the masses of
// whole buckets locate the bucket holding the boundary in one O(V) pass, and only that bucket's tokens
// go through top_p_prefix. Worst case (all in one bucket): O(V) expected all the same.
uint64_t top_p_last_key(std::span<const float> logits, std::span<const float> probs, float max_logit, float min_finite,
                        double threshold, SamplingScratch& scratch, double& kept) {
  constexpr size_t kBuckets = 1024;
  const size_t V = logits.size();
  const double range = static_cast<double>(max_logit) - min_finite;
  const double scale = range > 0 ? (kBuckets - 1) / range : 0.0;
  auto bucket = [&](float l) {
    if (l == -std::numeric_limits<float>::infinity()) return kBuckets - 1;
    // Exact difference in double, then a monotone scaling: equal logits share a bucket.
    return std::min(kBuckets - 1, static_cast<size_t>((static_cast<double>(max_logit) - l) * scale));
  };
  std::vector<double>& mass = scratch.bucket_mass;
  mass.assign(kBuckets, 0.0);
  for (size_t i = 0; i < V; ++i) mass[bucket(logits[i])] += probs[i];

  double before = 0;  // mass of the buckets ranked before the boundary bucket
  size_t b = 0;
  while (b < kBuckets - 1 && before + mass[b] < threshold) before += mass[b++];
  // b is the first bucket whose mass reaches the threshold (or the last one, if round-off kept the
  // threshold out of reach); the buckets before it are kept whole.

  std::vector<uint64_t>& keys = scratch.keys;
  keys.clear();
  for (size_t i = 0; i < V; ++i)
    if (bucket(logits[i]) == b) keys.push_back(rank_key(logits[i], i));
  if (keys.empty()) {  // only by round-off with an empty last bucket: keep every token
    kept = before;
    return ~uint64_t{0};
  }
  double in_bucket = 0;
  const size_t n = top_p_prefix(keys.data(), keys.size(), probs, threshold - before, /*sorted=*/false, in_bucket);
  kept = before + in_bucket;
  return keys[n - 1];  // top_p_prefix leaves the kept keys first, the last of them the largest
}

}  // namespace

void SamplingParams::validate() const {
  SPECDEC_CHECK(std::isfinite(temperature) && temperature >= 0.f,
                "temperature must be a finite number >= 0 (0 = greedy), got ", temperature);
  SPECDEC_CHECK(top_k >= 0, "top_k must be >= 0 (0 = off), got ", top_k);
  SPECDEC_CHECK(top_p > 0.f && top_p <= 1.f, "top_p must be in (0, 1] (1 = off), got ", top_p);
}

TokenId argmax(std::span<const float> logits) {
  SPECDEC_CHECK(!logits.empty(), "argmax: expected at least one logit, got V = 0");
  size_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i)
    if (logits[i] > logits[best]) best = i;  // strict: the first of equal maxima wins
  return static_cast<TokenId>(best);
}

void logits_to_probs(std::span<const float> logits, const SamplingParams& params, std::span<float> probs,
                     SamplingScratch& scratch) {
  params.validate();
  const size_t V = logits.size();
  SPECDEC_CHECK(V > 0, "logits_to_probs: expected at least one logit, got V = 0");
  SPECDEC_CHECK(probs.size() == V, "logits_to_probs: expected probs of size V = ", V, ", got ", probs.size());

  if (params.greedy()) {
    std::fill(probs.begin(), probs.end(), 0.f);
    probs[static_cast<size_t>(argmax(logits))] = 1.f;
    return;
  }

  // NaN or +inf would break both the softmax and the strict weak order the selections below rely on.
  constexpr float kInf = std::numeric_limits<float>::infinity();
  float max_logit = -kInf, min_finite = kInf;
  for (size_t i = 0; i < V; ++i) {
    const float l = logits[i];
    SPECDEC_CHECK(l < kInf, "logits_to_probs: expected logits that are not NaN or +inf, got ", l, " at token ", i);
    max_logit = std::max(max_logit, l);
    if (l > -kInf) min_finite = std::min(min_finite, l);
  }
  SPECDEC_CHECK(max_logit > -kInf, "logits_to_probs: expected at least one finite logit, all ", V, " are -inf");

  const double m = max_logit;
  const double inv_t = 1.0 / static_cast<double>(params.temperature);
  // The largest logit gives exp(0) = 1, so every mass below is >= 1: no underflow to a zero total.
  auto weight = [&](size_t i) { return std::exp(static_cast<float>((static_cast<double>(logits[i]) - m) * inv_t)); };
  const bool use_top_k = params.top_k > 0 && static_cast<size_t>(params.top_k) < V;
  const bool use_top_p = params.top_p < 1.f;
  // top_p of the candidates' mass, less the slack for rounding (see kTopPSlack).
  auto top_p_threshold = [&](double total) { return (static_cast<double>(params.top_p) - kTopPSlack) * total; };

  if (use_top_k) {
    // Softmax then keep-k-and-renormalise equals a softmax over the k survivors: only k exps needed.
    // Small k: partial_sort's heap selection costs about one comparison per token and leaves the k in
    // rank order. Large k: O(V) selection, the k left unordered (top-p then selects among them).
    const size_t k = static_cast<size_t>(params.top_k);
    std::vector<uint64_t>& keys = scratch.keys;
    keys.resize(V);
    for (size_t i = 0; i < V; ++i) keys[i] = rank_key(logits[i], i);
    const auto kth = keys.begin() + static_cast<std::ptrdiff_t>(k);
    const bool sorted = k <= V / 16;
    if (sorted)
      std::partial_sort(keys.begin(), kth, keys.end());
    else
      std::nth_element(keys.begin(), kth, keys.end());
    std::fill(probs.begin(), probs.end(), 0.f);
    double total = 0;
    for (size_t j = 0; j < k; ++j) {
      const size_t i = key_token(keys[j]);
      probs[i] = weight(i);
      total += probs[i];
    }
    size_t n_kept = k;
    double kept = total;
    if (use_top_p) {
      n_kept = top_p_prefix(keys.data(), k, probs, top_p_threshold(total), sorted, kept);
      for (size_t j = n_kept; j < k; ++j) probs[key_token(keys[j])] = 0.f;
    }
    const double scale = 1.0 / kept;
    for (size_t j = 0; j < n_kept; ++j) {
      float& p = probs[key_token(keys[j])];
      p = static_cast<float>(p * scale);
    }
    return;
  }

  double total = 0;
  for (size_t i = 0; i < V; ++i) {
    probs[i] = weight(i);
    total += probs[i];
  }
  if (!use_top_p) {
    const double scale = 1.0 / total;
    for (float& p : probs) p = static_cast<float>(p * scale);
    return;
  }

  // Top-p alone: find the last kept token (as its rank key) without sorting the vocabulary, then keep
  // every token ranked at or before it.
  double kept = 0;
  const uint64_t last = top_p_last_key(logits, probs, max_logit, min_finite, top_p_threshold(total), scratch, kept);
  const double scale = 1.0 / kept;
  for (size_t i = 0; i < V; ++i) probs[i] = rank_key(logits[i], i) <= last ? static_cast<float>(probs[i] * scale) : 0.f;
}

void logits_to_probs(std::span<const float> logits, const SamplingParams& params, std::span<float> probs) {
  SamplingScratch scratch;
  logits_to_probs(logits, params, probs, scratch);
}

TokenId sample_from_probs(std::span<const float> probs, double u) {
  SPECDEC_CHECK(!probs.empty(), "sample_from_probs: expected at least one probability, got V = 0");
  SPECDEC_CHECK(u >= 0.0 && u < 1.0, "sample_from_probs: expected u in [0, 1), got ", u);
  double total = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    SPECDEC_CHECK(probs[i] >= 0.f, "sample_from_probs: expected probabilities >= 0, got ", probs[i], " at token ", i);
    total += probs[i];
  }
  SPECDEC_CHECK(total > 0 && std::isfinite(total),
                "sample_from_probs: expected a positive, finite total probability, got ", total);

  // Zero entries are skipped rather than added: the running sum then equals `total` bit for bit at the
  // end, and a token is returned only where the sum has just grown, i.e. never one of probability 0.
  const double target = u * total;
  double cum = 0;
  size_t last_nonzero = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] == 0.f) continue;
    cum += probs[i];
    last_nonzero = i;
    if (target < cum) return static_cast<TokenId>(i);
  }
  return static_cast<TokenId>(last_nonzero);
}

Sampler::Sampler(SamplingParams params, uint64_t seed) : params_(params), seed_(seed) { params_.validate(); }

TokenId Sampler::sample(std::span<const float> logits, uint64_t request, uint32_t step, uint32_t draw) {
  if (params_.greedy()) return argmax(logits);
  probs_.resize(logits.size());  // no reallocation once the buffer has reached V
  logits_to_probs(logits, params_, probs_, scratch_);
  return sample_from_probs(probs_, uniform(seed_, request, step, draw));
}

}  // namespace specdec
