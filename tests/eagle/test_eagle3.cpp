// EAGLE-3 layers (drafters/eagle/eagle.h, EagleArch::kEagle3) in their public checkpoint layout, written here
// (midlayer.*, fc of H x 3H, norm, lm_head, d2t, t2d; F32, F16 and BF16) for the stories260K target: the loaded
// layer against a plain scalar double reference of EAGLE-3's layer, a block against the same pairs one at a time,
// save -> load bit for bit, the drafter's fused low/mid/high features through the decode loop, greedy
// losslessness (chain, static and dynamic trees, k = 1, 2, 4), and the one-line errors.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <numeric>

#include "core/error.h"
#include "core/speculative/decoder.h"
#include "drafters/eagle/eagle.h"
#include "drafters/eagle/eagle_drafter.h"
#include "drafters/eagle/train_eagle.h"
#include "drafters/register_builtin.h"
#include "tests/eagle_drafter/random_eagle.h"
#include "tests/formats/safetensors_writer.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/random.h"
#include "tests/support/stories.h"
#include "verifiers/rules.h"

using namespace specdec;
using namespace specdec::eagle;

namespace {

const ModelConfig& target() { return test::stories().model.config(); }
std::string scratch(const std::string& name) { return (test::scratch_dir("eagle3") / name).string(); }

constexpr int kMlp = 96;  // the layer's own MLP width (not the target's 172): the loader reads it from the file

// An EAGLE-3 layer's tensors as a file holds them: float values already rounded to the file's dtype, so that
// the reference below reads exactly what the loader reads.
struct Eagle3File {
  std::string dtype;
  std::map<std::string, std::vector<float>> t;  // float tensors by name
  std::map<std::string, std::vector<int64_t>> shape;
  std::vector<int32_t> draft_ids;  // empty: the whole vocabulary (d2t all zeros)

  const std::vector<float>& operator[](const std::string& name) const { return t.at(name); }
};

Eagle3File make_eagle3(uint32_t seed, const std::string& dtype, std::vector<int32_t> draft_ids = {},
                       float scale = 0.15f) {
  const ModelConfig& c = target();
  const int64_t H = c.dim, D = c.dim / c.n_heads, Q = c.n_heads * D, KV = c.n_kv_heads * D, V = c.vocab_size;
  const int64_t N = draft_ids.empty() ? V : static_cast<int64_t>(draft_ids.size());
  Eagle3File f;
  f.dtype = dtype;
  f.draft_ids = std::move(draft_ids);
  const std::vector<std::pair<std::string, std::vector<int64_t>>> specs = {
      {"fc.weight", {H, 3 * H}},
      {"midlayer.self_attn.q_proj.weight", {Q, 2 * H}},
      {"midlayer.self_attn.k_proj.weight", {KV, 2 * H}},
      {"midlayer.self_attn.v_proj.weight", {KV, 2 * H}},
      {"midlayer.self_attn.o_proj.weight", {H, Q}},
      {"midlayer.mlp.gate_proj.weight", {kMlp, H}},
      {"midlayer.mlp.up_proj.weight", {kMlp, H}},
      {"midlayer.mlp.down_proj.weight", {H, kMlp}},
      {"midlayer.input_layernorm.weight", {H}},
      {"midlayer.hidden_norm.weight", {H}},
      {"midlayer.post_attention_layernorm.weight", {H}},
      {"norm.weight", {H}},
      {"lm_head.weight", {N, H}},
  };
  for (size_t i = 0; i < specs.size(); ++i) {
    const auto& [name, shape] = specs[i];
    int64_t n = 1;
    for (const int64_t d : shape) n *= d;
    const bool norm = shape.size() == 1;
    std::vector<float> v =
        test::randn(static_cast<size_t>(n), seed * 100 + static_cast<uint32_t>(i), norm ? 0.3f : scale);
    if (norm)
      for (float& x : v) x += 1.f;
    const auto bytes = test::encode_floats(v, dtype);
    const cpu::DType dt = dtype == "F32" ? cpu::DType::F32 : dtype == "F16" ? cpu::DType::F16 : cpu::DType::BF16;
    for (size_t j = 0; j < v.size(); ++j) v[j] = test::decode_float(bytes.data(), j, dt);
    f.t[name] = std::move(v);
    f.shape[name] = shape;
  }
  return f;
}

// The file's tensors (edit may change them before they are written: drop, reshape, corrupt).
void write_eagle3(const Eagle3File& f, const std::string& path,
                  const std::function<void(std::vector<test::StTensor>&)>& edit = {}) {
  const int64_t V = target().vocab_size;
  std::vector<test::StTensor> ts;
  for (const auto& [name, v] : f.t) ts.push_back({name, f.dtype, f.shape.at(name), test::encode_floats(v, f.dtype)});
  const int64_t N = f.draft_ids.empty() ? V : static_cast<int64_t>(f.draft_ids.size());
  std::vector<int64_t> d2t(static_cast<size_t>(N), 0);
  std::vector<uint8_t> t2d(static_cast<size_t>(V), f.draft_ids.empty() ? 1 : 0);
  for (size_t d = 0; d < f.draft_ids.size(); ++d) {
    d2t[d] = f.draft_ids[d] - static_cast<int64_t>(d);
    t2d[f.draft_ids[d]] = 1;
  }
  test::StTensor d2t_t{"d2t", "I64", {N}, std::vector<uint8_t>(d2t.size() * 8)};
  std::memcpy(d2t_t.bytes.data(), d2t.data(), d2t_t.bytes.size());
  ts.push_back(std::move(d2t_t));
  ts.push_back({"t2d", "BOOL", {V}, t2d});
  // A frozen copy of the target's embedding, as EAGLE-3's Model holds one: ignored by the loader.
  ts.push_back({"embed_tokens.weight",
                f.dtype,
                {V, target().dim},
                test::encode_floats(std::vector<float>(static_cast<size_t>(V * target().dim), 0.5f), f.dtype)});
  if (edit) edit(ts);
  test::StFile(ts).write(path);
}

// ---- the reference: EAGLE-3's layer (SafeAILab/EAGLE eagle/model/cnets.py) written out in double -------------

using Vec = std::vector<double>;

// y (rows) = m (rows x cols, row-major) . x
Vec matvec(const std::vector<float>& m, size_t rows, size_t cols, const double* x) {
  Vec y(rows, 0.0);
  for (size_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < cols; ++i) y[r] += static_cast<double>(m[r * cols + i]) * x[i];
  return y;
}
Vec rms_norm(const double* x, const std::vector<float>& w, double eps) {
  const size_t H = w.size();
  double ss = 0;
  for (size_t i = 0; i < H; ++i) ss += x[i] * x[i];
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(H) + eps);
  Vec y(H);
  for (size_t i = 0; i < H; ++i) y[i] = x[i] * r * w[i];
  return y;
}

// g (T x H) = fc . [low ; mid ; high] per row of feats (T x 3H).
Vec ref_fuse(const Eagle3File& f, const std::vector<float>& feats) {
  const size_t H = target().dim, T = feats.size() / (3 * H);
  Vec g;
  for (size_t t = 0; t < T; ++t) {
    const Vec x(feats.begin() + static_cast<ptrdiff_t>(t * 3 * H),
                feats.begin() + static_cast<ptrdiff_t>((t + 1) * 3 * H));
    const Vec y = matvec(f["fc.weight"], H, 3 * H, x.data());
    g.insert(g.end(), y.begin(), y.end());
  }
  return g;
}

// The layer over T pairs (emb, g: T x H each) in one block, pair t attending pairs j with mask[t * T + j].
Vec ref_layer(const Eagle3File& f, const std::vector<float>& emb, const Vec& g, const std::vector<int32_t>& pos,
              const std::vector<uint8_t>& mask) {
  const ModelConfig& c = target();
  const size_t H = c.dim, T = pos.size(), D = H / c.n_heads, Q = c.n_heads * D, KV = c.n_kv_heads * D;
  const double eps = c.rms_eps;
  auto rope = [&](double* x, int p) {
    for (size_t i = 0; i < D / 2; ++i) {
      const double th = p * std::pow(static_cast<double>(c.rope_theta), -2.0 * static_cast<double>(i) / D);
      const double a = x[i], b = x[i + D / 2];
      x[i] = a * std::cos(th) - b * std::sin(th);
      x[i + D / 2] = b * std::cos(th) + a * std::sin(th);
    }
  };
  std::vector<Vec> q(T), k(T), v(T);
  for (size_t t = 0; t < T; ++t) {
    const Vec e(emb.begin() + static_cast<ptrdiff_t>(t * H), emb.begin() + static_cast<ptrdiff_t>((t + 1) * H));
    Vec x = rms_norm(e.data(), f["midlayer.input_layernorm.weight"], eps);  // the embedding first
    const Vec hn = rms_norm(&g[t * H], f["midlayer.hidden_norm.weight"], eps);
    x.insert(x.end(), hn.begin(), hn.end());
    q[t] = matvec(f["midlayer.self_attn.q_proj.weight"], Q, 2 * H, x.data());
    k[t] = matvec(f["midlayer.self_attn.k_proj.weight"], KV, 2 * H, x.data());
    v[t] = matvec(f["midlayer.self_attn.v_proj.weight"], KV, 2 * H, x.data());
    for (int h = 0; h < c.n_heads; ++h) rope(&q[t][h * D], pos[t]);
    for (int h = 0; h < c.n_kv_heads; ++h) rope(&k[t][h * D], pos[t]);
  }
  Vec out;
  for (size_t t = 0; t < T; ++t) {
    Vec a(Q, 0.0);
    for (int h = 0; h < c.n_heads; ++h) {
      const size_t kh = h / (c.n_heads / c.n_kv_heads);
      Vec s(T, -INFINITY);
      double mx = -INFINITY, sum = 0;
      for (size_t j = 0; j < T; ++j) {
        if (!mask[t * T + j]) continue;
        s[j] = 0;
        for (size_t i = 0; i < D; ++i) s[j] += q[t][h * D + i] * k[j][kh * D + i];
        s[j] /= std::sqrt(static_cast<double>(D));
        mx = std::max(mx, s[j]);
      }
      for (size_t j = 0; j < T; ++j) sum += mask[t * T + j] ? std::exp(s[j] - mx) : 0.0;
      for (size_t j = 0; j < T; ++j)
        if (mask[t * T + j])
          for (size_t i = 0; i < D; ++i) a[h * D + i] += std::exp(s[j] - mx) / sum * v[j][kh * D + i];
    }
    const Vec o = matvec(f["midlayer.self_attn.o_proj.weight"], H, Q, a.data());
    Vec hs(H);
    for (size_t i = 0; i < H; ++i) hs[i] = g[t * H + i] + o[i];  // the residual: the un-normed feature
    const Vec n = rms_norm(hs.data(), f["midlayer.post_attention_layernorm.weight"], eps);
    const Vec gate = matvec(f["midlayer.mlp.gate_proj.weight"], kMlp, H, n.data());
    const Vec up = matvec(f["midlayer.mlp.up_proj.weight"], kMlp, H, n.data());
    Vec act(kMlp);
    for (int i = 0; i < kMlp; ++i) act[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
    const Vec down = matvec(f["midlayer.mlp.down_proj.weight"], H, kMlp, act.data());
    for (size_t i = 0; i < H; ++i) out.push_back(hs[i] + down[i]);
  }
  return out;
}

// The draft logits (N per row) of predicted states (T x H): lm_head . (RMSNorm(state) * norm).
Vec ref_logits(const Eagle3File& f, const Vec& states) {
  const size_t H = target().dim, T = states.size() / H, N = f["lm_head.weight"].size() / H;
  Vec z;
  for (size_t t = 0; t < T; ++t) {
    const Vec n = rms_norm(&states[t * H], f["norm.weight"], target().rms_eps);
    const Vec y = matvec(f["lm_head.weight"], N, H, n.data());
    z.insert(z.end(), y.begin(), y.end());
  }
  return z;
}

// max |got - ref| / max |ref|: the normalised error.
template <typename A, typename B>
double rel_err(const A& got, const B& ref) {
  REQUIRE(got.size() == ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num = std::max(num, std::abs(static_cast<double>(got[i]) - static_cast<double>(ref[i])));
    den = std::max(den, std::abs(static_cast<double>(ref[i])));
  }
  return num / den;
}

std::vector<uint8_t> causal(size_t T) {
  std::vector<uint8_t> m(T * T, 0);
  for (size_t t = 0; t < T; ++t) std::fill_n(m.begin() + static_cast<ptrdiff_t>(t * T), t + 1, 1);
  return m;
}

// Every third target id left out: a reduced draft vocabulary of 341 ids.
std::vector<int32_t> reduced_ids() {
  std::vector<int32_t> ids;
  for (int32_t i = 0; i < target().vocab_size; ++i)
    if (i % 3 != 1) ids.push_back(i);
  return ids;
}

}  // namespace

TEST_CASE("EAGLE-3's default layers are the inputs of its layers 2, L/2, L-3 (outputs of 1, L/2-1, L-4)", "[eagle3]") {
  CHECK(eagle3_default_layers(32) == std::vector<int>{1, 15, 28});
  CHECK(eagle3_default_layers(80) == std::vector<int>{1, 39, 76});
  CHECK(eagle3_default_layers(5) == std::vector<int>{1, 1, 1});  // stories260K
  CHECK(eagle3_default_layers(1) == std::vector<int>{0, 0, 0});
}

TEST_CASE("an EAGLE-3 checkpoint loads and its layer, fc and head equal a double reference", "[eagle3]") {
  const auto [dtype, ids] = GENERATE(table<std::string, bool>({{"F32", false}, {"F16", true}, {"BF16", false}}));
  INFO("dtype " << dtype << (ids ? ", reduced draft vocabulary" : ""));
  const Eagle3File f = make_eagle3(3, dtype, ids ? reduced_ids() : std::vector<int32_t>{});
  const std::string path = scratch("eagle3_" + dtype + ".safetensors");
  write_eagle3(f, path);
  const EagleWeights w = load_eagle_weights(path, target());
  REQUIRE(w.cfg.eagle3());
  CHECK(w.cfg.intermediate_size == kMlp);
  CHECK(w.draft_ids == f.draft_ids);
  CHECK(w.fc_w == f["fc.weight"]);
  CHECK(w.fc_b.empty());
  CHECK(w.wq == f["midlayer.self_attn.q_proj.weight"]);
  CHECK(w.hidden_norm == f["midlayer.hidden_norm.weight"]);
  CHECK(w.lm_head == f["lm_head.weight"]);

  const int H = target().dim, T = 7;
  const std::vector<float> feats = test::randn(static_cast<size_t>(T) * 3 * H, 5, 1.f);
  const std::vector<float> emb = test::randn(static_cast<size_t>(T) * H, 6, 0.5f);
  std::vector<int32_t> pos(T);
  std::iota(pos.begin(), pos.end(), 3);
  const Vec g_ref = ref_fuse(f, feats);
  std::vector<float> g(static_cast<size_t>(T) * H), out(g.size());
  eagle3_fuse(w, feats, g);
  CHECK(rel_err(g, g_ref) < 1e-5);

  SECTION("causal") {
    EagleCache cache;
    eagle_forward(w, cache, emb, g, pos, {}, out);
    const Vec ref = ref_layer(f, emb, g_ref, pos, causal(T));
    CHECK(rel_err(out, ref) < 1e-4);
    std::vector<float> head_in(out.size());
    eagle_head_input(w, out, head_in);
    Vec z;  // the head, in double, over what eagle_head_input gives
    for (int t = 0; t < T; ++t) {
      const Vec x(head_in.begin() + t * H, head_in.begin() + (t + 1) * H);
      const Vec y = matvec(w.lm_head, w.lm_head.size() / H, H, x.data());
      z.insert(z.end(), y.begin(), y.end());
    }
    CHECK(rel_err(z, ref_logits(f, ref)) < 1e-4);
  }
  SECTION("a tree mask") {
    std::vector<uint8_t> mask = causal(T);
    for (int t = 2; t < T; ++t) mask[t * T + 1] = 0;  // pairs 2.. are siblings of pair 1, not its children
    EagleCache cache;
    eagle_forward(w, cache, emb, g, pos, mask, out);
    CHECK(rel_err(out, ref_layer(f, emb, g_ref, pos, mask)) < 1e-4);
  }
}

TEST_CASE("an EAGLE-3 block equals the same pairs one at a time, and save -> load is bit for bit", "[eagle3]") {
  const Eagle3File f = make_eagle3(4, "F32", reduced_ids());
  const std::string path = scratch("eagle3_block.safetensors");
  write_eagle3(f, path);
  const EagleWeights w = load_eagle_weights(path, target());
  const int H = target().dim, T = 6;
  const std::vector<float> emb = test::randn(static_cast<size_t>(T) * H, 7, 0.5f);
  const std::vector<float> feat = test::randn(static_cast<size_t>(T) * H, 8, 1.f);
  std::vector<int32_t> pos(T);
  std::iota(pos.begin(), pos.end(), 1);
  EagleCache block, single;
  std::vector<float> out_block(static_cast<size_t>(T) * H), out_single(out_block.size());
  eagle_forward(w, block, emb, feat, pos, {}, out_block);
  for (int t = 0; t < T; ++t)
    eagle_forward(w, single, std::span(emb).subspan(t * H, H), std::span(feat).subspan(t * H, H), {&pos[t], 1}, {},
                  std::span(out_single).subspan(t * H, H));
  CHECK(single.n == T);
  CHECK(rel_err(out_single, out_block) < 1e-5);
  CHECK(rel_err(single.k, block.k) < 1e-5);
  CHECK(rel_err(single.v, block.v) < 1e-5);

  for (const bool full : {false, true}) {
    EagleWeights src = w;
    if (full) {
      src = init_eagle_weights(w.cfg, 9, 0.1f);  // the whole vocabulary: d2t all zeros in the file
      REQUIRE(src.lm_head.size() == static_cast<size_t>(target().vocab_size) * H);
    }
    src.metadata_json = R"({"note": "eagle3"})";
    const std::string copy = scratch(full ? "eagle3_full_copy.safetensors" : "eagle3_copy.safetensors");
    save_eagle_weights(src, copy);
    const EagleWeights r = load_eagle_weights(copy, target());
    CHECK(r.cfg.eagle3());
    CHECK(r.cfg.intermediate_size == src.cfg.intermediate_size);
    CHECK(r.draft_ids == src.draft_ids);
    for (const auto& [a, b] : {std::pair{&r.fc_w, &src.fc_w},
                               {&r.wq, &src.wq},
                               {&r.wk, &src.wk},
                               {&r.wv, &src.wv},
                               {&r.wo, &src.wo},
                               {&r.w_gate, &src.w_gate},
                               {&r.w_up, &src.w_up},
                               {&r.w_down, &src.w_down},
                               {&r.post_norm, &src.post_norm},
                               {&r.input_norm, &src.input_norm},
                               {&r.hidden_norm, &src.hidden_norm},
                               {&r.final_norm, &src.final_norm},
                               {&r.lm_head, &src.lm_head}})
      CHECK(*a == *b);
    CHECK(r.fc_b.empty());
    CHECK(r.metadata_json == src.metadata_json);
  }
}

namespace {

struct Run {
  test::Stories& s = test::stories();
  std::string model_path = test::stories_model();

  std::unique_ptr<Drafter> make(const std::string& weights, std::map<std::string, std::string> opts) const {
    opts["weights"] = weights;
    DrafterEnv env{.target = &s.model, .tokenizer = s.tok.get(), .target_path = model_path};
    return make_drafter(drafters::default_registry().get("eagle"), env, DrafterOptions(opts, "eagle"));
  }
};

const std::string& eagle3_weights(bool reduced) {
  static std::map<bool, std::string> made;
  if (!made.count(reduced)) {
    const std::string path = scratch(reduced ? "eagle3_lossless_reduced.safetensors" : "eagle3_lossless.safetensors");
    write_eagle3(make_eagle3(reduced ? 21 : 22, reduced ? "BF16" : "F32",
                             reduced ? reduced_ids() : std::vector<int32_t>{}, 0.1f),
                 path);
    made[reduced] = path;
  }
  return made[reduced];
}

}  // namespace

TEST_CASE("the eagle drafter reads EAGLE-3's fused low/mid/high target layers through the decode loop", "[eagle3]") {
  Run r;
  const int H = target().dim;
  SECTION("the layers it asks for") {
    CHECK(r.make(eagle3_weights(false), {})->features().layers == std::vector<int>{1, 1, 1});
    CHECK(!r.make(eagle3_weights(false), {})->features().final_norm);
    CHECK(r.make(eagle3_weights(false), {{"layers", "0,2,4"}})->features().layers == std::vector<int>{0, 2, 4});
  }
  SECTION("its state after a decode is the layer read over fc(the target's layer outputs)") {
    for (const std::string layers : {"0,2,4", "4,2,0"}) {
      INFO("layers = " << layers);
      auto drafter = r.make(eagle3_weights(true), {{"layers", layers}});
      auto* e = dynamic_cast<EagleDrafter*>(drafter.get());
      REQUIRE(e != nullptr);
      auto rule = verifiers::make_greedy_rule();
      DecodeOptions d;
      d.max_new_tokens = 5;
      d.k = 2;
      const auto res = speculative_decode(r.s.model, drafter.get(), *rule, r.s.prompt, d);
      // All tokens but the last went through the target: its layer outputs at each predict the next token.
      std::vector<TokenId> all = r.s.prompt;
      all.insert(all.end(), res.tokens.begin(), res.tokens.end());
      const int n = static_cast<int>(all.size()) - 1;
      const std::vector<int32_t> ls = layers == "0,2,4" ? std::vector<int32_t>{0, 2, 4} : std::vector<int32_t>{4, 2, 0};
      auto cache = r.s.model.new_cache(n);
      ForwardResult fr;
      r.s.model.forward(*cache, {.tokens = std::span(all).first(n), .n_logits = 1, .layer_outputs = ls}, fr);
      REQUIRE(fr.layer_outputs.size() == static_cast<size_t>(n) * 3 * H);
      const EagleWeights w = load_eagle_weights(eagle3_weights(true), target());
      std::vector<float> g(static_cast<size_t>(n) * H), emb(g.size()), out(g.size());
      eagle3_fuse(w, fr.layer_outputs, g);
      const auto loaded = load_model(r.model_path);
      const WeightTensor& tab = loaded->weights.tok_embeddings;
      REQUIRE(tab.dtype == cpu::DType::F32);
      for (int t = 0; t < n; ++t)
        std::copy_n(static_cast<const float*>(tab.data) + static_cast<size_t>(all[t + 1]) * H, H, emb.begin() + t * H);
      std::vector<int32_t> pos(n);
      std::iota(pos.begin(), pos.end(), 1);
      EagleCache ref_cache;
      eagle_forward(w, ref_cache, emb, g, pos, {}, out);
      CHECK(e->cache().n == n);
      CHECK(rel_err(e->predicted(), std::span<const float>(out).last(H)) < 1e-4);
    }
  }
}

TEST_CASE("the eagle drafter with EAGLE-3 weights is lossless at greedy (chain, static and dynamic trees; k = 1, 2, 4)",
          "[eagle3][lossless]") {
  Run r;
  auto rule = verifiers::make_greedy_rule();
  const std::vector<std::map<std::string, std::string>> cases = {
      {},
      {{"tree", "dynamic"}, {"depth", "4"}, {"topk", "3"}},
      {{"layers", "0,2,4"}},
      {{"layers", "4,2,0"}, {"tree", "dynamic"}, {"depth", "3"}, {"topk", "2"}},
      {{"tree", "static"}, {"branching", "3,2,1"}},
  };
  for (const std::string text : {"Once upon a time", "The little dog was sad because", ""}) {
    const auto prompt = r.s.tok->encode(text, true);
    DecodeOptions base;
    base.max_new_tokens = 48;
    const auto ar = speculative_decode(r.s.model, nullptr, *rule, prompt, base);
    for (const bool reduced : {false, true})
      for (const auto& opts : cases)
        for (const int k : {1, 2, 4}) {
          auto drafter = r.make(eagle3_weights(reduced), opts);
          DecodeOptions d = base;
          d.k = k;
          const auto spec = speculative_decode(r.s.model, drafter.get(), *rule, prompt, d);
          INFO("prompt '" << text << "' k=" << k << (reduced ? " reduced vocabulary" : "") << " tree "
                          << (opts.count("tree") ? opts.at("tree") : "chain") << " layers "
                          << (opts.count("layers") ? opts.at("layers") : "default"));
          REQUIRE(spec.tokens == ar.tokens);
          CHECK(spec.drafted_tokens() > 0);
        }
  }
}

TEST_CASE("EAGLE-3 files and options that do not fit give one-line errors naming the file and tensor", "[eagle3]") {
  const Eagle3File f = make_eagle3(5, "BF16", reduced_ids());
  const auto error_for = [&](const std::string& name, const std::function<void(std::vector<test::StTensor>&)>& edit,
                             const ModelConfig& t = target()) {
    const std::string path = scratch(name + ".safetensors");
    write_eagle3(f, path, edit);
    const std::string e = test::error_of([&] { load_eagle_weights(path, t); });
    CHECK_THAT(e, Catch::Contains(path));
    CHECK(e.find('\n') == std::string::npos);
    return e;
  };
  const auto find = [](std::vector<test::StTensor>& ts, const std::string& name) -> test::StTensor& {
    for (auto& t : ts)
      if (t.name == name) return t;
    FAIL("no tensor " << name);
    return ts.front();
  };
  SECTION("a missing tensor") {
    const std::string e = error_for("e3_no_hidden_norm", [](auto& ts) {
      std::erase_if(ts, [](const test::StTensor& t) { return t.name == "midlayer.hidden_norm.weight"; });
    });
    CHECK_THAT(e, Catch::Contains("'midlayer.hidden_norm.weight'"));
  }
  SECTION("fc of EAGLE-1's width") {
    const std::string e = error_for("e3_fc_width", [&](auto& ts) {
      auto& fc = find(ts, "fc.weight");
      fc.shape = {64, 128};
      fc.bytes.resize(fc.bytes.size() * 2 / 3);
    });
    CHECK_THAT(e, Catch::Contains("'fc.weight'") && Catch::Contains("128 inputs") && Catch::Contains("expected 192"));
  }
  SECTION("a q_proj reading H, not 2H") {
    const std::string e = error_for("e3_q_width", [&](auto& ts) {
      auto& q = find(ts, "midlayer.self_attn.q_proj.weight");
      q.shape = {64, 64};
      q.bytes.resize(q.bytes.size() / 2);
    });
    CHECK_THAT(e, Catch::Contains("'midlayer.self_attn.q_proj.weight'"));
  }
  SECTION("another hidden size") {
    ModelConfig t = target();
    t.dim = 32;
    t.head_dim = 4;
    const std::string e = error_for("e3_hidden", {}, t);
    CHECK_THAT(e, Catch::Contains("EAGLE-3 layer has hidden size 64") && Catch::Contains("target's is 32"));
  }
  SECTION("d2t out of range") {
    const std::string e = error_for("e3_d2t", [&](auto& ts) {
      auto& d2t = find(ts, "d2t");
      const int64_t far = 400;  // the last draft id (340) -> 740
      std::memcpy(d2t.bytes.data() + d2t.bytes.size() - 8, &far, 8);
    });
    CHECK_THAT(e, Catch::Contains("d2t") && Catch::Contains("target id 740") && Catch::Contains("[0, 512)"));
  }
  SECTION("an lm_head of another draft vocabulary") {
    const std::string e = error_for("e3_head_rows", [&](auto& ts) {
      auto& d2t = find(ts, "d2t");
      d2t.shape = {300};
      d2t.bytes.resize(300 * 8);
    });
    CHECK_THAT(e, Catch::Contains("'lm_head.weight' has 341 rows") && Catch::Contains("300"));
  }
  SECTION("a t2d that disagrees with d2t") {
    const std::string e = error_for("e3_t2d", [&](auto& ts) { find(ts, "t2d").bytes[1] = 1; });
    CHECK_THAT(e, Catch::Contains("'t2d'") && Catch::Contains("342"));
  }
  SECTION("an unknown tensor") {
    const std::string e = error_for("e3_unknown", [&](auto& ts) {
      ts.push_back({"midlayer.extra.weight", "F32", {1}, std::vector<uint8_t>(4, 0)});
    });
    CHECK_THAT(e, Catch::Contains("'midlayer.extra.weight'") && Catch::Contains("EAGLE-3"));
  }
  SECTION("truncated") {
    const std::string good = scratch("e3_good.safetensors"), path = scratch("e3_truncated.safetensors");
    write_eagle3(f, good);
    std::filesystem::copy_file(good, path, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(path, std::filesystem::file_size(good) - 100);
    const std::string e = test::error_of([&] { load_eagle_weights(path, target()); });
    CHECK_THAT(e, Catch::Contains(path) && Catch::Contains("truncated"));
    CHECK(e.find('\n') == std::string::npos);
  }
  SECTION("EAGLE-1's trainer metrics refuse an EAGLE-3 layer") {
    const std::string path = scratch("e3_for_metrics.safetensors");
    write_eagle3(f, path);
    const EagleWeights w = load_eagle_weights(path, target());
    CHECK_THAT(test::error_of([&] { evaluate_eagle(w, train::FeatureData{}, {}, {}, {}, 1.f, 0.1f); }),
               Catch::Contains("an EAGLE-1 layer") && Catch::Contains("EAGLE-3"));
  }
  SECTION("the drafter's layers option") {
    Run r;
    CHECK_THAT(test::error_of([&] {
                 r.make(eagle3_weights(false), {{"layers", "0,5,1"}});
               }),
               Catch::Contains("layers") && Catch::Contains("[0, 5)") && Catch::Contains("got 5"));
    CHECK_THAT(test::error_of([&] {
                 r.make(eagle3_weights(false), {{"layers", "1,2"}});
               }),
               Catch::Contains("three target layers") && Catch::Contains("got 2"));
    CHECK_THAT(test::error_of([&] {
                 r.make(eagle3_weights(false), {{"layers", "1,2.5,3"}});
               }),
               Catch::Contains("[eagle] layers"));
    const std::string eagle1 = test::random_eagle_weights(target(), "eagle3_test_eagle1");
    CHECK_THAT(test::error_of([&] {
                 r.make(eagle1, {{"layers", "1,2,3"}});
               }),
               Catch::Contains("layers") && Catch::Contains("EAGLE-1"));
  }
}
