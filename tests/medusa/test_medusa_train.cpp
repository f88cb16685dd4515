// The Medusa trainer (drafters/medusa/train_medusa.h) on small synthetic features (H = 16, V = 64): the
// gradient of every trainable block against central finite differences, the loss falling on a fixed batch,
// the held-out accuracy table against a plain reference, determinism, and a resumed run that ends with the
// same weights bit for bit as an uninterrupted one.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <numeric>

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
  CHECK_THAT(test::error_of([&] { train_medusa(d, lm, c); }), Catch::Contains("probabilities in [0, 1], got nan at row 0"));

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
