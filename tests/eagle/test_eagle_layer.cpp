// The EAGLE layer (drafters/eagle/eagle.h): eagle_forward against a plain scalar reference written here (in
// double), a block against the same pairs one at a time, a tree mask + compact against the chain it keeps,
// save -> load bit for bit, an EAGLE-1-layout file written here, and the one-line errors for files that do
// not fit the target.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "drafters/eagle/eagle.h"
#include "drafters/medusa/heads.h"
#include "kernels/cpu/quant.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/random.h"

using namespace specdec;
using namespace specdec::eagle;

namespace {

ModelConfig small_target() {
  ModelConfig c;
  c.dim = 64;
  c.hidden_dim = 96;
  c.n_layers = 2;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  c.head_dim = 16;
  c.vocab_size = 300;
  c.rope_theta = 10000.f;
  c.rms_eps = 1e-5f;
  return c;
}

// Random weights with nonzero biases and a non-unit post_norm, so that every term of the layer matters.
EagleWeights random_weights(uint32_t seed) {
  EagleWeights w = init_eagle_weights(EagleConfig::of_target(small_target()), seed, 0.15f);
  w.fc_b = test::randn(w.fc_b.size(), seed + 1, 0.3f);
  w.post_norm = test::randn(w.post_norm.size(), seed + 2, 0.5f);
  for (float& x : w.post_norm) x += 1.f;
  return w;
}

// The layer by eagle.h's definition, in double, over the pairs 0..T-1 at once: pair t sees pairs j with
// mask[t][j] (all of them are in the block; no cache).
std::vector<double> reference(const EagleWeights& w, const std::vector<float>& emb, const std::vector<float>& feat,
                              const std::vector<int32_t>& pos, const std::vector<uint8_t>& mask) {
  const EagleConfig& c = w.cfg;
  const int H = c.hidden_size, I = c.intermediate_size, D = c.head_dim, T = static_cast<int>(pos.size());
  auto matvec = [](const std::vector<float>& m, int rows, int cols, const double* x, double* y) {
    for (int r = 0; r < rows; ++r) {
      double s = 0;
      for (int i = 0; i < cols; ++i) s += static_cast<double>(m[static_cast<size_t>(r) * cols + i]) * x[i];
      y[r] = s;
    }
  };
  auto rope = [&](double* x, int p) {
    for (int i = 0; i < D / 2; ++i) {
      const double th = p * std::pow(static_cast<double>(c.rope_theta), -2.0 * i / D);
      const double a = x[i], b = x[i + D / 2];
      x[i] = a * std::cos(th) - b * std::sin(th);
      x[i + D / 2] = b * std::cos(th) + a * std::sin(th);
    }
  };
  std::vector<double> u(static_cast<size_t>(T) * H), q(static_cast<size_t>(T) * c.q_dim()),
      k(static_cast<size_t>(T) * c.kv_dim()), v(k.size());
  for (int t = 0; t < T; ++t) {
    std::vector<double> x(2 * H);
    for (int i = 0; i < H; ++i) x[i] = emb[t * H + i], x[H + i] = feat[t * H + i];
    matvec(w.fc_w, H, 2 * H, x.data(), &u[t * H]);
    for (int i = 0; i < H; ++i) u[t * H + i] += w.fc_b[i];
    matvec(w.wq, c.q_dim(), H, &u[t * H], &q[t * c.q_dim()]);
    matvec(w.wk, c.kv_dim(), H, &u[t * H], &k[t * c.kv_dim()]);
    matvec(w.wv, c.kv_dim(), H, &u[t * H], &v[t * c.kv_dim()]);
    for (int h = 0; h < c.n_heads; ++h) rope(&q[t * c.q_dim() + h * D], pos[t]);
    for (int h = 0; h < c.n_kv_heads; ++h) rope(&k[t * c.kv_dim() + h * D], pos[t]);
  }
  std::vector<double> out(static_cast<size_t>(T) * H);
  for (int t = 0; t < T; ++t) {
    std::vector<double> a(c.q_dim(), 0.0);
    for (int h = 0; h < c.n_heads; ++h) {
      const int kh = h / (c.n_heads / c.n_kv_heads);
      std::vector<double> s(T, 0.0);
      double mx = -1e300, sum = 0;
      for (int j = 0; j < T; ++j) {
        if (!mask[t * T + j]) continue;
        for (int d = 0; d < D; ++d) s[j] += q[t * c.q_dim() + h * D + d] * k[j * c.kv_dim() + kh * D + d];
        s[j] /= std::sqrt(static_cast<double>(D));
        mx = std::max(mx, s[j]);
      }
      for (int j = 0; j < T; ++j) sum += mask[t * T + j] ? std::exp(s[j] - mx) : 0.0;
      for (int j = 0; j < T; ++j)
        if (mask[t * T + j])
          for (int d = 0; d < D; ++d) a[h * D + d] += std::exp(s[j] - mx) / sum * v[j * c.kv_dim() + kh * D + d];
    }
    std::vector<double> hs(H), n(H), g(I), up(I), y(H);
    matvec(w.wo, H, c.q_dim(), a.data(), hs.data());
    double ms = 0;
    for (int i = 0; i < H; ++i) hs[i] += u[t * H + i], ms += hs[i] * hs[i];
    const double r = 1.0 / std::sqrt(ms / H + c.rms_eps);
    for (int i = 0; i < H; ++i) n[i] = hs[i] * r * w.post_norm[i];
    matvec(w.w_gate, I, H, n.data(), g.data());
    matvec(w.w_up, I, H, n.data(), up.data());
    for (int i = 0; i < I; ++i) g[i] = g[i] / (1 + std::exp(-g[i])) * up[i];
    matvec(w.w_down, H, I, g.data(), y.data());
    for (int i = 0; i < H; ++i) out[t * H + i] = hs[i] + y[i];
  }
  return out;
}

std::vector<uint8_t> causal(int T) {
  std::vector<uint8_t> m(static_cast<size_t>(T) * T, 0);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j <= t; ++j) m[t * T + j] = 1;
  return m;
}

std::vector<float> forward(const EagleWeights& w, EagleCache& cache, const std::vector<float>& emb,
                           const std::vector<float>& feat, const std::vector<int32_t>& pos,
                           const std::vector<uint8_t>& mask = {}) {
  std::vector<float> out(emb.size());
  eagle_forward(w, cache, emb, feat, pos, mask, out);
  return out;
}

std::vector<float> rows(const std::vector<float>& x, int H, std::initializer_list<int> which) {
  std::vector<float> r;
  for (int i : which) r.insert(r.end(), x.begin() + i * H, x.begin() + (i + 1) * H);
  return r;
}

std::string scratch(const std::string& name) {
  std::filesystem::create_directories(SPECDEC_TEST_SCRATCH);
  return std::string(SPECDEC_TEST_SCRATCH) + "/" + name;
}

}  // namespace

TEST_CASE("eagle_forward matches the scalar reference, causal and with a custom mask") {
  const EagleWeights w = random_weights(11);
  const int H = w.cfg.hidden_size, T = 7;
  const auto emb = test::randn(static_cast<size_t>(T) * H, 21, 1.f);
  const auto feat = test::randn(static_cast<size_t>(T) * H, 22, 1.f);
  const std::vector<int32_t> pos = {3, 4, 5, 6, 7, 8, 9};
  // A tree mask: 0 <- 1 <- {2, 3}; 3 <- 4; 2 <- 5 <- 6 (each row attends its ancestors and itself).
  std::vector<uint8_t> tree(T * T, 0);
  const int parent[] = {-1, 0, 1, 1, 3, 2, 5};
  for (int t = 0; t < T; ++t)
    for (int a = t; a >= 0; a = parent[a]) tree[t * T + a] = 1;
  for (const bool is_tree : {false, true}) {
    EagleCache cache;
    // The causal case passes no mask (eagle_forward's default) and the reference the causal one.
    const auto out = forward(w, cache, emb, feat, pos, is_tree ? tree : std::vector<uint8_t>{});
    const auto ref = reference(w, emb, feat, pos, is_tree ? tree : causal(T));
    double err = 0, scale = 0;
    for (size_t i = 0; i < out.size(); ++i) err = std::max(err, std::abs(out[i] - ref[i])), scale += ref[i] * ref[i];
    scale = std::sqrt(scale / out.size());
    CHECK(scale > 0.5);
    CHECK(err < 1e-5 * scale);
    CHECK(cache.n == T);
  }
}

TEST_CASE("packed matrices: the dequantized layer's forward, within the activations' 8-bit quantization") {
  const EagleWeights w = random_weights(13);
  const int H = w.cfg.hidden_size, T = 5;
  const auto emb = test::randn(static_cast<size_t>(T) * H, 41, 1.f);
  const auto feat = test::randn(static_cast<size_t>(T) * H, 42, 1.f);
  const std::vector<int32_t> pos = {0, 1, 2, 3, 4};
  EagleCache c32;
  const auto out32 = forward(w, c32, emb, feat, pos);
  for (const cpu::DType dtype : {cpu::DType::Q8_0, cpu::DType::Q4_1}) {
    INFO(cpu::dtype_info(dtype).name);
    EagleWeights wp = w;
    pack_eagle_matrices(wp, dtype);
    // The layer whose f32 matrices are the packed rows dequantized: what the packed forward computes, up to its
    // activations' quantization (Q8_0 rows, as the target's quantized layers).
    EagleWeights wd = w;
    std::vector<float>* f32[kEagleMatrices] = {&wd.fc_w, &wd.wq,     &wd.wk,   &wd.wv,
                                               &wd.wo,   &wd.w_gate, &wd.w_up, &wd.w_down};
    for (int m = 0; m < kEagleMatrices; ++m) {
      const int cols = m == kFc ? w.cfg.fc_in() : m == kWo ? w.cfg.q_dim() : m == kDown ? w.cfg.intermediate_size : H;
      const size_t rows = f32[m]->size() / cols, stride = cpu::row_bytes(dtype, cols);
      REQUIRE(wp.packed[m].size() == rows * stride);
      for (size_t r = 0; r < rows; ++r)
        cpu::dequantize_row_quant(f32[m]->data() + r * cols, wp.packed[m].data() + r * stride, dtype, cols);
    }
    const auto ref = reference(wd, emb, feat, pos, causal(T));
    EagleCache cp;
    const auto out = forward(wp, cp, emb, feat, pos);
    // RMS over the outputs: of the packed forward against the dequantized layer, of the f32 layer against it
    // (the weights' own rounding), and of the reference.
    double err = 0, err32 = 0, scale = 0;
    for (size_t i = 0; i < out.size(); ++i) {
      err += (out[i] - ref[i]) * (out[i] - ref[i]);
      err32 += (out32[i] - ref[i]) * (out32[i] - ref[i]);
      scale += ref[i] * ref[i];
    }
    err = std::sqrt(err / out.size()), err32 = std::sqrt(err32 / out.size()), scale = std::sqrt(scale / out.size());
    INFO("rms: packed - dequantized " << err << ", f32 - dequantized " << err32 << ", dequantized " << scale);
    CHECK(scale > 0.5);
    // Activations rounded to 8 bits per 32-element block through fc, q/k/v, o, gate/up, down: measured 1.2%
    // (Q8_0) and 0.9% (Q4_1) of the outputs' RMS on this layer.
    CHECK(err < 0.02 * scale);
    CHECK(err32 > 0);
    // 4-bit weights move the layer far more than 8-bit activations: the packed forward follows the dequantized
    // layer, not the f32 one (measured 0.037 against 0.70).
    if (dtype == cpu::DType::Q4_1) CHECK(err < 0.2 * err32);
    // Row-invariant like the f32 forward: a pair read alone gives the block's bits.
    EagleCache one;
    CHECK(forward(wp, one, rows(emb, H, {0}), rows(feat, H, {0}), {0}) == rows(out, H, {0}));
    pack_eagle_matrices(wp, cpu::DType::F32);  // unpacked again: the f32 forward, bit for bit
    EagleCache back;
    CHECK(forward(wp, back, emb, feat, pos) == out32);
  }
  EagleWeights bad = w;
  CHECK_THAT(test::one_line_error_of([&] { pack_eagle_matrices(bad, cpu::DType::Q4_K); }),
             Catch::Contains("q8_0, q4_0 or q4_1, not q4_k"));
}

TEST_CASE("a block equals the same pairs read one at a time through the cache") {
  const EagleWeights w = random_weights(12);
  const int H = w.cfg.hidden_size, T = 6;
  const auto emb = test::randn(static_cast<size_t>(T) * H, 31);
  const auto feat = test::randn(static_cast<size_t>(T) * H, 32);
  std::vector<int32_t> pos(T);
  for (int t = 0; t < T; ++t) pos[t] = 10 + t;
  EagleCache block;
  const auto out = forward(w, block, emb, feat, pos);
  EagleCache step;
  for (int t = 0; t < T; ++t) {
    const auto o = forward(w, step, rows(emb, H, {t}), rows(feat, H, {t}), {pos[t]});
    for (int i = 0; i < H; ++i) CHECK(std::abs(o[i] - out[t * H + i]) <= 1e-5f * (1 + std::abs(out[t * H + i])));
  }
  REQUIRE(step.n == T);
  for (size_t i = 0; i < block.k.size(); ++i)
    REQUIRE(std::abs(step.k[i] - block.k[i]) <= 1e-5f * (1 + std::abs(block.k[i])));
  // Deterministic: the same call gives the same bits.
  EagleCache again;
  CHECK(forward(w, again, emb, feat, pos) == out);
}

TEST_CASE("a tree read with its mask, compacted to one branch, continues like the chain it keeps") {
  const EagleWeights w = random_weights(13);
  const int H = w.cfg.hidden_size;
  const auto emb = test::randn(8 * static_cast<size_t>(H), 41);
  const auto feat = test::randn(8 * static_cast<size_t>(H), 42);
  // Prefix: pairs 0, 1 (positions 0, 1). Tree after it: nodes a=2 (pos 2), b=3 (pos 2, sibling of a),
  // c=4 (pos 3, child of b), d=5 (pos 3, child of a). Keep the branch b -> c. Then read pair 6 at position 4.
  EagleCache tree;
  forward(w, tree, rows(emb, H, {0, 1}), rows(feat, H, {0, 1}), {0, 1});
  const int S = 2 + 4;
  std::vector<uint8_t> mask(4 * S, 0);
  const int parent[] = {-1, -1, 1, 0};  // within the block: a, b roots; c under b; d under a
  for (int t = 0; t < 4; ++t) {
    mask[t * S + 0] = mask[t * S + 1] = 1;
    for (int x = t; x >= 0; x = parent[x]) mask[t * S + 2 + x] = 1;
  }
  const auto tree_out = forward(w, tree, rows(emb, H, {2, 3, 4, 5}), rows(feat, H, {2, 3, 4, 5}), {2, 2, 3, 3}, mask);
  const std::vector<int32_t> keep = {1, 2};  // b, c
  tree.compact(2, keep);
  REQUIRE(tree.n == 4);
  const auto tree_next = forward(w, tree, rows(emb, H, {6}), rows(feat, H, {6}), {4});

  EagleCache chain;
  const auto chain_out =
      forward(w, chain, rows(emb, H, {0, 1, 3, 4, 6}), rows(feat, H, {0, 1, 3, 4, 6}), {0, 1, 2, 3, 4});
  auto close = [](float a, float b) { return std::abs(a - b) <= 1e-5f * (1 + std::abs(b)); };
  for (int i = 0; i < H; ++i) {
    CHECK(close(tree_out[1 * H + i], chain_out[2 * H + i]));  // b
    CHECK(close(tree_out[2 * H + i], chain_out[3 * H + i]));  // c
    CHECK(close(tree_next[i], chain_out[4 * H + i]));
  }
  // The dropped siblings give other features (so the check above could fail).
  CHECK_FALSE(close(tree_out[0], chain_out[2 * H]));
  tree.truncate(1);
  CHECK(tree.n == 1);
  CHECK(tree.k.size() == static_cast<size_t>(w.cfg.kv_dim()));
}

TEST_CASE("save -> load is bit for bit, draft_ids and metadata included") {
  EagleWeights w = random_weights(14);
  w.draft_ids = {0, 5, 6, 100, 299};
  w.metadata_json = R"({"target_sha256": "abc", "vocab_size": 300})";
  const std::string path = scratch("eagle_roundtrip.safetensors");
  save_eagle_weights(w, path);
  const EagleWeights r = load_eagle_weights(path, small_target(), "abc");
  CHECK(r.fc_w == w.fc_w);
  CHECK(r.fc_b == w.fc_b);
  CHECK(r.wq == w.wq);
  CHECK(r.wk == w.wk);
  CHECK(r.wv == w.wv);
  CHECK(r.wo == w.wo);
  CHECK(r.post_norm == w.post_norm);
  CHECK(r.w_gate == w.w_gate);
  CHECK(r.w_up == w.w_up);
  CHECK(r.w_down == w.w_down);
  CHECK(r.draft_ids == w.draft_ids);
  CHECK(r.metadata_json == w.metadata_json);
  // d2t is stored as EAGLE-3 does: I64 offsets, target id = d + d2t[d].
  const auto f = SafetensorsFile::open(path);
  const SafetensorsTensor* d2t = f->find("d2t");
  REQUIRE(d2t != nullptr);
  CHECK(d2t->dtype == "I64");
  int64_t third = 0;
  std::memcpy(&third, d2t->data + 3 * 8, 8);
  CHECK(third == 97);
}

TEST_CASE("an EAGLE-1-layout file (the same names plus embed_tokens.weight, no metadata) loads") {
  const EagleWeights w = random_weights(15);
  const EagleConfig& c = w.cfg;
  const int64_t H = c.hidden_size, I = c.intermediate_size, Q = c.q_dim(), KV = c.kv_dim(), V = c.vocab_size;
  const auto embed = test::randn(static_cast<size_t>(V * H), 16);
  const std::string path = scratch("eagle1.safetensors");
  medusa::write_safetensors_f32(path,
                                {{"embed_tokens.weight", {V, H}, embed.data()},
                                 {"fc.weight", {H, 2 * H}, w.fc_w.data()},
                                 {"fc.bias", {H}, w.fc_b.data()},
                                 {"layers.0.self_attn.q_proj.weight", {Q, H}, w.wq.data()},
                                 {"layers.0.self_attn.k_proj.weight", {KV, H}, w.wk.data()},
                                 {"layers.0.self_attn.v_proj.weight", {KV, H}, w.wv.data()},
                                 {"layers.0.self_attn.o_proj.weight", {H, Q}, w.wo.data()},
                                 {"layers.0.mlp.gate_proj.weight", {I, H}, w.w_gate.data()},
                                 {"layers.0.mlp.up_proj.weight", {I, H}, w.w_up.data()},
                                 {"layers.0.mlp.down_proj.weight", {H, I}, w.w_down.data()},
                                 {"layers.0.post_attention_layernorm.weight", {H}, w.post_norm.data()}},
                                {});
  const EagleWeights r = load_eagle_weights(path, small_target(), "some-sha");
  CHECK(r.wq == w.wq);
  CHECK(r.w_down == w.w_down);
  CHECK(r.draft_ids.empty());
  CHECK(r.metadata_json.empty());
  CHECK(r.cfg.intermediate_size == 96);
}

TEST_CASE("files that do not fit the target give one-line errors naming the file") {
  EagleWeights w = random_weights(17);
  w.metadata_json = R"({"target_sha256": "aaaa"})";
  const std::string good = scratch("eagle_good.safetensors");
  save_eagle_weights(w, good);

  SECTION("truncated") {
    const std::string path = scratch("eagle_truncated.safetensors");
    std::filesystem::copy_file(good, path, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::resize_file(path, std::filesystem::file_size(good) - 100);
    const std::string e = test::error_of([&] { load_eagle_weights(path, small_target()); });
    CHECK_THAT(e, Catch::Contains(path) && Catch::Contains("truncated"));
    CHECK(e.find('\n') == std::string::npos);
  }
  SECTION("wrong hidden size") {
    ModelConfig t = small_target();
    t.dim = 32;
    t.head_dim = 8;
    const std::string e = test::error_of([&] { load_eagle_weights(good, t); });
    CHECK_THAT(e, Catch::Contains(good) && Catch::Contains("hidden size 64") && Catch::Contains("target's is 32"));
  }
  SECTION("d2t id out of range") {
    w.draft_ids = {1, 2, 299};
    const std::string path = scratch("eagle_d2t.safetensors");
    save_eagle_weights(w, path);
    ModelConfig t = small_target();
    t.vocab_size = 200;
    const std::string e = test::error_of([&] { load_eagle_weights(path, t); });
    CHECK_THAT(e, Catch::Contains(path) && Catch::Contains("target id 299") && Catch::Contains("[0, 200)"));
  }
  SECTION("weights of another target") {
    const std::string e = test::error_of([&] { load_eagle_weights(good, small_target(), "bbbb"); });
    CHECK_THAT(e, Catch::Contains(good) && Catch::Contains("sha256 aaaa") && Catch::Contains("bbbb"));
    CHECK_NOTHROW(load_eagle_weights(good, small_target(), "aaaa"));
  }
  SECTION("not a layer file") {
    const std::string path = scratch("eagle_other.safetensors");
    const std::vector<float> x(4, 1.f);
    medusa::write_safetensors_f32(path, {{"heads.0.blocks.0.weight", {2, 2}, x.data()}}, {});
    const std::string e = test::error_of([&] { load_eagle_weights(path, small_target()); });
    CHECK_THAT(e, Catch::Contains(path) && Catch::Contains("heads.0.blocks.0.weight"));
  }
}
