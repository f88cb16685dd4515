// Weight-streaming matmul for small T (decode and verification blocks): each warp owns one or two
// output columns (weight rows), holds a chunk of them in registers and sweeps all T tokens over it, so
// every weight byte is read from memory once per call. Quantized weights use dp4a integer block dots on
// activations quantized by a small kernel into the scratch buffer, exactly as cpu::matmul_quant.
// CPU twin: specdec::cpu::matmul (kernels/cpu/ops.h).
//
// Batch invariance, by construction: the value of out[t][n] is produced by a sequence of operations
// that mentions neither T, nor the other tokens, nor the other columns of the call:
//   - the activations of token t are quantized per 32-block from x[t] alone;
//   - K is cut into chunks of a fixed size (kChunkBlocks blocks / kChunkF elements, depending only on the
//     weight dtype); within a chunk, lane l owns fixed blocks (elements) and sums their terms in a fixed
//     order; the 32 lane sums meet in a fixed xor butterfly (commutative pairs, so every lane ends with
//     the same bits); the chunk sums are added to out[t][n] in chunk order;
//   - columns per warp (1 or 2, chosen from T) only groups independent columns: each keeps its own
//     accumulators, so the choice does not change any column's arithmetic; likewise vector vs element
//     loads (chosen from pointer alignment) read the same elements into the same registers.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/blocks.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/matmul_quant.cuh"

namespace specdec::cuda {
namespace {

using cpu::DType;
namespace bk = blocks;

constexpr int kThreads = 128;  // 4 warps per CTA
constexpr int kWarps = kThreads / 32;

// Quantized chunk: kBPL blocks per lane, lane l owning blocks c0 + 32*i + l (a warp reads 32 adjacent
// blocks per i). 4 blocks x 2 columns of Q8_0 = 72 registers of weights.
constexpr int kBPL = 4;
constexpr int kChunkBlocks = 32 * kBPL;

// Float chunk: kGPL granules of 4 elements per lane, lane l owning granules g0 + 32*i + l.
constexpr int kGPL = 8;
constexpr int kChunkF = 32 * kGPL * 4;  // 1024 elements, 32 fp32 registers per column and lane

__device__ __forceinline__ float warp_sum(float v) {
  for (int off = 16; off > 0; off >>= 1) v = __fadd_rn(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int off = 16; off > 0; off >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ int warp_sum_int(int v) {
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// Column n0 + c, chunk starting at c0 (0 for the first), reduced value v: the first chunk stores, later
// ones add in chunk order. Lane c writes column c (all lanes hold v).
template <int kNC>
__device__ __forceinline__ void write_out(float* out, const float (&v)[kNC], int64_t t, int N, int n0, bool first,
                                          int lane) {
#pragma unroll
  for (int c = 0; c < kNC; ++c) {
    if (lane == c && n0 + c < N) {
      float* o = out + t * N + n0 + c;
      *o = first ? v[c] : __fadd_rn(*o, v[c]);
    }
  }
}

// ---- activations -> Q8 blocks ----------------------------------------------------------------------

// One warp per block of 32 (lane j = element j): x (T, K) -> a. Max and integer sum are exact in any
// order, so this equals blocks::act_quantize_block and the CPU quantizer bit for bit.
__global__ void __launch_bounds__(256) quantize_act_kernel(bk::ActQ8 a, const float* __restrict__ x, int64_t n_blocks) {
  const int64_t blk = static_cast<int64_t>(blockIdx.x) * 8 + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (blk >= n_blocks) return;
  const float v = x[blk * bk::kQK + lane];
  const float amax = warp_max(fabsf(v));
  const int q = bk::act_quant(v, bk::act_inv_scale(amax));
  const int sum = warp_sum_int(q);
  a.q[blk * bk::kQK + lane] = static_cast<int8_t>(q);
  if (lane == 0) {
    float d, s;
    bk::act_scales(amax, sum, d, s);
    a.d[blk] = d;
    a.s[blk] = s;
    a.sum[blk] = sum;
  }
}

// ---- quantized weights -----------------------------------------------------------------------------

// out (T,N): warp w owns columns n0 = w*kNC .. n0+kNC-1. nb = K/32 blocks per row.
template <class Fmt, int kNC>
__global__ void __launch_bounds__(kThreads)
    matmul_q_kernel(float* __restrict__ out, const bk::ActQ8 a, const uint8_t* __restrict__ W, int T, int N, int K) {
  const int lane = threadIdx.x % 32;
  const int n0 = (blockIdx.x * kWarps + threadIdx.x / 32) * kNC;
  if (n0 >= N) return;  // whole warp: no shuffle below misses a lane
  // Staging of 32 adjacent blocks of one row per warp: the warp copies them with coalesced 2-byte loads
  // (blocks are 34, 18 or 20 bytes, only 2-byte aligned), then each lane decodes its own block.
  __shared__ __align__(16) uint16_t stage[kWarps][32 * Fmt::kBytes / 2];
  uint16_t* st = stage[threadIdx.x / 32];
  const int nb = K / bk::kQK;
  const size_t row_bytes = static_cast<size_t>(nb) * Fmt::kBytes;
  for (int c0 = 0; c0 < nb; c0 += kChunkBlocks) {
    typename Fmt::W w[kNC][kBPL];
#pragma unroll
    for (int i = 0; i < kBPL; ++i) {
      const int b0 = c0 + 32 * i, n_blk = min(32, nb - b0);  // warp-uniform
#pragma unroll
      for (int c = 0; c < kNC; ++c) {
        if (n_blk > 0 && n0 + c < N) {
          const auto* src = reinterpret_cast<const uint16_t*>(W + static_cast<size_t>(n0 + c) * row_bytes +
                                                              static_cast<size_t>(b0) * Fmt::kBytes);
          __syncwarp();  // the previous decode from st is done
          for (int h = lane; h < n_blk * Fmt::kBytes / 2; h += 32) st[h] = src[h];
          __syncwarp();
          w[c][i] =
              lane < n_blk ? Fmt::load(reinterpret_cast<const uint8_t*>(st) + lane * Fmt::kBytes) : typename Fmt::W{};
        } else {
          w[c][i] = {};  // never dotted past nb; a column past N is never written
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      float acc[kNC];
#pragma unroll
      for (int c = 0; c < kNC; ++c) acc[c] = 0.f;
#pragma unroll
      for (int i = 0; i < kBPL; ++i) {
        const int b = c0 + 32 * i + lane;
        if (b < nb) {
          const bk::ActBlock ab = bk::load_act<Fmt::kNeedS, Fmt::kNeedSum>(a, t, b, K);
#pragma unroll
          for (int c = 0; c < kNC; ++c) acc[c] = __fadd_rn(acc[c], Fmt::term(w[c][i], ab));
        }
      }
#pragma unroll
      for (int c = 0; c < kNC; ++c) acc[c] = warp_sum(acc[c]);
      write_out<kNC>(out, acc, t, N, n0, c0 == 0, lane);
    }
  }
}

// ---- float weights ---------------------------------------------------------------------------------

// 4 elements k..k+3 of a row of n as floats: one vector load (kVec: n % 4 == 0, aligned rows) or element
// loads with zeros past n.
template <DType S, bool kVec>
__device__ __forceinline__ void load4(const void* row, int k, int n, float v[4]) {
  bk::decode4<S, kVec>(static_cast<const uint8_t*>(row), k, n, v);
}

template <DType S, int kNC, bool kVec>
__global__ void __launch_bounds__(kThreads) matmul_f_kernel(float* __restrict__ out, const float* __restrict__ x,
                                                            const uint8_t* __restrict__ W, int T, int N, int K) {
  constexpr size_t kElem = S == DType::F32 ? 4 : 2;
  const int lane = threadIdx.x % 32;
  const int n0 = (blockIdx.x * kWarps + threadIdx.x / 32) * kNC;
  if (n0 >= N) return;
  for (int k0 = 0; k0 < K; k0 += kChunkF) {
    float w[kNC][kGPL][4];
#pragma unroll
    for (int i = 0; i < kGPL; ++i) {
      const int k = k0 + 4 * (32 * i + lane);
#pragma unroll
      for (int c = 0; c < kNC; ++c) {
        if (k < K && n0 + c < N)
          load4<S, kVec>(W + static_cast<size_t>(n0 + c) * K * kElem, k, K, w[c][i]);
        else
          w[c][i][0] = w[c][i][1] = w[c][i][2] = w[c][i][3] = 0.f;
      }
    }
    for (int t = 0; t < T; ++t) {
      const float* xr = x + static_cast<int64_t>(t) * K;
      float acc[kNC];
#pragma unroll
      for (int c = 0; c < kNC; ++c) acc[c] = 0.f;
#pragma unroll
      for (int i = 0; i < kGPL; ++i) {
        const int k = k0 + 4 * (32 * i + lane);
        if (k < K) {
          float xv[4];
          load4<DType::F32, kVec>(xr, k, K, xv);
#pragma unroll
          for (int e = 0; e < 4; ++e)
#pragma unroll
            for (int c = 0; c < kNC; ++c) acc[c] = fmaf(w[c][i][e], xv[e], acc[c]);
        }
      }
#pragma unroll
      for (int c = 0; c < kNC; ++c) acc[c] = warp_sum(acc[c]);
      write_out<kNC>(out, acc, t, N, n0, k0 == 0, lane);
    }
  }
}

// ---- launch ----------------------------------------------------------------------------------------

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

// Two columns per warp share each activation load; one column doubles the warps, better when a single
// token leaves nothing to share. Either gives the same bits (see the top of the file).
int columns_per_warp(int T) { return T >= 4 ? 2 : 1; }

unsigned grid_for(int N, int nc) {
  const int64_t warps = (static_cast<int64_t>(N) + nc - 1) / nc;
  return static_cast<unsigned>((warps + kWarps - 1) / kWarps);
}

template <class Fmt>
void launch_q(float* out, const float* x, const void* W, int T, int N, int K, void* scratch, cudaStream_t stream) {
  const bk::ActQ8 a = bk::act_q8_view(scratch, T, K);
  const int64_t n_blocks = static_cast<int64_t>(T) * (K / bk::kQK);
  quantize_act_kernel<<<static_cast<unsigned>((n_blocks + 7) / 8), 256, 0, stream>>>(a, x, n_blocks);
  SPECDEC_CUDA_CHECK_LAUNCH();
  const auto* w = static_cast<const uint8_t*>(W);
  if (columns_per_warp(T) == 2)
    matmul_q_kernel<Fmt, 2><<<grid_for(N, 2), kThreads, 0, stream>>>(out, a, w, T, N, K);
  else
    matmul_q_kernel<Fmt, 1><<<grid_for(N, 1), kThreads, 0, stream>>>(out, a, w, T, N, K);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

template <DType S>
void launch_f(float* out, const float* x, const void* W, int T, int N, int K, cudaStream_t stream) {
  // Vector loads need every row start aligned: K % 4 == 0 and aligned bases (16 bytes for fp32 rows,
  // 8 for 4 halves).
  const bool vec = K % 4 == 0 && aligned(x, 16) && aligned(W, S == DType::F32 ? 16 : 8);
  const auto* w = static_cast<const uint8_t*>(W);
  const int nc = columns_per_warp(T);
  const unsigned grid = grid_for(N, nc);
  if (nc == 2 && vec)
    matmul_f_kernel<S, 2, true><<<grid, kThreads, 0, stream>>>(out, x, w, T, N, K);
  else if (nc == 2)
    matmul_f_kernel<S, 2, false><<<grid, kThreads, 0, stream>>>(out, x, w, T, N, K);
  else if (vec)
    matmul_f_kernel<S, 1, true><<<grid, kThreads, 0, stream>>>(out, x, w, T, N, K);
  else
    matmul_f_kernel<S, 1, false><<<grid, kThreads, 0, stream>>>(out, x, w, T, N, K);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace

size_t matmul_small_scratch_bytes(int T, int K) { return bk::act_q8_bytes(T, K); }

void matmul_small(float* out, const float* x, const void* W, cpu::DType wt, int T, int N, int K, void* scratch,
                  cudaStream_t stream) {
  const cpu::DTypeInfo info = cpu::dtype_info(wt);
  const bool quant = wt == DType::Q8_0 || wt == DType::Q4_0 || wt == DType::Q4_1;
  SPECDEC_CHECK(quant || wt == DType::F32 || wt == DType::F16 || wt == DType::BF16,
                "matmul_small: weights of dtype f32, f16, bf16, q8_0, q4_0 or q4_1, got ", info.name);
  SPECDEC_CHECK(T >= 0 && N >= 0 && K >= 0, "matmul_small: non-negative T, N, K, got T=", T, " N=", N, " K=", K);
  SPECDEC_CHECK(!quant || (K > 0 && K % bk::kQK == 0), "matmul_small: K a positive multiple of 32 for ", info.name,
                ", got ", K);
  // Natural alignment of the element / block type (GGML blocks start with a half).
  SPECDEC_CHECK(aligned(W, wt == DType::F32 ? 4 : 2) && aligned(x, 4),
                "matmul_small: W and x aligned to their element type, got W=", W, " x=", x);
  if (T == 0 || N == 0) return;
  if (K == 0) {  // empty dots
    SPECDEC_CUDA_CHECK(cudaMemsetAsync(out, 0, static_cast<size_t>(T) * N * sizeof(float), stream));
    return;
  }
  switch (wt) {
    case DType::F32:
      return launch_f<DType::F32>(out, x, W, T, N, K, stream);
    case DType::F16:
      return launch_f<DType::F16>(out, x, W, T, N, K, stream);
    case DType::BF16:
      return launch_f<DType::BF16>(out, x, W, T, N, K, stream);
    default:
      break;
  }
  SPECDEC_CHECK(scratch != nullptr, "matmul_small: scratch of matmul_small_scratch_bytes(T, K) bytes for ", info.name,
                " weights, got nullptr");
  switch (wt) {
    case DType::Q8_0:
      return launch_q<bk::FmtQ8_0>(out, x, W, T, N, K, scratch, stream);
    case DType::Q4_0:
      return launch_q<bk::FmtQ4_0>(out, x, W, T, N, K, scratch, stream);
    case DType::Q4_1:
      return launch_q<bk::FmtQ4_1>(out, x, W, T, N, K, scratch, stream);
    default:
      break;
  }
}

}  // namespace specdec::cuda
