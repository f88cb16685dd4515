// The EAGLE draft layer (eagle.h): its initialisation, its safetensors files (specdec's layout written, EAGLE-1's
// and EAGLE-3's d2t read) and its forward over a block of pairs with its own KV cache, in f32 with Eigen. The
// trainer (train_eagle.cpp) has its own batched forward with saved activations; its tests check the two agree.
#include "drafters/eagle/eagle.h"

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/model/safetensors.h"
#include "drafters/medusa/heads.h"

namespace specdec::eagle {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMatrix>;

const char* const kFcW = "fc.weight";
const char* const kFcB = "fc.bias";
const char* const kQ = "layers.0.self_attn.q_proj.weight";
const char* const kK = "layers.0.self_attn.k_proj.weight";
const char* const kV = "layers.0.self_attn.v_proj.weight";
const char* const kO = "layers.0.self_attn.o_proj.weight";
const char* const kGate = "layers.0.mlp.gate_proj.weight";
const char* const kUp = "layers.0.mlp.up_proj.weight";
const char* const kDown = "layers.0.mlp.down_proj.weight";
const char* const kPostNorm = "layers.0.post_attention_layernorm.weight";
const char* const kD2t = "d2t";

// N(0, 1) from mt19937_64 by Box-Muller written out: std's distributions differ between standard libraries,
// mt19937_64's raw output does not, so a seed means the same weights everywhere.
struct Gaussian {
  std::mt19937_64 rng;
  double next() {
    const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;          // [0, 1)
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  std::vector<float> fill(size_t n, float scale) {
    std::vector<float> v(n);
    for (float& x : v) x = static_cast<float>(scale * next());
    return v;
  }
};

void check_config(const EagleConfig& c) {
  SPECDEC_CHECK(c.hidden_size > 0 && c.n_heads > 0 && c.n_kv_heads > 0 && c.head_dim > 0 && c.intermediate_size > 0 &&
                    c.vocab_size > 0,
                "an EAGLE layer config with positive hidden_size, n_heads, n_kv_heads, head_dim, intermediate_size, "
                "vocab_size, got ",
                c.hidden_size, ", ", c.n_heads, ", ", c.n_kv_heads, ", ", c.head_dim, ", ", c.intermediate_size, ", ",
                c.vocab_size);
  SPECDEC_CHECK(c.n_heads % c.n_kv_heads == 0 && c.head_dim % 2 == 0,
                "an EAGLE layer with n_heads a multiple of n_kv_heads and an even head_dim, got ", c.n_heads, ", ",
                c.n_kv_heads, ", ", c.head_dim);
}

// RoPE in the rotate_half convention on one head (D values) at position pos: dimension i pairs with i + D/2 at
// the angle pos * theta^(-2i/D). The angle is taken in double so that long positions keep their precision.
void rope_rotate_half(float* x, int D, int pos, float theta) {
  const int half = D / 2;
  for (int i = 0; i < half; ++i) {
    const double angle = pos * std::pow(static_cast<double>(theta), -2.0 * i / D);
    const float c = static_cast<float>(std::cos(angle)), s = static_cast<float>(std::sin(angle));
    const float a = x[i], b = x[i + half];
    x[i] = a * c - b * s;
    x[i + half] = b * c + a * s;
  }
}

}  // namespace

EagleConfig EagleConfig::of_target(const ModelConfig& target) {
  EagleConfig c;
  c.hidden_size = target.dim;
  c.n_heads = target.n_heads;
  c.n_kv_heads = target.n_kv_heads;
  c.head_dim = target.head_dim > 0 ? target.head_dim : (target.n_heads > 0 ? target.dim / target.n_heads : 0);
  c.intermediate_size = target.hidden_dim;
  c.vocab_size = target.vocab_size;
  c.rope_theta = target.rope_theta;
  c.rms_eps = target.rms_eps;
  return c;
}

EagleWeights init_eagle_weights(const EagleConfig& cfg, uint64_t seed, float init_scale) {
  check_config(cfg);
  SPECDEC_CHECK(init_scale >= 0.f, "EAGLE init_scale >= 0, got ", init_scale);
  const size_t H = cfg.hidden_size, I = cfg.intermediate_size, Q = cfg.q_dim(), KV = cfg.kv_dim();
  Gaussian g{std::mt19937_64(seed)};
  EagleWeights w;
  w.cfg = cfg;
  w.fc_w = g.fill(H * 2 * H, init_scale);
  for (size_t i = 0; i < H; ++i) w.fc_w[i * 2 * H + H + i] += 1.f;  // u starts near f
  w.fc_b.assign(H, 0.f);
  w.wq = g.fill(Q * H, init_scale);
  w.wk = g.fill(KV * H, init_scale);
  w.wv = g.fill(KV * H, init_scale);
  w.wo = g.fill(H * Q, init_scale);
  w.post_norm.assign(H, 1.f);
  w.w_gate = g.fill(I * H, init_scale);
  w.w_up = g.fill(I * H, init_scale);
  w.w_down = g.fill(H * I, init_scale);
  return w;
}

// ---- files ------------------------------------------------------------------------------------------------

void save_eagle_weights(const EagleWeights& w, const std::string& path) {
  const EagleConfig& c = w.cfg;
  check_config(c);
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim();
  const struct {
    const char* name;
    std::vector<int64_t> shape;
    const std::vector<float>& values;
  } parts[] = {{kFcW, {H, 2 * H}, w.fc_w},   {kFcB, {H}, w.fc_b},   {kQ, {Q, H}, w.wq},
               {kK, {KV, H}, w.wk},          {kV, {KV, H}, w.wv},   {kO, {H, Q}, w.wo},
               {kGate, {I, H}, w.w_gate},    {kUp, {I, H}, w.w_up}, {kDown, {H, I}, w.w_down},
               {kPostNorm, {H}, w.post_norm}};
  std::vector<medusa::TensorToWrite> tensors;
  for (const auto& p : parts) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    SPECDEC_CHECK(p.values.size() == static_cast<size_t>(n), path, ": EAGLE tensor '", p.name, "' with ", n,
                  " values, got ", p.values.size());
    tensors.push_back({p.name, p.shape, p.values.data()});
  }
  std::vector<int64_t> d2t(w.draft_ids.size());
  for (size_t d = 0; d < d2t.size(); ++d) {
    SPECDEC_CHECK(
        w.draft_ids[d] >= 0 && w.draft_ids[d] < c.vocab_size && (d == 0 || w.draft_ids[d] > w.draft_ids[d - 1]), path,
        ": draft_ids ascending, distinct and < ", c.vocab_size, ", got ", w.draft_ids[d], " at ", d);
    d2t[d] = static_cast<int64_t>(w.draft_ids[d]) - static_cast<int64_t>(d);
  }
  if (!d2t.empty()) {
    medusa::TensorToWrite t{kD2t, {static_cast<int64_t>(d2t.size())}, nullptr};
    t.data_i64 = d2t.data();
    tensors.push_back(t);
  }
  std::map<std::string, std::string> metadata;
  if (!w.metadata_json.empty()) metadata["specdec"] = w.metadata_json;
  medusa::write_safetensors_f32(path, tensors, metadata);
}

EagleWeights load_eagle_weights(const std::string& path, const ModelConfig& target,
                                const std::string& expected_target_sha256) {
  const std::shared_ptr<SafetensorsFile> file = SafetensorsFile::open(path);
  static const char* const kKnown[] = {kFcW, kFcB, kQ, kK, kV, kO, kGate, kUp, kDown, kPostNorm, kD2t,
                                       // EAGLE-1's frozen copy of the target's embedding; EAGLE-3's target->draft map
                                       "embed_tokens.weight", "t2d"};
  for (const SafetensorsTensor& t : file->tensors())
    SPECDEC_CHECK(std::any_of(std::begin(kKnown), std::end(kKnown), [&](const char* k) { return t.name == k; }), path,
                  ": unexpected tensor '", t.name, "' in an EAGLE layer file (expected fc.*, layers.0.* and d2t)");

  EagleWeights w;
  EagleConfig& c = w.cfg = EagleConfig::of_target(target);
  check_config(c);
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab_size;
  const SafetensorsTensor* fc = file->find(kFcW);
  SPECDEC_CHECK(fc != nullptr, path, ": tensor '", kFcW, "' is missing (not an EAGLE layer file?)");
  SPECDEC_CHECK(fc->shape.size() == 2 && fc->shape[0] == H && fc->shape[1] == 2 * H, path,
                ": the EAGLE layer has hidden size ", fc->shape.empty() ? 0 : fc->shape[0], " (tensor '", kFcW, "' of ",
                fc->shape.size(), " dims, expected [", H, ", ", 2 * H, "]), the target's is ", H);
  w.fc_w = medusa::read_safetensors_f32(*file, kFcW, {H, 2 * H});
  w.fc_b = medusa::read_safetensors_f32(*file, kFcB, {H});
  w.wq = medusa::read_safetensors_f32(*file, kQ, {Q, H});
  w.wk = medusa::read_safetensors_f32(*file, kK, {KV, H});
  w.wv = medusa::read_safetensors_f32(*file, kV, {KV, H});
  w.wo = medusa::read_safetensors_f32(*file, kO, {H, Q});
  w.w_gate = medusa::read_safetensors_f32(*file, kGate, {I, H});
  w.w_up = medusa::read_safetensors_f32(*file, kUp, {I, H});
  w.w_down = medusa::read_safetensors_f32(*file, kDown, {H, I});
  w.post_norm = medusa::read_safetensors_f32(*file, kPostNorm, {H});

  if (const SafetensorsTensor* t = file->find(kD2t)) {
    SPECDEC_CHECK(t->shape.size() == 1 && (t->dtype == "I64" || t->dtype == "I32"), path, ": tensor '", kD2t, "' is ",
                  t->dtype, " of ", t->shape.size(), " dims, expected a vector of I64 (or I32)");
    const int64_t N = t->shape[0];
    SPECDEC_CHECK(N >= 1 && N <= V, path, ": tensor '", kD2t, "' has ", N, " entries, expected 1..", V,
                  " (the target's vocabulary)");
    w.draft_ids.resize(static_cast<size_t>(N));
    for (int64_t d = 0; d < N; ++d) {
      int64_t off = 0;
      if (t->dtype == "I64") {
        std::memcpy(&off, t->data + 8 * d, 8);
      } else {
        int32_t o32 = 0;
        std::memcpy(&o32, t->data + 4 * d, 4);
        off = o32;
      }
      const int64_t id = d + off;
      SPECDEC_CHECK(id >= 0 && id < V, path, ": d2t maps draft id ", d, " to target id ", id,
                    ", outside the target's vocabulary [0, ", V, ")");
      SPECDEC_CHECK(d == 0 || id > w.draft_ids[d - 1], path, ": d2t maps draft id ", d, " to target id ", id,
                    ", expected ascending distinct ids (draft id ", d - 1, " is ", w.draft_ids[d - 1], ")");
      w.draft_ids[d] = static_cast<int32_t>(id);
    }
  }

  const auto meta = file->metadata().find("specdec");
  if (meta != file->metadata().end()) {
    w.metadata_json = meta->second;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(w.metadata_json);
    } catch (const nlohmann::json::exception& e) {
      SPECDEC_FAIL(path, ": the \"specdec\" metadata is not valid JSON (", e.what(), ")");
    }
    SPECDEC_CHECK(j.is_object(), path, ": the \"specdec\" metadata is ", j.type_name(), ", expected a JSON object");
    if (j.contains("vocab_size") && j["vocab_size"].is_number_integer())
      SPECDEC_CHECK(j["vocab_size"].get<int64_t>() == V, path, ": the EAGLE layer has vocabulary size ",
                    j["vocab_size"].dump(), " (metadata), the target's is ", V);
    if (!expected_target_sha256.empty() && j.contains("target_sha256") && j["target_sha256"].is_string()) {
      const std::string sha = j["target_sha256"].get<std::string>();
      SPECDEC_CHECK(sha.empty() || sha == expected_target_sha256, path,
                    ": the EAGLE layer was trained for the "
                    "target with sha256 ",
                    sha, ", this target's is ", expected_target_sha256);
    }
  }
  return w;
}

// ---- cache ------------------------------------------------------------------------------------------------
// k and v hold exactly n slots (size n x kv_dim; the vectors' capacity keeps the memory), so the slot width is
// k.size() / n without the cache having to know the config.

void EagleCache::truncate(int m) {
  SPECDEC_CHECK(m >= 0 && m <= n, "EagleCache::truncate to 0..", n, " slots, got ", m);
  if (m == n) return;
  const size_t width = k.size() / static_cast<size_t>(n);
  k.resize(static_cast<size_t>(m) * width);
  v.resize(static_cast<size_t>(m) * width);
  n = m;
}

void EagleCache::compact(int base, std::span<const int32_t> rows) {
  SPECDEC_CHECK(base >= 0 && base <= n, "EagleCache::compact base in 0..", n, ", got ", base);
  const size_t width = n > 0 ? k.size() / static_cast<size_t>(n) : 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    SPECDEC_CHECK(rows[i] < n - base && (i == 0 ? rows[i] >= 0 : rows[i] > rows[i - 1]),
                  "EagleCache::compact rows strictly increasing in [0, ", n - base, "), got ", rows[i], " at ", i);
    if (rows[i] == static_cast<int32_t>(i)) continue;  // rows[i] >= i: copies never overwrite a later source
    const size_t dst = (base + i) * width, src = (base + static_cast<size_t>(rows[i])) * width;
    std::copy_n(k.begin() + src, width, k.begin() + dst);
    std::copy_n(v.begin() + src, width, v.begin() + dst);
  }
  truncate(base + static_cast<int>(rows.size()));
}

// ---- forward ----------------------------------------------------------------------------------------------

void eagle_forward(const EagleWeights& w, EagleCache& cache, std::span<const float> emb, std::span<const float> feat,
                   std::span<const int32_t> positions, std::span<const uint8_t> mask, std::span<float> out) {
  const EagleConfig& c = w.cfg;
  const int H = c.hidden_size, I = c.intermediate_size, D = c.head_dim, Q = c.q_dim(), KV = c.kv_dim();
  const int T = static_cast<int>(positions.size());
  const int n0 = cache.n, S = n0 + T;
  SPECDEC_CHECK(emb.size() == static_cast<size_t>(T) * H && feat.size() == emb.size() && out.size() == emb.size(),
                "eagle_forward: emb, feat and out of T x H = ", T, " x ", H, " floats, got ", emb.size(), ", ",
                feat.size(), ", ", out.size());
  SPECDEC_CHECK(mask.empty() || mask.size() == static_cast<size_t>(T) * S,
                "eagle_forward: a mask of T x (cache + T) = ", T, " x ", S, " bytes or none, got ", mask.size());
  SPECDEC_CHECK(cache.k.size() == static_cast<size_t>(n0) * KV && cache.v.size() == cache.k.size(),
                "eagle_forward: a cache of ", n0, " slots x kv_dim ", KV, " floats, got ", cache.k.size(), " and ",
                cache.v.size());
  if (T == 0) return;

  const ConstMap fc(w.fc_w.data(), H, 2 * H);
  RowMatrix u = ConstMap(emb.data(), T, H) * fc.leftCols(H).transpose();
  u.noalias() += ConstMap(feat.data(), T, H) * fc.rightCols(H).transpose();
  u.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(w.fc_b.data(), H);

  RowMatrix q = u * ConstMap(w.wq.data(), Q, H).transpose();
  cache.k.resize(static_cast<size_t>(S) * KV);
  cache.v.resize(static_cast<size_t>(S) * KV);
  Eigen::Map<RowMatrix> k_new(cache.k.data() + static_cast<size_t>(n0) * KV, T, KV);
  Eigen::Map<RowMatrix> v_new(cache.v.data() + static_cast<size_t>(n0) * KV, T, KV);
  k_new.noalias() = u * ConstMap(w.wk.data(), KV, H).transpose();
  v_new.noalias() = u * ConstMap(w.wv.data(), KV, H).transpose();
  for (int t = 0; t < T; ++t) {
    for (int h = 0; h < c.n_heads; ++h) rope_rotate_half(&q(t, h * D), D, positions[t], c.rope_theta);
    for (int h = 0; h < c.n_kv_heads; ++h) rope_rotate_half(&k_new(t, h * D), D, positions[t], c.rope_theta);
  }
  cache.n = S;

  // Attention: row t of the block sees slot j when mask(t, j) (causal by default: j <= n0 + t).
  const ConstMap K(cache.k.data(), S, KV), Vv(cache.v.data(), S, KV);
  const int group = c.n_heads / c.n_kv_heads;
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  RowMatrix a(T, Q);
  std::vector<float> p(static_cast<size_t>(S));
  for (int t = 0; t < T; ++t) {
    const uint8_t* m = mask.empty() ? nullptr : mask.data() + static_cast<size_t>(t) * S;
    for (int h = 0; h < c.n_heads; ++h) {
      const int kh = h / group;
      float mx = -INFINITY;
      for (int j = 0; j < S; ++j) {
        const bool seen = m ? m[j] != 0 : j <= n0 + t;
        p[j] = seen ? scale * q.row(t).segment(h * D, D).dot(K.row(j).segment(kh * D, D)) : -INFINITY;
        mx = std::max(mx, p[j]);
      }
      SPECDEC_CHECK(mx > -INFINITY, "eagle_forward: mask row ", t, " attends no slot (each pair attends itself)");
      float sum = 0.f;
      for (int j = 0; j < S; ++j) sum += p[j] = p[j] == -INFINITY ? 0.f : std::exp(p[j] - mx);
      auto ah = a.row(t).segment(h * D, D);
      ah.setZero();
      for (int j = 0; j < S; ++j)
        if (p[j] != 0.f) ah += (p[j] / sum) * Vv.row(j).segment(kh * D, D);
    }
  }
  RowMatrix hs = u;
  hs.noalias() += a * ConstMap(w.wo.data(), H, Q).transpose();

  // n = RMSNorm(h) * post_norm; out = h + down(SiLU(gate n) * up n).
  RowMatrix nrm(T, H);
  for (int t = 0; t < T; ++t) {
    const float r = 1.f / std::sqrt(hs.row(t).squaredNorm() / H + c.rms_eps);
    nrm.row(t) = (hs.row(t) * r).cwiseProduct(Eigen::Map<const Eigen::RowVectorXf>(w.post_norm.data(), H));
  }
  RowMatrix g = nrm * ConstMap(w.w_gate.data(), I, H).transpose();
  const RowMatrix up = nrm * ConstMap(w.w_up.data(), I, H).transpose();
  g = g.unaryExpr([](float x) { return x / (1.f + std::exp(-x)); }).cwiseProduct(up);
  Eigen::Map<RowMatrix> o(out.data(), T, H);
  o = hs;
  o.noalias() += g * ConstMap(w.w_down.data(), H, I).transpose();
}

}  // namespace specdec::eagle
