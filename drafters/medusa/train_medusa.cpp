// The Medusa heads' trainer (train_medusa.h). One step: a mini-batch of B rows; per head k the rows that
// have a label for it (X0 = their features, n x H), the residual blocks, logits Z = X_L LM^T (n x V, the
// GEMM that dominates), the soft cross-entropy against the target's renormalised top-k distribution, and
// the backward pass dX_L = G LM, then through the blocks (dW, db). With a training vocabulary S
// (train_vocab = N) the training steps use LM_S (its N rows, gathered once) in place of LM, so both GEMMs are
// n x H x N; evaluation always uses the full LM. Eigen float32 GEMMs (threaded by Eigen), per-row work in
// OpenMP static loops, every reduction in a fixed order: deterministic per thread count.
#include "drafters/medusa/train_medusa.h"

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "drafters/train/optim.h"
#include "drafters/train/trainer_common.h"

namespace specdec::medusa {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMap = Eigen::Map<const RowMatrix>;
using RowMap = Eigen::Map<RowMatrix>;
using json = nlohmann::json;

using train::silu;
using train::silu_grad;

// splitmix64: independent, reproducible seeds for the split and each epoch's order from one seed.
uint64_t mix(uint64_t seed, uint64_t stream) {
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Fisher-Yates with splitmix64 draws (std::shuffle's algorithm is unspecified: another standard library
// would give another order).
template <typename T>
void shuffle(std::vector<T>& v, uint64_t seed) {
  uint64_t state = seed;
  for (size_t i = v.size(); i > 1; --i) {
    state = mix(state, 0);
    const auto j = static_cast<size_t>((static_cast<unsigned __int128>(state) * i) >> 64);
    std::swap(v[i - 1], v[j]);
  }
}

// Where each row's labels may come from: head k has a label at row r when
// label_begin[r] <= r + k + 1 < seq_end[r].
struct RowBounds {
  std::vector<int64_t> seq_end, label_begin;
  std::vector<int32_t> seq;

  RowBounds(const train::FeatureData& d, bool response_only) {
    const int64_t N = d.n_rows();
    seq_end.resize(N);
    label_begin.resize(N);
    seq.resize(N);
    for (int s = 0; s < d.n_sequences(); ++s)
      for (int64_t r = d.offsets[s]; r < d.offsets[s + 1]; ++r) {
        seq[r] = s;
        seq_end[r] = d.offsets[s + 1];
        label_begin[r] = d.offsets[s] + (response_only ? d.prompt_len[s] : 0);
      }
  }
  bool has_label(int64_t r, int k) const {
    const int64_t l = r + k + 1;
    return l < seq_end[r] && l >= label_begin[r];
  }
};

void check_features(const train::FeatureData& d) {
  const int64_t N = d.n_rows();
  const int S = d.n_sequences();
  SPECDEC_CHECK(d.hidden_size > 0 && d.vocab_size > 0 && d.topk > 0,
                "features with hidden_size, vocab_size, topk > 0, got ", d.hidden_size, ", ", d.vocab_size, ", ",
                d.topk);
  SPECDEC_CHECK(
      S >= 1 && d.offsets.front() == 0 && d.offsets.back() == N && d.prompt_len.size() == static_cast<size_t>(S),
      "features with offsets 0 .. ", N, " over ", d.prompt_len.size(), " sequences, got ", d.offsets.size(),
      " offsets");
  for (int s = 0; s < S; ++s)
    SPECDEC_CHECK(
        d.offsets[s + 1] >= d.offsets[s] && d.prompt_len[s] >= 0 && d.prompt_len[s] <= d.offsets[s + 1] - d.offsets[s],
        "features sequence ", s, ": rows ", d.offsets[s], " .. ", d.offsets[s + 1], " with prompt_len ",
        d.prompt_len[s]);
  SPECDEC_CHECK(d.hidden.size() == static_cast<size_t>(N) * d.hidden_size &&
                    d.topk_ids.size() == static_cast<size_t>(N) * d.topk && d.topk_probs.size() == d.topk_ids.size(),
                "features arrays of ", N, " rows (hidden ", N, " x ", d.hidden_size, ", top-k ", N, " x ", d.topk,
                "), got ", d.hidden.size(), ", ", d.topk_ids.size(), ", ", d.topk_probs.size(), " values");
  for (size_t i = 0; i < d.topk_ids.size(); ++i)
    SPECDEC_CHECK(d.topk_ids[i] >= 0 && d.topk_ids[i] < d.vocab_size, "features top-k ids in [0, ", d.vocab_size,
                  "), got ", d.topk_ids[i], " at row ", i / d.topk);
  for (int64_t r = 0; r < N; ++r) {
    double sum = 0.0;
    for (int j = 0; j < d.topk; ++j) {
      const float p = d.topk_probs[static_cast<size_t>(r) * d.topk + j];
      SPECDEC_CHECK(p >= 0.f && p <= 1.f, "features top-k probabilities in [0, 1], got ", p, " at row ", r);
      sum += p;
    }
    SPECDEC_CHECK(sum > 0.0, "features top-k probabilities with a positive sum, got 0 at row ", r);
  }
}

void check_data(const train::FeatureData& d, const std::vector<float>& lm_head) {
  check_features(d);
  SPECDEC_CHECK(lm_head.size() == static_cast<size_t>(d.vocab_size) * d.hidden_size,
                "an LM head of V x H = ", d.vocab_size, " x ", d.hidden_size, " floats for these features, got ",
                lm_head.size());
}

struct Grads {
  std::vector<std::vector<float>> w, b;  // same layout as MedusaHeads::w / b
};

// A training vocabulary S laid out for run_head: LM_S (S's rows of the LM head, N x H) and each token id's
// column in it (-1 outside S).
train::GatheredRows gather_subset(const std::vector<float>& lm_head, int V, int H, const std::vector<int32_t>& ids) {
  return train::gather_rows(lm_head, V, H, ids, "a training vocabulary");
}

// What one head did over a set of rows.
struct HeadOutcome {
  int64_t n = 0;                               // rows with a label
  double loss_sum = 0.0;                       // sum of their soft cross-entropies
  std::array<int64_t, kTopAccuracies> hits{};  // hits[i]: rows whose target argmax ranks < i + 1
};

// Head k over `rows` (those with a label for it): losses and ranks; with grads, adds the gradient of
// (mean loss over these rows) with respect to the head's blocks into grads. lm: the full LM head
// (column == nullptr) or LM_S with column mapping token ids to its rows (-1 outside S); over S a row's top-k
// is restricted to S and renormalised, a row with no label mass in S is skipped (not counted in n), and the
// rank is over S's logits (a target argmax outside S ranks nowhere).
HeadOutcome run_head(const MedusaHeads& heads, int k, const train::FeatureData& d, const RowBounds& bounds,
                     const ConstRowMap& lm, const int32_t* column, std::span<const int64_t> rows, Grads* grads) {
  const int H = d.hidden_size, V = static_cast<int>(lm.rows()), L = heads.cfg.n_layers, K = d.topk;
  auto col = [column](int32_t id) { return column ? column[id] : id; };
  std::vector<int64_t> kept;
  for (int64_t r : rows) {
    if (!bounds.has_label(r, k)) continue;
    bool labelled = column == nullptr;
    const int64_t label = r + k + 1;
    for (int j = 0; j < K && !labelled; ++j)
      labelled = col(d.topk_ids[label * K + j]) >= 0 && d.topk_probs[label * K + j] > 0.f;
    if (labelled) kept.push_back(r);
  }
  HeadOutcome out;
  out.n = static_cast<int64_t>(kept.size());
  if (kept.empty()) return out;
  const int n = static_cast<int>(kept.size());

  // Forward: X[l + 1] = X[l] + silu(Y[l]), Y[l] = X[l] W^T + b.
  std::vector<RowMatrix> X(L + 1), Y(L);
  X[0].resize(n, H);
  for (int i = 0; i < n; ++i) X[0].row(i) = Eigen::Map<const Eigen::RowVectorXf>(d.hidden.data() + kept[i] * H, H);
  for (int l = 0; l < L; ++l) {
    const size_t bi = static_cast<size_t>(k) * L + l;
    const ConstRowMap W(heads.w[bi].data(), H, H);
    Y[l].noalias() = X[l] * W.transpose();
    Y[l].rowwise() += Eigen::Map<const Eigen::RowVectorXf>(heads.b[bi].data(), H);
    X[l + 1] = X[l] + Y[l].unaryExpr(&silu);
  }
  RowMatrix Z(n, V);
  Z.noalias() = X[L] * lm.transpose();

  // Per row: loss, rank of the target's argmax, and (training) G = (softmax(z) - p) / n in place of z.
  // loss = logsumexp(z) - sum_j p_j z[id_j], p the renormalised top-k.
  std::vector<double> loss(n);
  std::vector<int32_t> rank(n);
  const float inv_n = 1.f / static_cast<float>(n);
#pragma omp parallel for schedule(static)
  for (int i = 0; i < n; ++i) {
    float* z = Z.row(i).data();
    const int64_t label = kept[i] + k + 1;
    const int32_t* ids = d.topk_ids.data() + label * K;
    const float* probs = d.topk_probs.data() + label * K;
    const int32_t a = col(ids[0]);
    int32_t rk = a < 0 ? kTopAccuracies : 0;
    for (int j = 0; j < V && rk < kTopAccuracies; ++j) rk += (z[j] > z[a] || (z[j] == z[a] && j < a)) ? 1 : 0;
    rank[i] = rk;
    float zmax = z[0];
    for (int j = 1; j < V; ++j) zmax = std::max(zmax, z[j]);
    double psum = 0.0, plogit = 0.0;
    for (int j = 0; j < K; ++j)
      if (col(ids[j]) >= 0) psum += probs[j];
    for (int j = 0; j < K; ++j)
      if (const int32_t c = col(ids[j]); c >= 0) plogit += probs[j] / psum * z[c];
    // z becomes exp(z - zmax) (one float exp per logit; the sum in double), then the gradient in place.
    double sum = 0.0;
    for (int j = 0; j < V; ++j) sum += (z[j] = std::exp(z[j] - zmax));
    loss[i] = zmax + std::log(sum) - plogit;
    if (grads) {
      const float scale = static_cast<float>(1.0 / sum) * inv_n;
      for (int j = 0; j < V; ++j) z[j] *= scale;
      for (int j = 0; j < K; ++j)
        if (const int32_t c = col(ids[j]); c >= 0) z[c] -= static_cast<float>(probs[j] / psum) * inv_n;
    }
  }
  for (int i = 0; i < n; ++i) {
    out.loss_sum += loss[i];
    for (int t = rank[i]; t < kTopAccuracies; ++t) ++out.hits[t];
  }
  if (!grads) return out;

  // Backward: dX_L = G LM; per block D = dX .* silu'(Y), dW += D^T X, db += sum of D's rows, dX += D W.
  RowMatrix dX(n, H);
  dX.noalias() = Z * lm;
  for (int l = L - 1; l >= 0; --l) {
    const size_t bi = static_cast<size_t>(k) * L + l;
    const ConstRowMap W(heads.w[bi].data(), H, H);
    const RowMatrix D = dX.cwiseProduct(Y[l].unaryExpr(&silu_grad));
    RowMap(grads->w[bi].data(), H, H).noalias() += D.transpose() * X[l];
    Eigen::Map<Eigen::RowVectorXf>(grads->b[bi].data(), H) += D.colwise().sum();
    dX.noalias() += D * W;
  }
  return out;
}

HeadMetrics to_metrics(const HeadOutcome& o) {
  HeadMetrics m;
  m.rows = o.n;
  if (o.n == 0) return m;
  m.loss = o.loss_sum / static_cast<double>(o.n);
  for (int i = 0; i < kTopAccuracies; ++i) m.topk[i] = static_cast<double>(o.hits[i]) / static_cast<double>(o.n);
  return m;
}

json outcome_json(const HeadOutcome& o) { return {{"n", o.n}, {"loss_sum", o.loss_sum}, {"hits", o.hits}}; }
HeadOutcome outcome_from_json(const json& j) {
  HeadOutcome o;
  o.n = j.at("n").get<int64_t>();
  o.loss_sum = j.at("loss_sum").get<double>();
  o.hits = j.at("hits").get<std::array<int64_t, kTopAccuracies>>();
  return o;
}
json metrics_json(const HeadMetrics& m) { return {{"rows", m.rows}, {"loss", m.loss}, {"topk", m.topk}}; }
HeadMetrics metrics_from_json(const json& j) {
  HeadMetrics m;
  m.rows = j.at("rows").get<int64_t>();
  m.loss = j.at("loss").get<double>();
  m.topk = j.at("topk").get<std::array<double, kTopAccuracies>>();
  return m;
}
json epoch_json(const EpochReport& e) {
  json train = json::array(), held = json::array();
  for (const auto& m : e.train) train.push_back(metrics_json(m));
  for (const auto& m : e.heldout) held.push_back(metrics_json(m));
  return {{"epoch", e.epoch}, {"step", e.step}, {"train", train}, {"heldout", held}};
}
EpochReport epoch_from_json(const json& j) {
  EpochReport e;
  e.epoch = j.at("epoch").get<int>();
  e.step = j.at("step").get<int64_t>();
  for (const auto& m : j.at("train")) e.train.push_back(metrics_from_json(m));
  for (const auto& m : j.at("heldout")) e.heldout.push_back(metrics_from_json(m));
  return e;
}

std::string block_tensor(int k, int l, const char* what) {
  return "heads." + std::to_string(k) + ".blocks." + std::to_string(l) + "." + what;
}

}  // namespace

TrainVocabulary select_train_vocabulary(const train::FeatureData& data, const std::vector<int64_t>& rows, int n_heads,
                                        bool response_only, int n) {
  check_features(data);
  const int V = data.vocab_size, K = data.topk;
  SPECDEC_CHECK(n >= 1 && n <= V, "a training vocabulary of 1 .. ", V, " ids, got ", n);
  const RowBounds bounds(data, response_only);
  std::vector<uint8_t> is_label(static_cast<size_t>(data.n_rows()), 0);
  for (int64_t r : rows) {
    SPECDEC_CHECK(r >= 0 && r < data.n_rows(), "a row in [0, ", data.n_rows(), "), got ", r);
    for (int k = 0; k < n_heads; ++k)
      if (bounds.has_label(r, k)) is_label[r + k + 1] = 1;
  }
  std::vector<int64_t> count(static_cast<size_t>(V), 0);
  for (int64_t l = 0; l < data.n_rows(); ++l)
    if (is_label[l])
      for (int j = 0; j < K; ++j) ++count[data.topk_ids[l * K + j]];
  std::vector<int32_t> ids(static_cast<size_t>(V));
  for (int v = 0; v < V; ++v) ids[v] = v;
  // A strict total order (count descending, then id), so the chosen set does not depend on the algorithm.
  std::nth_element(ids.begin(), ids.begin() + (n - 1), ids.end(),
                   [&](int32_t a, int32_t b) { return count[a] != count[b] ? count[a] > count[b] : a < b; });
  ids.resize(static_cast<size_t>(n));
  std::sort(ids.begin(), ids.end());

  TrainVocabulary out;
  std::vector<uint8_t> inside(static_cast<size_t>(V), 0);
  for (int32_t id : ids) inside[id] = 1;
  double mass = 0.0;
  int64_t labels = 0;
  for (int64_t l = 0; l < data.n_rows(); ++l) {
    if (!is_label[l]) continue;
    double sum = 0.0, in = 0.0;
    for (int j = 0; j < K; ++j) {
      sum += data.topk_probs[l * K + j];
      if (inside[data.topk_ids[l * K + j]]) in += data.topk_probs[l * K + j];
    }
    mass += in / sum;
    ++labels;
  }
  out.coverage = labels > 0 ? mass / static_cast<double>(labels) : 1.0;
  out.ids = std::move(ids);
  return out;
}

std::vector<float> lm_head_f32(const LoadedModel& model) {
  return train::weight_f32(model, model.weights.output, "an LM head");
}

uint64_t seed_stream(uint64_t seed, uint64_t stream) { return mix(seed, stream); }
void shuffle_indices(std::vector<int64_t>& v, uint64_t seed) { shuffle(v, seed); }
void check_feature_data(const train::FeatureData& data) { check_features(data); }

std::vector<uint8_t> heldout_sequences(int n_sequences, double fraction, uint64_t seed) {
  std::vector<int> order(static_cast<size_t>(n_sequences));
  for (int s = 0; s < n_sequences; ++s) order[s] = s;
  shuffle(order, mix(seed, 1));
  int n_held = fraction > 0.0 ? std::max(1, static_cast<int>(std::lround(n_sequences * fraction))) : 0;
  n_held = std::min(n_held, n_sequences - 1);
  std::vector<uint8_t> held(static_cast<size_t>(n_sequences), 0);
  for (int i = 0; i < n_held; ++i) held[order[i]] = 1;
  return held;
}

void append_features(train::FeatureData& into, const train::FeatureData& more, const std::string& source) {
  if (into.offsets.empty()) {
    into = more;
    return;
  }
  SPECDEC_CHECK(more.hidden_size == into.hidden_size && more.vocab_size == into.vocab_size && more.topk == into.topk,
                source, ": features of hidden size ", more.hidden_size, ", vocabulary ", more.vocab_size, ", top-k ",
                more.topk, ", expected ", into.hidden_size, ", ", into.vocab_size, ", ", into.topk,
                " like the first data file");
  SPECDEC_CHECK(more.feature == into.feature, source, ": feature '", more.feature, "', expected '", into.feature,
                "' like the first data file");
  SPECDEC_CHECK(more.target_sha256 == into.target_sha256, source, ": features of the target with sha256 ",
                more.target_sha256, ", expected ", into.target_sha256, " like the first data file");
  const int64_t base = into.n_rows();
  into.tokens.insert(into.tokens.end(), more.tokens.begin(), more.tokens.end());
  for (size_t s = 1; s < more.offsets.size(); ++s) into.offsets.push_back(base + more.offsets[s]);
  into.prompt_len.insert(into.prompt_len.end(), more.prompt_len.begin(), more.prompt_len.end());
  into.hidden.insert(into.hidden.end(), more.hidden.begin(), more.hidden.end());
  into.topk_ids.insert(into.topk_ids.end(), more.topk_ids.begin(), more.topk_ids.end());
  into.topk_probs.insert(into.topk_probs.end(), more.topk_probs.begin(), more.topk_probs.end());
}

std::vector<HeadMetrics> evaluate_medusa(const MedusaHeads& heads, const train::FeatureData& data,
                                         const std::vector<float>& lm_head, const std::vector<int64_t>& rows,
                                         bool response_only, int batch) {
  check_data(data, lm_head);
  SPECDEC_CHECK(heads.cfg.hidden_size == data.hidden_size, "Medusa heads of hidden size ", heads.cfg.hidden_size,
                " for features of hidden size ", data.hidden_size);
  SPECDEC_CHECK(batch >= 1, "an evaluation batch >= 1, got ", batch);
  const RowBounds bounds(data, response_only);
  const ConstRowMap lm(lm_head.data(), data.vocab_size, data.hidden_size);
  std::vector<HeadOutcome> total(heads.cfg.n_heads);
  for (size_t start = 0; start < rows.size(); start += static_cast<size_t>(batch)) {
    const std::span<const int64_t> chunk(rows.data() + start,
                                         std::min(rows.size() - start, static_cast<size_t>(batch)));
    for (int k = 0; k < heads.cfg.n_heads; ++k) {
      const HeadOutcome o = run_head(heads, k, data, bounds, lm, nullptr, chunk, nullptr);
      total[k].n += o.n;
      total[k].loss_sum += o.loss_sum;
      for (int i = 0; i < kTopAccuracies; ++i) total[k].hits[i] += o.hits[i];
    }
  }
  std::vector<HeadMetrics> out;
  for (const HeadOutcome& o : total) out.push_back(to_metrics(o));
  return out;
}

double medusa_head_loss(const MedusaHeads& heads, int k, const train::FeatureData& data,
                        const std::vector<float>& lm_head, const std::vector<int64_t>& rows, bool response_only,
                        std::vector<std::vector<float>>* grad_w, std::vector<std::vector<float>>* grad_b,
                        const std::vector<int32_t>& train_ids) {
  check_data(data, lm_head);
  SPECDEC_CHECK(k >= 0 && k < heads.cfg.n_heads, "a Medusa head index in [0, ", heads.cfg.n_heads, "), got ", k);
  SPECDEC_CHECK((grad_w == nullptr) == (grad_b == nullptr), "both gradients (grad_w and grad_b) or neither");
  const RowBounds bounds(data, response_only);
  const train::GatheredRows subset =
      train_ids.empty() ? train::GatheredRows{} : gather_subset(lm_head, data.vocab_size, data.hidden_size, train_ids);
  const ConstRowMap lm(train_ids.empty() ? lm_head.data() : subset.rows.data(),
                       train_ids.empty() ? data.vocab_size : static_cast<int64_t>(train_ids.size()), data.hidden_size);
  const int32_t* column = train_ids.empty() ? nullptr : subset.column.data();
  HeadOutcome o;
  if (grad_w) {
    SPECDEC_CHECK(grad_w->size() == heads.w.size() && grad_b->size() == heads.b.size(),
                  "gradients laid out like the "
                  "heads' ",
                  heads.w.size(), " blocks, got ", grad_w->size(), " and ", grad_b->size());
    Grads g{std::move(*grad_w), std::move(*grad_b)};
    o = run_head(heads, k, data, bounds, lm, column, rows, &g);
    *grad_w = std::move(g.w);
    *grad_b = std::move(g.b);
  } else {
    o = run_head(heads, k, data, bounds, lm, column, rows, nullptr);
  }
  return o.n > 0 ? o.loss_sum / static_cast<double>(o.n) : 0.0;
}

MedusaTrainResult train_medusa(const train::FeatureData& data, const std::vector<float>& lm_head,
                               const MedusaTrainConfig& cfg, const TrainCallbacks& callbacks, bool resume) {
  const auto t0 = std::chrono::steady_clock::now();
  check_data(data, lm_head);
  SPECDEC_CHECK(cfg.n_heads >= 1 && cfg.n_layers >= 1, "heads >= 1 and layers >= 1, got ", cfg.n_heads, " and ",
                cfg.n_layers);
  SPECDEC_CHECK(cfg.batch >= 1, "batch >= 1, got ", cfg.batch);
  train::check_schedule(cfg.epochs, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup);
  train::check_split_and_checkpoints(cfg.heldout_fraction, cfg.checkpoint_every, cfg.checkpoint_path, resume);
  train::check_vocab_option("train_vocab", cfg.train_vocab, data);
  const int threads = train::set_threads(cfg.threads);

  // The held-out split: whole sequences, chosen by the seed.
  const int S = data.n_sequences();
  const std::vector<uint8_t> held = heldout_sequences(S, cfg.heldout_fraction, cfg.seed);
  const int n_held = static_cast<int>(std::count(held.begin(), held.end(), 1));
  const RowBounds bounds(data, cfg.response_only);
  std::vector<int64_t> train_rows, held_rows;
  for (int64_t r = 0; r < data.n_rows(); ++r) {
    bool any = false;
    for (int k = 0; k < cfg.n_heads && !any; ++k) any = bounds.has_label(r, k);
    if (any) (held[bounds.seq[r]] ? held_rows : train_rows).push_back(r);
  }
  SPECDEC_CHECK(!train_rows.empty(), "training rows with a label for some head, got none (", data.n_rows(), " rows in ",
                S, " sequences, ", n_held, " held out)");
  const int64_t B = cfg.batch;
  const int64_t n_train = static_cast<int64_t>(train_rows.size());
  const auto [steps_per_epoch, total_steps, n_epochs] = train::plan_steps(n_train, B, cfg.epochs, cfg.steps);

  // The training steps' LM head: the full one, or LM_S of the training vocabulary.
  TrainVocabulary vocab;
  train::GatheredRows subset;
  if (cfg.train_vocab > 0) {
    vocab = select_train_vocabulary(data, train_rows, cfg.n_heads, cfg.response_only, cfg.train_vocab);
    subset = gather_subset(lm_head, data.vocab_size, data.hidden_size, vocab.ids);
  }
  const ConstRowMap lm(cfg.train_vocab > 0 ? subset.rows.data() : lm_head.data(),
                       cfg.train_vocab > 0 ? cfg.train_vocab : data.vocab_size, data.hidden_size);
  const int32_t* column = cfg.train_vocab > 0 ? subset.column.data() : nullptr;
  auto stamp = [&](EpochReport& rep) {
    rep.train_vocab = cfg.train_vocab;
    rep.train_vocab_coverage = vocab.coverage;
  };

  HeadsConfig hc;
  hc.n_heads = cfg.n_heads;
  hc.n_layers = cfg.n_layers;
  hc.hidden_size = data.hidden_size;
  hc.vocab_size = data.vocab_size;
  MedusaHeads heads = init_medusa_heads(hc, mix(cfg.seed, 2), cfg.init_scale);
  const int H = data.hidden_size;
  Grads grads;
  std::vector<train::ParamSpan> params;
  for (size_t i = 0; i < heads.w.size(); ++i) {
    grads.w.emplace_back(heads.w[i].size(), 0.f);
    grads.b.emplace_back(heads.b[i].size(), 0.f);
  }
  for (size_t i = 0; i < heads.w.size(); ++i) {
    params.push_back({heads.w[i].data(), grads.w[i].data(), heads.w[i].size(), true});
    params.push_back({heads.b[i].data(), grads.b[i].data(), heads.b[i].size(), false});
  }
  train::AdamWConfig ac;
  ac.weight_decay = cfg.weight_decay;
  train::AdamW adam(params, ac);
  const train::LrSchedule schedule{cfg.lr, cfg.min_lr, cfg.warmup, total_steps};

  // What a checkpoint must match to be resumed: everything that decides the weights.
  json fingerprint = train::common_fingerprint(cfg, total_steps, threads, data);
  fingerprint.update({{"n_heads", cfg.n_heads}, {"n_layers", cfg.n_layers}, {"response_only", cfg.response_only}});

  MedusaTrainResult result;
  int64_t step = 0;
  std::vector<HeadOutcome> epoch_train(cfg.n_heads);  // running figures of the current epoch
  if (resume) {
    const auto [file, meta] = train::open_checkpoint(cfg.checkpoint_path, "a Medusa");
    json ck;
    try {
      ck = json::parse(meta);
      json written = ck.at("fingerprint");
      if (!written.contains("train_vocab")) written["train_vocab"] = 0;  // written before the option existed
      for (auto it = fingerprint.begin(); it != fingerprint.end(); ++it)
        SPECDEC_CHECK(written.at(it.key()) == it.value(), cfg.checkpoint_path, ": written by a run with ", it.key(),
                      " = ", written.at(it.key()).dump(), ", this run has ", it.value().dump());
      step = ck.at("step").get<int64_t>();
      for (int k = 0; k < cfg.n_heads; ++k) epoch_train[k] = outcome_from_json(ck.at("epoch_train").at(k));
      for (const auto& e : ck.at("epochs")) {
        result.epochs.push_back(epoch_from_json(e));
        stamp(result.epochs.back());
      }
    } catch (const json::exception& e) {
      SPECDEC_FAIL(cfg.checkpoint_path, ": malformed checkpoint metadata (", e.what(), ")");
    }
    // Copied into the vectors the parameter spans point at (sizes checked by the reads).
    train::AdamWState st;
    st.step = step;
    for (int k = 0; k < cfg.n_heads; ++k)
      for (int l = 0; l < cfg.n_layers; ++l) {
        const size_t bi = static_cast<size_t>(k) * cfg.n_layers + l;
        const std::vector<float> w = read_safetensors_f32(*file, block_tensor(k, l, "weight"), {H, H});
        const std::vector<float> b = read_safetensors_f32(*file, block_tensor(k, l, "bias"), {H});
        std::copy(w.begin(), w.end(), heads.w[bi].begin());
        std::copy(b.begin(), b.end(), heads.b[bi].begin());
      }
    for (size_t i = 0; i < params.size(); ++i) {
      const auto n = static_cast<int64_t>(params[i].size);
      st.m.push_back(read_safetensors_f32(*file, "optim.m." + std::to_string(i), {n}));
      st.v.push_back(read_safetensors_f32(*file, "optim.v." + std::to_string(i), {n}));
    }
    adam.load_state(std::move(st));
  }

  auto write_checkpoint = [&]() {
    std::vector<TensorToWrite> tensors;
    for (int k = 0; k < cfg.n_heads; ++k)
      for (int l = 0; l < cfg.n_layers; ++l) {
        const size_t bi = static_cast<size_t>(k) * cfg.n_layers + l;
        tensors.push_back({block_tensor(k, l, "weight"), {H, H}, heads.w[bi].data()});
        tensors.push_back({block_tensor(k, l, "bias"), {H}, heads.b[bi].data()});
      }
    for (size_t i = 0; i < params.size(); ++i) {
      const auto n = static_cast<int64_t>(params[i].size);
      tensors.push_back({"optim.m." + std::to_string(i), {n}, adam.state().m[i].data()});
      tensors.push_back({"optim.v." + std::to_string(i), {n}, adam.state().v[i].data()});
    }
    json et = json::array(), eps = json::array();
    for (const auto& o : epoch_train) et.push_back(outcome_json(o));
    for (const auto& e : result.epochs) eps.push_back(epoch_json(e));
    // The row order of an epoch is a function of (seed, epoch): the step is the whole random state.
    const json ck = {{"step", step}, {"fingerprint", fingerprint}, {"epoch_train", et}, {"epochs", eps}};
    write_safetensors_f32(cfg.checkpoint_path, tensors, {{"specdec_checkpoint", ck.dump()}});
    if (callbacks.on_checkpoint) callbacks.on_checkpoint(cfg.checkpoint_path, step);
  };

  if (!resume) {  // epoch 0: the untrained heads, the baseline every later epoch is compared with
    EpochReport rep;
    stamp(rep);
    rep.heldout = evaluate_medusa(heads, data, lm_head, held_rows, cfg.response_only, cfg.batch);
    result.epochs.push_back(rep);
    if (callbacks.on_epoch) callbacks.on_epoch(rep);
  }
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  while (step < total_steps) {
    const int64_t epoch = step / steps_per_epoch;
    if (epoch != order_epoch) {
      order = train_rows;
      shuffle(order, mix(cfg.seed, 100 + static_cast<uint64_t>(epoch)));
      order_epoch = epoch;
    }
    const int64_t begin = (step % steps_per_epoch) * B;
    const std::span<const int64_t> batch(order.data() + begin, static_cast<size_t>(std::min(B, n_train - begin)));

    const auto step_start = std::chrono::steady_clock::now();
    adam.zero_grad();
    double loss = 0.0;
    for (int k = 0; k < cfg.n_heads; ++k) {
      const HeadOutcome o = run_head(heads, k, data, bounds, lm, column, batch, &grads);
      if (o.n > 0) loss += o.loss_sum / static_cast<double>(o.n);
      epoch_train[k].n += o.n;
      epoch_train[k].loss_sum += o.loss_sum;
      for (int i = 0; i < kTopAccuracies; ++i) epoch_train[k].hits[i] += o.hits[i];
    }
    train::clip_grad_norm(params, cfg.clip);
    const float lr = schedule.at(step);
    adam.step(lr);
    ++step;
    result.rows_stepped += static_cast<int64_t>(batch.size());
    result.step_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();

    if (step % steps_per_epoch == 0 || step == total_steps) {
      EpochReport rep;
      rep.epoch = static_cast<int>(epoch) + 1;
      rep.step = step;
      stamp(rep);
      for (auto& o : epoch_train) {
        HeadMetrics m = to_metrics(o);
        std::fill(m.topk.begin() + 1, m.topk.end(), 0.0);  // the running figures keep loss and top-1 only
        rep.train.push_back(m);
        o = HeadOutcome{};
      }
      rep.heldout = evaluate_medusa(heads, data, lm_head, held_rows, cfg.response_only, cfg.batch);
      result.epochs.push_back(rep);
      if (callbacks.on_epoch) callbacks.on_epoch(rep);
    }
    if (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && step < total_steps) write_checkpoint();
    if (callbacks.on_step) callbacks.on_step(step, total_steps, static_cast<int64_t>(batch.size()), loss, lr);
  }

  result.steps = step;
  result.train_rows = n_train;
  result.heldout_rows = static_cast<int64_t>(held_rows.size());
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  const EpochReport& last = result.epochs.back();
  json train_loss = json::array(), train_top1 = json::array(), held_loss = json::array(), topk = json::array();
  for (int k = 0; k < cfg.n_heads; ++k) {
    train_loss.push_back(last.train[k].loss);
    train_top1.push_back(last.train[k].topk[0]);
    held_loss.push_back(last.heldout[k].loss);
    topk.push_back(last.heldout[k].topk);
  }
  json history = json::array();
  for (const auto& e : result.epochs) history.push_back(epoch_json(e));
  json meta = train::common_metadata("specdec.medusa.v1", cfg, data, result, n_held, vocab.coverage, n_epochs, threads,
                                     std::move(history));
  meta.update({{"n_heads", cfg.n_heads},
               {"n_layers", cfg.n_layers},
               {"own_lm_head", false},
               {"response_only", cfg.response_only},
               {"final_train_loss", train_loss},
               {"final_train_top1", train_top1},
               {"final_heldout_loss", held_loss},
               {"accuracy_topk", topk}});
  heads.metadata_json = meta.dump();
  result.heads = std::move(heads);
  return result;
}

}  // namespace specdec::medusa
