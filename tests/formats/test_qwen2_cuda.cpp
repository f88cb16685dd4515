// The tiny random Qwen2 (qwen2_fixture.h) on the GPU: the upload carries the q/k/v biases and the forward
// adds them (cuBLAS rank-1 update), so the GPU's logits equal the CPU's within fp32 rounding on the
// matmul_small path, the cuBLAS path and the decode steps (graph), and match the naive forward with the
// biases. Skips (exit 77) without a device.
#include <catch2/catch.hpp>

#include <cmath>

#include "core/backends/cpu/llama_cpu.h"
#include "core/model/loader.h"
#include "core/backends/cuda/llama_cuda.h"
#include "tests/formats/qwen2_fixture.h"
#include "tests/support/assets.h"

using namespace specdec;
using namespace specdec::test;

namespace {

std::vector<float> prefill(Model& m, const std::vector<TokenId>& tokens) {
  auto cache = m.new_cache(static_cast<int>(tokens.size()) + 8);
  ForwardResult out;
  m.forward(*cache, {.tokens = tokens}, out);
  return out.logits;
}

std::vector<float> steps(Model& m, const std::vector<TokenId>& tokens) {  // T = 1 each, last logits kept
  auto cache = m.new_cache(static_cast<int>(tokens.size()) + 8);
  std::vector<float> all;
  for (TokenId t : tokens) {
    ForwardResult out;
    m.forward(*cache, {.tokens = std::span<const TokenId>(&t, 1)}, out);
    all.insert(all.end(), out.logits.begin(), out.logits.end());
  }
  return all;
}

template <typename T>
double max_abs_diff(const std::vector<float>& a, const std::vector<T>& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

}  // namespace

TEST_CASE("qwen2 on the GPU: biases uploaded and added, logits equal the CPU's", "[cuda][qwen2]") {
  const TinyQwen2 q;
  const auto m = load_model(q.write_gguf(scratch_dir("formats_qwen2_cuda") / "tiny-qwen2.gguf"));
  REQUIRE(m->config.qkv_bias);
  const std::vector<TokenId> tokens = {1, 5, 9, 3, 17, 30, 2, 5};
  LlamaCpu cpu(m);
  cuda::LlamaCuda small(m);                                                           // 8 rows: matmul_small
  cuda::LlamaCuda gemm(m, cuda::CudaModelOptions{.small_rows = 2, .graphs = false});  // 8 rows > 2: cuBLAS
  const std::vector<float> ref = prefill(cpu, tokens);
  double scale = 1;
  for (float x : ref) scale = std::max(scale, static_cast<double>(std::abs(x)));
  CHECK(max_abs_diff(prefill(small, tokens), ref) <= 1e-4 * scale);
  CHECK(max_abs_diff(prefill(gemm, tokens), ref) <= 1e-3 * scale);  // fp32 weights: cuBLAS fp32 (pedantic)
  CHECK(gemm.stats().gemm_calls > 0);
  CHECK(max_abs_diff(steps(small, tokens), steps(cpu, tokens)) <= 1e-4 * scale);  // the decode graph
  const std::vector<double> with = q.reference(tokens, true), without = q.reference(tokens, false);
  CHECK(max_abs_diff(prefill(small, tokens), with) <= 1e-3 * scale);
  CHECK(max_abs_diff(prefill(small, tokens), without) > 1e-2 * scale);
}
