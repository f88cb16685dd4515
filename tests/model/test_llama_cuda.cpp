// LlamaCuda (core/backends/cuda/llama_cuda.h) against LlamaCpu, its reference, on stories260K and on small
// synthetic GGUF models in every stored dtype; and the GPU's own invariances, exactly: a block equals its
// single steps, a batch equals its sequences, the decode graph equals plain launches, compact moves the
// right slots; greedy speculative decoding on the GPU equals AR decoding token for token.
//
// Tolerances (normalised error max|gpu - cpu| / max|cpu| over a logits block), and why:
// - fp32 math on both sides (F32/F16/BF16 weights with fp32 activations; the F32 cuBLAS GEMM is pedantic
//   fp32): only the summation order differs, ~K * 2^-24 relative per dot product (K <= 512 here), a few
//   layers deep: 1e-4.
// - Q8_0/Q4_0/Q4_1 weights on matmul_small: both sides quantize activations to Q8 the same way, but from
//   fp32 activations that differ in the last bits, so now and then one activation rounds to the
//   neighbouring Q8 step (1/127 of its block's max): 2e-2.
// - The cuBLAS path on quantized weights (f16 weights and activations, 2^-11) against the CPU's Q8
//   activations (2^-8), and K-quants (GPU: f16 weights, fp32 activations; CPU: Q8_K activations): the
//   CPU's activation quantization dominates. Measured on the CPU for these very models (CPU on the
//   quantized file vs CPU on an f16 file of its exact dequantized weights): 1.1-1.2e-2 for Q8_0/Q4_0/Q4_1,
//   1.5e-2 / 2.9e-3 / 7e-4 for Q4_K / Q5_K / Q6_K. Bounds: 3e-2 and 4e-2. F16 / BF16 weights on cuBLAS
//   (activations rounded to f16 / bf16, against the CPU's fp32 activations): 1e-2 / 2e-2.
// Beyond the bound, the argmax must agree wherever the CPU's top-2 margin exceeds twice the bound.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/loading.h"
#include "core/model/gguf.h"
#include "core/backends/cpu/llama_cpu.h"
#include "core/speculative/decoder.h"
#include "drafters/register_builtin.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant.h"
#include "kernels/cuda/convert.cuh"
#include "core/backends/cuda/llama_cuda.h"
#include "tests/formats/gguf_writer.h"
#include "tests/support/assets.h"
#include "tests/support/cuda_buffer.h"
#include "tests/support/errors.h"
#include "tests/support/numeric_checks.h"
#include "verifiers/rules.h"

using namespace specdec;
using cpu::DType;

namespace {

const std::vector<TokenId> kPrompt = {1, 403, 407, 261, 378, 434, 288, 265};  // BOS + a few tokens (stories260K)

std::shared_ptr<const LoadedModel> stories_loaded() {
  static auto m = load_model(test::stories_model());
  return m;
}
LlamaCpu& cpu_stories() {
  static LlamaCpu m(stories_loaded());
  return m;
}
cuda::LlamaCuda& gpu_stories() {
  static cuda::LlamaCuda m(stories_loaded());
  return m;
}

// Normalised max-abs error; +inf on any NaN (tests/support/numeric_checks.h: std::max would drop a NaN).
double norm_err(const std::vector<float>& gpu, const std::vector<float>& ref) {
  REQUIRE(gpu.size() == ref.size());
  const specdec::test::ErrorNorm e = specdec::test::error_norm(gpu, ref);
  INFO(e.non_finite << " non-finite element(s), the first at " << e.first_non_finite);
  CHECK(e.non_finite == 0);
  return e.normalized();
}

// Same bits, and every one finite: two NaN results (unwritten buffers, the same NaN twice) are not equal.
bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return specdec::test::bit_equal_finite(a, b);
}

// logits (rows x V): within tol, and the same argmax wherever the reference's top-2 margin is clear.
void check_close(const std::vector<float>& gpu, const std::vector<float>& ref, int V, double tol) {
  REQUIRE(!ref.empty());
  const double e = norm_err(gpu, ref);
  INFO("normalised error " << e << " (bound " << tol << ")");
  CHECK(e <= tol);
  double scale = 1e-30;
  for (float x : ref) scale = std::max(scale, std::fabs(static_cast<double>(x)));
  for (size_t r = 0; r * V < ref.size(); ++r) {
    const float* a = gpu.data() + r * V;
    const float* b = ref.data() + r * V;
    int best = 0;
    for (int i = 1; i < V; ++i)
      if (b[i] > b[best]) best = i;
    double second = -1e300;
    for (int i = 0; i < V; ++i)
      if (i != best) second = std::max(second, static_cast<double>(b[i]));
    if (b[best] - second <= 2 * tol * scale) continue;  // a near tie: either answer is right
    int gbest = 0;
    for (int i = 1; i < V; ++i)
      if (a[i] > a[gbest]) gbest = i;
    INFO("row " << r);
    CHECK(gbest == best);
  }
}

// ---- synthetic GGUF models in each stored dtype ------------------------------------------------------

uint16_t to_bf16(float f) {  // round to nearest even (finite inputs)
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

uint32_t ggml_type_of(DType t) {
  switch (t) {
    case DType::F32:
      return 0;
    case DType::F16:
      return 1;
    case DType::Q4_0:
      return 2;
    case DType::Q4_1:
      return 3;
    case DType::Q8_0:
      return 8;
    case DType::Q4_K:
      return 12;
    case DType::Q5_K:
      return 13;
    case DType::Q6_K:
      return 14;
    case DType::BF16:
      return 30;
  }
  return 0;
}

// Random K-quant blocks with small scales (weights of ~0.05, like the other dtypes' 0.1 * uniform(-1, 1)):
// every bit pattern of the rest is a valid value.
std::vector<uint8_t> random_kquant(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  const size_t rb = cpu::row_bytes(t, cols);
  std::vector<uint8_t> b(rb * rows);
  std::mt19937 rng(seed);
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  const int bb = cpu::dtype_info(t).block_bytes;
  const uint16_t d = cpu::fp32_to_fp16(t == DType::Q6_K ? 5e-5f : 2e-4f), dmin = cpu::fp32_to_fp16(1e-4f);
  for (size_t off = 0; off < b.size(); off += bb) {
    if (t == DType::Q6_K) {
      std::memcpy(&b[off + 208], &d, 2);  // ql[128] qh[64] scales[16] d
    } else {
      std::memcpy(&b[off], &d, 2);  // d, dmin, scales[12], ...
      std::memcpy(&b[off + 2], &dmin, 2);
    }
  }
  return b;
}

// A TinyLlama (tests/formats/gguf_writer.h) with every matrix (token table and LM head included) stored
// as `t`; norms stay f32. K-quants need H, F multiples of 256. The matrices are scaled to 0.1 x uniform(-1, 1)
// so attention scores stay O(1): a peaky softmax would amplify last-bit differences past any fair bound.
std::string write_model(DType t) {
  test::TinyLlama m;
  m.L = 2;
  m.V = 64;
  m.ctx = 128;
  if (cpu::dtype_info(t).block == 256) {
    m.H = 256;
    m.F = 512;
    m.n_heads = 4;
    m.n_kv_heads = 2;
    m.D = 64;
  }
  test::GgufWriter w;
  m.fill(w);
  std::vector<std::string> names = {"token_embd.weight", "output.weight"};
  for (int l = 0; l < m.L; ++l)
    for (const char* n : {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_down", "ffn_up"})
      names.push_back("blk." + std::to_string(l) + "." + n + ".weight");
  uint32_t salt = 100;
  for (const auto& name : names) {
    test::GgufWriter::Tensor* tensor = w.tensor(name);
    REQUIRE(tensor != nullptr);
    const int64_t cols = tensor->dims[0], rows = tensor->dims[1];
    std::vector<float> f(static_cast<size_t>(rows * cols));
    std::memcpy(f.data(), tensor->bytes.data(), f.size() * 4);
    for (float& x : f) x *= 0.1f;
    std::vector<uint8_t> out;
    if (t == DType::F32) {
      out.resize(f.size() * 4);
      std::memcpy(out.data(), f.data(), out.size());
    } else if (t == DType::F16 || t == DType::BF16) {
      out.resize(f.size() * 2);
      for (size_t i = 0; i < f.size(); ++i) {
        const uint16_t h = t == DType::F16 ? cpu::fp32_to_fp16(f[i]) : to_bf16(f[i]);
        std::memcpy(&out[2 * i], &h, 2);
      }
    } else if (cpu::dtype_info(t).block == 256) {
      out = random_kquant(t, rows, cols, ++salt);
    } else {
      const size_t rb = cpu::row_bytes(t, cols);
      out.resize(rb * rows);
      for (int64_t r = 0; r < rows; ++r) cpu::quantize_row(out.data() + rb * r, f.data() + r * cols, t, cols);
    }
    tensor->ggml_type = ggml_type_of(t);
    tensor->bytes = std::move(out);
  }
  const std::string path =
      (test::scratch_dir("llama_cuda") / ("tiny_" + std::string(cpu::dtype_info(t).name) + ".gguf")).string();
  w.write(path);
  return path;
}

struct DTypeCase {
  DType t;
  double tol_small, tol_gemm;  // matmul_small path; cuBLAS path
};
const std::vector<DTypeCase> kDTypes = {
    {DType::F32, 1e-4, 1e-4},  {DType::F16, 1e-4, 1e-2},  {DType::BF16, 1e-4, 2e-2},
    {DType::Q8_0, 2e-2, 3e-2}, {DType::Q4_0, 2e-2, 3e-2}, {DType::Q4_1, 2e-2, 3e-2},
    {DType::Q4_K, 4e-2, 4e-2}, {DType::Q5_K, 4e-2, 4e-2}, {DType::Q6_K, 4e-2, 4e-2},
};

std::vector<TokenId> some_tokens(int n, int V, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<TokenId> t(n);
  for (auto& x : t) x = static_cast<TokenId>(rng() % V);
  return t;
}

// All logits of one forward of `toks` on a fresh cache.
std::vector<float> prefill_logits(Model& m, const std::vector<TokenId>& toks, int n_layers = -1) {
  auto cache = m.new_cache(static_cast<int>(toks.size()) + 4, n_layers);
  ForwardResult r;
  m.forward(*cache, {.tokens = toks}, r);
  return r.logits;
}

// Logits of each token fed one at a time after `prefix`.
std::vector<float> step_logits(Model& m, KVCache& cache, const std::vector<TokenId>& toks) {
  std::vector<float> all;
  ForwardResult r;
  for (TokenId t : toks) {
    m.forward(cache, {.tokens = {&t, 1}}, r);
    all.insert(all.end(), r.logits.begin(), r.logits.end());
  }
  return all;
}

cuda::CudaModelOptions opts_with(int small_rows, bool graphs = true) {
  cuda::CudaModelOptions o;
  o.small_rows = small_rows;
  o.graphs = graphs;
  return o;
}

}  // namespace

TEST_CASE("convert_f32 and kv_store match their host twins", "[cuda][kernels]") {
  std::vector<float> x = {0.f, 1.f, -2.5f, 3.14159f, 1e-8f, 65504.f, 70000.f, -1e6f, 0.1f};
  test::DeviceBuffer<float> dx(x);
  test::DeviceBuffer<uint16_t> h(x.size());
  cuda::convert_f32(h.get(), DType::F16, dx.get(), static_cast<int64_t>(x.size()), nullptr);
  const auto got = h.download();
  for (size_t i = 0; i < x.size(); ++i) {
    const float sat = std::max(-65504.f, std::min(65504.f, x[i]));
    INFO(i);
    CHECK(got[i] == cpu::fp32_to_fp16(sat));
  }
  cuda::convert_f32(h.get(), DType::BF16, dx.get(), static_cast<int64_t>(x.size()), nullptr);
  const auto gotb = h.download();
  for (size_t i = 0; i < x.size(); ++i) CHECK(gotb[i] == to_bf16(x[i]));

  // Two sequences' caches of 6 slots x kv_dim 5; rows 0,1 -> seq 1 slots 3,4; row 2 -> seq 0 slot 0.
  const int kv = 5, R = 3;
  test::DeviceBuffer<float> c0(std::vector<float>(6 * kv, -1.f)), c1(std::vector<float>(6 * kv, -1.f));
  test::DeviceBuffer<float> d0(std::vector<float>(6 * kv, -1.f)), d1(std::vector<float>(6 * kv, -1.f));
  std::vector<float> k(R * kv), v(R * kv);
  for (int i = 0; i < R * kv; ++i) {
    k[i] = static_cast<float>(i);
    v[i] = static_cast<float>(100 + i);
  }
  test::DeviceBuffer<float> dk(k), dv(v);
  test::DeviceBuffer<float*> kb(std::vector<float*>{c0.get(), c1.get()}), vb(std::vector<float*>{d0.get(), d1.get()});
  test::DeviceBuffer<int32_t> seq(std::vector<int32_t>{1, 1, 0}), slot(std::vector<int32_t>{3, 4, 0});
  cuda::kv_store(kb.get(), vb.get(), dk.get(), dv.get(), seq.get(), slot.get(), R, kv, nullptr);
  const auto h0 = c0.download(), h1 = c1.download(), g1 = d1.download();
  for (int i = 0; i < kv; ++i) {
    CHECK(h1[3 * kv + i] == k[0 * kv + i]);
    CHECK(h1[4 * kv + i] == k[1 * kv + i]);
    CHECK(h0[0 * kv + i] == k[2 * kv + i]);
    CHECK(g1[4 * kv + i] == v[1 * kv + i]);
    CHECK(h0[1 * kv + i] == -1.f);  // untouched
  }
}

TEST_CASE("stories260K: GPU logits equal the CPU's within fp32 rounding", "[cuda][model]") {
  auto& cpu = cpu_stories();
  auto& gpu = gpu_stories();
  const int V = cpu.config().vocab_size;
  CHECK(std::string(gpu.device()) == "cuda");
  check_close(prefill_logits(gpu, kPrompt), prefill_logits(cpu, kPrompt), V, 1e-4);

  // Decode steps after the prompt, and an early-exit cache (2 of 5 layers).
  auto cg = gpu.new_cache(64), cc = cpu.new_cache(64);
  ForwardResult rg, rc;
  gpu.forward(*cg, {.tokens = kPrompt, .n_logits = 1}, rg);
  cpu.forward(*cc, {.tokens = kPrompt, .n_logits = 1}, rc);
  check_close(rg.logits, rc.logits, V, 1e-4);
  const std::vector<TokenId> more = {300, 301, 302, 303, 304, 305};
  check_close(step_logits(gpu, *cg, more), step_logits(cpu, *cc, more), V, 1e-4);
  check_close(prefill_logits(gpu, kPrompt, 2), prefill_logits(cpu, kPrompt, 2), V, 1e-4);

  // n_logits and hidden states: the selected rows are the same rows of the full block, bit for bit.
  auto c1 = gpu.new_cache(16), c2 = gpu.new_cache(16);
  ForwardResult all, last2;
  gpu.forward(*c1, {.tokens = kPrompt}, all);
  gpu.forward(*c2, {.tokens = kPrompt, .n_logits = 2, .want_hidden = true}, last2);
  REQUIRE(last2.logits.size() == 2u * V);
  CHECK(bit_equal(last2.logits, std::vector<float>(all.logits.end() - 2 * V, all.logits.end())));
  REQUIRE(last2.hidden.size() == kPrompt.size() * cpu.config().dim);
  auto c3 = cpu.new_cache(16);
  ForwardResult hc;
  cpu.forward(*c3, {.tokens = kPrompt, .n_logits = 0, .want_hidden = true}, hc);
  CHECK(hc.logits.empty());
  CHECK(norm_err(last2.hidden, hc.hidden) <= 1e-4);
}

TEST_CASE("synthetic models in every dtype: GPU vs CPU, small-row and cuBLAS paths", "[cuda][model][quant]") {
  for (const DTypeCase& dc : kDTypes) {
    DYNAMIC_SECTION(cpu::dtype_info(dc.t).name) {
      auto loaded = load_model(write_model(dc.t));
      LlamaCpu cpu(loaded);
      cuda::LlamaCuda gpu(loaded);                        // 24 rows: matmul_small
      cuda::LlamaCuda gemm(loaded, opts_with(4, false));  // 24 rows > 4: cuBLAS
      const int V = loaded->config.vocab_size;
      const auto toks = some_tokens(24, V, 7);
      const auto ref = prefill_logits(cpu, toks);
      {
        INFO("matmul_small path");
        check_close(prefill_logits(gpu, toks), ref, V, dc.tol_small);
      }
      {
        INFO("cuBLAS path");
        check_close(prefill_logits(gemm, toks), ref, V, dc.tol_gemm);
        CHECK(gemm.stats().gemm_calls > 0);
      }
      // The batch-invariance of matmul_small holds for every stored dtype.
      auto a = gpu.new_cache(40), b = gpu.new_cache(40);
      ForwardResult ra, rb;
      const std::vector<TokenId> prefix(toks.begin(), toks.begin() + 8), block(toks.begin() + 8, toks.begin() + 17);
      gpu.forward(*a, {.tokens = prefix, .n_logits = 0}, ra);
      gpu.forward(*b, {.tokens = prefix, .n_logits = 0}, rb);
      gpu.forward(*a, {.tokens = block}, ra);
      CHECK(bit_equal(ra.logits, step_logits(gpu, *b, block)));
    }
  }
}

TEST_CASE("stories260K prefill through cuBLAS (fp32, no TF32) stays within fp32 rounding", "[cuda][model]") {
  cuda::LlamaCuda gemm(stories_loaded(), opts_with(4));
  std::vector<TokenId> toks = kPrompt;
  for (int i = 0; i < 200; ++i) toks.push_back(static_cast<TokenId>(3 + (i * 37) % 500));
  check_close(prefill_logits(gemm, toks), prefill_logits(cpu_stories(), toks), 512, 1e-4);
  CHECK(gemm.stats().gemm_calls > 0);
}

TEST_CASE("a 9-token block equals 9 single steps bit for bit on the GPU", "[cuda][model][invariance]") {
  auto& gpu = gpu_stories();
  const std::vector<TokenId> block = {300, 301, 302, 303, 304, 305, 306, 307, 308};
  auto a = gpu.new_cache(64), b = gpu.new_cache(64);
  ForwardResult r;
  gpu.forward(*a, {.tokens = kPrompt, .n_logits = 0}, r);
  gpu.forward(*b, {.tokens = kPrompt, .n_logits = 0}, r);
  ForwardResult blk;
  gpu.forward(*a, {.tokens = block}, blk);
  CHECK(bit_equal(blk.logits, step_logits(gpu, *b, block)));
  // The K/V the two paths wrote are the same bits too.
  for (int l = 0; l < gpu.config().n_layers; ++l) {
    std::vector<float> ka, va, kb, vb;
    cuda::download_kv(*a, l, ka, va);
    cuda::download_kv(*b, l, kb, vb);
    CHECK(bit_equal(ka, kb));
    CHECK(bit_equal(va, vb));
  }
}

TEST_CASE("after a long context, a k = 4 block still equals its single steps bit for bit",
          "[cuda][model][invariance]") {
  // 300 cached slots: the context spans two of attention's 256-slot splits (split-K with a combine);
  // each row of the 5-token block must still equal its single step bit for bit, which is what makes greedy
  // speculative decoding equal AR decoding on the GPU.
  auto& gpu = gpu_stories();
  std::vector<TokenId> prefix = kPrompt;
  for (int i = 0; i < 292; ++i) prefix.push_back(static_cast<TokenId>(3 + (i * 53) % 500));
  const std::vector<TokenId> block = {400, 401, 402, 403, 404};
  auto a = gpu.new_cache(320), b = gpu.new_cache(320);
  ForwardResult r, blk;
  gpu.forward(*a, {.tokens = prefix, .n_logits = 0}, r);
  gpu.forward(*b, {.tokens = prefix, .n_logits = 0}, r);
  gpu.forward(*a, {.tokens = block}, blk);
  CHECK(bit_equal(blk.logits, step_logits(gpu, *b, block)));
}

TEST_CASE("a B = 3 batched forward equals three single forwards bit for bit", "[cuda][model][invariance]") {
  auto& gpu = gpu_stories();
  const std::vector<std::vector<TokenId>> prompts = {kPrompt, {1, 50, 60, 70}, {1, 200, 201, 202, 203, 204, 205}};
  const std::vector<std::vector<TokenId>> blocks = {{310}, {311, 312, 313}, {314, 315}};
  std::vector<std::unique_ptr<KVCache>> batched, single;
  std::vector<ForwardResult> singles(3);
  for (int b = 0; b < 3; ++b) {
    batched.push_back(gpu.new_cache(32));
    single.push_back(gpu.new_cache(32));
    ForwardResult r;
    gpu.forward(*single[b], {.tokens = prompts[b], .n_logits = 0}, r);
  }
  // Batched prefill (different lengths), then a batched block with a mix of n_logits.
  std::vector<KVCache*> ptrs = {batched[0].get(), batched[1].get(), batched[2].get()};
  std::vector<ForwardRequest> pre, blk;
  for (int b = 0; b < 3; ++b) pre.push_back({.tokens = prompts[b], .n_logits = 0});
  std::vector<ForwardResult> out(3);
  gpu.forward_batch(ptrs, pre, out);
  for (int b = 0; b < 3; ++b) blk.push_back({.tokens = blocks[b], .n_logits = b == 1 ? 2 : -1, .want_hidden = b == 2});
  gpu.forward_batch(ptrs, blk, out);
  for (int b = 0; b < 3; ++b) {
    INFO("sequence " << b);
    gpu.forward(*single[b], blk[b], singles[b]);
    CHECK(bit_equal(out[b].logits, singles[b].logits));
    CHECK(bit_equal(out[b].hidden, singles[b].hidden));
    CHECK(batched[b]->size() == single[b]->size());
  }
}

TEST_CASE("the decode graph equals plain launches bit for bit", "[cuda][model][graph]") {
  cuda::LlamaCuda plain(stories_loaded(), opts_with(256, false));
  auto& graphed = gpu_stories();
  const auto before = graphed.stats();
  auto a = graphed.new_cache(64), b = plain.new_cache(64);
  ForwardResult r;
  graphed.forward(*a, {.tokens = kPrompt, .n_logits = 0}, r);
  plain.forward(*b, {.tokens = kPrompt, .n_logits = 0}, r);
  const std::vector<TokenId> toks = {320, 321, 322, 323, 324, 325, 326, 327, 328, 329};
  CHECK(bit_equal(step_logits(graphed, *a, toks), step_logits(plain, *b, toks)));
  // A second cache (other K/V pointers) replays the same graph with its own inputs.
  auto c = graphed.new_cache(64), d = plain.new_cache(64);
  graphed.forward(*c, {.tokens = {kPrompt.data(), 3}, .n_logits = 0}, r);
  plain.forward(*d, {.tokens = {kPrompt.data(), 3}, .n_logits = 0}, r);
  CHECK(bit_equal(step_logits(graphed, *c, toks), step_logits(plain, *d, toks)));
  const auto after = graphed.stats();
  INFO("graphs: " << (after.graph_disabled.empty() ? "on" : after.graph_disabled));
  if (std::getenv("SPECDEC_CUDA_GRAPHS") == nullptr) {
    CHECK(after.graph_disabled.empty());
    // 20 decode steps; the first step of a model runs plain (the warm-up before the capture).
    CHECK(after.graph_launches - before.graph_launches >= 2 * static_cast<int64_t>(toks.size()) - 1);
  }
  CHECK(plain.stats().graph_launches == 0);
  // The attention's split-K workspace is the model's (sized at creation): no captured graph allocates.
  CHECK(after.graph_memory_nodes == 0);
  CHECK(after.attention_workspace_bytes > 0);  // stories260K: context 512, two splits
}

TEST_CASE("a tree forward equals its branches; compact keeps the right slots", "[cuda][model][tree]") {
  auto& gpu = gpu_stories();
  const int V = gpu.config().vocab_size;
  // Root 0 with children 1, 2; 1 has children 3, 4; 2 has child 5.
  const std::vector<TokenId> tree = {330, 331, 332, 333, 334, 335};
  const std::vector<int32_t> parents = {-1, 0, 0, 1, 1, 2};
  auto cache = gpu.new_cache(64);
  ForwardResult r;
  gpu.forward(*cache, {.tokens = kPrompt, .n_logits = 0}, r);
  const int n_past = cache->size();
  std::vector<uint8_t> mask;
  std::vector<int32_t> pos;
  build_tree_mask(parents, n_past, mask, pos);
  ForwardResult tr;
  gpu.forward(*cache, {.tokens = tree, .positions = pos, .mask = mask}, tr);
  // Each node against the chain root..node on a fresh cache with the same prefix. Same values, but the
  // ancestors sit at other slots than in the chain, so the attention sums group differently: fp32
  // rounding, not bits.
  for (int node = 0; node < static_cast<int>(tree.size()); ++node) {
    std::vector<TokenId> branch;
    for (int n = node; n >= 0; n = parents[n]) branch.insert(branch.begin(), tree[n]);
    auto c = gpu.new_cache(64);
    ForwardResult rb;
    gpu.forward(*c, {.tokens = kPrompt, .n_logits = 0}, rb);
    gpu.forward(*c, {.tokens = branch, .n_logits = 1}, rb);
    INFO("node " << node);
    check_close(std::vector<float>(tr.logits.begin() + node * V, tr.logits.begin() + (node + 1) * V), rb.logits, V,
                1e-5);
  }

  // compact: keep the path 0 -> 2 -> 5 (block rows 0, 2, 5) and check the slots moved exactly.
  const int L = gpu.config().n_layers, KVD = gpu.config().kv_dim();
  std::vector<std::vector<float>> k0(L), v0(L);
  for (int l = 0; l < L; ++l) cuda::download_kv(*cache, l, k0[l], v0[l]);
  const std::vector<int32_t> keep = {0, 2, 5};
  cache->compact(n_past, keep);
  CHECK(cache->size() == n_past + 3);
  for (int l = 0; l < L; ++l) {
    std::vector<float> k1, v1;
    cuda::download_kv(*cache, l, k1, v1);
    REQUIRE(k1.size() == static_cast<size_t>(n_past + 3) * KVD);
    CHECK(std::memcmp(k1.data(), k0[l].data(), sizeof(float) * n_past * KVD) == 0);  // the prefix untouched
    for (int i = 0; i < 3; ++i) {
      CHECK(std::memcmp(&k1[(n_past + i) * KVD], &k0[l][(n_past + keep[i]) * KVD], sizeof(float) * KVD) == 0);
      CHECK(std::memcmp(&v1[(n_past + i) * KVD], &v0[l][(n_past + keep[i]) * KVD], sizeof(float) * KVD) == 0);
    }
  }
  // Decoding on from the compacted cache equals decoding on from the chain 330 -> 332 -> 335.
  auto chain = gpu.new_cache(64);
  gpu.forward(*chain, {.tokens = kPrompt, .n_logits = 0}, r);
  const std::vector<TokenId> path = {330, 332, 335};
  gpu.forward(*chain, {.tokens = path, .n_logits = 0}, r);
  ForwardResult after_tree, after_chain;
  const TokenId next = 340;
  gpu.forward(*cache, {.tokens = {&next, 1}}, after_tree);
  gpu.forward(*chain, {.tokens = {&next, 1}}, after_chain);
  check_close(after_tree.logits, after_chain.logits, V, 1e-5);

  // Every slot moving by one (rows 1, 2, 3: sources overlap destinations), and nothing moving at all.
  auto c2 = gpu.new_cache(64);
  gpu.forward(*c2, {.tokens = kPrompt, .n_logits = 0}, r);
  std::vector<float> kb, vb, ka, va;
  cuda::download_kv(*c2, 0, kb, vb);
  c2->compact(2, std::vector<int32_t>{1, 2, 3});
  cuda::download_kv(*c2, 0, ka, va);
  REQUIRE(c2->size() == 5);
  for (int i = 0; i < 3; ++i) CHECK(std::memcmp(&ka[(2 + i) * KVD], &kb[(3 + i) * KVD], sizeof(float) * KVD) == 0);
  c2->compact(0, std::vector<int32_t>{0, 1, 2});
  CHECK(c2->size() == 3);
  CHECK_THAT(test::error_of([&] {
               c2->compact(0, std::vector<int32_t>{1, 1});
             }),
             Catch::Contains("strictly increasing"));
}

TEST_CASE("greedy speculative decoding on the GPU equals AR decoding token for token", "[cuda][speculative]") {
  auto& gpu = gpu_stories();
  auto& cpu = cpu_stories();
  auto tok = load_tokenizer(*stories_loaded(), test::stories_tokenizer());
  auto rule = verifiers::make_greedy_rule();
  const std::vector<std::vector<TokenId>> prompts = {kPrompt, tok->encode("Lily and Tom went to the park.", true)};
  const ModelFactory on_gpu = [](std::shared_ptr<const LoadedModel> m) -> std::shared_ptr<Model> {
    return cuda::make_cuda_model(std::move(m));
  };
  struct Case {
    std::string drafter;
    std::map<std::string, std::string> opts;
  };
  const std::vector<Case> cases = {
      {"ngram", {}},
      {"draft_model", {{"model", test::stories_model()}}},
      {"draft_model", {{"model", test::stories_model()}, {"tree_width", "2"}, {"tree_depth", "2"}}},
      {"early_exit", {{"layers", "2"}}}};
  for (const auto& prompt : prompts) {
    DecodeOptions o;
    o.max_new_tokens = 96;
    o.k = 4;
    const DecodeResult ar_cpu = speculative_decode(cpu, nullptr, *rule, prompt, o);
    const DecodeResult ar_gpu = speculative_decode(gpu, nullptr, *rule, prompt, o);
    REQUIRE(ar_gpu.tokens.size() == 96u);
    // Numerics: the GPU's own argmax equals the CPU's on stories260K (no near tie on these prompts).
    CHECK(ar_gpu.tokens == ar_cpu.tokens);
    for (const Case& c : cases) {
      INFO(c.drafter << " with " << c.opts.size() << " options");
      const DrafterEnv env{.target = &gpu,
                           .tokenizer = tok.get(),
                           .sampling = o.sampling,
                           .seed = 0,
                           .request = 0,
                           .reference = &ar_gpu.tokens,
                           .max_context = static_cast<int>(prompt.size()) + o.max_new_tokens + o.k + 1,
                           .make_model = on_gpu};
      auto drafter = drafters::default_registry().get(c.drafter).factory(env, DrafterOptions(c.opts, c.drafter));
      const DecodeResult spec = speculative_decode(gpu, drafter.get(), *rule, prompt, o);
      CHECK(spec.tokens == ar_gpu.tokens);  // lossless on the GPU: exact (batch-invariant kernels)
      CHECK(spec.tokens == ar_cpu.tokens);  // and the CPU's AR output
      if (c.drafter != "ngram") CHECK(spec.accepted_draft_tokens() > 0);  // the model drafters do draft well
    }
  }
}

TEST_CASE("bad input: the CPU backend's one-line errors", "[cuda][errors]") {
  auto& gpu = gpu_stories();
  ForwardResult r;
  auto small = gpu.new_cache(4);
  CHECK_THAT(test::error_of([&] { gpu.forward(*small, {.tokens = kPrompt}, r); }),
             Catch::Contains("context of at most 4 tokens"));
  auto cache = gpu.new_cache(16);
  const TokenId bad = 512;
  CHECK_THAT(test::error_of([&] {
               gpu.forward(*cache, {.tokens = {&bad, 1}}, r);
             }),
             Catch::Contains("token ids in 0..511"));
  auto cpu_cache = cpu_stories().new_cache(16);
  CHECK_THAT(test::error_of([&] { gpu.forward(*cpu_cache, {.tokens = kPrompt}, r); }),
             Catch::Contains("a CUDA KV cache for the CUDA model"));
  CHECK_THAT(test::error_of([&] { cpu_stories().forward(*cache, {.tokens = kPrompt}, r); }),
             Catch::Contains("a CPU KV cache"));
  cuda::LlamaCuda other(stories_loaded());
  auto foreign = other.new_cache(16);
  CHECK_THAT(test::error_of([&] { gpu.forward(*foreign, {.tokens = kPrompt}, r); }),
             Catch::Contains("made by this CUDA model"));
  CHECK_THAT(test::error_of([&] { gpu.new_cache(100000); }), Catch::Contains("context of 1..512"));
  const std::vector<uint8_t> short_mask(3, 1);
  CHECK_THAT(test::error_of([&] { gpu.forward(*cache, {.tokens = kPrompt, .mask = short_mask}, r); }),
             Catch::Contains("a mask of 8x8 entries"));
  CHECK(cache->size() == 0);  // nothing was appended by a failed forward
}
