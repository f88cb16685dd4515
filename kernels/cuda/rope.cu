// Rotary embedding, in place: one thread per rotated pair (t, head, i). The frequencies are computed on
// the host with the CPU twin's own expression (1 / powf(theta, i/head_dim)) and passed by value, so every
// angle pos * freq is the CPU's float; cos and sin are taken in double and rounded, matching glibc's
// (correctly rounded in all but rare cases) cosf / sinf. CPU twin: cpu::rope (kernels/cpu/ops.h).
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/rope.cuh"

namespace specdec::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxPairs = 128;  // head_dim <= 256 takes the host table; larger heads compute on the device
constexpr int64_t kMaxBlocks = int64_t{1} << 20;

struct Freqs {
  float f[kMaxPairs];  // f[i/2] = 1 / theta^(i/head_dim) for even i
};

// The CPU twin's frequencies, kept for the last (theta, head_dim) of this thread (one per model).
const Freqs& host_freqs(float theta, int head_dim) {
  thread_local float cached_theta = 0.f;
  thread_local int cached_dim = 0;
  thread_local Freqs fr{};
  if (cached_dim != head_dim || cached_theta != theta) {
    for (int i = 0; i < head_dim; i += 2)
      fr.f[i / 2] = 1.0f / std::pow(theta, static_cast<float>(i) / static_cast<float>(head_dim));
    cached_theta = theta;
    cached_dim = head_dim;
  }
  return fr;
}

// x (T, n_heads*head_dim). kTable: fr holds the frequencies; otherwise powf in double, rounded.
template <bool kTable>
__global__ void __launch_bounds__(kThreads) rope_kernel(float* __restrict__ x, const int32_t* __restrict__ pos, int T,
                                                        int n_heads, int head_dim, float theta, Freqs fr) {
  const int half = head_dim / 2;
  const int64_t per_token = static_cast<int64_t>(n_heads) * half;
  const int64_t total = per_token * T;
  for (int64_t p = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; p < total;
       p += static_cast<int64_t>(gridDim.x) * kThreads) {
    const int64_t t = p / per_token;
    const int i2 = static_cast<int>(p % half);  // pair index within the head: elements 2*i2, 2*i2+1
    float freq;
    if constexpr (kTable) {
      freq = fr.f[i2];
    } else {
      const float e = __fdiv_rn(static_cast<float>(2 * i2), static_cast<float>(head_dim));
      freq = __fdiv_rn(1.0f, static_cast<float>(pow(static_cast<double>(theta), static_cast<double>(e))));
    }
    const float angle = __fmul_rn(static_cast<float>(pos[t]), freq);
    double sd, cd;
    sincos(static_cast<double>(angle), &sd, &cd);
    const float c = static_cast<float>(cd), s = static_cast<float>(sd);
    // pairs are adjacent along the row: p indexes them in order within token t
    float* q = x + t * (per_token * 2) + 2 * (p - t * per_token);
    const float a = q[0], b = q[1];
    q[0] = __fsub_rn(__fmul_rn(a, c), __fmul_rn(b, s));
    q[1] = __fadd_rn(__fmul_rn(a, s), __fmul_rn(b, c));
  }
}

}  // namespace

void rope(float* x, const int32_t* pos, int T, int n_heads, int head_dim, float theta, cudaStream_t stream) {
  SPECDEC_CHECK(T >= 0 && n_heads >= 0, "rope: non-negative T and n_heads, got T=", T, " n_heads=", n_heads);
  SPECDEC_CHECK(head_dim > 0 && head_dim % 2 == 0, "rope: a positive even head_dim, got ", head_dim);
  const int64_t total = static_cast<int64_t>(T) * n_heads * (head_dim / 2);
  if (total == 0) return;
  const auto grid = static_cast<unsigned>(std::min<int64_t>((total + kThreads - 1) / kThreads, kMaxBlocks));
  if (head_dim / 2 <= kMaxPairs) {
    rope_kernel<true><<<grid, kThreads, 0, stream>>>(x, pos, T, n_heads, head_dim, theta, host_freqs(theta, head_dim));
  } else {
    rope_kernel<false><<<grid, kThreads, 0, stream>>>(x, pos, T, n_heads, head_dim, theta, Freqs{});
  }
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace specdec::cuda
