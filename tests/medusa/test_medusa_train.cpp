// The Medusa trainer (drafters/medusa/train_medusa.h) on small synthetic features (H = 16, V = 64): the
// gradient of every trainable block against central finite differences, the loss falling on a fixed batch,
// the held-out accuracy table against a plain reference, determinism, and a resumed run that ends with the
// same weights bit for bit as an uninterrupted one. train_vocab: N = V equals the full run bit for bit, the
// subset is the N most frequent label ids, the subset loss against its definition and finite differences,
// rows without label mass in the subset skipped, the loss falling, determinism and resume; a hidden [.speed]
// case measures rows/s at SmolLM2-135M's shape.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>

#include "drafters/medusa/train_medusa.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/random.h"

using namespace specdec;
using namespace specdec::medusa;

namespace {

// S sequences of T rows whose features follow a fixed nonlinear map, h_{t+1} = tanh(M h_t), so the
// feature k + 1 positions ahead is a function of h_t that a head can learn; the target's distribution at
// each row is the top-k of softmax(sharp * LM h_t) (the target's own LM head, as the real data has it;
// sharp > 1 makes the labels confident, so that the loss can fall far below its start).
train::FeatureData synthetic(int S, int T, int H, int V, int topk, const std::vector<float>& lm, uint32_t seed,
                             int prompt_len = 0, double sharp = 4.0) {
  train::FeatureData d;
  d.hidden_size = H;
  d.vocab_size = V;
  d.topk = topk;
  d.feature = "final_norm";
  d.target_sha256 = "5ca1ab1e";
  const std::vector<float> M = test::randn(static_cast<size_t>(H) * H, seed, 1.5f / std::sqrt(static_cast<float>(H)));
  d.offsets.push_back(0);
  for (int s = 0; s < S; ++s) {
    std::vector<float> h = test::randn(H, seed + 1 + s);
    for (int t = 0; t < T; ++t) {
      d.hidden.insert(d.hidden.end(), h.begin(), h.end());
      std::vector<double> z(V);
      for (int v = 0; v < V; ++v)
        for (int i = 0; i < H; ++i) z[v] += sharp * lm[v * H + i] * h[i];
      const double zmax = *std::max_element(z.begin(), z.end());
      double sum = 0;
      for (double& x : z) sum += (x = std::exp(x - zmax));
      std::vector<int> ids(V);
      std::iota(ids.begin(), ids.end(), 0);
      std::stable_sort(ids.begin(), ids.end(), [&](int a, int b) { return z[a] > z[b]; });
      for (int j = 0; j < topk; ++j) {
        d.topk_ids.push_back(ids[j]);
        d.topk_probs.push_back(static_cast<float>(z[ids[j]] / sum));
      }
      d.tokens.push_back(ids[0]);
      std::vector<float> next(H);
      for (int o = 0; o < H; ++o) {
        double a = 0;
        for (int i = 0; i < H; ++i) a += static_cast<double>(M[o * H + i]) * h[i];
        next[o] = static_cast<float>(std::tanh(a));
      }
      h = next;
    }
    d.offsets.push_back(d.offsets.back() + T);
    d.prompt_len.push_back(prompt_len);
  }
  return d;
}

// The mean entropy of the renormalised labels head k sees over every row of d: the least loss it can reach.
double label_entropy(const train::FeatureData& d, int k) {
  double sum = 0;
  int64_t n = 0;
  for (int s = 0; s < d.n_sequences(); ++s)
    for (int64_t label = d.offsets[s] + k + 1; label < d.offsets[s + 1]; ++label, ++n) {
      const float* p = d.topk_probs.data() + label * d.topk;
      double z = 0, e = 0;
      for (int j = 0; j < d.topk; ++j) z += p[j];
      for (int j = 0; j < d.topk; ++j) e -= p[j] / z * std::log(p[j] / z);
      sum += e;
    }
  return sum / static_cast<double>(n);
}

std::vector<int64_t> all_rows(const train::FeatureData& d) {
  std::vector<int64_t> r(static_cast<size_t>(d.n_rows()));
  std::iota(r.begin(), r.end(), 0);
  return r;
}

MedusaTrainConfig small_config() {
  MedusaTrainConfig c;
  c.n_heads = 2;
  c.n_layers = 1;
  c.batch = 32;
  c.lr = 1e-2f;
  c.warmup = 2;
  c.clip = 1.0f;
  c.seed = 3;
  c.threads = 1;
  c.heldout_fraction = 0.25;
  return c;
}

}  // namespace

TEST_CASE("gradients of every block (W and b of each layer of each head) match finite differences") {
  const int H = 8, V = 24, K = 2, L = 2;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 1, 0.7f);
  const train::FeatureData d = synthetic(2, 6, H, V, 5, lm, 2, /*prompt_len=*/2);
  MedusaHeads heads = init_medusa_heads({K, L, H, V, false}, 4, 0.4f);
  for (size_t i = 0; i < heads.b.size(); ++i) heads.b[i] = test::randn(H, 50 + static_cast<uint32_t>(i), 0.3f);
  const std::vector<int64_t> rows = all_rows(d);
  for (bool response_only : {false, true}) {
    for (int k = 0; k < K; ++k) {
      std::vector<std::vector<float>> gw(heads.w.size()), gb(heads.b.size());
      for (size_t i = 0; i < gw.size(); ++i) {
        gw[i].assign(heads.w[i].size(), 0.f);
        gb[i].assign(heads.b[i].size(), 0.f);
      }
      medusa_head_loss(heads, k, d, lm, rows, response_only, &gw, &gb);
      const double h = 3e-3;
      int checked = 0;
      auto check_param = [&](float& p, float analytic) {
        const float saved = p;
        p = static_cast<float>(saved + h);
        const double up = medusa_head_loss(heads, k, d, lm, rows, response_only);
        p = static_cast<float>(saved - h);
        const double down = medusa_head_loss(heads, k, d, lm, rows, response_only);
        p = saved;
        const double fd = (up - down) / (2 * h);
        CHECK(std::abs(fd - analytic) <= 2e-4 + 1e-2 * std::abs(fd));
        ++checked;
      };
      for (int l = 0; l < L; ++l) {
        const size_t bi = static_cast<size_t>(k) * L + l;
        for (size_t j = 0; j < heads.w[bi].size(); ++j) check_param(heads.w[bi][j], gw[bi][j]);
        for (size_t j = 0; j < heads.b[bi].size(); ++j) check_param(heads.b[bi][j], gb[bi][j]);
      }
      CHECK(checked == L * (H * H + H));
      // The other head's blocks get no gradient from head k.
      for (int l = 0; l < L; ++l)
        for (float g : gw[static_cast<size_t>(1 - k) * L + l]) CHECK(g == 0.f);
      double norm = 0;
      for (float g : gw[static_cast<size_t>(k) * L]) norm += g * g;
      CHECK(norm > 1e-6);  // a non-trivial gradient was checked
    }
  }
}

// The loss falls by more than half of what it can fall: its excess over the labels' entropy (the KL
// divergence from the target's distribution, which is what training minimises).
TEST_CASE("the loss falls on a fixed batch: 200 steps, by more than half") {
  const int H = 16, V = 64;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 5, 0.8f);
  const train::FeatureData d = synthetic(1, 40, H, V, 8, lm, 6);
  MedusaTrainConfig c = small_config();
  c.batch = 64;  // every row in one batch, every step
  c.heldout_fraction = 0.0;
  c.steps = 200;
  c.warmup = 10;
  const MedusaHeads start = init_medusa_heads({2, 1, H, V, false}, 0);
  const std::vector<HeadMetrics> before = evaluate_medusa(start, d, lm, all_rows(d), false, 64);
  const MedusaTrainResult r = train_medusa(d, lm, c);
  CHECK(r.steps == 200);
  const std::vector<HeadMetrics> after = evaluate_medusa(r.heads, d, lm, all_rows(d), false, 64);
  for (int k = 0; k < 2; ++k) {
    const double floor = label_entropy(d, k);
    INFO("head " << k << ": loss " << before[k].loss << " -> " << after[k].loss << ", entropy " << floor);
    CHECK(after[k].rows == 40 - k - 1);
    CHECK(after[k].loss - floor < 0.5 * (before[k].loss - floor));
    CHECK(after[k].topk[0] > before[k].topk[0]);
  }
}

TEST_CASE("held-out accuracy table: per head, top-i non-decreasing, top-10 <= 1, as a plain reference counts") {
  const int H = 16, V = 64;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 7, 0.8f);
  const train::FeatureData d = synthetic(8, 24, H, V, 6, lm, 8, /*prompt_len=*/4);
  MedusaTrainConfig c = small_config();
  c.n_heads = 3;
  c.epochs = 2;
  c.response_only = true;
  std::vector<EpochReport> seen;
  TrainCallbacks cb;
  cb.on_epoch = [&](const EpochReport& e) { seen.push_back(e); };
  const MedusaTrainResult r = train_medusa(d, lm, c, cb);
  REQUIRE(r.epochs.size() == 3);  // epoch 0 (before training), 1, 2
  REQUIRE(seen.size() == 3);
  CHECK(seen[0].epoch == 0);
  CHECK(seen[0].train.empty());
  CHECK(seen[2].step == r.steps);
  CHECK(r.heldout_rows > 0);

  // The metadata's table is the last epoch's held-out figures.
  const nlohmann::json meta = nlohmann::json::parse(r.heads.metadata_json);
  CHECK(meta["target_sha256"] == "5ca1ab1e");
  CHECK(meta["n_heads"] == 3);
  CHECK(meta["steps"] == r.steps);
  REQUIRE(meta["accuracy_topk"].size() == 3);
  for (int k = 0; k < 3; ++k) {
    const auto& row = meta["accuracy_topk"][k];
    REQUIRE(row.size() == 10);
    for (int i = 0; i < 10; ++i) CHECK(row[i].get<double>() == r.epochs.back().heldout[k].topk[i]);
    for (int i = 1; i < 10; ++i) CHECK(row[i].get<double>() >= row[i - 1].get<double>());
    CHECK(row[9].get<double>() <= 1.0);
  }

  // evaluate_medusa (what computes the held-out table) against a plain count, over every row.
  const std::vector<int64_t> rows = all_rows(d);
  const std::vector<HeadMetrics> m = evaluate_medusa(r.heads, d, lm, rows, true, 17);
  for (int k = 0; k < 3; ++k) {
    int64_t n = 0;
    std::array<int64_t, 10> hits{};
    for (int s = 0; s < d.n_sequences(); ++s)
      for (int64_t row = d.offsets[s]; row < d.offsets[s + 1]; ++row) {
        const int64_t label = row + k + 1;
        if (label >= d.offsets[s + 1] || label - d.offsets[s] < d.prompt_len[s]) continue;
        ++n;
        std::vector<float> x(H);
        r.heads.head_state(k, d.hidden.data() + row * H, x.data());
        std::vector<double> z(V);
        for (int v = 0; v < V; ++v)
          for (int i = 0; i < H; ++i) z[v] += static_cast<double>(lm[v * H + i]) * x[i];
        const int a = d.topk_ids[label * d.topk];
        int rank = 0;
        for (int v = 0; v < V; ++v) rank += z[v] > z[a] || (z[v] == z[a] && v < a);
        for (int i = rank; i < 10; ++i) ++hits[i];
      }
    CHECK(m[k].rows == n);
    for (int i = 0; i < 10; ++i) CHECK(m[k].topk[i] == Approx(static_cast<double>(hits[i]) / n).margin(2.0 / n));
    for (int i = 1; i < 10; ++i) CHECK(m[k].topk[i] >= m[k].topk[i - 1]);
  }
}

TEST_CASE("determinism, and --resume from a checkpoint ends with the uninterrupted run's weights bit for bit") {
  const int H = 16, V = 64;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 9, 0.8f);
  const train::FeatureData d = synthetic(6, 20, H, V, 4, lm, 10);
  const auto dir = test::scratch_dir("medusa_train");
  MedusaTrainConfig c = small_config();
  c.epochs = 3;  // 90 training rows / 32 = 3 steps per epoch: 9 steps
  c.weight_decay = 0.01f;
  c.init_scale = 0.05f;
  c.checkpoint_every = 4;
  c.checkpoint_path = (dir / "uninterrupted.ckpt").string();
  const MedusaTrainResult full = train_medusa(d, lm, c);
  const MedusaTrainResult again = train_medusa(d, lm, c);
  CHECK(full.steps == 9);
  CHECK(again.heads.w == full.heads.w);
  CHECK(again.heads.b == full.heads.b);

  // Interrupted after step 6 (the last checkpoint was at step 4), then resumed.
  c.checkpoint_path = (dir / "interrupted.ckpt").string();
  std::filesystem::remove(c.checkpoint_path);
  struct Killed {};
  TrainCallbacks kill;
  std::vector<int64_t> checkpoints;
  kill.on_checkpoint = [&](const std::string&, int64_t step) { checkpoints.push_back(step); };
  kill.on_step = [](int64_t step, int64_t, int64_t, double, float) {
    if (step == 6) throw Killed{};
  };
  CHECK_THROWS_AS(train_medusa(d, lm, c, kill), Killed);
  CHECK(checkpoints == std::vector<int64_t>{4});
  std::vector<int64_t> steps_after;
  TrainCallbacks watch;
  watch.on_step = [&](int64_t step, int64_t, int64_t, double, float) { steps_after.push_back(step); };
  const MedusaTrainResult resumed = train_medusa(d, lm, c, watch, /*resume=*/true);
  CHECK(steps_after == std::vector<int64_t>{5, 6, 7, 8, 9});
  CHECK(resumed.steps == 9);
  CHECK(resumed.heads.w == full.heads.w);
  CHECK(resumed.heads.b == full.heads.b);
  REQUIRE(resumed.epochs.size() == full.epochs.size());
  for (size_t e = 0; e < full.epochs.size(); ++e)
    for (int k = 0; k < 2; ++k) {
      if (e > 0) CHECK(resumed.epochs[e].train[k].loss == full.epochs[e].train[k].loss);
      CHECK(resumed.epochs[e].heldout[k].topk == full.epochs[e].heldout[k].topk);
    }

  // A checkpoint of another configuration is refused, naming the key.
  MedusaTrainConfig other = c;
  other.lr = 2e-2f;
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, other, {}, true); }),
             Catch::Contains(c.checkpoint_path) && Catch::Contains("lr = "));
  other = c;
  other.checkpoint_path = (dir / "absent.ckpt").string();
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, other, {}, true); }),
             Catch::Contains("absent.ckpt: no checkpoint to resume from"));
}

TEST_CASE("bad training input: one-line errors") {
  const std::vector<float> lm = test::randn(64 * 16, 11);
  train::FeatureData d = synthetic(2, 8, 16, 64, 4, lm, 12);
  MedusaTrainConfig c = small_config();
  CHECK_THAT(test::error_of([&] { train_medusa(d, std::vector<float>(10), c); }),
             Catch::Contains("an LM head of V x H = 64 x 16 floats"));
  c.batch = 0;
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, c); }), Catch::Contains("batch >= 1, got 0"));
  c = small_config();
  d.topk_ids[3] = 64;
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, c); }), Catch::Contains("top-k ids in [0, 64), got 64"));
  d.topk_ids[3] = 0;
  std::fill(d.topk_probs.begin() + 8, d.topk_probs.begin() + 12, 0.f);  // row 2's four probabilities
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, c); }), Catch::Contains("positive sum, got 0 at row 2"));
  d.topk_probs[0] = std::nanf("");
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, c); }),
             Catch::Contains("probabilities in [0, 1], got nan at row 0"));

  train::FeatureData a = synthetic(1, 4, 16, 64, 4, lm, 13), b = synthetic(1, 4, 16, 64, 4, lm, 14);
  append_features(a, b, "b.h5");
  CHECK(a.n_sequences() == 2);
  CHECK(a.offsets == std::vector<int64_t>{0, 4, 8});
  b.target_sha256 = "other";
  CHECK_THAT(test::error_of([&] { append_features(a, b, "b.h5"); }),
             Catch::Contains("b.h5: features of the target with sha256 other"));
}

TEST_CASE("two threads: GEMMs large enough for Eigen to split, the same weights on every run") {
  const int H = 64, V = 2048;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 15, 0.3f);
  const train::FeatureData d = synthetic(4, 80, H, V, 4, lm, 16);
  MedusaTrainConfig c = small_config();
  c.batch = 128;
  c.steps = 2;
  c.threads = 2;
  const MedusaTrainResult a = train_medusa(d, lm, c);
  const MedusaTrainResult b = train_medusa(d, lm, c);
  CHECK(nlohmann::json::parse(a.heads.metadata_json)["threads"] == 2);
  CHECK(a.heads.w == b.heads.w);
  CHECK(a.heads.b == b.heads.b);
  CHECK(a.epochs.back().heldout[0].loss == b.epochs.back().heldout[0].loss);
}

// ---- train_vocab: the training loss over the N most frequent label ids ----

namespace {

// The subset loss of head k by its definition, in double: over the rows with a label for head k and label
// mass in S, logsumexp of S's logits minus the renormalised in-S labels' logits; *kept gets those rows' count
// and *floor their labels' mean entropy (the least loss the head can reach).
double subset_loss_reference(const MedusaHeads& heads, int k, const train::FeatureData& d, const std::vector<float>& lm,
                             const std::vector<int32_t>& S, int64_t* kept, double* floor = nullptr) {
  const int H = d.hidden_size, K = d.topk;
  double total = 0, entropy = 0;
  *kept = 0;
  for (int s = 0; s < d.n_sequences(); ++s)
    for (int64_t row = d.offsets[s]; row + k + 1 < d.offsets[s + 1]; ++row) {
      const int64_t label = row + k + 1;
      double psum = 0;
      for (int j = 0; j < K; ++j)
        if (std::binary_search(S.begin(), S.end(), d.topk_ids[label * K + j])) psum += d.topk_probs[label * K + j];
      if (psum <= 0) continue;
      ++*kept;
      std::vector<float> x(H);
      heads.head_state(k, d.hidden.data() + row * H, x.data());
      std::vector<double> z(S.size());
      for (size_t c = 0; c < S.size(); ++c)
        for (int i = 0; i < H; ++i) z[c] += static_cast<double>(lm[static_cast<size_t>(S[c]) * H + i]) * x[i];
      const double zmax = *std::max_element(z.begin(), z.end());
      double sum = 0;
      for (double v : z) sum += std::exp(v - zmax);
      double loss = zmax + std::log(sum);
      for (int j = 0; j < K; ++j) {
        const auto it = std::lower_bound(S.begin(), S.end(), d.topk_ids[label * K + j]);
        if (it == S.end() || *it != d.topk_ids[label * K + j]) continue;
        const double p = d.topk_probs[label * K + j] / psum;
        loss -= p * z[static_cast<size_t>(it - S.begin())];
        if (p > 0) entropy -= p * std::log(p);
      }
      total += loss;
    }
  if (floor) *floor = *kept > 0 ? entropy / static_cast<double>(*kept) : 0.0;
  return *kept > 0 ? total / static_cast<double>(*kept) : 0.0;
}

// One sequence of 5 rows, V = 10, top-2 labels chosen by hand (H = 2, features irrelevant to the choice):
//   row 0: {9, 8}   row 1: {3, 5}   row 2: {5, 3}   row 3: {5, 7}   row 4: {2, 7}
train::FeatureData hand_built() {
  train::FeatureData d;
  d.hidden_size = 2;
  d.vocab_size = 10;
  d.topk = 2;
  d.feature = "final_norm";
  d.target_sha256 = "5ca1ab1e";
  d.offsets = {0, 5};
  d.prompt_len = {0};
  d.tokens = {9, 3, 5, 5, 2};
  d.hidden = {0.5f, -1.f, 1.f, 0.25f, -0.5f, 0.75f, 1.5f, -0.25f, 0.f, 1.f};
  d.topk_ids = {9, 8, 3, 5, 5, 3, 5, 7, 2, 7};
  d.topk_probs = {0.5f, 0.5f, 0.6f, 0.2f, 0.5f, 0.5f, 0.9f, 0.1f, 0.3f, 0.1f};
  return d;
}

}  // namespace

TEST_CASE("train_vocab = V: the full-vocabulary run bit for bit") {
  const int H = 16, V = 64;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 21, 0.8f);
  const train::FeatureData d = synthetic(6, 20, H, V, 4, lm, 22);
  MedusaTrainConfig c = small_config();
  c.epochs = 2;
  c.init_scale = 0.05f;
  const MedusaTrainResult full = train_medusa(d, lm, c);
  c.train_vocab = V;
  const MedusaTrainResult same = train_medusa(d, lm, c);
  CHECK(same.heads.w == full.heads.w);
  CHECK(same.heads.b == full.heads.b);
  REQUIRE(same.epochs.size() == full.epochs.size());
  for (size_t e = 0; e < full.epochs.size(); ++e)
    for (int k = 0; k < 2; ++k) {
      if (e > 0) CHECK(same.epochs[e].train[k].loss == full.epochs[e].train[k].loss);
      if (e > 0) CHECK(same.epochs[e].train[k].topk[0] == full.epochs[e].train[k].topk[0]);
      CHECK(same.epochs[e].heldout[k].loss == full.epochs[e].heldout[k].loss);
      CHECK(same.epochs[e].train_vocab == V);
      CHECK(full.epochs[e].train_vocab == 0);
    }
  const nlohmann::json meta = nlohmann::json::parse(same.heads.metadata_json);
  CHECK(meta["train_vocab"] == V);
  CHECK(meta["train_vocab_coverage"].get<double>() == 1.0);
  CHECK(nlohmann::json::parse(full.heads.metadata_json)["train_vocab"] == 0);
}

TEST_CASE("training vocabulary: the N most frequent ids of the training label rows, ties to the lower id") {
  const train::FeatureData d = hand_built();
  // Head 0 at rows 0..3: label rows 1..4 (row 0's ids are no label): counts 5: 3, 3: 2, 7: 2, 2: 1.
  const std::vector<int64_t> rows = {0, 1, 2, 3};
  CHECK(select_train_vocabulary(d, rows, 1, false, 1).ids == std::vector<int32_t>{5});
  CHECK(select_train_vocabulary(d, rows, 1, false, 2).ids == std::vector<int32_t>{3, 5});  // 3 before 7
  CHECK(select_train_vocabulary(d, rows, 1, false, 3).ids == std::vector<int32_t>{3, 5, 7});
  CHECK(select_train_vocabulary(d, rows, 1, false, 5).ids == std::vector<int32_t>{0, 2, 3, 5, 7});
  // Coverage of {3, 5}: rows 1 and 2 wholly, row 3 0.9 of 1.0, row 4 none.
  CHECK(select_train_vocabulary(d, rows, 1, false, 2).coverage == Approx(2.9 / 4));
  // Two heads: the same label rows, each counted once (per (row, head) pair 7 would outnumber 3).
  CHECK(select_train_vocabulary(d, rows, 2, false, 2).ids == std::vector<int32_t>{3, 5});
  // Only row 0 with two heads: label rows 1 and 2.
  CHECK(select_train_vocabulary(d, {0}, 2, false, 1).ids == std::vector<int32_t>{3});
  // response_only with a prompt of 3 rows: label rows 3 and 4 only.
  train::FeatureData p = d;
  p.prompt_len = {3};
  CHECK(select_train_vocabulary(p, rows, 1, true, 1).ids == std::vector<int32_t>{7});

  // Through the trainer: row 3's label row (4: ids {2, 7}) has no mass in {3, 5} and is skipped.
  const std::vector<float> lm = test::randn(10 * 2, 23);
  MedusaTrainConfig c = small_config();
  c.n_heads = 1;
  c.heldout_fraction = 0.0;
  c.steps = 1;
  c.train_vocab = 2;
  const MedusaTrainResult r = train_medusa(d, lm, c);
  CHECK(r.train_rows == 4);
  REQUIRE(r.epochs.size() == 2);
  CHECK(r.epochs[1].train[0].rows == 3);
  CHECK(r.epochs[1].train_vocab_coverage == Approx(2.9 / 4));
  const nlohmann::json meta = nlohmann::json::parse(r.heads.metadata_json);
  CHECK(meta["train_vocab"] == 2);
  CHECK(meta["train_vocab_coverage"].get<double>() == Approx(2.9 / 4));

  c.train_vocab = 1;
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, c); }),
             Catch::StartsWith("train_vocab = 1: must be 0 (the full vocabulary) or in [topk, V] = [2, 10]"));
  c.train_vocab = 11;
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, c); }), Catch::Contains("train_vocab = 11: must be 0"));
}

TEST_CASE("subset loss: its definition, rows without label mass in S skipped, gradients against finite differences") {
  const int H = 8, V = 24, K = 2, L = 2;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 31, 0.7f);
  const train::FeatureData d = synthetic(2, 8, H, V, 3, lm, 32);
  MedusaHeads heads = init_medusa_heads({K, L, H, V, false}, 33, 0.4f);
  for (size_t i = 0; i < heads.b.size(); ++i) heads.b[i] = test::randn(H, 60 + static_cast<uint32_t>(i), 0.3f);
  const std::vector<int64_t> rows = all_rows(d);
  const std::vector<int32_t> S = select_train_vocabulary(d, rows, K, false, 4).ids;
  REQUIRE(S.size() == 4);
  for (int k = 0; k < K; ++k) {
    int64_t kept = 0;
    const double reference = subset_loss_reference(heads, k, d, lm, S, &kept);
    INFO("head " << k << ": " << kept << " of " << 2 * (8 - k - 1) << " rows with label mass in S");
    REQUIRE(kept > 0);
    REQUIRE(kept < 2 * (8 - k - 1));  // some rows are skipped
    CHECK(medusa_head_loss(heads, k, d, lm, rows, false, nullptr, nullptr, S) == Approx(reference).epsilon(1e-5));
    CHECK(medusa_head_loss(heads, k, d, lm, rows, false) != Approx(reference).epsilon(1e-3));  // S matters

    std::vector<std::vector<float>> gw(heads.w.size()), gb(heads.b.size());
    for (size_t i = 0; i < gw.size(); ++i) {
      gw[i].assign(heads.w[i].size(), 0.f);
      gb[i].assign(heads.b[i].size(), 0.f);
    }
    medusa_head_loss(heads, k, d, lm, rows, false, &gw, &gb, S);
    const double h = 3e-3;
    auto check_param = [&](float& p, float analytic) {
      const float saved = p;
      p = static_cast<float>(saved + h);
      const double up = medusa_head_loss(heads, k, d, lm, rows, false, nullptr, nullptr, S);
      p = static_cast<float>(saved - h);
      const double down = medusa_head_loss(heads, k, d, lm, rows, false, nullptr, nullptr, S);
      p = saved;
      const double fd = (up - down) / (2 * h);
      CHECK(std::abs(fd - analytic) <= 2e-4 + 1e-2 * std::abs(fd));
    };
    for (int l = 0; l < L; ++l) {
      const size_t bi = static_cast<size_t>(k) * L + l;
      for (size_t j = 0; j < heads.w[bi].size(); ++j) check_param(heads.w[bi][j], gw[bi][j]);
      for (size_t j = 0; j < heads.b[bi].size(); ++j) check_param(heads.b[bi][j], gb[bi][j]);
    }
    double norm = 0;
    for (float g : gw[static_cast<size_t>(k) * L]) norm += g * g;
    CHECK(norm > 1e-6);
  }
  CHECK_THAT(test::error_of([&] {
               medusa_head_loss(heads, 0, d, lm, rows, false, nullptr, nullptr, {5, 3});
             }),
             Catch::Contains("distinct ascending ids in [0, 24), got 3 at 1"));
}

TEST_CASE("train_vocab < V: the subset loss falls on a fixed batch, the full-vocabulary top-1 rises") {
  const int H = 16, V = 64, N = 24;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 5, 0.8f);
  const train::FeatureData d = synthetic(1, 40, H, V, 8, lm, 6);
  MedusaTrainConfig c = small_config();
  c.batch = 64;
  c.heldout_fraction = 0.0;
  c.steps = 200;
  c.warmup = 10;
  c.train_vocab = N;
  const std::vector<int32_t> S = select_train_vocabulary(d, all_rows(d), 2, false, N).ids;
  const MedusaHeads start = init_medusa_heads({2, 1, H, V, false}, 0);
  const MedusaTrainResult r = train_medusa(d, lm, c);
  const std::vector<HeadMetrics> before = evaluate_medusa(start, d, lm, all_rows(d), false, 64);
  const std::vector<HeadMetrics> after = evaluate_medusa(r.heads, d, lm, all_rows(d), false, 64);
  for (int k = 0; k < 2; ++k) {
    int64_t kept = 0;
    double floor = 0;
    const double loss0 = subset_loss_reference(start, k, d, lm, S, &kept, &floor);
    const double loss1 = medusa_head_loss(r.heads, k, d, lm, all_rows(d), false, nullptr, nullptr, S);
    INFO("head " << k << ": subset loss " << loss0 << " -> " << loss1 << ", entropy " << floor << "; top-1 "
                 << before[k].topk[0] << " -> " << after[k].topk[0]);
    CHECK(loss1 - floor < 0.5 * (loss0 - floor));
    CHECK(after[k].topk[0] > before[k].topk[0]);
  }
}

TEST_CASE("train_vocab < V: deterministic, resumed bit for bit, a checkpoint of another train_vocab refused") {
  const int H = 16, V = 64;
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 41, 0.8f);
  const train::FeatureData d = synthetic(6, 20, H, V, 4, lm, 42);
  const auto dir = test::scratch_dir("medusa_train_vocab");
  MedusaTrainConfig c = small_config();
  c.epochs = 3;
  c.init_scale = 0.05f;
  c.train_vocab = 16;
  c.checkpoint_every = 4;
  c.checkpoint_path = (dir / "uninterrupted.ckpt").string();
  const MedusaTrainResult full = train_medusa(d, lm, c);
  const MedusaTrainResult again = train_medusa(d, lm, c);
  CHECK(again.heads.w == full.heads.w);
  CHECK(again.heads.b == full.heads.b);
  const double coverage = nlohmann::json::parse(full.heads.metadata_json)["train_vocab_coverage"].get<double>();
  CHECK(coverage > 0.0);
  CHECK(coverage < 1.0);
  MedusaTrainConfig all = c;
  all.train_vocab = 0;
  CHECK(train_medusa(d, lm, all).heads.w != full.heads.w);  // the option changes the training

  c.checkpoint_path = (dir / "interrupted.ckpt").string();
  std::filesystem::remove(c.checkpoint_path);
  struct Killed {};
  TrainCallbacks kill;
  kill.on_step = [](int64_t step, int64_t, int64_t, double, float) {
    if (step == 6) throw Killed{};
  };
  CHECK_THROWS_AS(train_medusa(d, lm, c, kill), Killed);
  const MedusaTrainResult resumed = train_medusa(d, lm, c, {}, /*resume=*/true);
  CHECK(resumed.heads.w == full.heads.w);
  CHECK(resumed.heads.b == full.heads.b);
  for (const EpochReport& e : resumed.epochs) CHECK(e.train_vocab_coverage == coverage);

  MedusaTrainConfig other = c;
  other.train_vocab = 32;
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, other, {}, true); }),
             Catch::Contains(c.checkpoint_path) && Catch::Contains("train_vocab = 16, this run has 32"));
}

// The measurement behind docs/training.md's train_vocab figures (hidden: run it by name, on a quiet machine):
// 3 heads at SmolLM2-135M's H = 576, V = 49152, batch 128, one thread; synthetic features with top-8 labels
// drawn from a skewed id distribution; rows/s of the training steps (evaluation excluded), full vocabulary and
// train_vocab = 8192 alternated twice.
TEST_CASE("train_vocab speed at H = 576, V = 49152", "[.speed]") {
  const int H = 576, V = 49152, K = 8, T = 513, S = 4;  // 4 x 512 training rows: 16 whole batches
  const std::vector<float> lm = test::randn(static_cast<size_t>(V) * H, 51, 0.05f);
  train::FeatureData d;
  d.hidden_size = H;
  d.vocab_size = V;
  d.topk = K;
  d.feature = "final_norm";
  d.target_sha256 = "5ca1ab1e";
  d.hidden = test::randn(static_cast<size_t>(S) * T * H, 52);
  std::mt19937 g(53);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  d.offsets.push_back(0);
  for (int s = 0; s < S; ++s) {
    for (int t = 0; t < T; ++t) {
      float p = 0.5f;
      for (int j = 0; j < K; ++j, p *= 0.5f) {
        d.topk_ids.push_back(static_cast<int32_t>(V * std::pow(u(g), 4.0)));  // skewed: low ids are frequent
        d.topk_probs.push_back(p);
      }
      d.tokens.push_back(d.topk_ids.back());
    }
    d.offsets.push_back(d.offsets.back() + T);
    d.prompt_len.push_back(0);
  }
  MedusaTrainConfig c;
  c.n_heads = 3;
  c.batch = 128;
  c.threads = 1;
  c.heldout_fraction = 0.0;
  for (int round = 0; round < 2; ++round)
    for (int n : {0, 8192}) {
      c.train_vocab = n;
      c.steps = n == 0 ? 4 : 16;
      const MedusaTrainResult r = train_medusa(d, lm, c);
      const double coverage = nlohmann::json::parse(r.heads.metadata_json)["train_vocab_coverage"].get<double>();
      std::printf("train_vocab = %5d: %lld rows in %.2f s of steps, %.1f rows/s (coverage %.3f)\n", n,
                  static_cast<long long>(r.rows_stepped), r.step_s, r.rows_stepped / r.step_s, coverage);
      CHECK(r.rows_stepped == c.steps * c.batch);
    }
}
