// The EAGLE draft layer (eagle.h), EAGLE-1's and EAGLE-3's: its initialisation, its safetensors files (both
// layouts read and written, EAGLE-3's d2t / t2d read) and its forward over a block of pairs with its own KV cache,
// in f32: its matrices through cpu::matmul (vectorised per CPU level, multi-threaded, row-invariant: a pair's
// output does not depend on the block's other rows; or their packed Q8_0 / Q4 rows), the rest with Eigen. The trainer
// (train_eagle.cpp, EAGLE-1 only) has its own batched forward with saved activations; its tests check the two agree.
#include "drafters/eagle/eagle.h"

#include <Eigen/Dense>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "core/model/safetensors.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "drafters/medusa/heads.h"

namespace specdec::eagle {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstMap = Eigen::Map<const RowMatrix>;

// out (T x N) = x (T x K) . W^T for the layer's row-major f32 W (N x K): cpu::matmul.
void linear(float* out, const float* x, const std::vector<float>& W, int T, int N, int K) {
  cpu::matmul(out, x, W.data(), cpu::DType::F32, T, N, K);
}

// The layer's matrix m: its f32 rows and its shape (rows x cols), the one place that maps EagleMatrix to them.
struct MatrixRef {
  const std::vector<float>& f32;
  int rows, cols;
};
MatrixRef matrix_of(const EagleWeights& w, EagleMatrix m) {
  const EagleConfig& c = w.cfg;
  const int H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), A = c.attn_in();
  switch (m) {
    case kFc:
      return {w.fc_w, H, c.fc_in()};
    case kWq:
      return {w.wq, Q, A};
    case kWk:
      return {w.wk, KV, A};
    case kWv:
      return {w.wv, KV, A};
    case kWo:
      return {w.wo, H, Q};
    case kGate:
      return {w.w_gate, I, H};
    case kUp:
      return {w.w_up, I, H};
    case kDown:
    default:
      return {w.w_down, H, I};
  }
}

// The same for the layer's matrix m: its packed rows when it has them, else its f32 rows.
void linear(float* out, const float* x, const EagleWeights& w, EagleMatrix m, int T, int N, int K) {
  if (w.packed[m].empty())
    linear(out, x, matrix_of(w, m).f32, T, N, K);
  else
    cpu::matmul(out, x, w.packed[m].data(), w.packed_dtype, T, N, K);
}

const char* const kFcW = "fc.weight";
const char* const kFcB = "fc.bias";  // EAGLE-1 only
const char* const kD2t = "d2t";
// EAGLE-3 only: the layer's input norms, its final norm and head, and the target -> draft map.
const char* const kInNorm = "midlayer.input_layernorm.weight";
const char* const kHiddenNorm = "midlayer.hidden_norm.weight";
const char* const kFinalNorm = "norm.weight";
const char* const kLmHead = "lm_head.weight";
const char* const kT2d = "t2d";
const char* const kEagle3Prefix = "midlayer.";

// The decoder layer's tensors under each architecture's names.
struct LayerNames {
  const char *q, *k, *v, *o, *gate, *up, *down, *post_norm;
};
const LayerNames kEagle1Names{"layers.0.self_attn.q_proj.weight", "layers.0.self_attn.k_proj.weight",
                              "layers.0.self_attn.v_proj.weight", "layers.0.self_attn.o_proj.weight",
                              "layers.0.mlp.gate_proj.weight",    "layers.0.mlp.up_proj.weight",
                              "layers.0.mlp.down_proj.weight",    "layers.0.post_attention_layernorm.weight"};
const LayerNames kEagle3Names{"midlayer.self_attn.q_proj.weight", "midlayer.self_attn.k_proj.weight",
                              "midlayer.self_attn.v_proj.weight", "midlayer.self_attn.o_proj.weight",
                              "midlayer.mlp.gate_proj.weight",    "midlayer.mlp.up_proj.weight",
                              "midlayer.mlp.down_proj.weight",    "midlayer.post_attention_layernorm.weight"};
const LayerNames& names_of(const EagleConfig& c) { return c.eagle3() ? kEagle3Names : kEagle1Names; }

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

// out row t = RMSNorm(x row t) * weight (eps: the target's rms_eps).
template <typename In, typename Out>
void rms_norm_rows(const In& x, const std::vector<float>& weight, float eps, Out&& out) {
  const Eigen::Map<const Eigen::RowVectorXf> wv(weight.data(), static_cast<Eigen::Index>(weight.size()));
  for (Eigen::Index t = 0; t < x.rows(); ++t) {
    const float r = 1.f / std::sqrt(x.row(t).squaredNorm() / static_cast<float>(x.cols()) + eps);
    out.row(t) = (x.row(t) * r).cwiseProduct(wv);
  }
}

// The rows of the draft vocabulary a file's d2t names (draft id d -> target id d + d2t[d]), checked against the
// target's vocabulary of V ids: a vector of I64 (or I32), 1..V entries, ascending distinct ids in [0, V).
std::vector<int32_t> read_d2t(const SafetensorsTensor& t, const std::string& path, int64_t V) {
  SPECDEC_CHECK(t.shape.size() == 1 && (t.dtype == "I64" || t.dtype == "I32"), path, ": tensor '", kD2t, "' is ",
                t.dtype, " of ", t.shape.size(), " dims, expected a vector of I64 (or I32)");
  const int64_t N = t.shape[0];
  SPECDEC_CHECK(N >= 1 && N <= V, path, ": tensor '", kD2t, "' has ", N, " entries, expected 1..", V,
                " (the target's vocabulary)");
  std::vector<int32_t> ids(static_cast<size_t>(N));
  for (int64_t d = 0; d < N; ++d) {
    int64_t off = 0;
    if (t.dtype == "I64") {
      std::memcpy(&off, t.data + 8 * d, 8);
    } else {
      int32_t o32 = 0;
      std::memcpy(&o32, t.data + 4 * d, 4);
      off = o32;
    }
    const int64_t id = d + off;
    SPECDEC_CHECK(id >= 0 && id < V, path, ": d2t maps draft id ", d, " to target id ", id,
                  ", outside the target's vocabulary [0, ", V, ")");
    SPECDEC_CHECK(d == 0 || id > ids[d - 1], path, ": d2t maps draft id ", d, " to target id ", id,
                  ", expected ascending distinct ids (draft id ", d - 1, " is ", ids[d - 1], ")");
    ids[d] = static_cast<int32_t>(id);
  }
  return ids;
}

// EAGLE-3's own head, norms and t2d: lm_head has one row per draft id (d2t's length, or V without d2t); a t2d,
// when present, marks exactly the draft ids. A d2t naming all V ids is the whole vocabulary (draft_ids empty).
void load_eagle3_extras(const SafetensorsFile& file, const std::string& path, EagleWeights& w) {
  const int64_t H = w.cfg.hidden_size, V = w.cfg.vocab_size;
  const int64_t N = w.draft_ids.empty() ? V : static_cast<int64_t>(w.draft_ids.size());
  w.input_norm = medusa::read_safetensors_f32(file, kInNorm, {H});
  w.hidden_norm = medusa::read_safetensors_f32(file, kHiddenNorm, {H});
  w.final_norm = medusa::read_safetensors_f32(file, kFinalNorm, {H});
  const SafetensorsTensor* head = file.find(kLmHead);
  SPECDEC_CHECK(head == nullptr || (head->shape.size() == 2 && head->shape[0] == N), path, ": tensor '", kLmHead,
                "' has ", head && !head->shape.empty() ? head->shape[0] : 0, " rows, expected one per draft id: ", N,
                w.draft_ids.empty() ? " (the target's vocabulary; no d2t)" : " (d2t's length)");
  w.lm_head = medusa::read_safetensors_f32(file, kLmHead, {N, H});
  if (const SafetensorsTensor* t = file.find(kT2d)) {
    SPECDEC_CHECK(t->shape.size() == 1 && t->shape[0] == V && (t->dtype == "BOOL" || t->dtype == "U8"), path,
                  ": tensor '", kT2d, "' is ", t->dtype, " of shape [", t->shape.empty() ? 0 : t->shape[0],
                  ", ...], expected a BOOL vector of the target's ", V, " ids");
    int64_t marked = 0;
    for (int64_t i = 0; i < V; ++i) marked += t->data[i] != 0;
    bool agree = marked == N;
    for (size_t d = 0; agree && d < w.draft_ids.size(); ++d) agree = t->data[w.draft_ids[d]] != 0;
    SPECDEC_CHECK(agree, path, ": tensor '", kT2d, "' marks ", marked, " target ids, expected exactly the ", N,
                  " draft ids of d2t");
  }
  if (static_cast<int64_t>(w.draft_ids.size()) == V) w.draft_ids.clear();  // ascending, distinct: the identity
}

}  // namespace

std::vector<int> eagle3_default_layers(int n_layers) {
  SPECDEC_CHECK(n_layers >= 1, "EAGLE-3's target layers of a target with >= 1 layers, got ", n_layers);
  std::vector<int> layers;
  for (const int input_of : {2, n_layers / 2, n_layers - 3})
    layers.push_back(std::clamp(input_of - 1, 0, n_layers - 1));
  return layers;
}

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
  const size_t A = cfg.attn_in();
  Gaussian g{std::mt19937_64(seed)};
  EagleWeights w;
  w.cfg = cfg;
  w.fc_w = g.fill(H * cfg.fc_in(), init_scale);
  if (!cfg.eagle3()) {
    for (size_t i = 0; i < H; ++i) w.fc_w[i * 2 * H + H + i] += 1.f;  // u starts near f
    w.fc_b.assign(H, 0.f);
  }
  w.wq = g.fill(Q * A, init_scale);
  w.wk = g.fill(KV * A, init_scale);
  w.wv = g.fill(KV * A, init_scale);
  w.wo = g.fill(H * Q, init_scale);
  w.post_norm.assign(H, 1.f);
  w.w_gate = g.fill(I * H, init_scale);
  w.w_up = g.fill(I * H, init_scale);
  w.w_down = g.fill(H * I, init_scale);
  if (cfg.eagle3()) {
    w.input_norm.assign(H, 1.f);
    w.hidden_norm.assign(H, 1.f);
    w.final_norm.assign(H, 1.f);
    w.lm_head = g.fill(static_cast<size_t>(cfg.vocab_size) * H, init_scale);
  }
  return w;
}

// ---- files ------------------------------------------------------------------------------------------------

void save_eagle_weights(const EagleWeights& w, const std::string& path) {
  const EagleConfig& c = w.cfg;
  check_config(c);
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), A = c.attn_in();
  const LayerNames& n = names_of(c);
  struct Part {
    const char* name;
    std::vector<int64_t> shape;
    const std::vector<float>* values;
  };
  std::vector<Part> parts = {
      {kFcW, {H, c.fc_in()}, &w.fc_w}, {n.q, {Q, A}, &w.wq},        {n.k, {KV, A}, &w.wk},
      {n.v, {KV, A}, &w.wv},           {n.o, {H, Q}, &w.wo},        {n.gate, {I, H}, &w.w_gate},
      {n.up, {I, H}, &w.w_up},         {n.down, {H, I}, &w.w_down}, {n.post_norm, {H}, &w.post_norm}};
  if (c.eagle3()) {
    const int64_t N = w.draft_ids.empty() ? c.vocab_size : static_cast<int64_t>(w.draft_ids.size());
    parts.insert(parts.end(), {{kInNorm, {H}, &w.input_norm},
                               {kHiddenNorm, {H}, &w.hidden_norm},
                               {kFinalNorm, {H}, &w.final_norm},
                               {kLmHead, {N, H}, &w.lm_head}});
  } else {
    parts.insert(parts.begin() + 1, Part{kFcB, {H}, &w.fc_b});
  }
  std::vector<medusa::TensorToWrite> tensors;
  for (const auto& p : parts) {
    int64_t n = 1;
    for (int64_t d : p.shape) n *= d;
    SPECDEC_CHECK(p.values->size() == static_cast<size_t>(n), path, ": EAGLE tensor '", p.name, "' with ", n,
                  " values, got ", p.values->size());
    tensors.push_back({p.name, p.shape, p.values->data()});
  }
  std::vector<int64_t> d2t(w.draft_ids.size());
  for (size_t d = 0; d < d2t.size(); ++d) {
    SPECDEC_CHECK(
        w.draft_ids[d] >= 0 && w.draft_ids[d] < c.vocab_size && (d == 0 || w.draft_ids[d] > w.draft_ids[d - 1]), path,
        ": draft_ids ascending, distinct and < ", c.vocab_size, ", got ", w.draft_ids[d], " at ", d);
    d2t[d] = static_cast<int64_t>(w.draft_ids[d]) - static_cast<int64_t>(d);
  }
  if (c.eagle3() && d2t.empty()) d2t.assign(static_cast<size_t>(c.vocab_size), 0);  // EAGLE-3 files always have one
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
  const bool e3 = std::any_of(file->tensors().begin(), file->tensors().end(),
                              [](const SafetensorsTensor& t) { return t.name.rfind(kEagle3Prefix, 0) == 0; });
  const LayerNames& n = e3 ? kEagle3Names : kEagle1Names;
  // Besides the layer's own: EAGLE-1's / EAGLE-3's frozen copy of the target's embedding, EAGLE-3's
  // target->draft map (checked below, when present).
  const std::vector<const char*> known =
      e3 ? std::vector<const char*>{kFcW,        n.q,     n.k,         n.v,
                                    n.o,         n.gate,  n.up,        n.down,
                                    n.post_norm, kInNorm, kHiddenNorm, kFinalNorm,
                                    kLmHead,     kD2t,    kT2d,        "embed_tokens.weight"}
         : std::vector<const char*>{
               kFcW, kFcB, n.q, n.k, n.v, n.o, n.gate, n.up, n.down, n.post_norm, kD2t, "embed_tokens.weight", kT2d};
  for (const SafetensorsTensor& t : file->tensors())
    SPECDEC_CHECK(std::any_of(known.begin(), known.end(), [&](const char* k) { return t.name == k; }), path,
                  ": unexpected tensor '", t.name, "' in an EAGLE", e3 ? "-3" : "", " layer file (expected ",
                  e3 ? "fc.weight, midlayer.*, norm.weight, lm_head.weight, d2t and t2d" : "fc.*, layers.0.* and d2t",
                  ")");

  EagleWeights w;
  EagleConfig& c = w.cfg = EagleConfig::of_target(target);
  c.arch = e3 ? EagleArch::kEagle3 : EagleArch::kEagle1;
  // EAGLE-3 layers are trained with their own MLP width (the draft's config.json); the file's gate_proj says it.
  if (const SafetensorsTensor* gate = file->find(n.gate); e3 && gate && gate->shape.size() == 2 && gate->shape[0] > 0)
    c.intermediate_size = static_cast<int>(gate->shape[0]);
  check_config(c);
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab_size;
  const int64_t A = c.attn_in(), F = c.fc_in();
  const char* const arch = e3 ? "EAGLE-3" : "EAGLE";
  const SafetensorsTensor* fc = file->find(kFcW);
  SPECDEC_CHECK(fc != nullptr, path, ": tensor '", kFcW, "' is missing (not an EAGLE layer file?)");
  SPECDEC_CHECK(fc->shape.size() == 2 && fc->shape[0] == H, path, ": the ", arch, " layer has hidden size ",
                fc->shape.empty() ? 0 : fc->shape[0], " (tensor '", kFcW, "' of ", fc->shape.size(),
                " dims, expected [", H, ", ", F, "]), the target's is ", H);
  SPECDEC_CHECK(
      fc->shape[1] == F, path, ": tensor '", kFcW, "' reads ", fc->shape[1], " inputs, expected ", F,
      e3 ? " (EAGLE-3 fuses three target layers of hidden size " : " (EAGLE-1 reads [embedding ; feature] of ", H, ")");
  w.fc_w = medusa::read_safetensors_f32(*file, kFcW, {H, F});
  if (!e3) w.fc_b = medusa::read_safetensors_f32(*file, kFcB, {H});
  w.wq = medusa::read_safetensors_f32(*file, n.q, {Q, A});
  w.wk = medusa::read_safetensors_f32(*file, n.k, {KV, A});
  w.wv = medusa::read_safetensors_f32(*file, n.v, {KV, A});
  w.wo = medusa::read_safetensors_f32(*file, n.o, {H, Q});
  w.w_gate = medusa::read_safetensors_f32(*file, n.gate, {I, H});
  w.w_up = medusa::read_safetensors_f32(*file, n.up, {I, H});
  w.w_down = medusa::read_safetensors_f32(*file, n.down, {H, I});
  w.post_norm = medusa::read_safetensors_f32(*file, n.post_norm, {H});
  if (const SafetensorsTensor* t = file->find(kD2t)) w.draft_ids = read_d2t(*t, path, V);
  if (e3) load_eagle3_extras(*file, path, w);

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
  const int A = c.attn_in();
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

  // u (T x A): what q/k/v read. EAGLE-1: u = fc [e ; f] + b, also the residual. EAGLE-3: the normed pair
  // [RMSNorm(e) * input_norm ; RMSNorm(f) * hidden_norm]; the residual is f itself.
  RowMatrix u(T, A);
  if (c.eagle3()) {
    rms_norm_rows(ConstMap(emb.data(), T, H), w.input_norm, c.rms_eps, u.leftCols(H));
    rms_norm_rows(ConstMap(feat.data(), T, H), w.hidden_norm, c.rms_eps, u.rightCols(H));
  } else {
    RowMatrix ef(T, 2 * H);  // [e ; f] per pair: fc reads both halves in one dot
    ef.leftCols(H) = ConstMap(emb.data(), T, H);
    ef.rightCols(H) = ConstMap(feat.data(), T, H);
    linear(u.data(), ef.data(), w, kFc, T, H, 2 * H);
    u.rowwise() += Eigen::Map<const Eigen::RowVectorXf>(w.fc_b.data(), H);
  }

  RowMatrix q(T, Q);
  linear(q.data(), u.data(), w, kWq, T, Q, A);
  cache.k.resize(static_cast<size_t>(S) * KV);
  cache.v.resize(static_cast<size_t>(S) * KV);
  Eigen::Map<RowMatrix> k_new(cache.k.data() + static_cast<size_t>(n0) * KV, T, KV);
  Eigen::Map<RowMatrix> v_new(cache.v.data() + static_cast<size_t>(n0) * KV, T, KV);
  linear(k_new.data(), u.data(), w, kWk, T, KV, A);
  linear(v_new.data(), u.data(), w, kWv, T, KV, A);
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
  RowMatrix hs = c.eagle3() ? RowMatrix(ConstMap(feat.data(), T, H)) : u;
  RowMatrix proj(T, H);
  linear(proj.data(), a.data(), w, kWo, T, H, Q);
  hs += proj;

  // n = RMSNorm(h) * post_norm; out = h + down(SiLU(gate n) * up n).
  RowMatrix nrm(T, H);
  rms_norm_rows(hs, w.post_norm, c.rms_eps, nrm);
  RowMatrix g(T, I), up(T, I);
  linear(g.data(), nrm.data(), w, kGate, T, I, H);
  linear(up.data(), nrm.data(), w, kUp, T, I, H);
  g = g.unaryExpr([](float x) { return x / (1.f + std::exp(-x)); }).cwiseProduct(up);
  linear(proj.data(), g.data(), w, kDown, T, H, I);
  Eigen::Map<RowMatrix>(out.data(), T, H) = hs + proj;
}

void pack_eagle_matrices(EagleWeights& w, cpu::DType dtype) {
  const cpu::DTypeInfo info = cpu::dtype_info(dtype);
  SPECDEC_CHECK(
      dtype == cpu::DType::F32 || dtype == cpu::DType::Q8_0 || dtype == cpu::DType::Q4_0 || dtype == cpu::DType::Q4_1,
      "the EAGLE layer's matrices pack as f32, q8_0, q4_0 or q4_1, not ", info.name);
  for (auto& p : w.packed) p = {};
  w.packed_dtype = dtype;
  if (dtype == cpu::DType::F32) return;
  for (int m = 0; m < kEagleMatrices; ++m) {
    const auto& [f32, rows, cols] = matrix_of(w, static_cast<EagleMatrix>(m));
    if (cols % info.block != 0) continue;  // stays f32 (e.g. stories260K's MLP width 172)
    SPECDEC_CHECK(f32.size() == static_cast<size_t>(rows) * cols, "packing the EAGLE layer: matrix ", m, " of ", rows,
                  " x ", cols, " floats, got ", f32.size());
    const size_t stride = cpu::row_bytes(dtype, cols);
    w.packed[m].resize(static_cast<size_t>(rows) * stride);
    for (int r = 0; r < rows; ++r)
      cpu::quantize_row(w.packed[m].data() + r * stride, f32.data() + static_cast<size_t>(r) * cols, dtype, cols);
  }
}

void eagle3_fuse(const EagleWeights& w, std::span<const float> feats, std::span<float> out) {
  const int64_t H = w.cfg.hidden_size;
  const int64_t T = H > 0 ? static_cast<int64_t>(out.size()) / H : 0;
  SPECDEC_CHECK(w.cfg.eagle3() && w.fc_w.size() == static_cast<size_t>(3 * H * H),
                "eagle3_fuse: an EAGLE-3 layer (fc of H x 3H)");
  SPECDEC_CHECK(out.size() == static_cast<size_t>(T * H) && feats.size() == static_cast<size_t>(3 * T * H),
                "eagle3_fuse: feats of T x 3H and out of T x H floats (H = ", H, "), got ", feats.size(), " and ",
                out.size());
  linear(out.data(), feats.data(), w, kFc, static_cast<int>(T), static_cast<int>(H), static_cast<int>(3 * H));
}

void eagle_head_input(const EagleWeights& w, std::span<const float> states, std::span<float> out) {
  const int64_t H = w.cfg.hidden_size;
  SPECDEC_CHECK(H > 0 && states.size() == out.size() && states.size() % static_cast<size_t>(H) == 0,
                "eagle_head_input: states and out of T x H floats (H = ", H, "), got ", states.size(), " and ",
                out.size());
  if (!w.cfg.eagle3()) {
    std::copy(states.begin(), states.end(), out.begin());
    return;
  }
  const int64_t T = static_cast<int64_t>(states.size()) / H;
  rms_norm_rows(ConstMap(states.data(), T, H), w.final_norm, w.cfg.rms_eps, Eigen::Map<RowMatrix>(out.data(), T, H));
}

}  // namespace specdec::eagle
