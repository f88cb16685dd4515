// Per-row sampling logic of the CUDA sampling kernels (kernels/cuda/sampling.cu), written once for the
// device and for the host test that replays it against core/sampling (tests/kernels/test_device_logic_host.cpp).
// The reference is core/sampling/sampling.cpp (logits_to_probs, sample_from_probs, Sampler): same
// weights bit for bit (glibc's expf replicated), same tie rules, same double sums in the same order.
// C++17, no std:: containers: included by nvcc (.cu) and by g++ (the host test).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/sampling/philox.h"

// Leaf helpers run on both sides. The block algorithms (templates over a Block, below) are device code
// under nvcc, where only DeviceBlock (kernels/cuda/block_collectives.cuh) instantiates them, and host
// code under g++, where the test's HostBlock does.
#if defined(__CUDACC__)
#define SPECDEC_ROW_HD __host__ __device__ inline
#define SPECDEC_ROW_DEV __device__ inline
#else
#define SPECDEC_ROW_HD inline
#define SPECDEC_ROW_DEV inline
#endif

namespace specdec::cuda::row {

// ---- The Block concept --------------------------------------------------------------------------
// A Block runs collective operations over one CTA: every thread calls each one, in the same order, with
// the same arguments, and gets the same result (DeviceBlock); the host test's HostBlock is one thread.
//   bool leader()                          true on exactly one thread
//   int chunk()                            keys one gather can hold (>= 1)
//   int scratch_len()                      entries of f64_scratch() / i32_scratch() (>= kTopPBuckets)
//   int cdf_segment()                      weights per checkpoint of cdf_draw (>= 1)
//   double* f64_scratch(), int32_t* i32_scratch()   block-shared arrays (for_each or the leader write)
//   void barrier()
//   for_each(n, f)                         f(i) for every i in [0, n), then a barrier
//   reduce(n, identity, f, op) -> T        op-fold of f(0..n-1); op associative, commutative and exact
//                                          (max, min, integer sums), so the order cannot matter
//   sequential(n, s, value, step) -> S     for i = 0, 1, ... in order: stop = step(s, i, value(i)), until
//                                          stop or n; step runs on the leader, value(i) anywhere (it
//                                          must be a pure function). Every thread gets the final s.
//                                          This is where the double sums happen, in the CPU's order.
//   bucket_sums(n, nb, value, out) -> double   out[b] (block-shared, b < nb) = the sum in index order of
//                                          value(i).w over the i with value(i).b == b (a BucketValue);
//                                          returns the sum of all value(i).w in index order
//   histogram(n, digit) -> const uint32_t* 256 counts of digit(i) in [0, 256) (-1 = skip)
//   gather(n, key_of) -> int               the keys of every i with key_of(i, key) true, in any order,
//                                          into the block's chunk buffer (the caller ensures <= chunk())
//   sort(count) -> const uint64_t*         the gathered keys in ascending order (they are distinct)

// Top-p slack and bucket count of core/sampling (kTopPSlack, kBuckets there); the host test checks the
// slack against specdec::kTopPSlack.
constexpr double kTopPSlack = 1e-6;
constexpr int kTopPBuckets = 1024;

// ---- Bit-exact scalar helpers ---------------------------------------------------------------------

SPECDEC_ROW_HD uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
SPECDEC_ROW_HD float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
SPECDEC_ROW_HD double bits_double(uint64_t u) {
  double x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}
SPECDEC_ROW_HD uint64_t double_bits(double x) {
  uint64_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
SPECDEC_ROW_HD bool is_nan(float x) { return (float_bits(x) & 0x7fffffffu) > 0x7f800000u; }
SPECDEC_ROW_HD float pos_inf() { return bits_float(0x7f800000u); }

// IEEE double operations that nvcc may not fuse or reorder (the host compiles plain operators; the CPU
// code they mirror is compiled without FMA contraction).
SPECDEC_ROW_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
SPECDEC_ROW_HD double sub_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}
SPECDEC_ROW_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
SPECDEC_ROW_HD double fma_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// glibc's __exp2f_data.tab: bits(2^(i/32)) - (i << 47), so that adding k << 47 to entry k % 32 gives
// bits(2^(k/32)). The device reads its copy from global memory (lanes index it divergently).
// clang-format off
#define SPECDEC_EXP2F_TABLE                                                                       \
  {                                                                                               \
      0x3ff0000000000000ULL, 0x3fefd9b0d3158574ULL, 0x3fefb5586cf9890fULL, 0x3fef9301d0125b51ULL, \
      0x3fef72b83c7d517bULL, 0x3fef54873168b9aaULL, 0x3fef387a6e756238ULL, 0x3fef1e9df51fdee1ULL, \
      0x3fef06fe0a31b715ULL, 0x3feef1a7373aa9cbULL, 0x3feedea64c123422ULL, 0x3feece086061892dULL, \
      0x3feebfdad5362a27ULL, 0x3feeb42b569d4f82ULL, 0x3feeab07dd485429ULL, 0x3feea47eb03a5585ULL, \
      0x3feea09e667f3bcdULL, 0x3fee9f75e8ec5f74ULL, 0x3feea11473eb0187ULL, 0x3feea589994cce13ULL, \
      0x3feeace5422aa0dbULL, 0x3feeb737b0cdc5e5ULL, 0x3feec49182a3f090ULL, 0x3feed503b23e255dULL, \
      0x3feee89f995ad3adULL, 0x3feeff76f2fb5e47ULL, 0x3fef199bdd85529cULL, 0x3fef3720dcef9069ULL, \
      0x3fef5818dcfba487ULL, 0x3fef7c97337b9b5fULL, 0x3fefa4afa2a490daULL, 0x3fefd0765b6e4540ULL  \
  }
// clang-format on
#if defined(__CUDACC__)
static __device__ const uint64_t kExp2fTableDevice[32] = SPECDEC_EXP2F_TABLE;
#endif
static constexpr uint64_t kExp2fTableHost[32] = SPECDEC_EXP2F_TABLE;
#undef SPECDEC_EXP2F_TABLE

// expf exactly as glibc computes it on x86-64 with FMA (glibc >= 2.27, sysdeps/ieee754/flt-32/e_expf.c
// built as __expf_fma, the variant the ifunc picks on every AVX2+FMA CPU): 2^(k/32) from a table times a
// cubic in double, with the products fused as that build fuses them, and glibc's overflow / underflow
// results. std::exp(float) in core/sampling calls it; CUDA's expf differs from it in the last bit for
// many inputs, which would shift the CDF. The host test compares this with std::exp on millions of
// inputs (all of them with SPECDEC_EXPF_EXHAUSTIVE=1).
SPECDEC_ROW_HD float expf_glibc(float x) {
  constexpr double kInvLn2N = 0x1.71547652b82fep+5;  // 32 / ln 2
  constexpr double kShift = 0x1.8p+52;
  constexpr double kC0 = 0x1.c6af84b912394p-20, kC1 = 0x1.ebfce50fac4f3p-13, kC2 = 0x1.62e42ff0c52d6p-6;

  const uint32_t ux = float_bits(x);
  const uint32_t abstop = (ux >> 20) & 0x7ffu;
  if (abstop >= 0x42bu) {                           // |x| >= 88, inf or NaN
    if (ux == 0xff800000u) return 0.f;              // -inf
    if (abstop >= 0x7f8u) return x + x;             // +inf, NaN
    if (x > 0x1.62e42ep6f) return pos_inf();        // overflow
    if (x < -0x1.9fe368p6f) return 0.f;             // underflow: 0x1p-95f * 0x1p-95f
    if (x < -0x1.9d1d9ep6f) return bits_float(1u);  // "may underflow": 0x1.4p-75f^2 = 2^-149
  }
  const double xd = x;
  double kd = fma_rn(kInvLn2N, xd, kShift);  // round(x * 32 / ln 2) in the low bits
  const uint64_t ki = double_bits(kd);
  kd = sub_rn(kd, kShift);
  const double r = fma_rn(kInvLn2N, xd, -kd);  // x * 32 / ln 2 - k, in [-1/2, 1/2]
#if defined(__CUDA_ARCH__)
  const uint64_t tab = __ldg(&kExp2fTableDevice[ki % 32]);
#else
  const uint64_t tab = kExp2fTableHost[ki % 32];
#endif
  const double s = bits_double(tab + (ki << 47));
  const double z = fma_rn(kC0, r, kC1);
  const double r2 = mul_rn(r, r);
  double y = fma_rn(kC2, r, 1.0);
  y = fma_rn(z, r2, y);
  return static_cast<float>(mul_rn(y, s));
}

// logits_to_probs' weight of a logit: exp((logit - max) / T) as float, the difference and the scaling in
// double. inv_t = 1.0 / double(T).
SPECDEC_ROW_HD float sampling_weight(float logit, double max_logit, double inv_t) {
  return expf_glibc(static_cast<float>(mul_rn(sub_rn(static_cast<double>(logit), max_logit), inv_t)));
}

// core/sampling's rank of a token as one integer: ascending keys = descending logit (-0 ranks with +0),
// then ascending index. Keys of distinct tokens are distinct.
SPECDEC_ROW_HD uint64_t rank_key(float logit, uint32_t token) {
  uint32_t bits = float_bits(logit == 0.f ? 0.f : logit);
  bits = (bits & 0x80000000u) ? ~bits : (bits | 0x80000000u);  // ascending as unsigned
  return (static_cast<uint64_t>(~bits) << 32) | token;
}
SPECDEC_ROW_HD uint32_t key_token(uint64_t key) { return static_cast<uint32_t>(key); }

// Top-p's logit buckets: 1024 equal-width buckets from the largest to the smallest finite logit, -inf in
// the last one. scale = 1023 / (max - min_finite) in double, 0 when they are equal.
SPECDEC_ROW_HD double top_p_bucket_scale(float max_logit, float min_finite) {
  const double range = static_cast<double>(max_logit) - static_cast<double>(min_finite);
  return range > 0 ? static_cast<double>(kTopPBuckets - 1) / range : 0.0;
}
SPECDEC_ROW_HD int top_p_bucket(float logit, float max_logit, double scale) {
  if (logit == -pos_inf()) return kTopPBuckets - 1;
  const double d = mul_rn(sub_rn(static_cast<double>(max_logit), static_cast<double>(logit)), scale);
  return d >= kTopPBuckets - 1 ? kTopPBuckets - 1 : static_cast<int>(d);
}

// Rank of keys[t] among keys[0, count) (distinct keys): its index once sorted. Thread t's share of the
// block's chunk sort.
SPECDEC_ROW_HD int chunk_rank(const uint64_t* keys, int count, int t) {
  const uint64_t k = keys[t];
  int r = 0;
  for (int j = 0; j < count; ++j) r += keys[j] < k ? 1 : 0;
  return r;
}

// Radix select step: the digit whose count holds rank r (0-based, r < the total of the 256 counts); r
// becomes the rank within that digit.
SPECDEC_ROW_HD int radix_pick(const uint32_t* counts, uint32_t& r) {
  int d = 0;
  uint32_t below = 0;
  while (d < 255 && below + counts[d] <= r) below += counts[d++];
  r -= below;
  return d;
}

// argmax with specdec::argmax's rule: the first of equal maxima; a NaN is never larger than anything
// (and a NaN at index 0 is never replaced, see argmax_row).
struct ArgBest {
  float v;
  int32_t i;  // -1: none
};
SPECDEC_ROW_HD ArgBest argbest_combine(ArgBest a, ArgBest b) {
  if (a.i < 0) return b;
  if (b.i < 0) return a;
  return (b.v > a.v || (b.v == a.v && b.i < a.i)) ? b : a;
}

// Max, smallest finite, and whether a NaN or +inf is present (logits_to_probs' checks).
struct RowStats {
  float max_logit;
  float min_finite;
  int bad;
};
SPECDEC_ROW_HD RowStats row_stats_of(float l) {
  if (!(l < pos_inf())) return RowStats{-pos_inf(), pos_inf(), 1};
  return RowStats{l, l > -pos_inf() ? l : pos_inf(), 0};
}
SPECDEC_ROW_HD RowStats row_stats_combine(RowStats a, RowStats b) {
  return RowStats{a.max_logit > b.max_logit ? a.max_logit : b.max_logit,
                  a.min_finite < b.min_finite ? a.min_finite : b.min_finite, a.bad | b.bad};
}

// One term of Block::bucket_sums: weight w goes to bucket b.
struct BucketValue {
  double w;
  int b;
};

// Adds kBucketBatch terms to per-bucket sums and a total exactly as the plain loop
//   for k in order: if (v[k].b >= 0) { out[v[k].b] += v[k].w; total += v[k].w; }
// does, but reads every out[] before writing any (a bucket met twice in the batch gets its earlier
// update forwarded in registers), so the reads are not serialised behind the writes.
constexpr int kBucketBatch = 8;
SPECDEC_ROW_HD void add_bucket_batch(const BucketValue (&v)[kBucketBatch], double* out, double& total) {
  double sum[kBucketBatch];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 0; k < kBucketBatch; ++k) sum[k] = v[k].b >= 0 ? out[v[k].b] : 0.0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 0; k < kBucketBatch; ++k) {
    if (v[k].b < 0) continue;
    for (int e = 0; e < k; ++e)
      if (v[e].b == v[k].b) sum[k] = sum[e];  // the latest update of this bucket so far
    sum[k] += v[k].w;
    total += v[k].w;
  }
  for (int k = 0; k < kBucketBatch; ++k)
    if (v[k].b >= 0) out[v[k].b] = sum[k];  // in order: a bucket's last write is its latest sum
}

struct RowParams {
  float temperature = 0.f;  // 0 = greedy
  int top_k = 0;            // 0 = off
  float top_p = 1.f;        // 1 = off
};

// ---- Block algorithms -----------------------------------------------------------------------------

// x (n), n >= 1: specdec::argmax(x).
template <class Block>
SPECDEC_ROW_DEV int32_t argmax_row(Block& blk, const float* x, int n) {
  if (is_nan(x[0])) return 0;  // the CPU's strict > never moves off a NaN at index 0
  const ArgBest best = blk.reduce(
      n, ArgBest{0.f, -1},
      [&](int i) {
        return is_nan(x[i]) ? ArgBest{0.f, -1} : ArgBest{x[i], i};
      },
      [](ArgBest a, ArgBest b) { return argbest_combine(a, b); });
  return best.i;
}

// The rank-th smallest (0-based) of the keys of the candidates (cand(i, key) true), radix-selected 8 bits
// at a time from the top; stops early once one candidate is left under the prefix.
template <class Block, class Pred>
SPECDEC_ROW_DEV uint64_t select_key(Block& blk, int n, Pred cand, uint32_t rank) {
  uint64_t prefix = 0, mask = 0;
  for (int shift = 56; shift >= 0; shift -= 8) {
    const uint32_t* counts = blk.histogram(n, [&](int i) -> int {
      uint64_t key;
      if (!cand(i, key) || (key & mask) != prefix) return -1;
      return static_cast<int>((key >> shift) & 0xffu);
    });
    const int d = radix_pick(counts, rank);
    const uint32_t in_digit = counts[d];
    prefix |= static_cast<uint64_t>(d) << shift;
    mask |= uint64_t{0xff} << shift;
    if (in_digit == 1) {  // one candidate left with this prefix: find it directly
      return blk.reduce(
          n, ~uint64_t{0},
          [&](int i) {
            uint64_t key;
            return cand(i, key) && (key & mask) == prefix ? key : ~uint64_t{0};
          },
          [](uint64_t a, uint64_t b) { return a < b ? a : b; });
    }
  }
  return prefix;
}

// Rank-order enumeration: calls on_chunk(sorted, count) with consecutive runs (at most blk.chunk() long)
// of the `limit` first tokens i in [0, n) with pred(i), in ascending rank_key(x[i], i), until on_chunk
// returns true or they run out. Each run costs a count, a radix select (up to 8 histogram passes over n;
// none when the rest fits one run) and a gather.
template <class Block, class Pred, class OnChunk>
SPECDEC_ROW_DEV void rank_chunks(Block& blk, const float* x, int n, Pred pred, int limit, OnChunk on_chunk) {
  bool started = false;
  uint64_t after = 0;  // the last key handed out so far
  int done = 0;
  while (done < limit) {
    auto cand = [&](int i, uint64_t& key) {
      if (!pred(i)) return false;
      key = rank_key(x[i], static_cast<uint32_t>(i));
      return !started || key > after;
    };
    const int count = blk.reduce(
        n, 0,
        [&](int i) {
          uint64_t key;
          return cand(i, key) ? 1 : 0;
        },
        [](int a, int b) { return a + b; });
    if (count == 0) return;
    int want = limit - done < count ? limit - done : count;
    if (want > blk.chunk()) want = blk.chunk();
    const uint64_t hi = want == count ? ~uint64_t{0} : select_key(blk, n, cand, static_cast<uint32_t>(want - 1));
    const int got = blk.gather(n, [&](int i, uint64_t& key) { return cand(i, key) && key <= hi; });
    const uint64_t* sorted = blk.sort(got);
    if (on_chunk(sorted, got)) return;
    started = true;
    after = sorted[got - 1];
    done += got;
  }
}

// x (n) -> vals (k), idx (k): the k first tokens in rank order (descending value, ties by lower index).
// 1 <= k <= n.
template <class Block>
SPECDEC_ROW_DEV void top_k_row(Block& blk, const float* x, int n, int k, float* vals, int32_t* idx) {
  int written = 0;
  rank_chunks(
      blk, x, n, [](int) { return true; }, k,
      [&](const uint64_t* sorted, int count) {
        blk.for_each(count, [&](int j) {
          const uint32_t t = key_token(sorted[j]);
          vals[written + j] = x[t];
          idx[written + j] = static_cast<int32_t>(t);
        });
        written += count;
        return false;
      });
}

// The inverse-CDF draw shared by sample_from_probs (core/sampling) and PhiloxSource::categorical
// (verifiers/rules.cpp) over weights w(0..n-1) >= 0: S = their double sum in index order, then the first
// i whose running sum of positive weights exceeds u * S; if round-off leaves u * S unreached, the last
// positive one (`none` if there is none). The running sums are the partial sums of S, so one pass
// computes S and checkpoints them every L weights (into checkpoint, block-shared, max_segments >= 1
// entries); the draw then re-adds only the L weights after the checkpoint below u * S, starting from
// its exact value: the same chain of additions as the CPU's scan, without a second pass over w.
template <class Block, class W>
SPECDEC_ROW_DEV int32_t cdf_draw(Block& blk, int n, W w, double u, int32_t none, double* checkpoint, int max_segments) {
  int L = blk.cdf_segment();
  if (static_cast<int64_t>(L) * max_segments < n) L = (n + max_segments - 1) / max_segments;
  const int segments = (n + L - 1) / L;
  struct Total {
    double sum;
    int32_t last_positive;
    int32_t next_checkpoint;  // index of the next checkpoint's first weight
  };
  const Total t = blk.sequential(n, Total{0.0, none, 0}, w, [checkpoint, L](Total& s, int i, double v) {
    if (i == s.next_checkpoint) {
      checkpoint[i / L] = s.sum;  // the sum of the weights before i
      s.next_checkpoint += L;
    }
    if (v > 0) {
      s.sum += v;
      s.last_positive = i;
    }
    return false;
  });
  const double target = mul_rn(u, t.sum);
  // The first segment whose end sum exceeds the target holds the draw.
  const int seg = blk.reduce(
      segments, segments,
      [&](int k) {
        const double end = k + 1 < segments ? checkpoint[k + 1] : t.sum;
        return target < end ? k : segments;
      },
      [](int a, int b) { return a < b ? a : b; });
  if (seg == segments) return t.last_positive;  // round-off at the end of the CDF
  struct Scan {
    double cum;
    int32_t found;
  };
  const int first = seg * L, len = n - first < L ? n - first : L;
  const Scan scan = blk.sequential(
      len, Scan{checkpoint[seg], -1}, [&](int j) { return w(first + j); },
      [target, first](Scan& s, int j, double v) {
        if (!(v > 0)) return false;
        s.cum += v;
        if (target < s.cum) {
          s.found = first + j;
          return true;
        }
        return false;
      });
  return scan.found >= 0 ? scan.found : t.last_positive;  // found: the segment's sums are pass one's
}

// sample_from_probs(probs (n), u). probs: a valid distribution (>= 0, positive finite total).
template <class Block>
SPECDEC_ROW_DEV int32_t draw_from_probs(Block& blk, const float* probs, int n, double u) {
  return cdf_draw(
      blk, n, [probs](int i) { return static_cast<double>(probs[i]); }, u, 0, blk.f64_scratch(), blk.scratch_len());
}

// Shortest rank-order prefix reaching a threshold: core/sampling's top_p_prefix over a sorted run.
struct Prefix {
  double acc;     // mass so far (from 0)
  uint64_t last;  // key of the last token taken
  int reached;    // acc >= threshold
};
template <class Block>
SPECDEC_ROW_DEV Prefix prefix_over(Block& blk, const float* w, const uint64_t* sorted, int count, Prefix pre,
                                   double threshold) {
  return blk.sequential(
      count, pre, [&](int j) { return static_cast<double>(w[key_token(sorted[j])]); },
      [sorted, threshold](Prefix& s, int j, double v) {
        s.acc += v;
        s.last = sorted[j];
        if (s.acc >= threshold) {
          s.reached = 1;
          return true;
        }
        return false;
      });
}

// One row of Sampler::sample: probs (n) = logits_to_probs(logits (n), params), returns the token drawn
// with u (greedy: argmax, u unused). probs must not alias logits. A row that logits_to_probs would
// reject (a NaN or +inf, or no finite logit; non-greedy only) gives probs = 0 and -1.
//
// Sums run in the CPU's order, so probs and the token equal the CPU's bit for bit, except where the CPU
// itself sums in an order std::nth_element leaves unspecified; this code then sums in rank order:
//  - top-k with top_k > n / 16 (the CPU selects with nth_element, not partial_sort): the total of the k
//    survivors, and with top-p the prefix masses;
//  - top-p alone when the logit bucket holding the top-p boundary has more than 64 tokens (the CPU
//    bisects it with nth_element): the prefix mass within that bucket.
// There the double sums may differ in their last bits: the kept set changes only if the prefix mass is
// within that rounding of top_p's threshold, and a probability only if p / kept lies that close to a
// float rounding boundary (about 2^-29 per token); the token only if, besides, u * S falls in the
// shifted sliver of the CDF.
template <class Block>
SPECDEC_ROW_DEV int32_t sample_row(Block& blk, const float* logits, int n, const RowParams& prm, double u,
                                   float* probs) {
  if (prm.temperature == 0.f) {
    const int32_t best = argmax_row(blk, logits, n);
    blk.for_each(n, [&](int i) { probs[i] = i == best ? 1.f : 0.f; });
    return best;
  }
  const RowStats st = blk.reduce(
      n, RowStats{-pos_inf(), pos_inf(), 0}, [&](int i) { return row_stats_of(logits[i]); },
      [](RowStats a, RowStats b) { return row_stats_combine(a, b); });
  if (st.bad || !(st.max_logit > -pos_inf())) {
    blk.for_each(n, [&](int i) { probs[i] = 0.f; });
    return -1;
  }
  const double m = st.max_logit;
  const double inv_t = 1.0 / static_cast<double>(prm.temperature);
  // Every token's weight, the CPU's probs[i] before normalisation (top-k needs only the survivors', but
  // the others are overwritten with 0 below).
  blk.for_each(n, [&](int i) { probs[i] = sampling_weight(logits[i], m, inv_t); });

  const bool use_top_k = prm.top_k > 0 && prm.top_k < n;
  const bool use_top_p = prm.top_p < 1.f;
  const double top_p = sub_rn(static_cast<double>(prm.top_p), kTopPSlack);
  double kept = 0;               // mass of the kept tokens
  uint64_t last = ~uint64_t{0};  // keep exactly the tokens with rank_key <= last

  if (use_top_k) {
    // The k survivors in rank order: their total, then (top-p) the shortest prefix reaching
    // top_p * total. A single chunk serves both passes; longer lists are enumerated twice.
    const int k = prm.top_k;
    auto all = [](int) { return true; };
    double total = 0;
    Prefix pre{0.0, 0, 0};
    bool prefix_done = false;
    rank_chunks(blk, logits, n, all, k, [&](const uint64_t* sorted, int count) {
      total = blk.sequential(
          count, total, [&](int j) { return static_cast<double>(probs[key_token(sorted[j])]); },
          [](double& s, int, double v) {
            s += v;
            return false;
          });
      last = sorted[count - 1];
      if (use_top_p && count == k) {
        pre = prefix_over(blk, probs, sorted, count, pre, mul_rn(top_p, total));
        prefix_done = true;
      }
      return false;
    });
    kept = total;
    if (use_top_p) {
      if (!prefix_done) {
        const double threshold = mul_rn(top_p, total);
        rank_chunks(blk, logits, n, all, k, [&](const uint64_t* sorted, int count) {
          pre = prefix_over(blk, probs, sorted, count, pre, threshold);
          return pre.reached != 0;
        });
      }
      kept = pre.acc;  // not reached: the re-summed total, equal to `total` bit for bit
      last = pre.last;
    }
  } else {
    // Total in index order; with top-p, the mass of each logit bucket too (index order within each).
    double* mass = blk.f64_scratch();
    const double scale = top_p_bucket_scale(st.max_logit, st.min_finite);
    const float max_logit = st.max_logit;
    const double total =
        use_top_p ? blk.bucket_sums(
                        n, kTopPBuckets,
                        [&](int i) {
                          return BucketValue{static_cast<double>(probs[i]), top_p_bucket(logits[i], max_logit, scale)};
                        },
                        mass)
                  : blk.sequential(
                        n, 0.0, [&](int i) { return static_cast<double>(probs[i]); },
                        [](double& s, int, double v) {
                          s += v;
                          return false;
                        });
    kept = total;
    if (use_top_p) {
      const double threshold = mul_rn(top_p, total);
      // Whole buckets while they stay under the threshold; b = the bucket holding the boundary.
      struct Before {
        double mass;
        int b;
      };
      const Before before = blk.sequential(
          kTopPBuckets - 1, Before{0.0, 0}, [&](int b) { return mass[b]; },
          [threshold](Before& s, int b, double v) {
            if (s.mass + v < threshold) {
              s.mass += v;
              s.b = b + 1;
              return false;
            }
            return true;
          });
      const int b = before.b;
      Prefix pre{0.0, 0, 0};
      bool any = false;
      const double in_bucket = sub_rn(threshold, before.mass);
      rank_chunks(
          blk, logits, n, [&](int i) { return top_p_bucket(logits[i], max_logit, scale) == b; }, n,
          [&](const uint64_t* sorted, int count) {
            any = true;
            pre = prefix_over(blk, probs, sorted, count, pre, in_bucket);
            return pre.reached != 0;
          });
      if (any) {
        kept = add_rn(before.mass, pre.acc);
        last = pre.last;
      } else {  // only by round-off with an empty last bucket: the CPU keeps every token
        kept = before.mass;
        last = ~uint64_t{0};
      }
    }
  }

  const double inv_kept = 1.0 / kept;
  blk.for_each(n, [&](int i) {
    probs[i] = rank_key(logits[i], static_cast<uint32_t>(i)) <= last
                   ? static_cast<float>(mul_rn(static_cast<double>(probs[i]), inv_kept))
                   : 0.f;
  });
  return draw_from_probs(blk, probs, n, u);
}

}  // namespace specdec::cuda::row
