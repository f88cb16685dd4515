// The EAGLE trainer (drafters/eagle/train_eagle.h): central finite differences of the loss against the
// hand-written gradient of every trainable tensor (with and without a training vocabulary and feature noise),
// the trainer's forward against eagle_forward, the loss falling on a fixed batch, and on stories260K's own
// features: the held-out figures improve, a run is deterministic per thread count, --resume is bit for bit the
// uninterrupted run, and a resume with another config names the key.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <random>

#include "drafters/eagle/train_eagle.h"
#include "drafters/train/optim.h"
#include "tests/medusa/stories_features.h"
#include "tests/support/errors.h"
#include "tests/support/random.h"

using namespace specdec;
using namespace specdec::eagle;

namespace {

// A tiny random problem: H = 16, 2 query heads over 1 kv head of 8, I = 24, V = 40, top-4 labels, 3 sequences.
struct Tiny {
  train::FeatureData d;
  std::vector<float> embed, lm;
  EagleWeights w;
  std::vector<EagleChunk> chunks;
};

Tiny tiny(uint32_t seed) {
  Tiny p;
  const int H = 16, V = 40, K = 4;
  p.d.hidden_size = H;
  p.d.vocab_size = V;
  p.d.topk = K;
  p.d.feature = "final_norm";
  p.d.offsets = {0};
  std::mt19937 g(seed);
  for (int T : {6, 9, 5}) {
    for (int t = 0; t < T; ++t) {
      p.d.tokens.push_back(static_cast<int32_t>(g() % V));
      std::vector<int32_t> ids(V);
      for (int v = 0; v < V; ++v) ids[v] = v;
      std::shuffle(ids.begin(), ids.end(), g);
      double left = 1.0;
      for (int j = 0; j < K; ++j) {
        p.d.topk_ids.push_back(ids[j]);
        const double pj = left * (0.3 + 0.4 * (g() % 1000) / 1000.0);
        p.d.topk_probs.push_back(static_cast<float>(pj));
        left -= pj;
      }
    }
    p.d.offsets.push_back(p.d.offsets.back() + T);
    p.d.prompt_len.push_back(2);
  }
  p.d.hidden = test::randn(p.d.tokens.size() * H, seed + 1, 0.8f);
  p.embed = test::randn(static_cast<size_t>(V) * H, seed + 2, 0.7f);
  p.lm = test::randn(static_cast<size_t>(V) * H, seed + 3, 0.5f);
  EagleConfig c;
  c.hidden_size = H;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.head_dim = 8;
  c.intermediate_size = 24;
  c.vocab_size = V;
  c.rope_theta = 100.f;
  p.w = init_eagle_weights(c, seed + 4, 0.3f);
  p.w.fc_b = test::randn(H, seed + 5, 0.2f);
  p.w.post_norm = test::randn(H, seed + 6, 0.3f);
  for (float& x : p.w.post_norm) x += 1.f;
  const std::vector<int> seqs = {0, 1, 2};
  p.chunks = eagle_chunks(p.d, seqs, 5);  // 5 + 3 pairs of sequence 1 in two chunks
  return p;
}

std::array<std::vector<float>*, 10> tensors(EagleWeights& w) {
  return {&w.fc_w, &w.fc_b, &w.wq, &w.wk, &w.wv, &w.wo, &w.post_norm, &w.w_gate, &w.w_up, &w.w_down};
}
const char* const kNames[] = {"fc.weight", "fc.bias",   "q_proj",    "k_proj",  "v_proj",
                              "o_proj",    "post_norm", "gate_proj", "up_proj", "down_proj"};

EagleWeights zeros_like(const EagleWeights& w) {
  EagleWeights g = w;
  for (auto* t : tensors(g)) std::fill(t->begin(), t->end(), 0.f);
  return g;
}

void check_gradients(Tiny& p, const EagleLossOptions& opt, double rel_tol = 3e-3) {
  EagleWeights grad = zeros_like(p.w);
  const EagleLossValue v0 = eagle_loss(p.w, p.d, p.embed, p.lm, p.chunks, opt, &grad);
  REQUIRE(v0.rows == 17);
  REQUIRE(v0.ce_rows > 0);
  const auto values = tensors(p.w), grads = tensors(grad);
  for (int i = 0; i < 10; ++i) {
    for (uint32_t trial = 0; trial < 2; ++trial) {
      // The derivative along a random unit direction, from central differences (L(w + h u) - L(w - h u)) / 2h,
      // against <grad, u>.
      std::vector<float> u = test::randn(values[i]->size(), 100 + 10 * i + trial);
      double norm = 0;
      for (float x : u) norm += static_cast<double>(x) * x;
      for (float& x : u) x = static_cast<float>(x / std::sqrt(norm));
      double analytic = 0;
      for (size_t j = 0; j < u.size(); ++j) analytic += static_cast<double>(u[j]) * (*grads[i])[j];
      const float e = 1e-2f;
      const std::vector<float> saved = *values[i];
      auto loss_at = [&](float s) {
        for (size_t j = 0; j < u.size(); ++j) (*values[i])[j] = saved[j] + s * u[j];
        return eagle_loss(p.w, p.d, p.embed, p.lm, p.chunks, opt).loss;
      };
      const auto central = [&](float h) { return (loss_at(h) - loss_at(-h)) / (2.0 * h); };
      // Richardson's extrapolation cancels the central difference's e^2 term: the training-time test's chained
      // depths curve the loss enough for that term to pass the tolerance at e = 1e-2, and a smaller e drowns in
      // the f32 loss's rounding.
      const double numeric = (4.0 * central(e / 2) - central(e)) / 3.0;
      *values[i] = saved;
      INFO(kNames[i] << " direction " << trial << ": analytic " << analytic << ", numeric " << numeric);
      CHECK(std::abs(analytic) > 1e-4);  // a direction the loss depends on, so the check means something
      CHECK(std::abs(analytic - numeric) <= rel_tol * std::abs(numeric) + 1e-4);  // 1e-4: f32 loss noise / e
    }
  }
}

void add_stories_sequence(train::FeatureData& d, const std::string& prompt, int n) {
  const test::StoriesSequence seq = test::stories_sequence(prompt, n, 8);
  d.tokens.insert(d.tokens.end(), seq.tokens.begin(), seq.tokens.end());
  d.hidden.insert(d.hidden.end(), seq.hidden.begin(), seq.hidden.end());
  d.topk_ids.insert(d.topk_ids.end(), seq.topk_ids.begin(), seq.topk_ids.end());
  d.topk_probs.insert(d.topk_probs.end(), seq.topk_probs.begin(), seq.topk_probs.end());
  d.offsets.push_back(d.offsets.back() + static_cast<int64_t>(seq.tokens.size()));
  d.prompt_len.push_back(seq.prompt_len);
}

struct StoriesData {
  train::FeatureData d;
  std::vector<float> embed, lm;
  EagleConfig layer;
};

const StoriesData& stories_data() {
  static const StoriesData s = [] {
    StoriesData s;
    auto& st = test::stories();
    s.d.hidden_size = st.model.config().dim;
    s.d.vocab_size = st.model.config().vocab_size;
    s.d.topk = 8;
    s.d.feature = "final_norm";
    s.d.target_sha256 = "stories";
    s.d.offsets = {0};
    for (const std::string& p : test::stories_prompts()) add_stories_sequence(s.d, p, 50);
    s.embed = embedding_f32(*st.loaded);
    s.lm = medusa::lm_head_f32(*st.loaded);
    s.layer = EagleConfig::of_target(st.loaded->config);
    return s;
  }();
  return s;
}

EagleTrainConfig stories_config() {
  EagleTrainConfig c;
  c.epochs = 4;
  c.batch = 3;
  c.max_len = 40;
  c.lr = 3e-3f;
  c.warmup = 3;
  c.seed = 7;
  c.threads = 1;
  c.heldout_fraction = 0.25;
  c.noise = 0.05f;
  return c;
}

}  // namespace

TEST_CASE("eagle_loss: the gradient of every tensor matches central finite differences") {
  Tiny p = tiny(3);
  SECTION("full vocabulary") { check_gradients(p, {}); }
  SECTION("training vocabulary, feature noise, other weights") {
    EagleLossOptions opt;
    opt.w_reg = 0.7f;
    opt.w_ce = 0.4f;
    opt.noise = 0.1f;
    opt.noise_seed = 99;
    opt.train_ids = {0, 1, 2, 3, 5, 8, 13, 21, 34, 35, 36, 37, 38, 39};
    check_gradients(p, opt);
  }
  SECTION("training-time test: depths 2 and 3 read the layer's own outputs") {
    // Sequences of 6, 9 and 5 rows in chunks of at most 5 pairs: depth 3 runs past a sequence's end in every
    // chunk that ends one (rows without a loss), and crosses into the next piece in sequence 1's first chunk.
    EagleLossOptions opt;
    opt.ttt_steps = 3;
    opt.ttt_decay = 0.7f;
    opt.noise = 0.1f;
    // 1%: what is left of the truncation error in the most curved direction (k_proj's, 0.5%); a missing path
    // (the feature fed back, a key of the chain) is off by far more.
    check_gradients(p, opt, 1e-2);
  }
}

TEST_CASE("eagle_loss with the training-time test: depth 0 as before, the deeper depths as the drafter reads them") {
  Tiny p = tiny(6);
  EagleLossOptions one, three;
  three.ttt_steps = 3;
  const EagleLossValue a = eagle_loss(p.w, p.d, p.embed, p.lm, p.chunks, one);
  const EagleLossValue b = eagle_loss(p.w, p.d, p.embed, p.lm, p.chunks, three);
  CHECK(b.reg == a.reg);  // depth 0 does not depend on the depths after it
  CHECK(b.ce == a.ce);
  CHECK(b.hits == a.hits);
  CHECK(b.loss > a.loss);
  // Depth 1's output of the chunk's row t, read by eagle_forward as evaluate_eagle reads it (the chunk's pairs in
  // the cache, then each row's pair with depth 0's output and the next token, seeing the pairs up to t and
  // itself), gives the loss's depth-1 part: its Smooth-L1 against the features two rows on.
  const int H = p.d.hidden_size;
  double reg1 = 0;
  int64_t rows1 = 0;
  for (const EagleChunk& ch : p.chunks) {
    const int T = ch.length;
    const int64_t seq_end = *std::upper_bound(p.d.offsets.begin(), p.d.offsets.end(), ch.first);
    std::vector<float> emb, feat(p.d.hidden.begin() + ch.first * H, p.d.hidden.begin() + (ch.first + T) * H), emb1;
    std::vector<int32_t> pos, pos1;
    for (int t = 0; t < T; ++t) {
      const float* e = p.embed.data() + static_cast<size_t>(p.d.tokens[ch.first + t + 1]) * H;
      emb.insert(emb.end(), e, e + H);
      pos.push_back(ch.position + t);
      const float* e1 =
          p.embed.data() + static_cast<size_t>(p.d.tokens[std::min<int64_t>(ch.first + t + 2, seq_end - 1)]) * H;
      emb1.insert(emb1.end(), e1, e1 + H);
      pos1.push_back(ch.position + t + 1);
    }
    EagleCache cache;
    std::vector<float> o0(emb.size()), o1(emb.size());
    eagle_forward(p.w, cache, emb, feat, pos, {}, o0);
    std::vector<uint8_t> mask(static_cast<size_t>(T) * 2 * T, 0);
    for (int t = 0; t < T; ++t) {
      std::fill_n(mask.begin() + static_cast<size_t>(t) * 2 * T, t + 1, 1);
      mask[static_cast<size_t>(t) * 2 * T + T + t] = 1;
    }
    eagle_forward(p.w, cache, emb1, o0, pos1, mask, o1);
    for (int t = 0; t < T; ++t) {
      if (ch.first + t + 2 >= seq_end) continue;
      const float* target = p.d.hidden.data() + static_cast<size_t>(ch.first + t + 2) * H;
      double s = 0;
      for (int j = 0; j < H; ++j) {
        const double x = static_cast<double>(o1[t * H + j]) - target[j], ax = std::abs(x);
        s += ax < 1.0 ? 0.5 * x * x : ax - 0.5;
      }
      reg1 += s / H;
      ++rows1;
    }
  }
  REQUIRE(rows1 > 0);
  // Only depths 0 and 1 (ttt_steps = 2, w_ce = 0): loss = reg0 + decay * reg1.
  EagleLossOptions two;
  two.ttt_steps = 2;
  two.ttt_decay = 0.5f;
  two.w_ce = 0.f;
  const EagleLossValue c = eagle_loss(p.w, p.d, p.embed, p.lm, p.chunks, two);
  CHECK(c.loss == Approx(a.reg + 0.5 * reg1 / static_cast<double>(rows1)).epsilon(1e-5));
}

TEST_CASE("the trainer's forward equals eagle_forward chunk by chunk") {
  Tiny p = tiny(4);
  std::vector<float> out;
  eagle_loss(p.w, p.d, p.embed, p.lm, p.chunks, {}, nullptr, &out);
  const int H = p.d.hidden_size;
  size_t row = 0;
  REQUIRE(p.chunks.size() == 4);
  CHECK(p.chunks[2].position == 6);  // the second piece of sequence 1 continues its positions
  for (const EagleChunk& ch : p.chunks) {
    std::vector<float> emb, feat(p.d.hidden.begin() + ch.first * H, p.d.hidden.begin() + (ch.first + ch.length) * H);
    std::vector<int32_t> pos;
    for (int t = 0; t < ch.length; ++t) {
      const float* e = p.embed.data() + static_cast<size_t>(p.d.tokens[ch.first + t + 1]) * H;
      emb.insert(emb.end(), e, e + H);
      pos.push_back(ch.position + t);
    }
    EagleCache cache;
    std::vector<float> ref(emb.size());
    eagle_forward(p.w, cache, emb, feat, pos, {}, ref);
    for (size_t i = 0; i < ref.size(); ++i)
      REQUIRE(std::abs(out[row * H + i] - ref[i]) <= 1e-5f * (1.f + std::abs(ref[i])));
    row += static_cast<size_t>(ch.length);
  }
  CHECK(row * H == out.size());
}

TEST_CASE("AdamW on the hand-written gradient lowers the loss of a fixed batch") {
  Tiny p = tiny(5);
  EagleWeights grad = zeros_like(p.w);
  std::vector<train::ParamSpan> params;
  const auto values = tensors(p.w), grads = tensors(grad);
  for (int i = 0; i < 10; ++i) params.push_back({values[i]->data(), grads[i]->data(), values[i]->size(), true});
  train::AdamW adam(params, {});
  double first = 0, last = 0;
  for (int step = 0; step < 60; ++step) {
    adam.zero_grad();
    const double loss = eagle_loss(p.w, p.d, p.embed, p.lm, p.chunks, {}, &grad).loss;
    (step == 0 ? first : last) = loss;
    adam.step(3e-3f);
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.6 * first);
}

TEST_CASE("stories260K: training improves the held-out figures, is deterministic and resumes bit for bit") {
  const StoriesData& s = stories_data();
  EagleTrainConfig c = stories_config();
  const EagleTrainResult r = train_eagle(s.d, s.embed, s.lm, s.layer, c);
  REQUIRE(r.epochs.size() == 5);
  const EagleMetrics& before = r.epochs.front().heldout;
  const EagleMetrics& after = r.epochs.back().heldout;
  INFO("held-out loss " << before.loss << " -> " << after.loss << ", acc@1 " << before.acc[0] << " -> " << after.acc[0]
                        << ", acc@4 " << after.acc[3]);
  REQUIRE(after.rows > 0);
  CHECK(after.loss < 0.8 * before.loss);
  CHECK(after.reg < before.reg);
  CHECK(after.acc[0] > before.acc[0]);
  CHECK(after.acc_rows[3] < after.acc_rows[0]);  // depth 4 needs 3 more tokens in the sequence
  for (int d = 0; d < kEagleDepths; ++d) CHECK(after.acc[d] > 0.0);
  const nlohmann::json meta = nlohmann::json::parse(r.weights.metadata_json);
  CHECK(meta["target_sha256"] == "stories");
  CHECK(meta["accuracy_by_depth"].size() == kEagleDepths);
  CHECK(meta["steps"] == r.steps);

  SECTION("the same seed and thread count give the same bits") {
    const EagleTrainResult again = train_eagle(s.d, s.embed, s.lm, s.layer, c);
    CHECK(again.weights.fc_w == r.weights.fc_w);
    CHECK(again.weights.w_down == r.weights.w_down);
    CHECK(again.epochs.back().heldout.loss == after.loss);
    c.seed = 8;
    const EagleTrainResult other = train_eagle(s.d, s.embed, s.lm, s.layer, c);
    CHECK(other.weights.fc_w != r.weights.fc_w);
  }
  SECTION("two threads: deterministic too") {
    c.threads = 2;
    c.epochs = 1;
    const EagleTrainResult a = train_eagle(s.d, s.embed, s.lm, s.layer, c);
    const EagleTrainResult b = train_eagle(s.d, s.embed, s.lm, s.layer, c);
    CHECK(a.weights.wq == b.weights.wq);
    CHECK(a.weights.post_norm == b.weights.post_norm);
  }
  SECTION("resume from a checkpoint ends with the uninterrupted run's weights; another config is refused") {
    std::filesystem::create_directories(SPECDEC_TEST_SCRATCH);
    c.checkpoint_path = std::string(SPECDEC_TEST_SCRATCH) + "/eagle_train.ckpt";
    std::filesystem::remove(c.checkpoint_path);
    c.checkpoint_every = 5;
    int checkpoints = 0;
    EagleTrainCallbacks cb;
    cb.on_checkpoint = [&](const std::string&, int64_t) { ++checkpoints; };
    const EagleTrainResult full = train_eagle(s.d, s.embed, s.lm, s.layer, c, cb);
    CHECK(full.weights.fc_w == r.weights.fc_w);  // checkpoints change nothing
    REQUIRE(checkpoints > 0);
    const EagleTrainResult resumed = train_eagle(s.d, s.embed, s.lm, s.layer, c, {}, /*resume=*/true);
    CHECK(resumed.steps == full.steps);
    CHECK(resumed.weights.fc_w == full.weights.fc_w);
    CHECK(resumed.weights.wk == full.weights.wk);
    CHECK(resumed.weights.w_up == full.weights.w_up);
    CHECK(resumed.weights.post_norm == full.weights.post_norm);
    CHECK(resumed.epochs.back().heldout.acc == full.epochs.back().heldout.acc);
    c.lr = 1e-3f;
    const std::string e = test::error_of([&] { train_eagle(s.d, s.embed, s.lm, s.layer, c, {}, true); });
    CHECK_THAT(e, Catch::Contains(c.checkpoint_path) && Catch::Contains("lr = "));
  }
}

TEST_CASE("train_vocab and draft_vocab: the draft ids are the most frequent labels, evaluation reads them out") {
  const StoriesData& s = stories_data();
  EagleTrainConfig c = stories_config();
  c.epochs = 1;
  c.train_vocab = 64;
  c.draft_vocab = 32;
  const EagleTrainResult r = train_eagle(s.d, s.embed, s.lm, s.layer, c);
  REQUIRE(r.weights.draft_ids.size() == 32);
  CHECK(std::is_sorted(r.weights.draft_ids.begin(), r.weights.draft_ids.end()));
  CHECK(r.epochs.back().train_vocab_coverage > 0.5);
  // The readout over 32 ids cannot name a target argmax outside them: evaluating with the full readout differs.
  EagleWeights full = r.weights;
  full.draft_ids.clear();
  std::vector<int> held;
  for (int i = 0; i < s.d.n_sequences(); ++i) held.push_back(i);
  const auto chunks = eagle_chunks(s.d, held, 40);
  const EagleMetrics a = evaluate_eagle(r.weights, s.d, s.embed, s.lm, chunks, 1.f, 0.1f);
  const EagleMetrics b = evaluate_eagle(full, s.d, s.embed, s.lm, chunks, 1.f, 0.1f);
  CHECK(a.reg == b.reg);  // the same layer; only the readout differs
  CHECK(a.ce < b.ce);     // over 32 renormalised ids the cross-entropy is smaller
  CHECK(a.acc != b.acc);
  const std::string e = test::error_of([&] {
    EagleTrainConfig bad = c;
    bad.draft_vocab = 3;
    train_eagle(s.d, s.embed, s.lm, s.layer, bad);
  });
  CHECK_THAT(e, Catch::Contains("draft_vocab = 3"));
}
