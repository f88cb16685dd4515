// The EAGLE layer's trainer (train_eagle.h). A step reads a batch of chunks laid out as R rows: the dense parts
// (fc, q/k/v/o, the MLP, the LM readout) are Eigen float32 GEMMs over all R rows (threaded by Eigen), the
// attention runs per chunk (causal, GQA, rotate_half RoPE) in an OpenMP static loop whose iterations write only
// their own chunk's rows; the backward pass mirrors it by hand. Every reduction has a fixed order, so a run is
// deterministic for its thread count. Held-out figures go through eagle_forward, the drafter's own code path.
#include "drafters/eagle/train_eagle.h"

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "core/error.h"
#include "drafters/medusa/heads.h"
#include "drafters/train/optim.h"
#include "drafters/train/trainer_common.h"

namespace specdec::eagle {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMatrix>;
using RowMap = Eigen::Map<RowMatrix>;
using json = nlohmann::json;

constexpr int kTensors = 10;

// The trainable tensors in a fixed order (the optimiser's spans, the checkpoint's "param.i"); decay: the
// matrices get weight decay, fc.bias and post_norm do not.
std::array<std::vector<float>*, kTensors> tensors_of(EagleWeights& w) {
  return {&w.fc_w, &w.fc_b, &w.wq, &w.wk, &w.wv, &w.wo, &w.post_norm, &w.w_gate, &w.w_up, &w.w_down};
}
constexpr std::array<bool, kTensors> kDecay = {true, false, true, true, true, true, false, true, true, true};

// The LM rows a loss reads: all V (column empty) or the gathered rows of ids, column mapping a token id to its
// row (-1 outside).
struct LmRows {
  const float* w = nullptr;
  int rows = 0;
  std::vector<int32_t> column;
  std::vector<float> own;
};

LmRows lm_rows(const std::vector<float>& lm_head, int V, int H, const std::vector<int32_t>& ids) {
  LmRows l;
  if (ids.empty()) {
    l.w = lm_head.data();
    l.rows = V;
    return l;
  }
  train::GatheredRows g = train::gather_rows(lm_head, V, H, ids, "an EAGLE readout vocabulary");
  l.column = std::move(g.column);
  l.own = std::move(g.rows);
  l.w = l.own.data();
  l.rows = static_cast<int>(ids.size());
  return l;
}

using train::silu;

// cos / sin of rotate_half RoPE for `rows` positions (rows x D/2 each), the angle taken in double like
// eagle_forward's.
void rope_tables(std::span<const int32_t> pos, int D, float theta, std::vector<float>& c, std::vector<float>& s) {
  const int half = D / 2;
  c.resize(pos.size() * half);
  s.resize(c.size());
  for (size_t r = 0; r < pos.size(); ++r)
    for (int i = 0; i < half; ++i) {
      const double angle = pos[r] * std::pow(static_cast<double>(theta), -2.0 * i / D);
      c[r * half + i] = static_cast<float>(std::cos(angle));
      s[r * half + i] = static_cast<float>(std::sin(angle));
    }
}

// Rotates every head of every row of X (rows x heads*D) by its row's angles; inverse: by minus them (the
// transpose, which is what the backward pass needs).
void rope_apply(RowMatrix& X, int heads, int D, const std::vector<float>& c, const std::vector<float>& s,
                bool inverse) {
  const int half = D / 2;
  const float sign = inverse ? -1.f : 1.f;
  for (Eigen::Index r = 0; r < X.rows(); ++r)
    for (int h = 0; h < heads; ++h) {
      float* x = &X(r, h * D);
      for (int i = 0; i < half; ++i) {
        const float cs = c[r * half + i], sn = sign * s[r * half + i];
        const float a = x[i], b = x[i + half];
        x[i] = a * cs - b * sn;
        x[i + half] = b * cs + a * sn;
      }
    }
}

// splitmix64 steps for the feature noise: row r's values come from seed_stream(noise_seed, r), so they do not
// depend on the batch or the thread count.
uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// One draft depth's activations over the R rows of C chunks. Depth j's row t of a chunk reads pair first + t + j:
// the embedding of its next token and, for j >= 1, the layer's own depth j - 1 output at row t as its feature
// (EAGLE-3's training-time test: the drafter's depth-j input), at RoPE position position + t + j.
struct DepthActivations {
  std::vector<float> cos, sin;
  RowMatrix xe, xf, u, q, k, v, a, hs, nh, g, up, m, out;
  std::vector<float> rinv;  // 1 / rms of hs per row
  // Chunk c, head h at c * n_heads + h: T x (T + j) attention probabilities. Columns 0..T-1: depth 0's keys
  // (causal, the committed pairs); column T + i - 1: depth i's key of the same row (i = 1..j: the row's own
  // draft chain so far), as the drafter's cache holds them.
  std::vector<RowMatrix> p;
};

// Everything the backward pass reads.
struct Activations {
  std::vector<int64_t> begin;    // C + 1 row offsets
  std::vector<int64_t> seq_end;  // per chunk: the row after its sequence's last
  std::vector<DepthActivations> depth;
};

// Depth j's forward (depths 0..j-1 done). A row whose pair lies past its sequence's last reads the last token
// instead; it gets no loss and only its own later depths read it.
void forward_depth(const EagleWeights& w, const train::FeatureData& d, const std::vector<float>& embed,
                   std::span<const EagleChunk> chunks, float noise, uint64_t noise_seed, int j, Activations& f) {
  const EagleConfig& c = w.cfg;
  const int H = c.hidden_size, D = c.head_dim, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size;
  const int C = static_cast<int>(chunks.size());
  const int64_t R = f.begin.back();
  DepthActivations& x = f.depth[j];
  std::vector<int32_t> pos(static_cast<size_t>(R));
  x.xe.resize(R, H);
  if (j == 0)
    x.xf.resize(R, H);
  else
    x.xf = f.depth[j - 1].out;
  for (int ci = 0; ci < C; ++ci)
    for (int t = 0; t < chunks[ci].length; ++t) {
      const int64_t row = f.begin[ci] + t, i = chunks[ci].first + t + j;
      pos[row] = chunks[ci].position + t + j;
      const int64_t next = std::min(i + 1, f.seq_end[ci] - 1);
      x.xe.row(row) = Eigen::Map<const Eigen::RowVectorXf>(embed.data() + static_cast<size_t>(d.tokens[next]) * H, H);
      if (j > 0) continue;
      x.xf.row(row) = Eigen::Map<const Eigen::RowVectorXf>(d.hidden.data() + static_cast<size_t>(i) * H, H);
      if (noise > 0.f) {
        uint64_t state = medusa::seed_stream(noise_seed, static_cast<uint64_t>(i));
        for (int e = 0; e < H; ++e)
          x.xf(row, e) +=
              noise * static_cast<float>(2.0 * (static_cast<double>(splitmix(state) >> 11) * 0x1.0p-53) - 1.0);
      }
    }
  rope_tables(pos, D, c.rope_theta, x.cos, x.sin);

  const ConstMap fc(w.fc_w.data(), H, 2 * H);
  x.u.noalias() = x.xe * fc.leftCols(H).transpose();
  x.u.noalias() += x.xf * fc.rightCols(H).transpose();
  x.u.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(w.fc_b.data(), H);
  x.q.noalias() = x.u * ConstMap(w.wq.data(), Q, H).transpose();
  x.k.noalias() = x.u * ConstMap(w.wk.data(), KV, H).transpose();
  x.v.noalias() = x.u * ConstMap(w.wv.data(), KV, H).transpose();
  rope_apply(x.q, c.n_heads, D, x.cos, x.sin, false);
  rope_apply(x.k, c.n_kv_heads, D, x.cos, x.sin, false);

  x.a.resize(R, Q);
  x.p.resize(static_cast<size_t>(C) * c.n_heads);
  const DepthActivations& d0 = f.depth[0];
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
#pragma omp parallel for schedule(static)
  for (int ci = 0; ci < C; ++ci) {
    const int64_t r0 = f.begin[ci];
    const int T = chunks[ci].length;
    for (int h = 0; h < c.n_heads; ++h) {
      const int kh = h / group;
      RowMatrix& p = x.p[static_cast<size_t>(ci) * c.n_heads + h];
      const auto qh = x.q.block(r0, h * D, T, D);
      if (j == 0) {
        p.noalias() = scale * (qh * d0.k.block(r0, kh * D, T, D).transpose());
      } else {
        p.resize(T, T + j);
        p.leftCols(T).noalias() = scale * (qh * d0.k.block(r0, kh * D, T, D).transpose());
        for (int i = 1; i <= j; ++i)
          for (int t = 0; t < T; ++t)
            p(t, T + i - 1) = scale * qh.row(t).dot(f.depth[i].k.block(r0, kh * D, T, D).row(t));
      }
      for (int t = 0; t < T; ++t) {  // the masked softmax; the masked part is exactly 0
        float mx = p.row(t).head(t + 1).maxCoeff();
        for (int i = 0; i < j; ++i) mx = std::max(mx, p(t, T + i));
        float sum = 0.f;
        for (int e = 0; e <= t; ++e) sum += p(t, e) = std::exp(p(t, e) - mx);
        for (int i = 0; i < j; ++i) sum += p(t, T + i) = std::exp(p(t, T + i) - mx);
        p.row(t).head(t + 1) /= sum;
        p.row(t).segment(t + 1, T - t - 1).setZero();
        for (int i = 0; i < j; ++i) p(t, T + i) /= sum;
      }
      auto ah = x.a.block(r0, h * D, T, D);
      if (j == 0) {
        ah.noalias() = p * d0.v.block(r0, kh * D, T, D);
      } else {
        ah.noalias() = p.leftCols(T) * d0.v.block(r0, kh * D, T, D);
        for (int i = 1; i <= j; ++i)
          for (int t = 0; t < T; ++t) ah.row(t) += p(t, T + i - 1) * f.depth[i].v.block(r0, kh * D, T, D).row(t);
      }
    }
  }
  x.hs = x.u;
  x.hs.noalias() += x.a * ConstMap(w.wo.data(), H, Q).transpose();
  x.rinv.resize(static_cast<size_t>(R));
  x.nh.resize(R, H);
  for (int64_t r = 0; r < R; ++r) {
    x.rinv[r] = 1.f / std::sqrt(x.hs.row(r).squaredNorm() / H + c.rms_eps);
    x.nh.row(r) = x.hs.row(r) * x.rinv[r];
  }
  const RowMatrix n = x.nh * Eigen::Map<const Eigen::VectorXf>(w.post_norm.data(), H).asDiagonal();
  x.g.noalias() = n * ConstMap(w.w_gate.data(), I, H).transpose();
  x.up.noalias() = n * ConstMap(w.w_up.data(), I, H).transpose();
  x.m = x.g.unaryExpr(&silu).cwiseProduct(x.up);
  x.out = x.hs;
  x.out.noalias() += x.m * ConstMap(w.w_down.data(), H, I).transpose();
}

// Depths 0 .. depths - 1 of the chunks' rows.
void forward(const EagleWeights& w, const train::FeatureData& d, const std::vector<float>& embed,
             std::span<const EagleChunk> chunks, float noise, uint64_t noise_seed, int depths, Activations& f) {
  f.begin.assign(1, 0);
  f.seq_end.clear();
  for (const EagleChunk& ch : chunks) {
    f.begin.push_back(f.begin.back() + ch.length);
    f.seq_end.push_back(*std::upper_bound(d.offsets.begin(), d.offsets.end(), ch.first));
  }
  f.depth.assign(static_cast<size_t>(depths), {});
  for (int j = 0; j < depths; ++j) forward_depth(w, d, embed, chunks, noise, noise_seed, j, f);
}

// d_out[j] (depth j's output gradient) -> gradients of every tensor (added into g), depth by depth from the
// deepest: depth j's keys and values get their gradient from the queries of depths >= j, and its input feature's
// gradient (j >= 1) is added into d_out[j - 1]. f from forward().
void backward(const EagleWeights& w, const Activations& f, std::span<const EagleChunk> chunks,
              std::vector<RowMatrix>& d_out, EagleWeights& g) {
  const EagleConfig& c = w.cfg;
  const int H = c.hidden_size, D = c.head_dim, Q = c.q_dim(), KV = c.kv_dim(), I = c.intermediate_size;
  const int64_t R = f.begin.back();
  const int C = static_cast<int>(chunks.size()), J = static_cast<int>(f.depth.size());
  const Eigen::Map<const Eigen::RowVectorXf> post(w.post_norm.data(), H);
  const DepthActivations& d0 = f.depth[0];
  std::vector<RowMatrix> dk(static_cast<size_t>(J)), dv(static_cast<size_t>(J));
  for (int j = 0; j < J; ++j) dk[j] = dv[j] = RowMatrix::Zero(R, KV);

  for (int j = J - 1; j >= 0; --j) {
    const DepthActivations& x = f.depth[j];
    const RowMatrix& dout = d_out[j];
    // out = hs + m Wdown^T; m = silu(gate) * up; gate / up = n W^T; n = nh * post_norm.
    RowMap(g.w_down.data(), H, I).noalias() += dout.transpose() * x.m;
    const RowMatrix dm = dout * ConstMap(w.w_down.data(), H, I);
    RowMatrix dg(R, I), dup(R, I);
    for (int64_t r = 0; r < R; ++r)
      for (int e = 0; e < I; ++e) {
        const float xg = x.g(r, e), s = 1.f / (1.f + std::exp(-xg));
        dup(r, e) = dm(r, e) * xg * s;
        dg(r, e) = dm(r, e) * x.up(r, e) * s * (1.f + xg * (1.f - s));
      }
    const RowMatrix n = x.nh * post.asDiagonal();
    RowMap(g.w_gate.data(), I, H).noalias() += dg.transpose() * n;
    RowMap(g.w_up.data(), I, H).noalias() += dup.transpose() * n;
    RowMatrix dn = dg * ConstMap(w.w_gate.data(), I, H);
    dn.noalias() += dup * ConstMap(w.w_up.data(), I, H);
    Eigen::Map<Eigen::RowVectorXf>(g.post_norm.data(), H) += dn.cwiseProduct(x.nh).colwise().sum();

    // RMSNorm: d hs = r (d nh - nh (d nh . nh) / H), plus the residual.
    RowMatrix dhs = dout;
    for (int64_t r = 0; r < R; ++r) {
      const Eigen::RowVectorXf dnh = dn.row(r).cwiseProduct(post);
      dhs.row(r) += x.rinv[r] * (dnh - x.nh.row(r) * (dnh.dot(x.nh.row(r)) / H));
    }
    // hs = u + a Wo^T.
    RowMap(g.wo.data(), H, Q).noalias() += dhs.transpose() * x.a;
    const RowMatrix da = dhs * ConstMap(w.wo.data(), H, Q);
    RowMatrix du = dhs;

    // Attention per chunk: dV += P^T dA, dS = P .* (dP - rowsum(dP .* P)) with dP = dA V^T, dQ = s dS K,
    // dK += s dS^T Q; the extra columns (depth i's key of the same row) row by row.
    RowMatrix dq(R, Q);
    const int group = c.n_heads / c.n_kv_heads;
    const float scale = 1.f / std::sqrt(static_cast<float>(D));
#pragma omp parallel for schedule(static)
    for (int ci = 0; ci < C; ++ci) {
      const int64_t r0 = f.begin[ci];
      const int T = chunks[ci].length;
      for (int h = 0; h < c.n_heads; ++h) {
        const int kh = h / group;
        const RowMatrix& p = x.p[static_cast<size_t>(ci) * c.n_heads + h];
        const auto dah = da.block(r0, h * D, T, D);
        const auto qh = x.q.block(r0, h * D, T, D);
        RowMatrix ds;
        if (j == 0) {
          dv[0].block(r0, kh * D, T, D).noalias() += p.transpose() * dah;
          ds = dah * d0.v.block(r0, kh * D, T, D).transpose();
        } else {
          dv[0].block(r0, kh * D, T, D).noalias() += p.leftCols(T).transpose() * dah;
          ds.resize(T, T + j);
          ds.leftCols(T).noalias() = dah * d0.v.block(r0, kh * D, T, D).transpose();
          for (int i = 1; i <= j; ++i)
            for (int t = 0; t < T; ++t) {
              dv[i].block(r0, kh * D, T, D).row(t) += p(t, T + i - 1) * dah.row(t);
              ds(t, T + i - 1) = dah.row(t).dot(f.depth[i].v.block(r0, kh * D, T, D).row(t));
            }
        }
        for (int t = 0; t < T; ++t) {
          const float dot = ds.row(t).dot(p.row(t));
          ds.row(t) = scale * p.row(t).cwiseProduct(ds.row(t) - Eigen::RowVectorXf::Constant(T + j, dot));
        }
        if (j == 0) {
          dq.block(r0, h * D, T, D).noalias() = ds * d0.k.block(r0, kh * D, T, D);
          dk[0].block(r0, kh * D, T, D).noalias() += ds.transpose() * qh;
        } else {
          dq.block(r0, h * D, T, D).noalias() = ds.leftCols(T) * d0.k.block(r0, kh * D, T, D);
          dk[0].block(r0, kh * D, T, D).noalias() += ds.leftCols(T).transpose() * qh;
          for (int i = 1; i <= j; ++i)
            for (int t = 0; t < T; ++t) {
              dq.block(r0, h * D, T, D).row(t) += ds(t, T + i - 1) * f.depth[i].k.block(r0, kh * D, T, D).row(t);
              dk[i].block(r0, kh * D, T, D).row(t) += ds(t, T + i - 1) * qh.row(t);
            }
        }
      }
    }
    // Depth j's keys and values have every query's gradient now (depths >= j are done).
    rope_apply(dq, c.n_heads, D, x.cos, x.sin, true);
    rope_apply(dk[j], c.n_kv_heads, D, x.cos, x.sin, true);
    RowMap(g.wq.data(), Q, H).noalias() += dq.transpose() * x.u;
    RowMap(g.wk.data(), KV, H).noalias() += dk[j].transpose() * x.u;
    RowMap(g.wv.data(), KV, H).noalias() += dv[j].transpose() * x.u;
    du.noalias() += dq * ConstMap(w.wq.data(), Q, H);
    du.noalias() += dk[j] * ConstMap(w.wk.data(), KV, H);
    du.noalias() += dv[j] * ConstMap(w.wv.data(), KV, H);

    // u = [xe ; xf] Wfc^T + b; depth j's xf is depth j - 1's output.
    RowMap fc(g.fc_w.data(), H, 2 * H);
    fc.leftCols(H).noalias() += du.transpose() * x.xe;
    fc.rightCols(H).noalias() += du.transpose() * x.xf;
    Eigen::Map<Eigen::RowVectorXf>(g.fc_b.data(), H) += du.colwise().sum();
    if (j > 0) d_out[j - 1].noalias() += du * ConstMap(w.fc_w.data(), H, 2 * H).rightCols(H);
  }
}

// Soft cross-entropy of logits z (n values, in place) against row `label`'s top-k restricted to the readout
// (column, or all ids) and renormalised: returns false (z untouched) when the row has no mass there. Else the
// loss, whether the readout's argmax is the target's argmax, and (grad_scale > 0) z becomes
// grad_scale * (softmax(z) - p).
bool soft_ce(float* z, int n, const train::FeatureData& d, int64_t label, const std::vector<int32_t>& column,
             float grad_scale, double& loss, bool& hit) {
  const int K = d.topk;
  const int32_t* ids = d.topk_ids.data() + label * K;
  const float* probs = d.topk_probs.data() + label * K;
  auto col = [&](int32_t id) { return column.empty() ? id : column[id]; };
  double psum = 0.0, plogit = 0.0;
  for (int j = 0; j < K; ++j)
    if (col(ids[j]) >= 0) psum += probs[j];
  if (!(psum > 0.0)) return false;
  int best = 0;
  for (int j = 1; j < n; ++j)
    if (z[j] > z[best]) best = j;
  hit = col(ids[0]) == best;
  for (int j = 0; j < K; ++j)
    if (const int32_t c = col(ids[j]); c >= 0) plogit += probs[j] / psum * z[c];
  const float zmax = z[best];
  double sum = 0.0;
  for (int j = 0; j < n; ++j) sum += (z[j] = std::exp(z[j] - zmax));
  loss = zmax + std::log(sum) - plogit;
  if (grad_scale > 0.f) {
    const float s = static_cast<float>(1.0 / sum) * grad_scale;
    for (int j = 0; j < n; ++j) z[j] *= s;
    for (int j = 0; j < K; ++j)
      if (const int32_t c = col(ids[j]); c >= 0) z[c] -= static_cast<float>(probs[j] / psum) * grad_scale;
  }
  return true;
}

// Smooth-L1 (beta 1) of out's rows against the features of their label rows (label[r] < 0: no loss): the mean
// over H per row, summed over rows; with grad, adds scale * clamp(out - target, -1, 1) into it.
double smooth_l1(const RowMatrix& out, const train::FeatureData& d, const std::vector<int64_t>& label, RowMatrix* grad,
                 float scale) {
  const int H = d.hidden_size;
  double total = 0.0;
  for (size_t row = 0; row < label.size(); ++row) {
    if (label[row] < 0) continue;
    const float* target = d.hidden.data() + static_cast<size_t>(label[row]) * H;
    double s = 0.0;
    for (int j = 0; j < H; ++j) {
      const float x = out(row, j) - target[j], ax = std::abs(x);
      s += ax < 1.f ? 0.5 * x * x : ax - 0.5;
      if (grad) (*grad)(row, j) += scale * std::clamp(x, -1.f, 1.f);
    }
    total += s / H;
  }
  return total;
}

// The loss of depth 0 (the pairs read with the target's features) and, with ttt_steps > 1, of depths 1 ..
// ttt_steps - 1 (each read with the layer's own previous output), depth j weighted by ttt_decay^j: each depth's
// w_reg * mean Smooth-L1 + w_ce * mean soft cross-entropy over its rows whose label row (pair + 1) lies in the
// sequence. The returned reg / ce / hits are depth 0's.
EagleLossValue loss_impl(const EagleWeights& w, const train::FeatureData& d, const std::vector<float>& embed,
                         const LmRows& lm, std::span<const EagleChunk> chunks, const EagleLossOptions& opt,
                         EagleWeights* grad, std::vector<float>* out_copy) {
  const int H = d.hidden_size, J = opt.ttt_steps;
  SPECDEC_CHECK(J >= 1, "ttt_steps >= 1 (depths trained), got ", J);
  Activations f;
  forward(w, d, embed, chunks, opt.noise, opt.noise_seed, J, f);
  const int64_t R = f.begin.back();
  EagleLossValue v;
  v.rows = R;
  if (out_copy) out_copy->assign(f.depth[0].out.data(), f.depth[0].out.data() + f.depth[0].out.size());
  if (R == 0) return v;

  std::vector<RowMatrix> d_out(grad ? J : 0);
  double weight = 1.0;
  for (int j = 0; j < J; ++j, weight *= opt.ttt_decay) {
    const RowMatrix& out = f.depth[j].out;
    std::vector<int64_t> label(static_cast<size_t>(R), -1);
    int64_t n_rows = 0;
    for (size_t ci = 0; ci < chunks.size(); ++ci)
      for (int t = 0; t < chunks[ci].length; ++t)
        if (const int64_t l = chunks[ci].first + t + j + 1; l < f.seq_end[ci]) label[f.begin[ci] + t] = l, ++n_rows;
    // Which rows have label mass in the readout: the cross-entropy's mean is over them.
    RowMatrix z = out * ConstMap(lm.w, lm.rows, H).transpose();
    std::vector<uint8_t> has(static_cast<size_t>(R), 0), hit(static_cast<size_t>(R), 0);
    std::vector<double> ce(static_cast<size_t>(R), 0.0);
    int64_t n_ce = 0;
    for (int64_t r = 0; r < R; ++r) {  // the mass test only (cheap), so the gradient scale is known up front
      if (label[r] < 0) continue;
      const int32_t* ids = d.topk_ids.data() + label[r] * d.topk;
      for (int e = 0; e < d.topk && !has[r]; ++e)
        has[r] = (lm.column.empty() || lm.column[ids[e]] >= 0) && d.topk_probs[label[r] * d.topk + e] > 0.f;
      n_ce += has[r];
    }
    const float wj = static_cast<float>(weight);
    const float ce_scale = grad && n_ce > 0 ? wj * opt.w_ce / static_cast<float>(n_ce) : 0.f;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < R; ++r) {
      if (!has[r]) {
        if (grad) z.row(r).setZero();
        continue;
      }
      bool h = false;
      soft_ce(z.row(r).data(), lm.rows, d, label[r], lm.column, ce_scale, ce[r], h);
      hit[r] = h;
    }
    if (grad && ce_scale > 0.f)
      d_out[j].noalias() = z * ConstMap(lm.w, lm.rows, H);
    else if (grad)
      d_out[j] = RowMatrix::Zero(R, H);  // z holds no gradient without a cross-entropy term
    const double reg = n_rows > 0 ? smooth_l1(out, d, label, grad ? &d_out[j] : nullptr,
                                              wj * opt.w_reg / static_cast<float>(H * n_rows)) /
                                        static_cast<double>(n_rows)
                                  : 0.0;
    double ce_sum = 0.0;
    int64_t hits = 0;
    for (int64_t r = 0; r < R; ++r) ce_sum += ce[r], hits += hit[r];
    const double ce_mean = n_ce > 0 ? ce_sum / static_cast<double>(n_ce) : 0.0;
    if (j == 0) {
      v.hits = hits;
      v.ce_rows = n_ce;
      v.reg = reg;
      v.ce = ce_mean;
    }
    v.loss += weight * (opt.w_reg * reg + opt.w_ce * ce_mean);
  }
  if (grad) backward(w, f, chunks, d_out, *grad);
  return v;
}

void check_inputs(const EagleWeights& w, const train::FeatureData& d, const std::vector<float>& embed,
                  const std::vector<float>& lm_head) {
  SPECDEC_CHECK(!w.cfg.eagle3(),
                "an EAGLE-1 layer (the trainer and its metrics read the final-norm feature), got an EAGLE-3 one");
  medusa::check_feature_data(d);
  const size_t VH = static_cast<size_t>(d.vocab_size) * d.hidden_size;
  SPECDEC_CHECK(w.cfg.hidden_size == d.hidden_size && w.cfg.vocab_size == d.vocab_size,
                "an EAGLE layer of hidden "
                "size ",
                w.cfg.hidden_size, " and vocabulary ", w.cfg.vocab_size, " for features of ", d.hidden_size, " and ",
                d.vocab_size);
  SPECDEC_CHECK(embed.size() == VH && lm_head.size() == VH, "an embedding and an LM head of V x H = ", d.vocab_size,
                " x ", d.hidden_size, " floats, got ", embed.size(), " and ", lm_head.size());
}

// Running sums of an epoch's steps (what a checkpoint keeps of them).
struct Running {
  int64_t rows = 0, ce_rows = 0, hits = 0;
  double reg_sum = 0.0, ce_sum = 0.0;
  void add(const EagleLossValue& v) {
    rows += v.rows;
    ce_rows += v.ce_rows;
    hits += v.hits;
    reg_sum += v.reg * static_cast<double>(v.rows);
    ce_sum += v.ce * static_cast<double>(v.ce_rows);
  }
  EagleMetrics metrics(float w_reg, float w_ce) const {
    EagleMetrics m;
    m.rows = rows;
    m.reg = rows > 0 ? reg_sum / static_cast<double>(rows) : 0.0;
    m.ce = ce_rows > 0 ? ce_sum / static_cast<double>(ce_rows) : 0.0;
    m.loss = w_reg * m.reg + w_ce * m.ce;
    m.acc[0] = ce_rows > 0 ? static_cast<double>(hits) / static_cast<double>(ce_rows) : 0.0;
    m.acc_rows[0] = ce_rows;
    return m;
  }
};

json running_json(const Running& r) {
  return {{"rows", r.rows}, {"ce_rows", r.ce_rows}, {"hits", r.hits}, {"reg_sum", r.reg_sum}, {"ce_sum", r.ce_sum}};
}
Running running_from_json(const json& j) {
  Running r;
  r.rows = j.at("rows").get<int64_t>();
  r.ce_rows = j.at("ce_rows").get<int64_t>();
  r.hits = j.at("hits").get<int64_t>();
  r.reg_sum = j.at("reg_sum").get<double>();
  r.ce_sum = j.at("ce_sum").get<double>();
  return r;
}
json metrics_json(const EagleMetrics& m) {
  return {{"rows", m.rows},           {"reg", m.reg},           {"ce", m.ce},
          {"loss", m.loss},           {"acc", m.acc},           {"acc_rows", m.acc_rows},
          {"chain", m.chain},         {"resp_acc", m.resp_acc}, {"resp_chain", m.resp_chain},
          {"resp_rows", m.resp_rows}, {"walk", m.walk},         {"walk_rows", m.walk_rows}};
}
EagleMetrics metrics_from_json(const json& j) {
  EagleMetrics m;
  m.rows = j.at("rows").get<int64_t>();
  m.reg = j.at("reg").get<double>();
  m.ce = j.at("ce").get<double>();
  m.loss = j.at("loss").get<double>();
  m.acc = j.at("acc").get<std::array<double, kEagleDepths>>();
  m.acc_rows = j.at("acc_rows").get<std::array<int64_t, kEagleDepths>>();
  // Figures added later: a checkpoint written before them reads as zeros.
  m.chain = j.value("chain", m.chain);
  m.resp_acc = j.value("resp_acc", m.resp_acc);
  m.resp_chain = j.value("resp_chain", m.resp_chain);
  m.resp_rows = j.value("resp_rows", m.resp_rows);
  m.walk = j.value("walk", m.walk);
  m.walk_rows = j.value("walk_rows", m.walk_rows);
  return m;
}
json epoch_json(const EagleEpochReport& e) {
  return {{"epoch", e.epoch}, {"step", e.step}, {"train", metrics_json(e.train)}, {"heldout", metrics_json(e.heldout)}};
}
EagleEpochReport epoch_from_json(const json& j) {
  EagleEpochReport e;
  e.epoch = j.at("epoch").get<int>();
  e.step = j.at("step").get<int64_t>();
  e.train = metrics_from_json(j.at("train"));
  e.heldout = metrics_from_json(j.at("heldout"));
  return e;
}

}  // namespace

std::vector<EagleChunk> eagle_chunks(const train::FeatureData& data, std::span<const int> sequences, int max_len) {
  SPECDEC_CHECK(max_len >= 1, "max_len >= 1 pairs per chunk, got ", max_len);
  std::vector<EagleChunk> out;
  for (int s : sequences) {
    SPECDEC_CHECK(s >= 0 && s < data.n_sequences(), "a sequence index in [0, ", data.n_sequences(), "), got ", s);
    const int64_t b = data.offsets[s], pairs = data.offsets[s + 1] - b - 1;
    for (int64_t i = 0; i < pairs; i += max_len)
      out.push_back({b + i, static_cast<int32_t>(std::min<int64_t>(max_len, pairs - i)), static_cast<int32_t>(i + 1)});
  }
  return out;
}

std::vector<float> embedding_f32(const LoadedModel& model) {
  return train::weight_f32(model, model.weights.tok_embeddings, "a token embedding");
}

EagleLossValue eagle_loss(const EagleWeights& w, const train::FeatureData& data, const std::vector<float>& embed,
                          const std::vector<float>& lm_head, std::span<const EagleChunk> chunks,
                          const EagleLossOptions& opt, EagleWeights* grad, std::vector<float>* out) {
  check_inputs(w, data, embed, lm_head);
  const LmRows lm = lm_rows(lm_head, data.vocab_size, data.hidden_size, opt.train_ids);
  return loss_impl(w, data, embed, lm, chunks, opt, grad, out);
}

EagleMetrics evaluate_eagle(const EagleWeights& w, const train::FeatureData& data, const std::vector<float>& embed,
                            const std::vector<float>& lm_head, std::span<const EagleChunk> chunks, float w_reg,
                            float w_ce) {
  check_inputs(w, data, embed, lm_head);
  const int H = data.hidden_size, V = data.vocab_size, K = data.topk;
  const LmRows readout = lm_rows(lm_head, V, H, w.draft_ids);
  const ConstMap lm_r(readout.w, readout.rows, H);
  EagleMetrics m;
  std::array<int64_t, kEagleDepths> hits{}, chain_hits{}, resp_hits{}, resp_chain_hits{}, walk_hits{};
  double reg_sum = 0.0, ce_sum = 0.0;
  int64_t ce_rows = 0;
  for (const EagleChunk& ch : chunks) {
    const int T = ch.length;
    const auto seq = std::upper_bound(data.offsets.begin(), data.offsets.end(), ch.first);
    const int64_t seq_end = *seq;
    // The label row of the first response token: the prompt's last row.
    const int64_t first_response_label = seq[-1] + data.prompt_len[seq - data.offsets.begin() - 1] - 1;
    std::vector<float> emb(static_cast<size_t>(T) * H), out(emb.size()), prev;
    std::vector<int32_t> pos(T);
    std::vector<uint8_t> chain_alive(T, 1);        // start t's argmax was right at every depth so far
    std::vector<int> accepted(T, 0), reach(T, 0);  // start t's leading hits, its deepest depth with a label
    EagleCache cache;
    for (int d = 1; d <= kEagleDepths; ++d) {
      // Depth d at start t: pair first + t + d - 1 (token first + t + d) with, past depth 1, the feature the layer
      // predicted at depth d - 1; it sees the true pairs up to t, its own chain's earlier pairs and itself.
      for (int t = 0; t < T; ++t) {
        const int64_t tok = std::min<int64_t>(ch.first + t + d, seq_end - 1);
        std::copy_n(embed.data() + static_cast<size_t>(data.tokens[tok]) * H, H,
                    emb.data() + static_cast<size_t>(t) * H);
        pos[t] = ch.position + t + d - 1;
      }
      std::vector<uint8_t> mask;
      if (d > 1) {
        const int S = cache.n + T;
        mask.assign(static_cast<size_t>(T) * S, 0);
        for (int t = 0; t < T; ++t) {
          std::fill_n(mask.begin() + static_cast<size_t>(t) * S, t + 1, 1);
          for (int j = 1; j < d; ++j) mask[static_cast<size_t>(t) * S + j * T + t] = 1;
        }
      }
      const std::span<const float> feat =
          d == 1 ? std::span<const float>(data.hidden.data() + static_cast<size_t>(ch.first) * H, emb.size())
                 : std::span<const float>(prev);
      eagle_forward(w, cache, emb, feat, pos, mask, out);

      const ConstMap o(out.data(), T, H);
      RowMatrix z = o * lm_r.transpose();
      if (d == 1) {  // the loss parts
        for (int t = 0; t < T; ++t) {
          const float* target = data.hidden.data() + static_cast<size_t>(ch.first + t + 1) * H;
          double s = 0.0;
          for (int j = 0; j < H; ++j) {
            const double x = static_cast<double>(o(t, j)) - target[j], ax = std::abs(x);
            s += ax < 1.0 ? 0.5 * x * x : ax - 0.5;
          }
          reg_sum += s / H;
        }
        RowMatrix zc = z;
        std::vector<double> ce(T, 0.0);
        std::vector<uint8_t> has(T, 0);
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; ++t) {
          bool unused = false;
          has[t] = soft_ce(zc.row(t).data(), readout.rows, data, ch.first + t + 1, readout.column, 0.f, ce[t], unused);
        }
        for (int t = 0; t < T; ++t) ce_sum += ce[t], ce_rows += has[t];
        m.rows += T;
      }
      for (int t = 0; t < T; ++t) {
        const int64_t label = ch.first + t + d;  // the target's row for pair first + t + d - 1
        if (label >= seq_end) continue;
        Eigen::Index best = 0;
        z.row(t).maxCoeff(&best);
        const int32_t id = w.draft_ids.empty() ? static_cast<int32_t>(best) : w.draft_ids[best];
        const bool hit = id == data.topk_ids[label * K];
        chain_alive[t] &= hit;
        reach[t] = d;
        if (chain_alive[t]) accepted[t] = d;
        hits[d - 1] += hit;
        chain_hits[d - 1] += chain_alive[t];
        ++m.acc_rows[d - 1];
        if (ch.first + t + 1 >= first_response_label) {
          resp_hits[d - 1] += hit;
          resp_chain_hits[d - 1] += chain_alive[t];
          ++m.resp_rows[d - 1];
        }
      }
      prev = out;
    }
    // A greedy chain decoding the chunk's response: the step at start t accepts accepted[t] drafts plus the
    // target's token, so the next step starts accepted[t] + 1 on (a response cut into chunks restarts).
    for (int t = static_cast<int>(std::max<int64_t>(0, first_response_label - ch.first - 1)); t < T;
         t += accepted[t] + 1)
      for (int d = 0; d < reach[t]; ++d) ++m.walk_rows[d], walk_hits[d] += accepted[t] > d;
  }
  m.reg = m.rows > 0 ? reg_sum / static_cast<double>(m.rows) : 0.0;
  m.ce = ce_rows > 0 ? ce_sum / static_cast<double>(ce_rows) : 0.0;
  m.loss = w_reg * m.reg + w_ce * m.ce;
  const auto ratio = [](int64_t n, int64_t of) {
    return of > 0 ? static_cast<double>(n) / static_cast<double>(of) : 0.0;
  };
  for (int d = 0; d < kEagleDepths; ++d) {
    m.acc[d] = ratio(hits[d], m.acc_rows[d]);
    m.chain[d] = ratio(chain_hits[d], m.acc_rows[d]);
    m.resp_acc[d] = ratio(resp_hits[d], m.resp_rows[d]);
    m.resp_chain[d] = ratio(resp_chain_hits[d], m.resp_rows[d]);
    m.walk[d] = ratio(walk_hits[d], m.walk_rows[d]);
  }
  return m;
}

EagleTrainResult train_eagle(const train::FeatureData& data, const std::vector<float>& embed,
                             const std::vector<float>& lm_head, const EagleConfig& layer, const EagleTrainConfig& cfg,
                             const EagleTrainCallbacks& callbacks, bool resume) {
  const auto t0 = std::chrono::steady_clock::now();
  SPECDEC_CHECK(cfg.batch >= 1, "batch >= 1 chunks, got ", cfg.batch);
  SPECDEC_CHECK(cfg.max_len >= 1, "max_len >= 1 pairs, got ", cfg.max_len);
  train::check_schedule(cfg.epochs, cfg.steps, cfg.lr, cfg.min_lr, cfg.warmup);
  SPECDEC_CHECK(cfg.w_reg >= 0.f && cfg.w_ce >= 0.f && cfg.w_reg + cfg.w_ce > 0.f, "w_reg, w_ce >= 0, not both 0, got ",
                cfg.w_reg, " and ", cfg.w_ce);
  SPECDEC_CHECK(cfg.noise >= 0.f, "noise >= 0, got ", cfg.noise);
  SPECDEC_CHECK(cfg.ttt_steps >= 1 && cfg.ttt_steps <= 16, "ttt_steps in 1..16 (depths trained), got ", cfg.ttt_steps);
  SPECDEC_CHECK(cfg.ttt_decay > 0.f && cfg.ttt_decay <= 1.f,
                "ttt_decay in (0, 1] (depth j's loss weight ttt_decay^j), got ", cfg.ttt_decay);
  train::check_split_and_checkpoints(cfg.heldout_fraction, cfg.checkpoint_every, cfg.checkpoint_path, resume);
  train::check_vocab_option("train_vocab", cfg.train_vocab, data);
  train::check_vocab_option("draft_vocab", cfg.draft_vocab, data);
  EagleWeights w = init_eagle_weights(layer, medusa::seed_stream(cfg.seed, 2), cfg.init_scale);
  check_inputs(w, data, embed, lm_head);
  const int threads = train::set_threads(cfg.threads);

  // The held-out split: whole sequences, chosen by the seed.
  const int S = data.n_sequences();
  const std::vector<uint8_t> held = medusa::heldout_sequences(S, cfg.heldout_fraction, cfg.seed);
  const int n_held = static_cast<int>(std::count(held.begin(), held.end(), 1));
  std::vector<int> train_seqs, held_seqs;
  for (int s = 0; s < S; ++s) (held[s] ? held_seqs : train_seqs).push_back(s);
  const std::vector<EagleChunk> train_chunks = eagle_chunks(data, train_seqs, cfg.max_len);
  const std::vector<EagleChunk> held_chunks = eagle_chunks(data, held_seqs, cfg.max_len);
  std::vector<int64_t> train_pairs;  // the pairs' feature rows (their labels are the next rows)
  for (const EagleChunk& c : train_chunks)
    for (int t = 0; t < c.length; ++t) train_pairs.push_back(c.first + t);
  SPECDEC_CHECK(!train_pairs.empty(), "training pairs, got none (", data.n_rows(), " rows in ", S, " sequences, ",
                n_held, " held out)");
  int64_t n_held_pairs = 0;
  for (const EagleChunk& c : held_chunks) n_held_pairs += c.length;

  medusa::TrainVocabulary vocab;
  if (cfg.train_vocab > 0) vocab = medusa::select_train_vocabulary(data, train_pairs, 1, false, cfg.train_vocab);
  if (cfg.draft_vocab > 0)
    w.draft_ids = cfg.draft_vocab == cfg.train_vocab
                      ? vocab.ids
                      : medusa::select_train_vocabulary(data, train_pairs, 1, false, cfg.draft_vocab).ids;
  const LmRows lm = lm_rows(lm_head, data.vocab_size, data.hidden_size, vocab.ids);

  const int64_t C = static_cast<int64_t>(train_chunks.size()), B = cfg.batch;
  const auto [steps_per_epoch, total_steps, n_epochs] = train::plan_steps(C, B, cfg.epochs, cfg.steps);

  EagleWeights grad = w;
  std::vector<train::ParamSpan> params;
  {
    const auto values = tensors_of(w), grads = tensors_of(grad);
    for (int i = 0; i < kTensors; ++i)
      params.push_back({values[i]->data(), grads[i]->data(), values[i]->size(), kDecay[i]});
  }
  train::AdamWConfig ac;
  ac.weight_decay = cfg.weight_decay;
  train::AdamW adam(params, ac);
  const train::LrSchedule schedule{cfg.lr, cfg.min_lr, cfg.warmup, total_steps};
  auto stamp = [&](EagleEpochReport& rep) {
    rep.train_vocab = cfg.train_vocab;
    rep.train_vocab_coverage = vocab.coverage;
  };

  json fingerprint = train::common_fingerprint(cfg, total_steps, threads, data);
  fingerprint.update({{"max_len", cfg.max_len},
                      {"w_reg", cfg.w_reg},
                      {"w_ce", cfg.w_ce},
                      {"noise", cfg.noise},
                      {"draft_vocab", cfg.draft_vocab},
                      {"ttt_steps", cfg.ttt_steps},
                      {"ttt_decay", cfg.ttt_decay}});
  EagleTrainResult result;
  int64_t step = 0;
  Running running;
  if (resume) {
    const auto [file, meta] = train::open_checkpoint(cfg.checkpoint_path, "an EAGLE");
    try {
      const json ck = json::parse(meta);
      const json& written = ck.at("fingerprint");
      for (auto it = fingerprint.begin(); it != fingerprint.end(); ++it)
        SPECDEC_CHECK(written.contains(it.key()) && written.at(it.key()) == it.value(), cfg.checkpoint_path,
                      ": written by a run with ", it.key(), " = ",
                      written.contains(it.key()) ? written.at(it.key()).dump() : "(none)", ", this run has ",
                      it.value().dump());
      step = ck.at("step").get<int64_t>();
      running = running_from_json(ck.at("running"));
      for (const auto& e : ck.at("epochs")) {
        result.epochs.push_back(epoch_from_json(e));
        stamp(result.epochs.back());
      }
    } catch (const json::exception& e) {
      SPECDEC_FAIL(cfg.checkpoint_path, ": malformed checkpoint metadata (", e.what(), ")");
    }
    train::AdamWState st;
    st.step = step;
    const auto values = tensors_of(w);
    for (int i = 0; i < kTensors; ++i) {
      const auto n = static_cast<int64_t>(values[i]->size());
      const std::vector<float> v = medusa::read_safetensors_f32(*file, "param." + std::to_string(i), {n});
      std::copy(v.begin(), v.end(), values[i]->begin());  // the spans point into these vectors
      st.m.push_back(medusa::read_safetensors_f32(*file, "optim.m." + std::to_string(i), {n}));
      st.v.push_back(medusa::read_safetensors_f32(*file, "optim.v." + std::to_string(i), {n}));
    }
    adam.load_state(std::move(st));
  }
  auto write_checkpoint = [&]() {
    std::vector<medusa::TensorToWrite> tensors;
    const auto values = tensors_of(w);
    for (int i = 0; i < kTensors; ++i) {
      const auto n = static_cast<int64_t>(values[i]->size());
      tensors.push_back({"param." + std::to_string(i), {n}, values[i]->data()});
      tensors.push_back({"optim.m." + std::to_string(i), {n}, adam.state().m[i].data()});
      tensors.push_back({"optim.v." + std::to_string(i), {n}, adam.state().v[i].data()});
    }
    json eps = json::array();
    for (const auto& e : result.epochs) eps.push_back(epoch_json(e));
    // The chunk order of an epoch and a step's noise are functions of (seed, epoch / step): the step is the whole
    // random state.
    const json ck = {{"step", step}, {"fingerprint", fingerprint}, {"running", running_json(running)}, {"epochs", eps}};
    medusa::write_safetensors_f32(cfg.checkpoint_path, tensors, {{"specdec_checkpoint", ck.dump()}});
    if (callbacks.on_checkpoint) callbacks.on_checkpoint(cfg.checkpoint_path, step);
  };

  if (!resume) {  // epoch 0: the initial layer, the baseline
    EagleEpochReport rep;
    stamp(rep);
    rep.heldout = evaluate_eagle(w, data, embed, lm_head, held_chunks, cfg.w_reg, cfg.w_ce);
    result.epochs.push_back(rep);
    if (callbacks.on_epoch) callbacks.on_epoch(rep);
  }
  EagleLossOptions opt;
  opt.w_reg = cfg.w_reg;
  opt.w_ce = cfg.w_ce;
  opt.noise = cfg.noise;
  opt.ttt_steps = cfg.ttt_steps;
  opt.ttt_decay = cfg.ttt_decay;
  std::vector<int64_t> order;
  int64_t order_epoch = -1;
  std::vector<EagleChunk> batch;
  while (step < total_steps) {
    const int64_t epoch = step / steps_per_epoch;
    if (epoch != order_epoch) {
      order.resize(static_cast<size_t>(C));
      for (int64_t i = 0; i < C; ++i) order[i] = i;
      medusa::shuffle_indices(order, medusa::seed_stream(cfg.seed, 100 + static_cast<uint64_t>(epoch)));
      order_epoch = epoch;
    }
    const int64_t begin = (step % steps_per_epoch) * B;
    batch.clear();
    for (int64_t i = begin; i < std::min(C, begin + B); ++i) batch.push_back(train_chunks[order[i]]);

    const auto step_start = std::chrono::steady_clock::now();
    adam.zero_grad();
    opt.noise_seed = medusa::seed_stream(cfg.seed, 1'000'000 + static_cast<uint64_t>(step));
    const EagleLossValue v = loss_impl(w, data, embed, lm, batch, opt, &grad, nullptr);
    running.add(v);
    train::clip_grad_norm(params, cfg.clip);
    const float lr = schedule.at(step);
    adam.step(lr);
    ++step;
    result.rows_stepped += v.rows;
    result.step_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();

    if (step % steps_per_epoch == 0 || step == total_steps) {
      EagleEpochReport rep;
      rep.epoch = static_cast<int>(epoch) + 1;
      rep.step = step;
      stamp(rep);
      rep.train = running.metrics(cfg.w_reg, cfg.w_ce);
      running = Running{};
      rep.heldout = evaluate_eagle(w, data, embed, lm_head, held_chunks, cfg.w_reg, cfg.w_ce);
      result.epochs.push_back(rep);
      if (callbacks.on_epoch) callbacks.on_epoch(rep);
    }
    if (cfg.checkpoint_every > 0 && step % cfg.checkpoint_every == 0 && step < total_steps) write_checkpoint();
    if (callbacks.on_step) callbacks.on_step(step, total_steps, v.rows, v.loss, lr);
  }

  result.steps = step;
  result.train_rows = static_cast<int64_t>(train_pairs.size());
  result.heldout_rows = n_held_pairs;
  result.wall_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  json history = json::array();
  for (const auto& e : result.epochs) history.push_back(epoch_json(e));
  const EagleEpochReport& last = result.epochs.back();
  json meta = train::common_metadata("specdec.eagle.v1", cfg, data, result, n_held, vocab.coverage, n_epochs, threads,
                                     std::move(history));
  meta.update({{"intermediate_size", layer.intermediate_size},
               {"draft_vocab", cfg.draft_vocab},
               {"max_len", cfg.max_len},
               {"w_reg", cfg.w_reg},
               {"w_ce", cfg.w_ce},
               {"noise", cfg.noise},
               {"ttt_steps", cfg.ttt_steps},
               {"ttt_decay", cfg.ttt_decay},
               {"final_train", metrics_json(last.train)},
               {"final_heldout", metrics_json(last.heldout)},
               {"accuracy_by_depth", last.heldout.acc}});
  w.metadata_json = meta.dump();
  result.weights = std::move(w);
  return result;
}

}  // namespace specdec::eagle
