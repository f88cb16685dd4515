// Weight dequantization to f32 / f16 / bf16 (cuBLAS operands). Rows are back to back and whole blocks,
// so the matrix is one flat row of rows*cols elements; each thread decodes 4 consecutive elements
// (blocks::decode4, the bits of cpu::dequantize_row) and rounds them to the output type (nearest even).
// CPU twin: cpu::dequantize_row, row by row.
#include <algorithm>
#include <cstdint>

#include "kernels/cuda/blocks.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/dequant.cuh"

namespace specdec::cuda {
namespace {

using cpu::DType;

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride beyond 2^28 element groups

// Stores v[0..3] as elements j..j+3 of out (n elements). kVec: one 16-byte (f32) / 8-byte (f16, bf16)
// store, needs n % 4 == 0 and an aligned out; otherwise element stores up to n.
template <DType O, bool kVec>
__device__ __forceinline__ void store4(void* out, int64_t j, int64_t n, const float v[4]) {
  if constexpr (O == DType::F32) {
    float* o = static_cast<float*>(out) + j;
    if constexpr (kVec) {
      *reinterpret_cast<float4*>(o) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
      for (int k = 0; k < 4 && j + k < n; ++k) o[k] = v[k];
    }
  } else {
    uint16_t h[4];
    for (int k = 0; k < 4; ++k) h[k] = O == DType::F16 ? blocks::f32_to_f16(v[k]) : blocks::f32_to_bf16(v[k]);
    uint16_t* o = static_cast<uint16_t*>(out) + j;
    if constexpr (kVec) {
      *reinterpret_cast<uint2*>(o) =
          make_uint2(h[0] | (static_cast<uint32_t>(h[1]) << 16), h[2] | (static_cast<uint32_t>(h[3]) << 16));
    } else {
      for (int k = 0; k < 4 && j + k < n; ++k) o[k] = h[k];
    }
  }
}

// out (n) of type O = src (n) of type S; one group of 4 elements per thread and step.
template <DType S, DType O, bool kVec>
__global__ void __launch_bounds__(kThreads)
    dequant_kernel(void* __restrict__ out, const uint8_t* __restrict__ src, int64_t n) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t g = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x; g < groups;
       g += static_cast<int64_t>(gridDim.x) * kThreads) {
    float v[4];
    blocks::decode4<S, kVec>(src, 4 * g, n, v);
    store4<O, kVec>(out, 4 * g, n, v);
  }
}

bool aligned(const void* p, size_t a) { return reinterpret_cast<uintptr_t>(p) % a == 0; }

template <DType S, DType O>
void launch(void* out, const void* src, int64_t n, cudaStream_t stream) {
  constexpr bool kFloatSrc = S == DType::F32 || S == DType::F16 || S == DType::BF16;
  const bool vec =
      n % 4 == 0 && aligned(out, O == DType::F32 ? 16 : 8) && (!kFloatSrc || aligned(src, S == DType::F32 ? 16 : 8));
  const int64_t groups = (n + 3) / 4;
  const auto blocks_needed = std::min<int64_t>((groups + kThreads - 1) / kThreads, kMaxBlocks);
  const auto grid = static_cast<unsigned>(blocks_needed);
  const auto* s = static_cast<const uint8_t*>(src);
  if (vec)
    dequant_kernel<S, O, true><<<grid, kThreads, 0, stream>>>(out, s, n);
  else
    dequant_kernel<S, O, false><<<grid, kThreads, 0, stream>>>(out, s, n);
  SPECDEC_CUDA_CHECK_LAUNCH();
}

template <DType S>
void launch_src(void* out, DType out_t, const void* src, int64_t n, cudaStream_t stream) {
  switch (out_t) {
    case DType::F32:
      return launch<S, DType::F32>(out, src, n, stream);
    case DType::F16:
      return launch<S, DType::F16>(out, src, n, stream);
    case DType::BF16:
      return launch<S, DType::BF16>(out, src, n, stream);
    default:
      return;
  }
}

}  // namespace

void dequantize(void* out, cpu::DType out_t, const void* src, cpu::DType src_t, int64_t rows, int64_t cols,
                cudaStream_t stream) {
  const cpu::DTypeInfo so = cpu::dtype_info(out_t), ss = cpu::dtype_info(src_t);
  SPECDEC_CHECK(out_t == DType::F32 || out_t == DType::F16 || out_t == DType::BF16,
                "dequantize: output dtype f32, f16 or bf16, got ", so.name);
  SPECDEC_CHECK(blocks::decodable(src_t), "dequantize: source dtype ", ss.name, " is not supported on the GPU (",
                blocks::kDecodableNames, ")");
  SPECDEC_CHECK(rows >= 0 && cols >= 0, "dequantize: non-negative rows and cols, got ", rows, " x ", cols);
  SPECDEC_CHECK(cols % ss.block == 0, "dequantize: cols a multiple of ", ss.block, " for ", ss.name, ", got ", cols);
  SPECDEC_CHECK(aligned(src, src_t == DType::F32 ? 4 : 2) && aligned(out, out_t == DType::F32 ? 4 : 2),
                "dequantize: src and out aligned to their element type, got src=", src, " out=", out);
  const int64_t n = rows * cols;
  if (n == 0) return;
  switch (src_t) {
    case DType::F32:
      return launch_src<DType::F32>(out, out_t, src, n, stream);
    case DType::F16:
      return launch_src<DType::F16>(out, out_t, src, n, stream);
    case DType::BF16:
      return launch_src<DType::BF16>(out, out_t, src, n, stream);
    case DType::Q8_0:
      return launch_src<DType::Q8_0>(out, out_t, src, n, stream);
    case DType::Q4_0:
      return launch_src<DType::Q4_0>(out, out_t, src, n, stream);
    case DType::Q4_1:
      return launch_src<DType::Q4_1>(out, out_t, src, n, stream);
    default:
      return;
  }
}

}  // namespace specdec::cuda
