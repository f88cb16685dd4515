// Medusa heads (drafters/medusa/heads.h): the head state against a plain reference, initialisation,
// save -> load in specdec's layout, the Medusa repository's layout in f32/f16/bf16 written by the test, and
// the one-line errors for files that do not fit the target.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "drafters/medusa/heads.h"
#include "kernels/cpu/dtype.h"
#include "tests/support/assets.h"
#include "tests/support/errors.h"
#include "tests/support/random.h"

using namespace specdec;
using namespace specdec::medusa;

namespace {

ModelConfig target_of(int H, int V) {
  ModelConfig c;
  c.dim = H;
  c.vocab_size = V;
  return c;
}

MedusaHeads random_heads(int K, int L, int H, int V, bool own_lm, uint32_t seed) {
  HeadsConfig c{K, L, H, V, own_lm};
  MedusaHeads h = init_medusa_heads(c, seed, 0.3f, test::randn(static_cast<size_t>(V) * H, seed + 7, 0.5f));
  for (size_t i = 0; i < h.b.size(); ++i) h.b[i] = test::randn(H, seed + 100 + static_cast<uint32_t>(i), 0.2f);
  return h;
}

// The head state by its definition, in double.
std::vector<double> head_state_ref(const MedusaHeads& h, int k, const std::vector<float>& x0) {
  const int H = h.cfg.hidden_size;
  std::vector<double> x(x0.begin(), x0.end());
  for (int l = 0; l < h.cfg.n_layers; ++l) {
    const auto& w = h.w[k * h.cfg.n_layers + l];
    const auto& b = h.b[k * h.cfg.n_layers + l];
    std::vector<double> y(H);
    for (int o = 0; o < H; ++o) {
      double s = b[o];
      for (int i = 0; i < H; ++i) s += static_cast<double>(w[o * H + i]) * x[i];
      y[o] = s;
    }
    for (int o = 0; o < H; ++o) x[o] += y[o] / (1 + std::exp(-y[o]));
  }
  return x;
}

std::vector<float> state(const MedusaHeads& h, int k, const std::vector<float>& x) {
  std::vector<float> out(x.size());
  h.head_state(k, x.data(), out.data());
  return out;
}

// A safetensors file with tensors of any dtype, written byte by byte (the Medusa repository's files are
// torch's, often f16 / bf16).
struct RawTensor {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::vector<float> values;
};
void write_raw(const std::string& path, const std::vector<RawTensor>& tensors) {
  nlohmann::ordered_json header;
  std::string data;
  for (const RawTensor& t : tensors) {
    const size_t begin = data.size();
    for (float v : t.values) {
      if (t.dtype == "F32") {
        data.append(reinterpret_cast<const char*>(&v), 4);
      } else {
        uint16_t h;
        if (t.dtype == "F16") {
          h = cpu::fp32_to_fp16(v);
        } else {
          uint32_t u;
          std::memcpy(&u, &v, 4);
          h = static_cast<uint16_t>(u >> 16);  // the values used are exact in bf16
        }
        data.append(reinterpret_cast<const char*>(&h), 2);
      }
    }
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {begin, data.size()}}};
  }
  const std::string text = header.dump();
  const uint64_t n = text.size();
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(&n), 8);
  out << text << data;
}

// Values exact in f16 and bf16: multiples of 1/64 in [-2, 2].
std::vector<float> exact_values(size_t n, uint32_t seed) {
  std::vector<float> v = test::randn(n, seed, 0.5f);
  for (float& x : v) x = std::clamp(std::round(x * 64.f) / 64.f, -2.f, 2.f);
  return v;
}

}  // namespace

TEST_CASE("head_state: residual SiLU blocks as defined; zero blocks pass the feature through") {
  const MedusaHeads h = random_heads(3, 2, 16, 64, false, 1);
  const std::vector<float> x = test::randn(16, 2);
  for (int k = 0; k < 3; ++k) {
    const std::vector<float> got = state(h, k, x);
    const std::vector<double> ref = head_state_ref(h, k, x);
    for (int i = 0; i < 16; ++i) CHECK(got[i] == Approx(ref[i]).epsilon(1e-5).margin(1e-6));
  }
  // Heads differ from each other.
  CHECK(state(h, 0, x) != state(h, 1, x));

  const MedusaHeads zero = init_medusa_heads({2, 1, 16, 64, false}, 5);
  CHECK(state(zero, 1, x) == x);
  CHECK_THAT(test::error_of([&] { state(zero, 2, x); }), Catch::Contains("head index in [0, 2), got 2"));
}

TEST_CASE("init_medusa_heads: random blocks are reproducible per seed; own LM heads copy the target's") {
  const HeadsConfig c{2, 1, 16, 64, false};
  const MedusaHeads a = init_medusa_heads(c, 9, 0.1f), b = init_medusa_heads(c, 9, 0.1f),
                    d = init_medusa_heads(c, 10, 0.1f);
  CHECK(a.w == b.w);
  CHECK(a.w != d.w);
  for (float v : a.w[0]) CHECK(std::abs(v) <= 0.1f);
  CHECK(*std::max_element(a.w[0].begin(), a.w[0].end()) > 0.05f);
  const std::vector<float> lm = test::randn(64 * 16, 3);
  const MedusaHeads own = init_medusa_heads({2, 1, 16, 64, true}, 9, 0.1f, lm);
  REQUIRE(own.lm_head.size() == 2);
  CHECK(own.lm_head[1] == lm);
  CHECK_THAT(test::error_of([&] {
               init_medusa_heads({2, 1, 16, 64, true}, 9);
             }),
             Catch::Contains("own LM heads start as copies"));
}

TEST_CASE("save -> load (specdec's layout): identical head states, LM heads and metadata") {
  const auto dir = test::scratch_dir("medusa_heads");
  for (bool own : {false, true}) {
    MedusaHeads h = random_heads(3, 2, 16, 64, own, 11);
    h.metadata_json = R"({"target_sha256":"abc","hidden_size":16,"vocab_size":64,"accuracy_topk":[[0.5]]})";
    const std::string path = (dir / (own ? "own.safetensors" : "shared.safetensors")).string();
    save_medusa_heads(h, path);
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
    const MedusaHeads g = load_medusa_heads(path, target_of(16, 64), "abc");
    CHECK(g.cfg.n_heads == 3);
    CHECK(g.cfg.n_layers == 2);
    CHECK(g.cfg.own_lm_head == own);
    CHECK(g.metadata_json == h.metadata_json);
    CHECK(g.w == h.w);
    CHECK(g.b == h.b);
    CHECK(g.lm_head == h.lm_head);
    const std::vector<float> x = test::randn(16, 12);
    for (int k = 0; k < 3; ++k) CHECK(state(g, k, x) == state(h, k, x));
  }
}

TEST_CASE("load: the Medusa repository's layout in f32, f16 and bf16 gives the same numbers") {
  const int K = 2, L = 1, H = 16, V = 64;
  std::vector<RawTensor> spec;
  for (int k = 0; k < K; ++k) {
    spec.push_back({"medusa_head." + std::to_string(k) + ".0.linear.weight", "", {H, H}, exact_values(H * H, 20 + k)});
    spec.push_back({"medusa_head." + std::to_string(k) + ".0.linear.bias", "", {H}, exact_values(H, 30 + k)});
    spec.push_back({"medusa_head." + std::to_string(k) + ".1.weight", "", {V, H}, exact_values(V * H, 40 + k)});
  }
  const auto dir = test::scratch_dir("medusa_heads");
  for (const char* dtype : {"F32", "F16", "BF16"}) {
    for (auto& t : spec) t.dtype = dtype;
    const std::string path = (dir / (std::string("medusa_") + dtype + ".safetensors")).string();
    write_raw(path, spec);
    const MedusaHeads h = load_medusa_heads(path, target_of(H, V));
    CHECK(h.cfg.n_heads == K);
    CHECK(h.cfg.n_layers == L);
    CHECK(h.cfg.own_lm_head);
    CHECK(h.metadata_json.empty());
    for (int k = 0; k < K; ++k) {
      CHECK(h.w[k] == spec[3 * k].values);
      CHECK(h.b[k] == spec[3 * k + 1].values);
      CHECK(h.lm_head[k] == spec[3 * k + 2].values);
    }
  }
}

TEST_CASE("load: one-line errors naming the file") {
  const auto dir = test::scratch_dir("medusa_heads");
  MedusaHeads h = random_heads(2, 1, 16, 64, false, 13);
  h.metadata_json = R"({"target_sha256":"aaaa","hidden_size":16,"vocab_size":64})";
  const std::string good = (dir / "good.safetensors").string();
  save_medusa_heads(h, good);
  auto one_line = [](const std::string& msg) { return msg.find('\n') == std::string::npos && !msg.empty(); };

  std::string e = test::error_of([&] { load_medusa_heads(good, target_of(16, 64), "bbbb"); });
  CHECK_THAT(e, Catch::Contains(good) && Catch::Contains("trained for the target with sha256 aaaa") &&
                    Catch::Contains("bbbb"));
  CHECK(one_line(e));
  CHECK_NOTHROW(load_medusa_heads(good, target_of(16, 64), "aaaa"));
  CHECK_NOTHROW(load_medusa_heads(good, target_of(16, 64)));  // no expectation: nothing to compare

  e = test::error_of([&] { load_medusa_heads(good, target_of(32, 64)); });
  CHECK_THAT(e, Catch::Contains(good) && Catch::Contains("hidden size 16") && Catch::Contains("the target's is 32"));
  e = test::error_of([&] { load_medusa_heads(good, target_of(16, 100)); });
  CHECK_THAT(e, Catch::Contains("vocabulary size 64") && Catch::Contains("the target's is 100"));

  // Truncated: the last bytes of the data are gone.
  const std::string truncated = (dir / "truncated.safetensors").string();
  std::filesystem::copy_file(good, truncated, std::filesystem::copy_options::overwrite_existing);
  std::filesystem::resize_file(truncated, std::filesystem::file_size(good) - 10);
  e = test::error_of([&] { load_medusa_heads(truncated, target_of(16, 64)); });
  CHECK_THAT(e, Catch::Contains(truncated) && Catch::Contains("truncated"));
  CHECK(one_line(e));
  // Truncated inside the header.
  std::filesystem::resize_file(truncated, 40);
  e = test::error_of([&] { load_medusa_heads(truncated, target_of(16, 64)); });
  CHECK_THAT(e, Catch::Contains(truncated) && Catch::Contains("truncated safetensors file"));

  const std::string text = (dir / "notes.safetensors").string();
  std::ofstream(text) << "these are not the heads you are looking for\n";
  e = test::error_of([&] { load_medusa_heads(text, target_of(16, 64)); });
  CHECK_THAT(e, Catch::Contains(text) && Catch::Contains("not a safetensors file"));

  // A missing and a misshapen tensor (Medusa layout, written raw).
  const std::string missing = (dir / "missing.safetensors").string();
  write_raw(missing, {{"medusa_head.0.0.linear.weight", "F32", {16, 16}, std::vector<float>(256)},
                      {"medusa_head.0.1.weight", "F32", {64, 16}, std::vector<float>(1024)}});
  e = test::error_of([&] { load_medusa_heads(missing, target_of(16, 64)); });
  CHECK_THAT(e, Catch::Contains(missing) && Catch::Contains("'medusa_head.0.0.linear.bias' is missing"));
  const std::string misshapen = (dir / "misshapen.safetensors").string();
  write_raw(misshapen, {{"heads.0.blocks.0.weight", "F32", {16, 16}, std::vector<float>(256)},
                        {"heads.0.blocks.0.bias", "F32", {15}, std::vector<float>(15)}});
  e = test::error_of([&] { load_medusa_heads(misshapen, target_of(16, 64)); });
  CHECK_THAT(e, Catch::Contains("'heads.0.blocks.0.bias' has shape [15], expected [16]"));
  const std::string stranger = (dir / "stranger.safetensors").string();
  write_raw(stranger, {{"model.embed_tokens.weight", "F32", {4, 4}, std::vector<float>(16)}});
  e = test::error_of([&] { load_medusa_heads(stranger, target_of(16, 64)); });
  CHECK_THAT(e, Catch::Contains("unexpected tensor 'model.embed_tokens.weight'"));
}
