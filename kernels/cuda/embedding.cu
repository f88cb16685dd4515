// Token embedding gather: row tokens[t] of the table, decoded to fp32 (blocks::decode4, the bits of
// cpu::dequantize_row). Grid (column groups, tokens); each thread decodes 4 consecutive elements, so a
// warp reads and writes contiguous spans of the row. CPU twin: cpu::dequantize_row per token.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/blocks.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/embedding.cuh"

namespace specdec::cuda {
namespace {

using cpu::DType;

constexpr int kThreads = 256;
constexpr unsigned kMaxGridY = 65535;

// out (T,H) fp32; table rows of row_bytes. kVec: H % 4 == 0 and 16-byte aligned rows of out (and, for
// float tables, of the table), so 4 elements move as one vector.
template <DType S, bool kVec>
__global__ void __launch_bounds__(kThreads)
    embedding_kernel(float* __restrict__ out, const int32_t* __restrict__ tokens, const uint8_t* __restrict__ table,
                     size_t row_bytes, int T, int H) {
  const int64_t g = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;  // element group
  const int64_t j = 4 * g;
  if (j >= H) return;
  for (int t = blockIdx.y; t < T; t += gridDim.y) {
    const uint8_t* row = table + static_cast<size_t>(tokens[t]) * row_bytes;
    float v[4];
    blocks::decode4<S, kVec>(row, j, H, v);
    float* o = out + static_cast<int64_t>(t) * H + j;
    if constexpr (kVec) {
      *reinterpret_cast<float4*>(o) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
      for (int k = 0; k < 4 && j + k < H; ++k) o[k] = v[k];
    }
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

template <DType S>
void launch(float* out, const int32_t* tokens, const void* table, int T, int H, cudaStream_t stream) {
  constexpr bool kFloat = S == DType::F32 || S == DType::F16 || S == DType::BF16;
  const bool vec = H % 4 == 0 && aligned(out, 16) && (!kFloat || aligned(table, S == DType::F32 ? 16 : 8));
  const dim3 grid(static_cast<unsigned>((H / 4 + (H % 4 != 0) + kThreads - 1) / kThreads),
                  std::min(static_cast<unsigned>(T), kMaxGridY));
  const size_t rb = cpu::row_bytes(S, H);
  const auto* tb = static_cast<const uint8_t*>(table);
  if (vec)
    embedding_kernel<S, true><<<grid, kThreads, 0, stream>>>(out, tokens, tb, rb, T, H);
  else
    embedding_kernel<S, false><<<grid, kThreads, 0, stream>>>(out, tokens, tb, rb, T, H);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

}  // namespace

void embedding(float* out, const int32_t* tokens, const void* table, cpu::DType wt, int T, int H, cudaStream_t stream) {
  const cpu::DTypeInfo info = cpu::dtype_info(wt);
  SPECDEC_CHECK(blocks::decodable(wt), "embedding: table dtype ", info.name, " is not supported on the GPU (",
                blocks::kDecodableNames, ")");
  SPECDEC_CHECK(T >= 0 && H >= 0, "embedding: non-negative T and H, got T=", T, " H=", H);
  SPECDEC_CHECK(H % info.block == 0, "embedding: H a multiple of ", info.block, " for ", info.name, ", got ", H);
  SPECDEC_CHECK(aligned(table, wt == DType::F32 ? 4 : 2) && aligned(out, 4),
                "embedding: table and out aligned to their element type, got table=", table, " out=", out);
  if (T == 0 || H == 0) return;
  switch (wt) {
    case DType::F32:
      return launch<DType::F32>(out, tokens, table, T, H, stream);
    case DType::F16:
      return launch<DType::F16>(out, tokens, table, T, H, stream);
    case DType::BF16:
      return launch<DType::BF16>(out, tokens, table, T, H, stream);
    case DType::Q8_0:
      return launch<DType::Q8_0>(out, tokens, table, T, H, stream);
    case DType::Q4_0:
      return launch<DType::Q4_0>(out, tokens, table, T, H, stream);
    case DType::Q4_1:
      return launch<DType::Q4_1>(out, tokens, table, T, H, stream);
    default:
      return;
  }
}

}  // namespace specdec::cuda
