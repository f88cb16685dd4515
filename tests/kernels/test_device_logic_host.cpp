// The logic of the CUDA sampling and acceptance kernels, run on the host: the row and walk algorithms of
// kernels/cuda/sample_row.cuh and accept_walk.cuh on a one-thread HostBlock (small tiles and chunks, a
// scrambled gather, so every path of the chunked enumeration runs), against their CPU twins
// (core/sampling's logits_to_probs / sample_from_probs / Sampler, verifiers' greedy and speculative
// rules). Exact: probabilities bit for bit, tokens, paths and Philox draws (cpu label; needs no GPU).
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <random>
#include <vector>

#include "core/sampling/philox.h"
#include "core/sampling/sampling.h"
#include "core/speculative/acceptance.h"
#include "kernels/cuda/accept_walk.cuh"
#include "kernels/cuda/sample_row.cuh"
#include "verifiers/rules.h"
#include "verifiers/tree_walk.h"

using namespace specdec;
namespace row = specdec::cuda::row;
namespace walk = specdec::cuda::walk;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// The Block concept on one host thread. Deliberately unlike the GPU where that must not matter:
// for_each runs backwards, reduce folds strided partials, sequential() produces a whole tile of values
// before stepping, gather returns its keys shuffled. bucket_sums adds in DeviceBlock's batches.
class HostBlock {
 public:
  HostBlock(int chunk, int tile, uint32_t seed) : chunk_(chunk), tile_(tile), rng_(seed), f64_(1024), i32_(1024) {}

  bool leader() const { return true; }
  int chunk() const { return chunk_; }
  int scratch_len() const { return static_cast<int>(f64_.size()); }
  int cdf_segment() const { return tile_; }
  double* f64_scratch() { return f64_.data(); }
  int32_t* i32_scratch() { return i32_.data(); }
  void barrier() {}

  template <class F>
  void for_each(int n, F f) {
    for (int i = n - 1; i >= 0; --i) f(i);
  }
  template <class T, class F, class Op>
  T reduce(int n, T identity, F f, Op op) {
    constexpr int kParts = 3;
    T part[kParts] = {identity, identity, identity};
    for (int i = 0; i < n; ++i) part[i % kParts] = op(part[i % kParts], f(i));
    return op(part[2], op(part[1], part[0]));
  }
  template <class S, class F, class G>
  S sequential(int n, S s, F value, G step) {
    std::vector<double> tile;
    for (int base = 0; base < n; base += tile_) {
      const int m = std::min(tile_, n - base);
      tile.resize(static_cast<size_t>(m));
      for (int j = m - 1; j >= 0; --j) tile[static_cast<size_t>(j)] = value(base + j);
      for (int j = 0; j < m; ++j)
        if (step(s, base + j, tile[static_cast<size_t>(j)])) return s;
    }
    return s;
  }
  template <class F>
  double bucket_sums(int n, int nb, F value, double* out) {
    std::fill(out, out + nb, 0.0);
    double total = 0;
    for (int j0 = 0; j0 < n; j0 += row::kBucketBatch) {  // DeviceBlock's batches
      row::BucketValue v[row::kBucketBatch];
      for (int k = 0; k < row::kBucketBatch; ++k) v[k] = j0 + k < n ? value(j0 + k) : row::BucketValue{0.0, -1};
      row::add_bucket_batch(v, out, total);
    }
    return total;
  }
  template <class F>
  const uint32_t* histogram(int n, F digit) {
    std::fill(std::begin(hist_), std::end(hist_), 0u);
    for (int i = 0; i < n; ++i) {
      const int d = digit(i);
      if (d >= 0) ++hist_[d];
    }
    return hist_;
  }
  template <class F>
  int gather(int n, F key_of) {
    keys_.clear();
    for (int i = 0; i < n; ++i) {
      uint64_t key;
      if (key_of(i, key)) keys_.push_back(key);
    }
    REQUIRE(static_cast<int>(keys_.size()) <= chunk_);  // rank_chunks asks for at most chunk() keys
    std::shuffle(keys_.begin(), keys_.end(), rng_);
    return static_cast<int>(keys_.size());
  }
  const uint64_t* sort(int count) {
    sorted_.assign(static_cast<size_t>(count), 0);
    for (int t = 0; t < count; ++t) sorted_[static_cast<size_t>(row::chunk_rank(keys_.data(), count, t))] = keys_[t];
    return sorted_.data();
  }

 private:
  int chunk_, tile_;
  std::mt19937 rng_;
  std::vector<double> f64_;
  std::vector<int32_t> i32_;
  uint32_t hist_[256] = {};
  std::vector<uint64_t> keys_, sorted_;
};

uint32_t bits_of(float x) { return row::float_bits(x); }

// |a - b| in units in the last place, for floats >= 0 (probabilities).
int64_t ulps(float a, float b) {
  return std::llabs(static_cast<int64_t>(bits_of(a)) - static_cast<int64_t>(bits_of(b)));
}

// Logits of a few shapes that stress the tie rules, the tails and the top-p buckets.
std::vector<float> make_logits(int V, int shape, std::mt19937& g) {
  std::vector<float> l(static_cast<size_t>(V));
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  for (auto& x : l) {
    const float z = nd(g);
    switch (shape) {
      case 0:
        x = z;
        break;  // normal
      case 1:
        x = 4.f * z;
        break;  // wide
      case 2:
        x = std::round(2.f * z) * 0.5f;
        break;  // many ties
      case 3:
        x = ud(g) < 0.3f ? -kInf : 3.f * z;
        break;  // -inf holes
      case 4:
        x = 1.5f;
        break;  // all equal
      case 5:
        x = ud(g) < 0.5f ? 0.f : -0.f;
        break;  // signed zeros tie
      case 6:
        x = 0.01f * z;
        break;  // nearly flat
      case 7:
        x = z * 40.f;
        break;  // weights underflow to 0
      case 8:
        x = std::log(ud(g) + 1e-30f);
        break;  // log of uniform probabilities
      default:
        x = std::log(static_cast<float>(1 + g() % 4));
        break;  // top-p boundaries hit exactly
    }
  }
  if (shape == 8 && V > 3) l[static_cast<size_t>(g() % static_cast<uint32_t>(V))] = 30.f;  // a peak
  if (shape == 3 && V > 0) l[static_cast<size_t>(g() % static_cast<uint32_t>(V))] = 2.f;   // one finite at least
  return l;
}

// The CPU's top-p boundary bucket has more than 64 tokens: core/sampling bisects it with nth_element,
// whose summation order the device does not follow (sample_row.cuh documents the consequence).
bool top_p_bisects(const std::vector<float>& logits, float temperature, float top_p) {
  const float mx = *std::max_element(logits.begin(), logits.end());
  float mn = kInf;
  for (float l : logits)
    if (l > -kInf) mn = std::min(mn, l);
  const double scale = row::top_p_bucket_scale(mx, mn);
  std::vector<double> mass(row::kTopPBuckets, 0.0);
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float w = row::sampling_weight(logits[i], mx, 1.0 / static_cast<double>(temperature));
    total += w;
    mass[static_cast<size_t>(row::top_p_bucket(logits[i], mx, scale))] += w;
  }
  const double threshold = (static_cast<double>(top_p) - kTopPSlack) * total;
  double before = 0;
  int b = 0;
  while (b < row::kTopPBuckets - 1 && before + mass[static_cast<size_t>(b)] < threshold)
    before += mass[static_cast<size_t>(b++)];
  int in_bucket = 0;
  for (float l : logits) in_bucket += row::top_p_bucket(l, mx, scale) == b ? 1 : 0;
  return in_bucket > 64;
}

}  // namespace

TEST_CASE("expf_glibc is glibc's expf bit for bit", "[kernels][device_logic]") {
  static_assert(row::kTopPSlack == kTopPSlack, "sample_row.cuh's slack must be core/sampling's");
  // Every weight's argument is <= 0: all negative floats down to -104 at a prime stride, every float in
  // the underflow / subnormal range and near the special-case limits, and a sample of the rest.
  const bool exhaustive = std::getenv("SPECDEC_EXPF_EXHAUSTIVE") != nullptr;
  const uint64_t stride = exhaustive ? 1 : 61;
  uint64_t checked = 0, bad = 0;
  auto check = [&](uint32_t u) {
    const float x = row::bits_float(u);
    const float want = std::exp(x), got = row::expf_glibc(x);
    ++checked;
    if (bits_of(want) != bits_of(got) && !(std::isnan(want) && std::isnan(got))) {
      if (bad++ < 5)
        std::printf("expf(%a): glibc %a, replica %a\n", static_cast<double>(x), static_cast<double>(want),
                    static_cast<double>(got));
    }
  };
  for (uint64_t u = 0; u <= 0xffffffffu; u += stride) check(static_cast<uint32_t>(u));
  for (uint32_t u = 0xc2c00000u; u <= 0xc2d00000u; ++u) check(u);  // [-96, -104]: subnormal results, limits
  for (uint32_t u = 0x42b00000u; u <= 0x42b20000u; ++u) check(u);  // around the overflow limit
  for (float x : {0.f, -0.f, -kInf, kInf, std::nanf(""), -0x1.9fe368p6f, -0x1.9d1d9ep6f, 0x1.62e42ep6f})
    check(bits_of(x));
  std::printf("expf_glibc: %llu inputs compared with glibc expf, %llu differ\n",
              static_cast<unsigned long long>(checked), static_cast<unsigned long long>(bad));
  REQUIRE(bad == 0);
}

TEST_CASE("rank keys order by descending logit, then ascending index", "[kernels][device_logic]") {
  CHECK(row::rank_key(2.f, 5) < row::rank_key(1.f, 0));
  CHECK(row::rank_key(1.f, 0) < row::rank_key(1.f, 1));
  CHECK(row::rank_key(-0.f, 0) < row::rank_key(0.f, 1));  // -0 ties with +0
  CHECK(row::rank_key(0.f, 0) < row::rank_key(-0.f, 1));
  CHECK(row::rank_key(-1.f, 9) < row::rank_key(-2.f, 0));
  CHECK(row::rank_key(-1e30f, 9) < row::rank_key(-kInf, 0));
  CHECK(row::rank_key(kInf, 9) < row::rank_key(3e38f, 0));
}

TEST_CASE("argmax_row is specdec::argmax (ties, -inf, NaN)", "[kernels][device_logic]") {
  std::mt19937 g(11);
  HostBlock blk(8, 5, 1);
  int cases = 0;
  for (int V : {1, 2, 3, 7, 37, 1002}) {
    for (int shape = 0; shape < 9; ++shape) {
      for (int rep = 0; rep < 4; ++rep) {
        auto l = make_logits(V, shape, g);
        if (rep == 1) l[static_cast<size_t>(g() % static_cast<uint32_t>(V))] = std::nanf("");
        if (rep == 2) l[0] = std::nanf("");
        REQUIRE(row::argmax_row(blk, l.data(), V) == argmax(l));
        ++cases;
      }
    }
  }
  std::printf("argmax_row: %d rows compared with specdec::argmax\n", cases);
}

TEST_CASE("top_k_row gives the k largest, descending, ties by lower index", "[kernels][device_logic]") {
  std::mt19937 g(12);
  int cases = 0;
  for (int V : {1, 3, 7, 37, 1002, 4099}) {
    for (int shape = 0; shape < 9; ++shape) {
      const auto l = make_logits(V, shape, g);
      std::vector<uint64_t> keys(static_cast<size_t>(V));
      for (int i = 0; i < V; ++i)
        keys[static_cast<size_t>(i)] = row::rank_key(l[static_cast<size_t>(i)], static_cast<uint32_t>(i));
      std::sort(keys.begin(), keys.end());
      for (int k : {1, 2, 5, 64, 1024}) {
        if (k > V) continue;
        for (int chunk : {1, 7, 512}) {
          HostBlock blk(chunk, 64, static_cast<uint32_t>(k));
          std::vector<float> vals(static_cast<size_t>(k), -1.f);
          std::vector<int32_t> idx(static_cast<size_t>(k), -1);
          row::top_k_row(blk, l.data(), V, k, vals.data(), idx.data());
          for (int j = 0; j < k; ++j) {
            const uint32_t t = row::key_token(keys[static_cast<size_t>(j)]);
            REQUIRE(idx[static_cast<size_t>(j)] == static_cast<int32_t>(t));
            REQUIRE(bits_of(vals[static_cast<size_t>(j)]) == bits_of(l[t]));
            if (j > 0) REQUIRE(vals[static_cast<size_t>(j)] <= vals[static_cast<size_t>(j - 1)]);
          }
          ++cases;
        }
      }
    }
  }
  std::printf("top_k_row: %d rows compared with a full sort\n", cases);
}

TEST_CASE("draw_from_probs is sample_from_probs, ends of the CDF included", "[kernels][device_logic]") {
  std::mt19937 g(13);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  int cases = 0;
  for (int V : {1, 2, 5, 37, 1002}) {
    for (int rep = 0; rep < 60; ++rep) {
      std::vector<float> w(static_cast<size_t>(V));
      for (auto& x : w) {
        const float r = ud(g);
        x = r < 0.3f ? 0.f : (r < 0.4f ? 1e-30f * ud(g) : ud(g) * 3.f);  // not normalised, zeros, tiny
      }
      w[static_cast<size_t>(g() % static_cast<uint32_t>(V))] = 0.5f;
      if (rep % 3 == 0) w.back() = 1e-38f;  // a tiny last nonzero: the fallback at u near 1
      for (float u : {0.f, 0.5f, 1.f - 0x1p-24f, 1.f - 0x1p-23f, ud(g), ud(g)}) {
        if (u >= 1.f) continue;
        HostBlock blk(8, 3, static_cast<uint32_t>(rep));
        REQUIRE(row::draw_from_probs(blk, w.data(), V, u) == sample_from_probs(w, u));
        ++cases;
      }
    }
  }
  std::printf("draw_from_probs: %d draws compared with sample_from_probs\n", cases);
}

TEST_CASE("draw_from_probs and prefix_over at exact CDF boundaries", "[kernels][device_logic]") {
  // u * S lands exactly on a partial sum: the CPU's strict < moves on to the next nonzero token.
  for (const std::vector<float>& w :
       std::vector<std::vector<float>>{{0.25f, 0.25f, 0.5f}, {0.5f, 0.f, 0.5f}, {0.f, 1.f, 0.f}}) {
    for (float u : {0.f, 0.25f, 0.5f, 0.75f, 1.f - 0x1p-24f}) {
      HostBlock blk(4, 2, 1);
      REQUIRE(row::draw_from_probs(blk, w.data(), static_cast<int>(w.size()), u) == sample_from_probs(w, u));
    }
  }
  // A prefix whose mass equals the threshold reaches it (>=), as core/sampling's top_p_prefix.
  const std::vector<float> w = {0.25f, 0.25f, 0.5f};
  const std::vector<uint64_t> sorted = {row::rank_key(3.f, 0), row::rank_key(2.f, 1), row::rank_key(1.f, 2)};
  HostBlock blk(4, 2, 1);
  const row::Prefix pre = row::prefix_over(blk, w.data(), sorted.data(), 3, row::Prefix{0.0, 0, 0}, 0.5);
  REQUIRE(pre.reached == 1);
  REQUIRE(pre.acc == 0.5);
  REQUIRE(pre.last == sorted[1]);
}

TEST_CASE("sample_row is logits_to_probs + Sampler bit for bit", "[kernels][device_logic]") {
  std::mt19937 g(14);
  int rows = 0, exact_rows = 0, reordered_rows = 0, reordered_bits_differ = 0, draws = 0;
  const std::vector<float> temperatures = {0.f, 0.5f, 1.f, 1.3f, 0.05f, 3.f};
  for (int V : {1, 2, 3, 7, 16, 37, 100, 1002, 4099, 32000}) {
    const int reps = V >= 32000 ? 1 : (V >= 4099 ? 2 : 4);
    for (int shape = 0; shape < 10; ++shape) {
      for (int rep = 0; rep < reps; ++rep) {
        const auto logits = make_logits(V, shape, g);
        std::vector<int> top_ks = {0, 1, 2, 5, 50, V / 16, V / 16 + 1, V - 1, V, V + 3};
        std::vector<float> top_ps = {1.f, 0.95f, 0.9f, 0.5f, 0.1f, 1e-3f};
        for (float T : temperatures) {
          // A random subset of the (top_k, top_p) grid keeps the big rows affordable.
          for (int k : top_ks) {
            for (float p : top_ps) {
              if (k < 0 || (V >= 1002 && g() % 4 != 0) || (V >= 32000 && g() % 4 != 0)) continue;
              if (T == 0.f && (k != 0 || p != 1.f)) continue;  // greedy ignores the filters
              SamplingParams sp{T, k, p};
              std::vector<float> want(static_cast<size_t>(V));
              logits_to_probs(logits, sp, want);
              const uint64_t seed = g(), request = g() % 8;
              const uint32_t step = g() % 1000, draw = g() % 3;
              Sampler sampler(sp, seed);
              const TokenId want_token = sampler.sample(logits, request, step, draw);

              // Small chunks exercise the chunked enumeration; the device's is 1024.
              const std::vector<int> chunks =
                  V <= 100 ? std::vector<int>{1, 5, 64, 1024}
                           : (V <= 1002 ? std::vector<int>{7, 64, 1024} : std::vector<int>{1024});
              const int chunk = chunks[g() % chunks.size()];
              HostBlock blk(chunk, static_cast<int>(1 + g() % 300), g());
              std::vector<float> got(static_cast<size_t>(V), -1.f);
              row::RowParams prm;
              prm.temperature = T;
              prm.top_k = k;
              prm.top_p = p;
              const double u = T == 0.f ? 0.0 : uniform(seed, request, step, draw);
              const int32_t token = row::sample_row(blk, logits.data(), V, prm, u, got.data());
              INFO("V " << V << " shape " << shape << " T " << T << " top_k " << k << " top_p " << p);
              REQUIRE(token == want_token);

              const bool use_k = k > 0 && k < V, use_p = p < 1.f && T != 0.f;
              const bool reordered =
                  T != 0.f && ((use_k && k > V / 16) || (!use_k && use_p && top_p_bisects(logits, T, p)));
              bool same_bits = true;
              for (int i = 0; i < V; ++i) {
                const float a = got[static_cast<size_t>(i)], b = want[static_cast<size_t>(i)];
                if (bits_of(a) == bits_of(b)) continue;
                same_bits = false;
                // Where the CPU sums in nth_element's order: at most a rounding apart, same support.
                REQUIRE(reordered);
                REQUIRE((a == 0.f) == (b == 0.f));
                REQUIRE(ulps(a, b) <= 1);
              }
              ++rows;
              if (reordered) {
                ++reordered_rows;
                reordered_bits_differ += same_bits ? 0 : 1;
              } else {
                ++exact_rows;
              }
              // More draws from the same distribution.
              for (int d = 0; d < 4 && T != 0.f; ++d) {
                const double ud = uniform(seed, request, step, draw + 1 + static_cast<uint32_t>(d));
                REQUIRE(row::draw_from_probs(blk, got.data(), V, ud) == sample_from_probs(want, ud));
                ++draws;
              }
            }
          }
        }
      }
    }
  }
  std::printf(
      "sample_row: %d rows compared with logits_to_probs + Sampler (%d in the CPU's summation order, bit for "
      "bit; %d where the CPU sums in nth_element's order, %d of them off by one ulp somewhere), %d more draws\n",
      rows, exact_rows, reordered_rows, reordered_bits_differ, draws);
}

TEST_CASE("sample_row: invalid rows give -1 and zeros instead of throwing", "[kernels][device_logic]") {
  HostBlock blk(8, 4, 1);
  row::RowParams prm;
  prm.temperature = 1.f;
  for (const std::vector<float>& l :
       std::vector<std::vector<float>>{{0.f, std::nanf(""), 1.f}, {0.f, kInf}, {-kInf, -kInf}}) {
    std::vector<float> probs(l.size(), 7.f);
    REQUIRE(row::sample_row(blk, l.data(), static_cast<int>(l.size()), prm, 0.5f, probs.data()) == -1);
    for (float x : probs) REQUIRE(x == 0.f);
    std::vector<float> cpu(l.size());
    REQUIRE_THROWS(logits_to_probs(l, SamplingParams{1.f, 0, 1.f}, cpu));
  }
}

namespace {

// A random verify block of T nodes: parents, tokens, logits (T, V), q as the CPU rule wants it
// ((T-1, V), or empty = one-hot) and as the device wants it ((T, V), row 0 unused).
struct RandomBlock {
  std::vector<int32_t> parents, tokens;
  std::vector<float> logits, p, q_cpu, q_dev;
  bool one_hot = true;
};

RandomBlock make_block(int T, int V, int shape, int q_mode, const SamplingParams& sp, std::mt19937& g) {
  RandomBlock b;
  b.parents.assign(static_cast<size_t>(T), -1);
  for (int i = 1; i < T; ++i) {
    switch (shape) {
      case 0:
        b.parents[static_cast<size_t>(i)] = i - 1;
        break;  // chain
      case 1:
        b.parents[static_cast<size_t>(i)] = 0;
        break;  // star
      case 2:
        b.parents[static_cast<size_t>(i)] = (i - 1) / 3;
        break;  // 3-ary
      default:
        b.parents[static_cast<size_t>(i)] = static_cast<int32_t>(g() % static_cast<uint32_t>(i));
        break;
    }
  }
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  const float sigma = (g() % 2) ? 1.f : 4.f;
  b.logits.resize(static_cast<size_t>(T) * V);
  for (auto& x : b.logits) x = sigma * nd(g);
  if (g() % 4 == 0)
    for (auto& x : b.logits) x = std::round(x);  // ties
  b.p.resize(b.logits.size());
  for (int n = 0; n < T; ++n) {
    const auto off = static_cast<size_t>(n) * V;
    logits_to_probs(std::span<const float>(b.logits).subspan(off, static_cast<size_t>(V)), sp,
                    std::span<float>(b.p).subspan(off, static_cast<size_t>(V)));
  }
  // q_mode: 0 implicit one-hot, 1 explicit one-hot, 2 random distributions, 3 q = the parent's p,
  // 4 q = all ones (used normalised: uniform).
  b.one_hot = q_mode == 0;
  b.tokens.assign(static_cast<size_t>(T), 0);
  b.tokens[0] = static_cast<int32_t>(g() % static_cast<uint32_t>(V));
  if (!b.one_hot) b.q_dev.assign(static_cast<size_t>(T) * V, 0.f);
  auto draw_from = [&](const float* w) {
    double total = 0;
    for (int v = 0; v < V; ++v) total += w[v];
    double target = ud(g) * total, acc = 0;
    for (int v = 0; v < V; ++v) {
      acc += w[v];
      if (w[v] > 0 && target < acc) return v;
    }
    return V - 1;
  };
  for (int i = 1; i < T; ++i) {
    float* q = b.one_hot ? nullptr : &b.q_dev[static_cast<size_t>(i) * V];
    const float* pp = &b.p[static_cast<size_t>(b.parents[static_cast<size_t>(i)]) * V];
    int tok;
    const uint32_t how = g() % 3;  // the parent's argmax-ish, a draw from q, or any token
    switch (q_mode) {
      case 2:
        for (int v = 0; v < V; ++v) q[v] = ud(g) < 0.3f ? 0.f : ud(g);
        {
          double s = 0;
          for (int v = 0; v < V; ++v) s += q[v];
          if (s == 0) q[0] = 1.f, s = 1;
          for (int v = 0; v < V; ++v) q[v] = static_cast<float>(q[v] / s);
        }
        tok = how == 0 ? draw_from(q) : (how == 1 ? draw_from(pp) : static_cast<int>(g() % static_cast<uint32_t>(V)));
        break;
      case 3:
        std::copy(pp, pp + V, q);
        tok = how == 2 ? static_cast<int>(g() % static_cast<uint32_t>(V)) : draw_from(pp);
        break;
      case 4:
        std::fill(q, q + V, 1.f);
        tok = how == 2 ? static_cast<int>(g() % static_cast<uint32_t>(V)) : draw_from(pp);
        break;
      default:
        tok = how == 2 ? static_cast<int>(g() % static_cast<uint32_t>(V)) : draw_from(pp);
        if (q) q[tok] = 1.f;
        break;
    }
    b.tokens[static_cast<size_t>(i)] = tok;
  }
  if (!b.one_hot) b.q_cpu.assign(b.q_dev.begin() + V, b.q_dev.end());
  return b;
}

// A row divided by its double sum in index order, as verifiers/rules.cpp uses every p and q row.
std::vector<double> normalized_row(const float* r, int V) {
  double sum = 0;
  for (int v = 0; v < V; ++v) sum += r[v];
  std::vector<double> out(static_cast<size_t>(V));
  for (int v = 0; v < V; ++v) out[static_cast<size_t>(v)] = static_cast<double>(r[v]) / sum;
  return out;
}

// verifiers' walk (tree_walk.h) on the same block, with the production Philox draws, remembering the
// weights of its final categorical draw: the residual the device recomputes must equal them bit for bit.
struct RefTree {
  RefTree(const RandomBlock& b, int V) : b_(b), V_(V), kids_(b.tokens.size()), q_(b.tokens.size()) {
    for (size_t i = 1; i < b.tokens.size(); ++i) {
      kids_[static_cast<size_t>(b.parents[i])].push_back(static_cast<int>(i));
      if (!b.one_hot) q_[i] = normalized_row(b.q_dev.data() + i * static_cast<size_t>(V), V);
    }
  }
  int size() const { return static_cast<int>(b_.tokens.size()); }
  const std::vector<int>& children(int n) const { return kids_[static_cast<size_t>(n)]; }
  int token(int n) const { return b_.tokens[static_cast<size_t>(n)]; }
  std::vector<double> target(int n) const { return normalized_row(&b_.p[static_cast<size_t>(n) * V_], V_); }
  const std::vector<double>* draft(int c) const { return b_.one_hot ? nullptr : &q_[static_cast<size_t>(c)]; }

 private:
  const RandomBlock& b_;
  int V_;
  std::vector<std::vector<int>> kids_;
  std::vector<std::vector<double>> q_;
};

struct RefSource {
  uint64_t seed, request;
  uint32_t step, draw = 0;
  std::vector<double> final_weights;
  bool bernoulli(double a) { return uniform(seed, request, step, draw++) < a; }
  int categorical(const std::vector<double>& w) {  // PhiloxSource::categorical (verifiers/rules.cpp)
    final_weights = w;
    double sum = 0;
    for (double x : w) sum += x;
    const double target = uniform(seed, request, step, draw++) * sum;
    double acc = 0;
    int last_nonzero = -1;
    for (size_t i = 0; i < w.size(); ++i) {
      if (w[i] <= 0) continue;
      acc += w[i];
      last_nonzero = static_cast<int>(i);
      if (target < acc) return last_nonzero;
    }
    return last_nonzero;
  }
};

// Records what speculative_walk shows its Observer.
struct Recorder {
  struct Test {
    int node;
    bool ok;
    double u;
  };
  std::vector<Test> tests;
  std::vector<double> weights;
  void test(int node, bool ok, double u) { tests.push_back({node, ok, u}); }
  template <class W>
  void final_weights(int V, const W& w) {
    weights.resize(static_cast<size_t>(V));
    for (int v = 0; v < V; ++v) weights[static_cast<size_t>(v)] = w(v);
  }
};

}  // namespace

TEST_CASE("greedy_walk is the greedy rule", "[kernels][device_logic]") {
  std::mt19937 g(15);
  const auto rule = verifiers::make_greedy_rule();
  int cases = 0;
  for (int V : {1, 2, 5, 37}) {
    for (int T : {1, 2, 3, 8, 24}) {
      for (int shape = 0; shape < 4; ++shape) {
        for (int rep = 0; rep < 25; ++rep) {
          const auto b = make_block(T, V, shape, 0, SamplingParams{}, g);
          VerifyInput in{.tokens = b.tokens, .parents = b.parents, .logits = b.logits, .vocab_size = V};
          const VerifyOutcome want = rule->verify(in);
          std::vector<int32_t> am(static_cast<size_t>(T));
          for (int n = 0; n < T; ++n)
            am[static_cast<size_t>(n)] =
                argmax(std::span<const float>(b.logits).subspan(static_cast<size_t>(n) * V, static_cast<size_t>(V)));
          const int max_depth = static_cast<int>(g() % 4) == 0 ? 2 : T;  // sometimes cut short
          std::vector<int32_t> path(static_cast<size_t>(std::max(max_depth, 1)), -1);
          const walk::WalkResult r =
              walk::greedy_walk(b.tokens.data(), b.parents.data(), T, am.data(), path.data(), max_depth);
          REQUIRE(r.len == static_cast<int32_t>(want.path.size()));
          REQUIRE(r.next == want.next);
          for (int d = 0; d < std::min(r.len, max_depth); ++d)
            REQUIRE(path[static_cast<size_t>(d)] == want.path[static_cast<size_t>(d)]);
          ++cases;
        }
      }
    }
  }
  std::printf("greedy_walk: %d blocks compared with the greedy rule\n", cases);
}

TEST_CASE("speculative_walk is the speculative rule: path, next token and every draw", "[kernels][device_logic]") {
  std::mt19937 g(16);
  const auto rule = verifiers::make_speculative_rule();
  const std::vector<SamplingParams> params = {{0.f, 0, 1.f}, {1.f, 0, 1.f},  {0.7f, 0, 1.f},  {1.5f, 0, 1.f},
                                              {1.f, 3, 1.f}, {1.f, 0, 0.9f}, {0.8f, 20, 0.8f}};
  int cases = 0, tests = 0, accepted = 0, impossible_blocks = 0;
  for (int V : {1, 2, 5, 37, 300, 2000}) {
    for (int T : {1, 2, 4, 9, 20}) {
      for (int shape = 0; shape < 4; ++shape) {
        for (int q_mode = 0; q_mode < 5; ++q_mode) {
          const int reps = V >= 2000 ? 1 : 3;
          for (int rep = 0; rep < reps; ++rep) {
            const SamplingParams& sp = params[g() % params.size()];
            const auto b = make_block(T, V, shape, q_mode, sp, g);
            VerifyInput in{.tokens = b.tokens,
                           .parents = b.parents,
                           .logits = b.logits,
                           .q = b.q_cpu,
                           .vocab_size = V,
                           .sampling = sp,
                           .seed = g(),
                           .request = g() % 16,
                           .step = static_cast<uint32_t>(g() % 500)};
            // Blocks whose token has q = 0 under its own row (q_mode 3 and 4 propose any token; a decode
            // refuses such a proposal) can reject into an all-zero residual: the CPU rule throws, the
            // device walk must return len = -1 there.
            VerifyOutcome want;
            bool impossible = false;
            try {
              want = rule->verify(in);
            } catch (const Error&) {
              impossible = true;
            }

            walk::SpecBlock s;
            s.T = T;
            s.tokens = b.tokens.data();
            s.parents = b.parents.data();
            s.p = b.p.data();
            s.q = b.one_hot ? nullptr : b.q_dev.data();
            s.V = V;
            s.seed = in.seed;
            s.request = in.request;
            s.step = in.step;
            Recorder seen;
            HostBlock blk(8, static_cast<int>(1 + g() % 100), g());
            std::vector<int32_t> path(static_cast<size_t>(T), -1);
            const walk::WalkResult r = walk::speculative_walk(blk, s, path.data(), T, seen);
            INFO("V " << V << " T " << T << " shape " << shape << " q_mode " << q_mode << " temperature "
                      << sp.temperature << " top_k " << sp.top_k << " top_p " << sp.top_p);
            if (impossible) {
              REQUIRE(r.len == -1);
              REQUIRE(r.next == -1);
              ++impossible_blocks;
              continue;
            }
            REQUIRE(r.len == static_cast<int32_t>(want.path.size()));
            for (int d = 0; d < r.len; ++d) REQUIRE(path[static_cast<size_t>(d)] == want.path[static_cast<size_t>(d)]);
            REQUIRE(r.next == want.next);
            // The same nodes tested, with the same verdicts and the same uniform draws.
            int visited = 0;
            for (const auto& v : want.verdicts) visited += v.visited ? 1 : 0;
            REQUIRE(static_cast<int>(seen.tests.size()) == visited);
            for (const auto& t : seen.tests) {
              const NodeVerdict& v = want.verdicts[static_cast<size_t>(t.node - 1)];
              REQUIRE(v.visited);
              REQUIRE(v.accepted == t.ok);
              REQUIRE(v.u == t.u);  // the same 53-bit draw
              accepted += t.ok ? 1 : 0;
            }
            // The final draw's weights (the residual, or p at a leaf) are tree_walk's, bit for bit.
            RefTree tree(b, V);
            RefSource src{in.seed, in.request, in.step};
            const auto ref = verifiers::speculative_walk<double>(tree, src);
            REQUIRE(ref.next == want.next);
            REQUIRE(seen.weights.size() == src.final_weights.size());
            for (size_t v = 0; v < seen.weights.size(); ++v) REQUIRE(seen.weights[v] == src.final_weights[v]);
            tests += static_cast<int>(seen.tests.size());
            ++cases;
          }
        }
      }
    }
  }
  std::printf(
      "speculative_walk: %d blocks compared with the speculative rule (%d Bernoulli tests, %d accepted, "
      "%d blocks ending in an impossible zero residual on both)\n",
      cases, tests, accepted, impossible_blocks);
  CHECK(impossible_blocks > 0);
}
