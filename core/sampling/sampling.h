// Token sampling on the host: temperature / top-k / top-p as one distribution (logits_to_probs), the
// inverse-CDF draw from it, and a seeded Sampler built on Philox (philox.h). logits_to_probs defines the
// distribution p (and q) that the speculative acceptance rules use, so target and draft are filtered alike.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "core/types.h"

namespace specdec {

struct SamplingParams {
  float temperature = 0.f;  // 0 = greedy (argmax); must be finite and >= 0
  int top_k = 0;            // keep the k most likely tokens; 0 = off (k >= V is also a no-op)
  float top_p = 1.f;        // keep the smallest most-likely prefix with mass >= top_p; 1 = off; in (0, 1]

  bool greedy() const { return temperature == 0.f; }
  // Throws specdec::Error with a one-line message naming the key ("temperature", "top_k", "top_p") and
  // the offending value.
  void validate() const;
};

// Top-p compares the prefix mass with top_p less this slack (in units of probability), so a prefix whose
// mass equals top_p up to the float rounding of the logits (e.g. logits = log{0.5, 0.3, ...}, top_p = 0.8)
// counts as reaching it.
inline constexpr double kTopPSlack = 1e-6;

// Reusable work space for logits_to_probs (tokens ranked for top-k / top-p); keeps repeated calls from
// allocating. Contents are meaningless between calls.
struct SamplingScratch {
  std::vector<uint64_t> keys;       // (<= V) rank keys: descending logit, then ascending index
  std::vector<double> bucket_mass;  // top-p: mass per logit bucket
};

// Index of the largest logit; the lowest index on ties. logits: (V), V >= 1.
TokenId argmax(std::span<const float> logits);

// probs (V) = the sampling distribution for logits (V), written in full (probs may not alias logits):
//   greedy: one-hot at argmax(logits);
//   else:   softmax(logits / T) (max-subtracted, sums in double), then top-k (the k largest logits; ties
//           at the k-th broken by lower index so exactly k survive), then top-p over what is left (in
//           descending order, ties by lower index: keep the shortest prefix whose mass reaches top_p of
//           the remaining mass, at least one token), the rest set to 0, the survivors renormalised.
// Cost: O(V) plain; top-k O(V + k log k) at most; top-p alone O(V) expected (a histogram of logits,
// then a mass-weighted selection within one bucket: nothing is sorted but a few dozen tokens).
// Throws if the sizes differ, V == 0, params are invalid, or the logits hold a NaN, a +inf or no finite
// value (-inf logits are fine: probability 0).
void logits_to_probs(std::span<const float> logits, const SamplingParams& params, std::span<float> probs,
                     SamplingScratch& scratch);
void logits_to_probs(std::span<const float> logits, const SamplingParams& params, std::span<float> probs);

// The token whose CDF interval holds u, u in [0, 1): the first i with u * S < probs[0] + ... + probs[i],
// S = the sum of probs (accumulated in double; 1 for a distribution, but any positive total of
// non-negative weights works). Never returns a token of probability 0: at the end of the CDF, where
// round-off could leave u * S unreached, it falls back to the last token of nonzero probability.
// probs: (V). Throws if V == 0, u is outside [0, 1), a probability is negative or NaN, or S is not > 0.
TokenId sample_from_probs(std::span<const float> probs, double u);

// Seeded sampling for one decoding configuration. sample() draws with uniform(seed, request, step, draw),
// so the result depends only on (logits, params, seed, request, step, draw), never on call order.
class Sampler {
 public:
  Sampler(SamplingParams params, uint64_t seed);  // throws on invalid params

  // Greedy: argmax(logits), drawing nothing. Otherwise sample_from_probs(logits_to_probs(logits), u).
  // logits: (V). Reuses internal buffers: not thread-safe, one Sampler per thread.
  TokenId sample(std::span<const float> logits, uint64_t request, uint32_t step, uint32_t draw = 0);

  const SamplingParams& params() const { return params_; }
  uint64_t seed() const { return seed_; }

 private:
  SamplingParams params_;
  uint64_t seed_;
  std::vector<float> probs_;  // (V) scratch, grown on demand
  SamplingScratch scratch_;
};

}  // namespace specdec
