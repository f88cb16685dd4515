// The per-row softmax arithmetic of the CUDA attention kernel (kernels/cuda/online_softmax.cuh) run on the
// CPU, in an fp32 emulation of the kernel's order: per fixed split of kAttentionSplit slots, a streaming
// softmax slot by slot (running max, factor alpha, weight, sums in slot order); the splits folded in
// increasing order; finish().
// Checks that it equals the direct softmax, that its bit-identity properties hold (a row's bits do not
// depend on the slots past its last attended one, on extra splits, on neutral partials, on who folds the
// partials, on the query tiling, on masked slots between attended ones within a split), and that the
// kernel's whole decomposition, emulated, matches cpu::attention within the tolerance of
// test_cuda_attention.cpp and gives a verification block the bits of its single steps. Runs without a GPU.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/cpu/ops.h"
#include "kernels/cuda/online_softmax.cuh"

namespace {

using specdec::cuda::attention_splits;
using specdec::cuda::exp_shifted;
using specdec::cuda::fold_begin;
using specdec::cuda::fold_partial;
using specdec::cuda::fold_term;
using specdec::cuda::kAttentionSplit;
using specdec::cuda::kAttentionTile;
using specdec::cuda::SoftmaxFold;

constexpr float kMasked = -INFINITY;
constexpr int kL = kAttentionSplit;

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}
bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

// One split's partial of one row.
struct Partial {
  float m = kMasked;
  float l = 0.f;
  std::vector<float> acc;
};

// The kernel's split step for one row: scores sigma[s] (-inf = not attended) and values (slot s at
// v + s*ld_v, Dv floats) over the slots [begin, end), a streaming softmax slot by slot in increasing order
// (the kernel's prefix-max scan gives the same running max: a max is exact). The kernel scans whole tiles
// of kAttentionTile slots from begin: the slots of the last tile past `end` score -inf and read zeros.
Partial split_partial(const float* sigma, const float* v, int64_t ld_v, int Dv, int begin, int end) {
  Partial p;
  p.acc.assign(Dv, 0.f);
  if (end <= begin) return p;
  const int n = (end - begin + kAttentionTile - 1) / kAttentionTile * kAttentionTile;
  const std::vector<float> zeros(Dv, 0.f);
  for (int s = begin; s < begin + n; ++s) {
    const float score = s < end ? sigma[s] : kMasked;
    const float* vr = s < end ? v + s * ld_v : zeros.data();
    const float m_new = std::fmax(p.m, score);
    const float alpha = specdec::cuda::stream_alpha(p.m, m_new), w = exp_shifted(score, m_new);
    p.l = specdec::cuda::stream_l(p.l, alpha, w);
    for (int d = 0; d < Dv; ++d) p.acc[d] = specdec::cuda::stream_acc(p.acc[d], alpha, w, vr[d]);
    p.m = m_new;
  }
  return p;
}

// A row's fold over the splits of the slots [0, n_scan) (the slots its CTA scans), before finish().
struct Folded {
  SoftmaxFold f;
  std::vector<float> acc;
};

// in_cta: the CTA folds its splits in registers (fold_begin + fold_term per split); else split-K: each
// split's CTA writes its own fold of that one split, and the combine folds those with fold_partial.
Folded fold_row(const float* sigma, const float* v, int64_t ld_v, int Dv, int n_scan, bool in_cta = true) {
  Folded r{SoftmaxFold{}, std::vector<float>(Dv, 0.f)};
  for (int sp = 0; sp < attention_splits(n_scan); ++sp) {
    const Partial p = split_partial(sigma, v, ld_v, Dv, sp * kL, std::min(n_scan, (sp + 1) * kL));
    if (in_cta) {
      float ca, cb;
      if (fold_begin(r.f, p.m, p.l, ca, cb))
        for (int d = 0; d < Dv; ++d) r.acc[d] = fold_term(r.acc[d], ca, p.acc[d], cb);
    } else {
      Folded one{SoftmaxFold{}, std::vector<float>(Dv, 0.f)};  // the split's CTA: its fold of one split
      fold_partial(one.f, one.acc.data(), p.m, p.l, p.acc.data(), Dv);
      for (int d = 0; d < Dv; ++d) {  // the combine: one thread per element, its own (m, l) fold
        SoftmaxFold fd = r.f;
        fold_partial(fd, &r.acc[d], one.f.m, one.f.l, &one.acc[d], 1);
        if (d == Dv - 1) r.f = fd;
      }
    }
  }
  return r;
}

std::vector<float> finish(const Folded& r) {
  std::vector<float> out(r.acc.size());
  for (size_t d = 0; d < out.size(); ++d) out[d] = specdec::cuda::finish(r.acc[d], r.f.l);
  return out;
}

std::vector<float> emulate_row(const std::vector<float>& sigma, const std::vector<float>& v, int Dv, int n_scan = -1,
                               bool in_cta = true) {
  return finish(fold_row(sigma.data(), v.data(), Dv, Dv, n_scan < 0 ? static_cast<int>(sigma.size()) : n_scan, in_cta));
}

// The direct softmax-weighted sum in double: max over attended scores, exp, sum, normalise.
std::vector<double> direct(const std::vector<float>& scores, const std::vector<float>& v, int Dv) {
  double m = -INFINITY;
  for (float s : scores) m = std::max(m, static_cast<double>(s));
  double l = 0;
  std::vector<double> out(Dv, 0.0);
  for (size_t s = 0; s < scores.size(); ++s) {
    if (scores[s] == kMasked) continue;
    const double w = std::exp(static_cast<double>(scores[s]) - m);
    l += w;
    for (int d = 0; d < Dv; ++d) out[d] += w * v[s * Dv + d];
  }
  for (double& o : out) o /= l;
  return out;
}

// Random scores of spread `spread`, each slot masked with probability p_mask, at least one attended.
std::vector<float> random_scores(int n, float spread, double p_mask, std::mt19937& g) {
  std::normal_distribution<float> nd;
  std::bernoulli_distribution masked(p_mask);
  std::vector<float> s(n);
  for (auto& x : s) x = masked(g) ? kMasked : spread * nd(g);
  s[std::uniform_int_distribution<int>(0, n - 1)(g)] = spread * nd(g);
  return s;
}

std::vector<float> randn(size_t n, std::mt19937& g) {
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(g);
  return v;
}

// fp32 against double: a few ulp per term, scaled by the number of terms; the values are O(1).
void require_close(const std::vector<float>& got, const std::vector<double>& ref, double tol) {
  for (size_t d = 0; d < got.size(); ++d) {
    INFO("dim " << d << " got " << got[d] << " ref " << ref[d]);
    REQUIRE(std::isfinite(got[d]));
    REQUIRE(std::abs(got[d] - ref[d]) <= tol * (1 + std::abs(ref[d])));
  }
}

}  // namespace

TEST_CASE("split partials folded in split order equal the direct softmax", "[cpu][kernels][attention]") {
  std::mt19937 g(7);
  const int Dv = 3;
  for (int n : {1, 7, 31, 32, 33, 100, 511, 512, 513, 1002, 4099}) {
    for (float spread : {0.1f, 3.f, 300.f}) {  // 300: exp of an unshifted score would overflow fp32
      for (double p_mask : {0.0, 0.5, 0.97}) {
        const auto scores = random_scores(n, spread, p_mask, g);
        const auto v = randn(static_cast<size_t>(n) * Dv, g);
        INFO("n " << n << " spread " << spread << " p_mask " << p_mask);
        require_close(emulate_row(scores, v, Dv), direct(scores, v, Dv), 1e-5);
      }
    }
  }
}

TEST_CASE("a split that attends nothing is the neutral partial; masked splits around attended ones",
          "[cpu][kernels][attention]") {
  std::mt19937 g(11);
  const int Dv = 2, n = 3 * kL + 40;
  for (int attended : {0, 31, 32, kL - 1, kL, kL + 1, 2 * kL + 7, n - 1}) {
    std::vector<float> scores(n, kMasked);
    scores[attended] = 2.5f;
    if (attended + 40 < n) scores[attended + 40] = -1.f;  // a second one, tiles (maybe a split) later
    const auto v = randn(static_cast<size_t>(n) * Dv, g);
    INFO("attended " << attended);
    require_close(emulate_row(scores, v, Dv), direct(scores, v, Dv), 1e-6);
  }
  // A range that attends nothing: no NaN, m = -inf, l = 0, acc = +0 (0 * v added to +0 stays +0).
  std::vector<float> none(70, kMasked);
  const auto v_none = randn(140, g);
  const Partial empty = split_partial(none.data(), v_none.data(), Dv, Dv, 0, 70);
  REQUIRE(empty.m == kMasked);
  REQUIRE(same_bits(empty.l, 0.f));
  REQUIRE(same_bits(empty.acc, std::vector<float>(Dv, 0.f)));
}

TEST_CASE("fold: neutral partials are exact no-ops, the first partial is taken as it is, unchanged max x 1",
          "[cpu][kernels][attention]") {
  float ca = -1.f, cb = -1.f;
  SoftmaxFold f;
  REQUIRE_FALSE(fold_begin(f, kMasked, 0.f, ca, cb));  // neutral into empty: nothing, and no exp(-inf - -inf)
  REQUIRE(f.m == kMasked);
  REQUIRE(same_bits(f.l, 0.f));

  float acc = 0.f;
  const float acc_b = -0.7500001f;
  fold_partial(f, &acc, 1.25f, 3.5000002f, &acc_b, 1);  // into an empty fold: exactly b
  REQUIRE(same_bits(f.m, 1.25f));
  REQUIRE(same_bits(f.l, 3.5000002f));
  REQUIRE(same_bits(acc, acc_b));

  const SoftmaxFold before = f;
  const float acc_before = acc;
  const float zero = 0.f;
  fold_partial(f, &acc, kMasked, 0.f, &zero, 1);  // a neutral b changes no bit
  REQUIRE(same_bits(f.m, before.m));
  REQUIRE(same_bits(f.l, before.l));
  REQUIRE(same_bits(acc, acc_before));

  // Streaming: an unmoved max gives exactly 1 (also -inf to -inf: no NaN), a first attended slot 0.
  REQUIRE(same_bits(specdec::cuda::stream_alpha(1.25f, 1.25f), 1.f));
  REQUIRE(same_bits(specdec::cuda::stream_alpha(kMasked, kMasked), 1.f));
  REQUIRE(same_bits(specdec::cuda::stream_alpha(kMasked, 2.f), 0.f));
  REQUIRE(specdec::cuda::stream_alpha(1.f, 2.f) == exp_shifted(1.f, 2.f));
  REQUIRE(same_bits(specdec::cuda::stream_l(3.5f, 1.f, 0.f), 3.5f));
  REQUIRE(same_bits(specdec::cuda::stream_acc(-0.25f, 1.f, 0.f, 7.f), -0.25f));

  // The side whose max is the new max is scaled by exactly 1, the other by exp(difference) < 1.
  SoftmaxFold a = before;
  REQUIRE(fold_begin(a, 0.5f, 2.f, ca, cb));  // max unchanged
  REQUIRE(same_bits(ca, 1.f));
  REQUIRE(cb == exp_shifted(0.5f, 1.25f));
  a = before;
  REQUIRE(fold_begin(a, 4.f, 2.f, ca, cb));  // b has the new max
  REQUIRE(same_bits(cb, 1.f));
  REQUIRE(ca == exp_shifted(1.25f, 4.f));
  REQUIRE(same_bits(a.m, 4.f));
  a = before;
  REQUIRE(fold_begin(a, 1.25f, 2.f, ca, cb));  // a tie: both exactly 1
  REQUIRE(same_bits(ca, 1.f));
  REQUIRE(same_bits(cb, 1.f));
}

TEST_CASE("fold order is split order: neutral partials anywhere change no bit", "[cpu][kernels][attention]") {
  std::mt19937 g(13);
  const int Dv = 5;
  for (int rep = 0; rep < 50; ++rep) {
    // Four real partials (from random splits), folded in order, with and without neutral ones interleaved.
    std::vector<Partial> parts;
    for (int i = 0; i < 4; ++i) {
      const auto s = random_scores(kL, 3.f, 0.5, g);
      const auto v = randn(static_cast<size_t>(kL) * Dv, g);
      parts.push_back(split_partial(s.data(), v.data(), Dv, Dv, 0, kL));
    }
    Partial neutral;
    neutral.acc.assign(Dv, 0.f);
    auto fold_all = [&](const std::vector<const Partial*>& seq) {
      Folded r{SoftmaxFold{}, std::vector<float>(Dv, 0.f)};
      for (const Partial* p : seq) fold_partial(r.f, r.acc.data(), p->m, p->l, p->acc.data(), Dv);
      return finish(r);
    };
    const auto plain = fold_all({&parts[0], &parts[1], &parts[2], &parts[3]});
    REQUIRE(same_bits(plain, fold_all({&neutral, &parts[0], &parts[1], &parts[2], &parts[3]})));
    REQUIRE(same_bits(plain, fold_all({&parts[0], &neutral, &neutral, &parts[1], &parts[2], &neutral, &parts[3]})));
    REQUIRE(same_bits(plain, fold_all({&parts[0], &parts[1], &parts[2], &parts[3], &neutral, &neutral, &neutral})));
    // One partial: the fold equals normalising it directly.
    const auto one = fold_all({&parts[2], &neutral});
    for (int d = 0; d < Dv; ++d) REQUIRE(same_bits(one[d], specdec::cuda::finish(parts[2].acc[d], parts[2].l)));
  }
}

TEST_CASE("a row's bits do not depend on the slots past its last attended one, nor on who folds",
          "[cpu][kernels][attention]") {
  std::mt19937 g(17);
  const int Dv = 4;
  for (int n : {1, 5, 31, 32, 100, 511, 512, 513, 1000, 4000}) {
    for (double p_mask : {0.0, 0.4}) {
      std::vector<float> scores = random_scores(n, 2.f, p_mask, g);
      scores[n - 1] = 0.3f;  // the row's last attended slot is n - 1 (a causal row's own slot)
      const int extra_max = 2 * kL + 77;
      const auto v = randn(static_cast<size_t>(n + extra_max) * Dv, g);  // finite data past n, too
      std::vector<float> sigma = scores;
      sigma.resize(n + extra_max, kMasked);
      const auto ref = emulate_row(sigma, v, Dv, n);  // the CTA scans exactly the row's slots
      INFO("n " << n << " p_mask " << p_mask);
      REQUIRE(same_bits(ref, emulate_row(sigma, v, Dv, n, false)));  // split-K combine, same bits
      for (int extra : {1, 7, 31, 32, 33, kL - 1, kL, kL + 1, extra_max}) {
        INFO("extra masked slots " << extra);
        REQUIRE(same_bits(ref, emulate_row(sigma, v, Dv, n + extra)));
        REQUIRE(same_bits(ref, emulate_row(sigma, v, Dv, n + extra, false)));
      }
    }
  }
}

TEST_CASE("a zero result has one sign whatever the masked slots after it", "[cpu][kernels][attention]") {
  // Slots 0..29 masked; dim 0: slot 30 weighs 1 times -0 (acc stays +0), slot 31 (the tile's last) weighs
  // exp(-69) ~ 1e-30 times -1e-20: the product underflows to -0, so acc is -0. Slot 32, masked, in the next
  // tile, with v > 0 adds fma(+0, v, -0) = +0: the accumulator's sign turns. finish() makes both +0.
  // Dim 1 is an ordinary value.
  std::vector<float> sigma(33, kMasked), v(33 * 2, 1.f);
  sigma[30] = 0.f;
  sigma[31] = -69.f;
  v[30 * 2] = -0.f;
  v[31 * 2] = -1e-20f;
  const Partial without = split_partial(sigma.data(), v.data(), 2, 2, 0, 32);
  const Partial with = split_partial(sigma.data(), v.data(), 2, 2, 0, 33);
  REQUIRE(same_bits(without.acc[0], -0.f));
  REQUIRE(same_bits(with.acc[0], 0.f));  // the case is real: the raw accumulators differ in sign
  REQUIRE(same_bits(without.l, with.l));
  REQUIRE_FALSE(
      same_bits(specdec::cuda::div_rn(without.acc[0], without.l), specdec::cuda::div_rn(with.acc[0], with.l)));
  REQUIRE(same_bits(specdec::cuda::finish(without.acc[0], without.l), 0.f));
  REQUIRE(same_bits(specdec::cuda::finish(with.acc[0], with.l), 0.f));
  REQUIRE(same_bits(finish(fold_row(sigma.data(), v.data(), 2, 2, 32)),
                    finish(fold_row(sigma.data(), v.data(), 2, 2, 33))));
}

TEST_CASE("within a split, masked slots between attended ones change no bit (tree node = chain)",
          "[cpu][kernels][attention]") {
  std::mt19937 g(19);
  const int Dv = 3;
  for (int prefix : {0, 100, 503, 512, 4000}) {
    for (int k : {1, 2, 5, 9}) {
      // A chain: prefix + k attended slots in a row. A tree: the same k (score, v) pairs at increasing
      // slots with masked (finite) slots between, all in the same split as in the chain.
      const int tree_len = 9;
      const auto pre = random_scores(std::max(prefix, 1), 2.f, 0.0, g);
      const auto node_s = randn(k, g);
      const auto node_v = randn(static_cast<size_t>(k) * Dv, g);
      std::vector<float> chain_s(pre.begin(), pre.begin() + prefix), tree_s = chain_s;
      std::vector<float> prefix_v = randn(static_cast<size_t>(prefix) * Dv, g);
      std::vector<float> chain_v = prefix_v, tree_v = prefix_v;
      std::vector<int> at(tree_len, -1);  // which node sits at tree slot prefix + i
      std::vector<int> picks(tree_len);
      for (int i = 0; i < tree_len; ++i) picks[i] = i;
      std::shuffle(picks.begin(), picks.end(), g);
      std::sort(picks.begin(), picks.begin() + k);
      for (int j = 0; j < k; ++j) at[picks[j]] = j;
      for (int j = 0; j < k; ++j) {
        chain_s.push_back(node_s[j]);
        chain_v.insert(chain_v.end(), node_v.begin() + j * Dv, node_v.begin() + (j + 1) * Dv);
      }
      for (int i = 0; i < tree_len; ++i) {
        const int j = at[i];
        tree_s.push_back(j < 0 ? kMasked : node_s[j]);
        const auto other = randn(Dv, g);
        if (j < 0)
          tree_v.insert(tree_v.end(), other.begin(), other.end());
        else
          tree_v.insert(tree_v.end(), node_v.begin() + j * Dv, node_v.begin() + (j + 1) * Dv);
      }
      INFO("prefix " << prefix << " nodes " << k);
      REQUIRE(attention_splits(prefix + 1) == attention_splits(prefix + tree_len));  // one split holds the block
      REQUIRE(same_bits(emulate_row(chain_s, chain_v, Dv), emulate_row(tree_s, tree_v, Dv)));
    }
  }
}

namespace {

// The CUDA kernel's decomposition on the host, in fp32: for each kv head, query tiles of kM rows
// r = t*G + g; a tile scans the slots [0, cut), cut = S, or for causal (mask null) n_past + its last t + 1;
// each row's scores are fma dot products in increasing d, scaled once, -inf where not attended; then the
// row's splits (fold_row, in the CTA or through the split-K combine). out (T, Hq*D), q (T, Hq*D),
// k/v (S, ld_kv), mask (T, S) or null for causal.
void emulate_cuda_attention(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T,
                            int n_past, int Hq, int Hkv, int D, int64_t ld_kv, int kM, bool split_k) {
  const int S = n_past + T, G = Hq / Hkv, rows = T * G;
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  std::vector<float> sigma(S);
  for (int kvh = 0; kvh < Hkv; ++kvh) {
    for (int r_first = 0; r_first < rows; r_first += kM) {
      const int cut = mask ? S : std::min(S, n_past + (std::min(rows, r_first + kM) - 1) / G + 1);
      for (int r = r_first; r < std::min(rows, r_first + kM); ++r) {
        const int t = r / G, h = kvh * G + r % G;
        const float* qh = q + (static_cast<int64_t>(t) * Hq + h) * D;
        for (int s = 0; s < cut; ++s) {
          const bool ok = mask ? mask[static_cast<int64_t>(t) * S + s] != 0 : s <= n_past + t;
          const float* kr = k + s * ld_kv + static_cast<int64_t>(kvh) * D;
          float dot = 0.f;
          for (int d = 0; d < D; ++d) dot = specdec::cuda::fma_rn(qh[d], kr[d], dot);
          sigma[s] = specdec::cuda::attention_score(dot, scale, ok);
        }
        const auto o = finish(fold_row(sigma.data(), v + static_cast<int64_t>(kvh) * D, ld_kv, D, cut, !split_k));
        std::copy(o.begin(), o.end(), out + (static_cast<int64_t>(t) * Hq + h) * D);
      }
    }
  }
}

}  // namespace

TEST_CASE("the CUDA attention decomposition, emulated in fp32, matches cpu::attention", "[cpu][kernels][attention]") {
  // The same tolerance as test_cuda_attention.cpp (see there): this shows that the split, tiled and folded
  // fp32 order stays inside it on data like the GPU test's.
  const float rtol = 2e-5f, atol = 2e-6f;
  std::mt19937 g(5);
  struct Case {
    int T, n_past, Hq, Hkv, D;
    bool random_mask;  // else causal, passed as a null mask
  };
  for (const Case c : {Case{1, 4100, 8, 1, 64, false}, Case{9, 1000, 9, 3, 72, true}, Case{5, 17, 4, 4, 128, false},
                       Case{33, 1, 8, 1, 8, true}, Case{200, 0, 4, 4, 64, false}, Case{2, 4100, 4, 4, 128, true},
                       Case{9, 508, 9, 3, 128, false}}) {
    for (const int kM : {16, 64}) {
      const int S = c.n_past + c.T;
      const int64_t ld_kv = static_cast<int64_t>(c.Hkv) * c.D + 3;
      std::vector<float> q = randn(static_cast<size_t>(c.T) * c.Hq * c.D, g);
      for (float& x : q) x *= 2.f;  // sharper softmax than unit scores
      const auto k = randn(static_cast<size_t>(S) * ld_kv, g), v = randn(static_cast<size_t>(S) * ld_kv, g);
      std::vector<uint8_t> mask(static_cast<size_t>(c.T) * S);
      std::bernoulli_distribution keep(0.6);
      for (int t = 0; t < c.T; ++t)
        for (int s = 0; s < S; ++s) mask[static_cast<size_t>(t) * S + s] = c.random_mask ? keep(g) : s <= c.n_past + t;
      for (int t = 0; t < c.T; ++t) mask[static_cast<size_t>(t) * S + c.n_past + t] = 1;  // attends itself

      std::vector<float> got(q.size()), got_k(q.size()), ref(q.size());
      emulate_cuda_attention(got.data(), q.data(), k.data(), v.data(), c.random_mask ? mask.data() : nullptr, c.T,
                             c.n_past, c.Hq, c.Hkv, c.D, ld_kv, kM, false);
      emulate_cuda_attention(got_k.data(), q.data(), k.data(), v.data(), c.random_mask ? mask.data() : nullptr, c.T,
                             c.n_past, c.Hq, c.Hkv, c.D, ld_kv, kM, true);
      specdec::cpu::attention(ref.data(), q.data(), k.data(), v.data(), mask.data(), c.T, S, c.Hq, c.Hkv, c.D, ld_kv);
      INFO("T " << c.T << " n_past " << c.n_past << " heads " << c.Hq << "/" << c.Hkv << " D " << c.D << " random mask "
                << c.random_mask << " kM " << kM);
      REQUIRE(same_bits(got, got_k));  // split-K or not: the same bits
      size_t bad = 0;
      double worst = 0;
      for (size_t i = 0; i < got.size(); ++i) {
        const double err = std::abs(got[i] - ref[i]);
        worst = std::max(worst, err / (atol + rtol * std::abs(ref[i])));
        bad += !(err <= atol + rtol * std::abs(ref[i]));
      }
      INFO("worst error / bound " << worst);
      REQUIRE(bad == 0);
      CHECK(worst <= 0.5);  // the margin test_cuda_attention.cpp's comment quotes
    }
  }
}

TEST_CASE("emulated: a 9-token causal block equals its 9 single-token steps bit for bit", "[cpu][kernels][attention]") {
  std::mt19937 g(23);
  for (int D : {64, 128}) {
    for (int G : {1, 3}) {
      const int Hkv = 2, Hq = Hkv * G, T = 9;
      for (int n_past : {0, 100, 511, 512, 513, 4000}) {
        const int S = n_past + T;
        const int64_t ld_kv = static_cast<int64_t>(Hkv) * D + 4, row = static_cast<int64_t>(Hq) * D;
        const auto q = randn(static_cast<size_t>(T * row), g);
        const auto k = randn(static_cast<size_t>(S) * ld_kv, g), v = randn(static_cast<size_t>(S) * ld_kv, g);
        std::vector<float> block(q.size());
        // The block in 64-row tiles (T*G = 27 rows: the kernel's 64-row variant) and in 16-row tiles.
        emulate_cuda_attention(block.data(), q.data(), k.data(), v.data(), nullptr, T, n_past, Hq, Hkv, D, ld_kv, 64,
                               true);
        std::vector<float> block16(q.size());
        emulate_cuda_attention(block16.data(), q.data(), k.data(), v.data(), nullptr, T, n_past, Hq, Hkv, D, ld_kv, 16,
                               false);
        INFO("D " << D << " G " << G << " n_past " << n_past);
        REQUIRE(same_bits(block, block16));
        for (int t = 0; t < T; ++t) {
          std::vector<float> step(row);
          emulate_cuda_attention(step.data(), q.data() + t * row, k.data(), v.data(), nullptr, 1, n_past + t, Hq, Hkv,
                                 D, ld_kv, 16, false);
          INFO("token " << t);
          REQUIRE(same_bits(step, std::vector<float>(block.begin() + t * row, block.begin() + (t + 1) * row)));
        }
      }
    }
  }
}
