// Softmax, argmax, top-k and seeded sampling kernels: one CTA per row. Sampling runs the row algorithm of
// kernels/cuda/sample_row.cuh (the CPU's logits_to_probs + sample_from_probs step for step, its double
// sums in the CPU's order) on a DeviceBlock; the host test replays that algorithm against core/sampling.
#include <cmath>

#include "kernels/cuda/block_collectives.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/sample_row.cuh"
#include "kernels/cuda/sampling.cuh"

namespace specdec::cuda {
namespace {

constexpr int kFoldThreads = 256;  // softmax, argmax
constexpr int kRowThreads = 512;   // top-k, sample

// x (T, n): row blockIdx.x in place.
__global__ void __launch_bounds__(kFoldThreads) softmax_kernel(float* x, int n) {
  __shared__ FoldShared sh;
  float* r = x + static_cast<int64_t>(blockIdx.x) * n;
  float m = -INFINITY;
  for (int i = threadIdx.x; i < n; i += blockDim.x) m = fmaxf(m, r[i]);
  m = block_fold(sh.red, m, [](float a, float b) { return fmaxf(a, b); });
  float s = 0.f;
  for (int i = threadIdx.x; i < n; i += blockDim.x) {
    const float e = expf(r[i] - m);
    r[i] = e;
    s += e;
  }
  s = block_fold(sh.red, s, [](float a, float b) { return a + b; });
  const float inv = 1.f / s;
  for (int i = threadIdx.x; i < n; i += blockDim.x) r[i] *= inv;
}

// out (T); x (T, n).
__global__ void __launch_bounds__(kFoldThreads) argmax_kernel(int32_t* out, const float* x, int n) {
  __shared__ FoldShared sh;
  FoldBlock blk(sh);
  const int32_t best = row::argmax_row(blk, x + static_cast<int64_t>(blockIdx.x) * n, n);
  if (threadIdx.x == 0) out[blockIdx.x] = best;
}

// vals, idx (T, k); x (T, n).
__global__ void __launch_bounds__(kRowThreads) top_k_kernel(float* vals, int32_t* idx, const float* x, int n, int k) {
  __shared__ BlockShared sh;
  DeviceBlock blk(sh);
  const int64_t t = blockIdx.x;
  row::top_k_row(blk, x + t * n, n, k, vals + t * k, idx + t * k);
}

// out (T); probs, logits (T, n); request, step, draw (T), read only when sampling is not greedy.
__global__ void __launch_bounds__(kRowThreads)
    sample_kernel(int32_t* out, float* probs, const float* logits, int n, row::RowParams prm, uint64_t seed,
                  const uint64_t* request, const uint32_t* step, const uint32_t* draw) {
  __shared__ BlockShared sh;
  DeviceBlock blk(sh);
  const int64_t t = blockIdx.x;
  const double u = prm.temperature == 0.f ? 0.0 : uniform(seed, request[t], step[t], draw[t]);
  const int32_t token = row::sample_row(blk, logits + t * n, n, prm, u, probs + t * n);
  if (threadIdx.x == 0) out[t] = token;
}

}  // namespace

void softmax(float* x, int T, int n, cudaStream_t stream) {
  SPECDEC_CHECK(T >= 0 && n >= 1, "softmax: T >= 0 rows of n >= 1, got T = ", T, ", n = ", n);
  if (T == 0) return;
  softmax_kernel<<<T, kFoldThreads, 0, stream>>>(x, n);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

void argmax(int32_t* out, const float* x, int T, int n, cudaStream_t stream) {
  SPECDEC_CHECK(T >= 0 && n >= 1, "argmax: T >= 0 rows of n >= 1, got T = ", T, ", n = ", n);
  if (T == 0) return;
  argmax_kernel<<<T, kFoldThreads, 0, stream>>>(out, x, n);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

void top_k(float* vals, int32_t* idx, const float* x, int T, int n, int k, cudaStream_t stream) {
  SPECDEC_CHECK(T >= 0 && n >= 1, "top_k: T >= 0 rows of n >= 1, got T = ", T, ", n = ", n);
  SPECDEC_CHECK(k >= 1 && k <= n && k <= 1024, "top_k: 1 <= k <= min(n, 1024), got k = ", k, " with n = ", n);
  if (T == 0) return;
  top_k_kernel<<<T, kRowThreads, 0, stream>>>(vals, idx, x, n, k);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

// A row that logits_to_probs would reject (NaN or +inf, or every logit -inf; non-greedy only) cannot
// throw from the device: its token is -1 and its probs are 0.
void sample(int32_t* out, float* probs, const float* logits, int T, int n, const DeviceSampling& params,
            const uint64_t* request, const uint32_t* step, const uint32_t* draw, cudaStream_t stream) {
  SPECDEC_CHECK(T >= 0 && n >= 1, "sample: T >= 0 rows of n >= 1, got T = ", T, ", n = ", n);
  // SamplingParams::validate's rules (core/sampling/sampling.h is C++20, not for nvcc).
  SPECDEC_CHECK(std::isfinite(params.temperature) && params.temperature >= 0.f,
                "temperature must be a finite number >= 0 (0 = greedy), got ", params.temperature);
  SPECDEC_CHECK(params.top_k >= 0, "top_k must be >= 0 (0 = off), got ", params.top_k);
  SPECDEC_CHECK(params.top_p > 0.f && params.top_p <= 1.f, "top_p must be in (0, 1] (1 = off), got ", params.top_p);
  if (T == 0) return;
  row::RowParams prm;
  prm.temperature = params.temperature;
  prm.top_k = params.top_k;
  prm.top_p = params.top_p;
  sample_kernel<<<T, kRowThreads, 0, stream>>>(out, probs, logits, n, prm, params.seed, request, step, draw);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
