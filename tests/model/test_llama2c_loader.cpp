// llama2.c checkpoints: version 1 and legacy version 0 load to the same weights; bad files are one-line
// errors naming the file.
#include <catch2/catch.hpp>

#include <cstring>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/backends/cpu/llama_cpu.h"
#include "tests/support/assets.h"

using namespace specdec;

namespace {

std::vector<char> read_all(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
std::string write(const std::string& name, const std::vector<char>& bytes) {
  auto path = (test::scratch_dir("llama2c") / name).string();
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// Rewrites the version-1 export in the legacy version-0 layout (as llama2.c's legacy_export does).
std::vector<char> to_v0(const std::vector<char>& v1) {
  int32_t h[7];
  std::memcpy(h, v1.data() + 8, sizeof(h));
  const int64_t H = h[0], F = h[1], L = h[2], Hq = h[3], Hkv = h[4], V = h[5], S = h[6];
  const int64_t D = H / Hq;
  const char* p = v1.data() + 256;
  auto take = [&](int64_t n) {
    std::vector<char> out(p, p + n * 4);
    p += n * 4;
    return out;
  };
  auto att_norm = take(L * H), ffn_norm = take(L * H), norm = take(H), emb = take(V * H);
  auto wq = take(L * H * H), wk = take(L * H * Hkv * D), wv = take(L * H * Hkv * D), wo = take(L * H * H);
  auto w1 = take(L * F * H), w2 = take(L * H * F), w3 = take(L * F * H);
  std::vector<char> out(reinterpret_cast<const char*>(h), reinterpret_cast<const char*>(h) + 28);
  for (auto* part : {&emb, &att_norm, &wq, &wk, &wv, &wo, &ffn_norm, &w1, &w2, &w3, &norm})
    out.insert(out.end(), part->begin(), part->end());
  out.resize(out.size() + static_cast<size_t>(S * D) * 4, 0);  // freq_cis real+imag (unused)
  return out;
}

}  // namespace

TEST_CASE("legacy version-0 and version-1 exports give identical logits", "[loader]") {
  auto v1 = read_all(test::stories_model());
  REQUIRE(v1.size() == 1040384);
  const auto v0_path = write("stories260K_v0.bin", to_v0(v1));
  auto m0 = load_model(v0_path);
  auto m1 = load_model(test::stories_model());
  REQUIRE(m0->format == "llama2c-v0");
  REQUIRE(m1->format == "llama2c-v1");
  CAPTURE(m0->config.describe(), m1->config.describe());
  REQUIRE(m0->config == m1->config);
  LlamaCpu a(m0), b(m1);
  auto ca = a.new_cache(16), cb = b.new_cache(16);
  const std::vector<TokenId> toks = {1, 300, 301, 302};
  ForwardResult ra, rb;
  a.forward(*ca, {.tokens = toks}, ra);
  b.forward(*cb, {.tokens = toks}, rb);
  REQUIRE(ra.logits == rb.logits);
}

TEST_CASE("bad llama2.c files are one-line errors naming the file", "[loader]") {
  auto v1 = read_all(test::stories_model());
  SECTION("truncated") {
    auto cut = v1;
    cut.resize(v1.size() - 1000);
    const auto path = write("truncated.bin", cut);
    REQUIRE_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("truncated") &&
                                              Catch::Contains("expected 1040384 bytes"));
  }
  SECTION("truncated inside the header") {
    std::vector<char> cut(v1.begin(), v1.begin() + 100);
    const auto path = write("short_header.bin", cut);
    REQUIRE_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("header"));
  }
  SECTION("wrong magic number") {
    auto bad = v1;
    std::memcpy(bad.data(), "ZZZZ", 4);
    const auto path = write("bad_magic.bin", bad);
    REQUIRE_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("magic"));
  }
  SECTION("unsupported export version") {
    auto bad = v1;
    bad[4] = 2;
    const auto path = write("v2.bin", bad);
    REQUIRE_THROWS_WITH(load_model(path), Catch::Contains(path) && Catch::Contains("version 2"));
  }
  SECTION("missing file") {
    REQUIRE_THROWS_WITH(load_model("/nonexistent/model.bin"),
                        Catch::Contains("/nonexistent/model.bin") && Catch::Contains("not found"));
  }
  SECTION("every error is one line") {
    try {
      load_model(write("empty.bin", {}));
      FAIL("expected an error");
    } catch (const Error& e) {
      REQUIRE(std::string(e.what()).find('\n') == std::string::npos);
    }
  }
}
