// The CUDA attention against its CPU twin cpu::attention over awkward shapes: head dims 8/64/72/128, GQA
// groups of 1, 3 and 8, blocks of 1..2048 query tokens over 0..8000 cached slots, causal (null) and tree
// masks, padded and misaligned K/V rows, batches of sequences of different lengths; and its batch
// invariance, bit for bit: a verification block equals its single-token steps, a batch its sequences run
// alone, a tree node its branch run as a chain, whatever the launch bounds (gpu label: skipped without a
// device).
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "core/error.h"
#include "core/model/model.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/device.h"
#include "kernels/cuda/online_softmax.cuh"
#include "tests/support/cuda_buffer.h"
#include "tests/support/numeric_checks.h"
#include "tests/support/shapes.h"

namespace shapes = specdec::test::shapes;

namespace {

using specdec::test::DeviceBuffer;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// The caller-owned split-K workspace (attention.cuh), at its cap, so every launch that would split does.
specdec::cuda::AttentionWorkspace workspace() {
  static const size_t bytes = specdec::cuda::attention_workspace_bytes_for_device(1 << 22, 64, 256, 0);
  static DeviceBuffer<uint8_t> buf(bytes);
  return {buf.get(), bytes};
}

// The batch description over the device copies of its per-sequence arrays.
specdec::cuda::AttentionBatch batch_of(const DeviceBuffer<int32_t>& row0, const DeviceBuffer<int32_t>& n_past,
                                       const DeviceBuffer<const float*>& k, const DeviceBuffer<const float*>& v,
                                       const DeviceBuffer<const uint8_t*>& mask) {
  specdec::cuda::AttentionBatch batch;
  batch.row0 = row0.get();
  batch.n_past = n_past.get();
  batch.k = k.get();
  batch.v = v.get();
  batch.mask = mask.get();
  return batch;
}

struct Seq {
  int T;       // query tokens of the block
  int n_past;  // cached slots before it
  bool tree;   // a random tree mask (build_tree_mask); else causal, passed as a null mask
};

struct Heads {
  int Hq, Hkv, D;
};

// Where K/V rows sit: ld_kv = Hkv*D + pad floats; k[b], v[b] start `offset` floats into their buffers
// (pad % 4 != 0 or offset % 4 != 0 take the kernel's 4-byte copy path, else its 16-byte one).
struct Layout {
  int pad = 4;
  int offset = 0;
};
constexpr Layout kLayouts[] = {{4, 0}, {3, 0}, {12, 1}};

// Tolerance, against cpu::attention (fp32, other summation order): the kernel's score dot products
// (fma, in order), exp (CUDA expf, <= 2 ulp), per-split sums and the fold of the splits round differently
// from the CPU's loops, and the rounding of a score (relative ~1e-7 of sum |q_d k_d| / sqrt(D)) moves the
// output by up to that much times |v - out|. With unit-variance scores (q_scale 1) that stays well inside
// the bound below over this file's shapes (measured with the fp32 emulation of the kernel's order in
// test_online_softmax_host.cpp over this file's single-sequence sweep: <= 0.27 of the bound below).
// Sharper softmaxes scale the score errors, hence the factor q_scale (q_scale 3: <= 0.39 of the bound).
bool close(float got, float ref, float q_scale) {
  return std::abs(got - ref) <= q_scale * (2e-6f + 2e-5f * std::abs(ref));  // false for NaN
}

std::vector<float> randn(size_t n, std::mt19937& g, float scale = 1.f) {
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (auto& x : v) x = scale * d(g);
  return v;
}

// A random tree over T nodes (parent[t] < t, -1 = child of the cached prefix): half chain steps, half
// random earlier nodes, so both deep and bushy trees occur.
std::vector<int32_t> random_parents(int T, std::mt19937& g) {
  std::vector<int32_t> parents(T);
  for (int t = 0; t < T; ++t) {
    if (t == 0 || g() % 2 == 0)
      parents[t] = t - 1;
    else
      parents[t] = std::uniform_int_distribution<int>(-1, t - 1)(g);
  }
  return parents;
}

// One launch of cuda::attention over `seqs`, every sequence checked against cpu::attention. K/V cache
// buffers hold NaN in the padding columns and in 5 slots past S_b, and `out` starts as NaN: a read outside
// the contract or a row left unwritten fails the comparison. max_T/max_S are the true bounds plus slack.
// Returns the GPU output.
std::vector<float> run_and_check(const std::vector<Seq>& seqs, Heads hd, Layout lay, float q_scale, uint32_t seed,
                                 int slack_T = 0, int slack_S = 0) {
  const int B = static_cast<int>(seqs.size()), Hq = hd.Hq, Hkv = hd.Hkv, D = hd.D;
  const int64_t ld_kv = static_cast<int64_t>(Hkv) * D + lay.pad;
  std::mt19937 g(seed);

  std::vector<int32_t> row0(B + 1, 0), n_past(B);
  int max_T = 0, max_S = 0;
  for (int b = 0; b < B; ++b) {
    row0[b + 1] = row0[b] + seqs[b].T;
    n_past[b] = seqs[b].n_past;
    max_T = std::max(max_T, seqs[b].T);
    max_S = std::max(max_S, seqs[b].n_past + seqs[b].T);
  }
  const int64_t row_floats = static_cast<int64_t>(Hq) * D;
  const std::vector<float> q = randn(static_cast<size_t>(row0[B] * row_floats), g, q_scale);

  std::vector<std::vector<float>> k(B), v(B);
  std::vector<std::vector<uint8_t>> mask(B);
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dk, dv;
  std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> dmask;
  std::vector<const float*> kp(B), vp(B);
  std::vector<const uint8_t*> mp(B, nullptr);
  for (int b = 0; b < B; ++b) {
    const int T = seqs[b].T, S = seqs[b].n_past + T, capacity = S + 5;
    for (auto* kv : {&k[b], &v[b]}) {
      kv->assign(lay.offset + capacity * ld_kv, kNaN);
      for (int s = 0; s < S; ++s) {
        const auto row = randn(static_cast<size_t>(Hkv) * D, g);
        std::copy(row.begin(), row.end(), kv->begin() + lay.offset + s * ld_kv);
      }
    }
    if (seqs[b].tree) {
      std::vector<int32_t> positions;
      specdec::build_tree_mask(random_parents(T, g), seqs[b].n_past, mask[b], positions);
      dmask.push_back(std::make_unique<DeviceBuffer<uint8_t>>(mask[b]));
      mp[b] = dmask.back()->get();
    } else {  // the reference needs the causal mask spelled out; the kernel gets null
      mask[b].assign(static_cast<size_t>(T) * S, 0);
      for (int t = 0; t < T; ++t)
        std::fill_n(mask[b].begin() + static_cast<size_t>(t) * S, seqs[b].n_past + t + 1, uint8_t{1});
    }
    dk.push_back(std::make_unique<DeviceBuffer<float>>(k[b]));
    dv.push_back(std::make_unique<DeviceBuffer<float>>(v[b]));
    kp[b] = dk.back()->get() + lay.offset;
    vp[b] = dv.back()->get() + lay.offset;
  }

  DeviceBuffer<int32_t> drow0(row0), dn_past(n_past);
  DeviceBuffer<const float*> dkp(kp), dvp(vp);
  DeviceBuffer<const uint8_t*> dmp(mp);
  DeviceBuffer<float> dq(q), dout(std::vector<float>(q.size(), kNaN));
  const specdec::cuda::AttentionBatch batch = batch_of(drow0, dn_past, dkp, dvp, dmp);
  specdec::cuda::attention(dout.get(), dq.get(), batch, B, max_T + slack_T, max_S + slack_S, Hq, Hkv, D, ld_kv, nullptr,
                           workspace());
  specdec::cuda::device_synchronize();
  const std::vector<float> got = dout.download();

  for (int b = 0; b < B; ++b) {
    const int T = seqs[b].T, S = seqs[b].n_past + T;
    if (T == 0) continue;
    std::vector<float> ref(static_cast<size_t>(T * row_floats));
    specdec::cpu::attention(ref.data(), q.data() + row0[b] * row_floats, k[b].data() + lay.offset,
                            v[b].data() + lay.offset, mask[b].data(), T, S, Hq, Hkv, D, ld_kv);
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < ref.size(); ++i) {
      if (close(got[row0[b] * row_floats + i], ref[i], q_scale)) continue;
      if (bad++ == 0) first_bad = i;
    }
    INFO("B " << B << " seq " << b << ": T " << T << " n_past " << seqs[b].n_past
              << (seqs[b].tree ? " tree" : " causal") << "; Hq " << Hq << " Hkv " << Hkv << " D " << D << " pad "
              << lay.pad << " offset " << lay.offset << " q_scale " << q_scale << " slack " << slack_T << "/"
              << slack_S);
    INFO(bad << " of " << ref.size() << " outside tolerance; first at token " << first_bad / row_floats << " head "
             << first_bad % row_floats / D << " dim " << first_bad % D << ": got "
             << got[row0[b] * row_floats + first_bad] << " ref " << ref[first_bad]);
    REQUIRE(bad == 0);
  }
  return got;
}

constexpr Heads kHeadSets[] = {{1, 1, 0}, {4, 4, 0}, {9, 3, 0}, {8, 1, 0}};  // (Hq, Hkv); D filled in

// Bit-identity tests: the inputs of one sequence of a launch, given as they are (no random generation
// inside, so that several launches can share them).
struct SeqInputs {
  int T = 0, n_past = 0;
  std::vector<float> q;       // T rows of Hq*D
  std::vector<float> k, v;    // >= n_past + T slots of ld_kv floats (what lies past S_b is never read)
  std::vector<uint8_t> mask;  // T x S_b, 1 = attend; empty: causal, passed as a null mask
};

// Launch bounds: the true max_T / max_S of the launch plus slack; max_S_override > 0 replaces max_S (the
// model passes its context length; a huge one exceeds the split-K workspace bound, so every CTA then
// folds its splits itself).
struct Bounds {
  int slack_T = 0, slack_S = 0, max_S_override = 0;
};
constexpr Bounds kBounds[] = {{0, 0, 0}, {7, 3000, 0}, {0, 0, 8192}, {0, 0, 1 << 22}};

// One launch over `seqs`; returns each sequence's output rows (T_b x Hq*D). `out` starts as a fresh sentinel
// NaN (a payload no other launch uses) and must be written everywhere.
std::vector<std::vector<float>> launch(const std::vector<SeqInputs>& seqs, Heads hd, int64_t ld_kv, Bounds bd) {
  const int B = static_cast<int>(seqs.size());
  const int64_t row_floats = static_cast<int64_t>(hd.Hq) * hd.D;
  std::vector<int32_t> row0(B + 1, 0), n_past(B);
  std::vector<float> q;
  int max_T = 0, max_S = 0;
  std::vector<std::unique_ptr<DeviceBuffer<float>>> dk, dv;
  std::vector<std::unique_ptr<DeviceBuffer<uint8_t>>> dmask;
  std::vector<const float*> kp(B), vp(B);
  std::vector<const uint8_t*> mp(B, nullptr);
  for (int b = 0; b < B; ++b) {
    const SeqInputs& s = seqs[b];
    REQUIRE(s.q.size() == static_cast<size_t>(s.T * row_floats));
    REQUIRE(s.k.size() >= static_cast<size_t>((s.n_past + s.T) * ld_kv));
    row0[b + 1] = row0[b] + s.T;
    n_past[b] = s.n_past;
    max_T = std::max(max_T, s.T);
    max_S = std::max(max_S, s.n_past + s.T);
    q.insert(q.end(), s.q.begin(), s.q.end());
    dk.push_back(std::make_unique<DeviceBuffer<float>>(s.k));
    dv.push_back(std::make_unique<DeviceBuffer<float>>(s.v));
    kp[b] = dk.back()->get();
    vp[b] = dv.back()->get();
    if (!s.mask.empty()) {
      REQUIRE(s.mask.size() == static_cast<size_t>(s.T) * (s.n_past + s.T));
      dmask.push_back(std::make_unique<DeviceBuffer<uint8_t>>(s.mask));
      mp[b] = dmask.back()->get();
    }
  }
  DeviceBuffer<int32_t> drow0(row0), dn_past(n_past);
  DeviceBuffer<const float*> dkp(kp), dvp(vp);
  DeviceBuffer<const uint8_t*> dmp(mp);
  const float sentinel = specdec::test::fresh_sentinel();
  DeviceBuffer<float> dq(q), dout(std::vector<float>(std::max<size_t>(q.size(), 1), sentinel));
  const specdec::cuda::AttentionBatch batch = batch_of(drow0, dn_past, dkp, dvp, dmp);
  const int bound_S = bd.max_S_override > 0 ? bd.max_S_override : max_S + bd.slack_S;
  specdec::cuda::attention(dout.get(), dq.get(), batch, B, max_T + bd.slack_T, bound_S, hd.Hq, hd.Hkv, hd.D, ld_kv,
                           nullptr, workspace());
  specdec::cuda::device_synchronize();
  const std::vector<float> got = dout.download();
  // Every output row written: the sentinel (a NaN no other launch's buffer starts with) is gone everywhere,
  // so a launch that wrote nothing can never be "bit-identical" to another.
  const size_t rows_floats = static_cast<size_t>(row0[B]) * row_floats;
  INFO(specdec::test::unwritten({got.data(), rows_floats}, sentinel)
       << " of " << rows_floats << " output floats left unwritten");
  REQUIRE(specdec::test::unwritten({got.data(), rows_floats}, sentinel) == 0);
  std::vector<std::vector<float>> out(B);
  for (int b = 0; b < B; ++b) out[b].assign(got.begin() + row0[b] * row_floats, got.begin() + row0[b + 1] * row_floats);
  return out;
}

// Row t of a sequence's output (Hq*D floats).
std::vector<float> row_of(const std::vector<float>& rows, int t, Heads hd) {
  const size_t n = static_cast<size_t>(hd.Hq) * hd.D;
  return std::vector<float>(rows.begin() + t * n, rows.begin() + (t + 1) * n);
}

// Same bits and all finite (numeric_checks.h): two NaNs are never "the same result".
bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return specdec::test::bit_equal_finite(a, b);
}

// Random inputs of one sequence: capacity slots of K/V (>= n_past + T; finite everywhere), q rows.
SeqInputs random_seq(int T, int n_past, int capacity, Heads hd, int64_t ld_kv, std::mt19937& g) {
  SeqInputs s;
  s.T = T;
  s.n_past = n_past;
  s.q = randn(static_cast<size_t>(T) * hd.Hq * hd.D, g);
  s.k = randn(static_cast<size_t>(capacity) * ld_kv, g);
  s.v = randn(static_cast<size_t>(capacity) * ld_kv, g);
  return s;
}

}  // namespace

TEST_CASE("cuda attention equals cpu::attention: one sequence, causal and tree masks", "[gpu][kernels][attention]") {
  uint32_t seed = 1;
  for (int D : shapes::kHeadDims) {
    for (Heads h : kHeadSets) {
      h.D = D;
      for (int T : {1, 2, 5, 9, 33, 200}) {
        for (int n_past : {0, 1, 17, 1000, 4100}) {
          for (bool tree : {false, true}) {
            const Layout lay = kLayouts[seed % 3];
            run_and_check({{T, n_past, tree}}, h, lay, 1.f, seed++);
          }
        }
      }
    }
  }
}

TEST_CASE("cuda attention: B = 3 sequences of different T_b and n_past in one launch", "[gpu][kernels][attention]") {
  const std::vector<std::vector<Seq>> batches = {
      {{1, 4100, false}, {9, 17, true}, {33, 0, false}},
      {{5, 1000, true}, {200, 1, false}, {2, 0, true}},
      {{1, 0, false}, {0, 50, false}, {9, 1000, true}},     // an empty block in the middle
      {{1, 4100, true}, {1, 17, false}, {1, 8000, false}},  // decode: split-K over very different S
  };
  uint32_t seed = 100;
  for (int D : shapes::kHeadDims) {
    for (Heads h : kHeadSets) {
      h.D = D;
      for (const auto& seqs : batches) {
        for (const Layout lay : kLayouts) {
          run_and_check(seqs, h, lay, 1.f, seed++);
          if (lay.offset == 0) run_and_check(seqs, h, lay, 1.f, seed++, 7, 3000);  // loose max_T / max_S bounds
        }
      }
    }
  }
}

TEST_CASE("cuda attention: sharp softmaxes (q x 3)", "[gpu][kernels][attention]") {
  uint32_t seed = 500;
  for (int D : {64, 128}) {
    for (Heads h : {Heads{8, 1, D}, Heads{9, 3, D}}) {
      for (int T : {1, 9, 200}) {
        for (int n_past : {17, 4100}) run_and_check({{T, n_past, true}, {T, n_past / 2, false}}, h, {}, 3.f, seed++);
      }
    }
  }
}

TEST_CASE("cuda attention: prefill-sized blocks", "[gpu][kernels][attention]") {
  run_and_check({{2048, 0, false}}, {8, 2, 64}, {}, 1.f, 900);
  run_and_check({{700, 300, true}, {2048, 5, false}}, {4, 4, 128}, {4, 0}, 1.f, 901);
  run_and_check({{1000, 64, false}}, {6, 2, 72}, {3, 0}, 1.f, 902);
}

TEST_CASE("cuda attention is bitwise repeatable", "[gpu][kernels][attention]") {
  // Split-K partials are folded in a fixed order (no atomics): the same launch gives the same bits.
  const std::vector<Seq> seqs = {{1, 4100, false}, {3, 8000, true}, {9, 1000, true}};
  for (Heads h : {Heads{8, 1, 64}, Heads{4, 4, 128}, Heads{9, 3, 72}}) {
    const auto a = run_and_check(seqs, h, {}, 1.f, 7);
    const auto b = run_and_check(seqs, h, {}, 1.f, 7);
    REQUIRE(a.size() == b.size());
    REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
  }
}

TEST_CASE("cuda attention rejects shapes it cannot run, before launching", "[gpu][kernels][attention]") {
  specdec::cuda::AttentionBatch batch;  // never dereferenced: the checks come first
  const int32_t* fake = reinterpret_cast<const int32_t*>(16);
  batch.row0 = batch.n_past = fake;
  batch.k = batch.v = reinterpret_cast<const float* const*>(16);
  auto call = [&](int Hq, int Hkv, int D, int64_t ld_kv) {
    specdec::cuda::attention(nullptr, nullptr, batch, 1, 1, 1, Hq, Hkv, D, ld_kv, nullptr);
  };
  REQUIRE_THROWS_AS(call(6, 4, 64, 256), specdec::Error);                              // Hq not a multiple of Hkv
  REQUIRE_THROWS_AS(call(4, 4, 66, 264), specdec::Error);                              // D not a multiple of 4
  REQUIRE_THROWS_AS(call(4, 4, 260, 1040), specdec::Error);                            // D past 256
  REQUIRE_THROWS_AS(call(4, 4, 64, 255), specdec::Error);                              // ld_kv < Hkv*D
  specdec::cuda::attention(nullptr, nullptr, batch, 0, 0, 0, 4, 4, 64, 256, nullptr);  // B = 0: nothing to do
}

TEST_CASE("cuda attention: a 9-token causal block equals its 9 single-token steps bit for bit",
          "[gpu][kernels][attention][invariance]") {
  // Same K/V buffers: the steps see the block's later slots as slots past S (never read), the block sees
  // them as the causal future of each row. The block runs 16-row query tiles for G = 1 (9 rows) and 64-row
  // ones for G = 3 and 8 (27, 72 rows); the steps 16-row ones. Every bound in kBounds (split-K with a
  // combine kernel, or every split in the CTA) gives the same bits.
  std::mt19937 g(2024);
  for (int D : {64, 128}) {
    for (int G : {1, 3, 8}) {
      const Heads hd{2 * G, 2, D};
      const int64_t ld_kv = static_cast<int64_t>(hd.Hkv) * D + 4;
      const int T = 9;
      for (int n_past : {0, 100, 255, 256, 511, 512, 513, 4000}) {
        SeqInputs block = random_seq(T, n_past, n_past + T + 40, hd, ld_kv, g);
        const auto ref = launch({block}, hd, ld_kv, {})[0];
        INFO("D " << D << " G " << G << " n_past " << n_past);
        for (const Bounds bd : kBounds) {
          INFO("bounds slack " << bd.slack_T << "/" << bd.slack_S << " max_S " << bd.max_S_override);
          REQUIRE(same_bits(ref, launch({block}, hd, ld_kv, bd)[0]));
        }
        SeqInputs explicit_mask = block;  // the causal mask spelled out
        explicit_mask.mask.assign(static_cast<size_t>(T) * (n_past + T), 0);
        for (int t = 0; t < T; ++t)
          std::fill_n(explicit_mask.mask.begin() + static_cast<size_t>(t) * (n_past + T), n_past + t + 1, uint8_t{1});
        REQUIRE(same_bits(ref, launch({explicit_mask}, hd, ld_kv, {})[0]));
        for (int t = 0; t < T; ++t) {
          SeqInputs step = block;
          step.T = 1;
          step.n_past = n_past + t;
          step.q = row_of(block.q, t, hd);
          for (const Bounds bd : kBounds) {
            INFO("token " << t << " bounds slack " << bd.slack_T << "/" << bd.slack_S << " max_S "
                          << bd.max_S_override);
            REQUIRE(same_bits(row_of(ref, t, hd), launch({step}, hd, ld_kv, bd)[0]));
          }
        }
      }
    }
  }
}

TEST_CASE("cuda attention: B sequences in one launch equal each run alone bit for bit",
          "[gpu][kernels][attention][invariance]") {
  // Batches of 3 (decode, tree block, causal block across a split boundary) and of 4 with an empty block
  // and a 2048-token prefill (a grid large enough that the CTAs fold their splits themselves, where the
  // same sequences alone run split-K).
  std::mt19937 g(77);
  for (const Heads hd : {Heads{6, 2, 64}, Heads{4, 4, 128}, Heads{8, 1, 64}}) {
    const int64_t ld_kv = static_cast<int64_t>(hd.Hkv) * hd.D + 4;
    for (int variant = 0; variant < 2; ++variant) {
      std::vector<SeqInputs> seqs;
      seqs.push_back(random_seq(1, 4000, 4001, hd, ld_kv, g));
      seqs.push_back(random_seq(9, 17, 26, hd, ld_kv, g));
      std::vector<int32_t> positions;
      specdec::build_tree_mask(random_parents(9, g), 17, seqs.back().mask, positions);
      seqs.push_back(random_seq(5, 509, 514, hd, ld_kv, g));
      if (variant == 1) {
        seqs.push_back(random_seq(0, 50, 50, hd, ld_kv, g));
        seqs.push_back(random_seq(2048, 0, 2048, hd, ld_kv, g));
      }
      INFO("heads " << hd.Hq << "/" << hd.Hkv << " D " << hd.D << " B " << seqs.size());
      for (const Bounds bd_batch : kBounds) {
        const auto together = launch(seqs, hd, ld_kv, bd_batch);
        for (size_t b = 0; b < seqs.size(); ++b) {
          if (seqs[b].T == 0) continue;
          for (const Bounds bd : {Bounds{}, Bounds{0, 0, 8192}}) {
            INFO("sequence " << b << " batch bounds " << bd_batch.slack_T << "/" << bd_batch.slack_S << " max_S "
                             << bd_batch.max_S_override << "; alone max_S " << bd.max_S_override);
            REQUIRE(same_bits(together[b], launch({seqs[b]}, hd, ld_kv, bd)[0]));
          }
        }
      }
    }
  }
}

TEST_CASE("cuda attention: a tree node equals its branch run as a chain bit for bit",
          "[gpu][kernels][attention][invariance]") {
  // A tree of 9 nodes after n_past cached slots (node i at slot n_past + i, build_tree_mask's mask) against
  // each root-to-node branch as a causal chain (its nodes at n_past + depth, the same K/V rows). Within one
  // split the kernel's sums depend only on the attended slots in order, not on the masked ones between
  // them, so this holds where the tree block lies within one kAttentionSplit-aligned split, as for every
  // n_past here (503 + 9 = 512); a block across a split boundary may fold the branch differently.
  const std::vector<int32_t> parents = {-1, 0, 0, 1, 1, 2, 3, 5, 6};
  const int T = static_cast<int>(parents.size());
  std::mt19937 g(99);
  for (int D : {64, 128}) {
    for (int G : {1, 3}) {
      const Heads hd{2 * G, 2, D};
      const int64_t ld_kv = static_cast<int64_t>(hd.Hkv) * D + 4;
      for (int n_past : {0, 100, 503, 512, 4000}) {
        REQUIRE((n_past + T - 1) / specdec::cuda::kAttentionSplit == n_past / specdec::cuda::kAttentionSplit);
        SeqInputs tree = random_seq(T, n_past, n_past + T, hd, ld_kv, g);
        std::vector<int32_t> positions;
        specdec::build_tree_mask(parents, n_past, tree.mask, positions);
        const auto tree_out = launch({tree}, hd, ld_kv, {})[0];
        for (int node = 0; node < T; ++node) {
          std::vector<int> branch;  // root .. node
          for (int n = node; n >= 0; n = parents[n]) branch.insert(branch.begin(), n);
          const int depth = static_cast<int>(branch.size());
          SeqInputs chain;
          chain.T = depth;
          chain.n_past = n_past;
          chain.k.assign(tree.k.begin(), tree.k.begin() + n_past * ld_kv);
          chain.v.assign(tree.v.begin(), tree.v.begin() + n_past * ld_kv);
          for (int n : branch) {
            chain.k.insert(chain.k.end(), tree.k.begin() + (n_past + n) * ld_kv,
                           tree.k.begin() + (n_past + n + 1) * ld_kv);
            chain.v.insert(chain.v.end(), tree.v.begin() + (n_past + n) * ld_kv,
                           tree.v.begin() + (n_past + n + 1) * ld_kv);
            const auto qn = row_of(tree.q, n, hd);
            chain.q.insert(chain.q.end(), qn.begin(), qn.end());
          }
          for (const Bounds bd : {Bounds{}, Bounds{0, 0, 8192}}) {
            const auto chain_out = launch({chain}, hd, ld_kv, bd)[0];
            for (int j = 0; j < depth; ++j) {
              INFO("D " << D << " G " << G << " n_past " << n_past << " node " << node << " branch position " << j
                        << " max_S " << bd.max_S_override);
              REQUIRE(same_bits(row_of(tree_out, branch[j], hd), row_of(chain_out, j, hd)));
            }
          }
        }
      }
    }
  }
}
