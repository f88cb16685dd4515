// Quantized weight formats (GGML block layouts, used in place from GGUF): dequantization, reference
// quantizers, and the quantized matrix product with its scalar reference twin and AVX2 / AVX-VNNI /
// AVX-512 VNNI fast versions (bit-identical to it) picked once at run time.
#pragma once

#include <cstdint>
#include <string_view>

#include "kernels/cpu/dtype.h"

namespace specdec::cpu {

// out (n) = the n elements (a multiple of the block size) of a quantized row src of dtype t
// (Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K), bit-exact to GGML's dequantize_row_* (evaluated as written,
// without FMA contraction). Throws for other dtypes.
void dequantize_row_quant(float* out, const void* src, DType t, int64_t n);

// dst (row_bytes(t, n)) = src (n) quantized to Q8_0, Q4_0 or Q4_1 exactly as GGML's
// quantize_row_*_ref (round to nearest; ties away from zero for Q8_0). Throws for other dtypes.
void quantize_row(void* dst, const float* src, DType t, int64_t n);

// ---- quantized matmul --------------------------------------------------------------------------

// Instruction-set level of the matmul kernels. Every level quantizes the activations identically,
// computes the same exact integer block dots and rounds their scaled sum with the same operations in
// the same order (a product, then fused multiply-adds, block by block): all levels give the same bits.
// Ordered by preference: avx512 (AVX-512 VNNI, zmm) > avxvnni (AVX-VNNI, ymm) > avx2 > scalar.
enum class CpuLevel : uint8_t { Scalar, Avx2, AvxVnni, Avx512 };

std::string_view cpu_level_name(CpuLevel l);

// Whether this machine (CPU and OS) runs level l: avx2 needs AVX2+FMA+F16C, avxvnni also AVX-VNNI, avx512
// AVX2 and AVX-512 F/BW/VL/VNNI. Not a chain: a CPU may have avx512 and not avxvnni (Zen 4, Ice Lake).
bool cpu_level_supported(CpuLevel l);

// The level matmul_quant uses: the best supported one, lowered by
// SPECDEC_CPU_KERNELS=scalar|avx2|avxvnni|avx512 (read once; a level the machine lacks falls to the
// best supported level below it; an unknown value throws) or by set_cpu_level.
CpuLevel cpu_level();

// Forces the level matmul_quant uses from now on (tests, benchmarks). Throws if unsupported here.
void set_cpu_level(CpuLevel l);

// out (T,N) = x (T,K) * W^T, W (N,K) row-major in blocks of dtype t. The activations are quantized
// once per call to 8-bit blocks of 32 as llama.cpp's CPU backend does (Q8_0 style for Q8_0 and Q4_0
// weights, Q8_1 style with the block sum for Q4_1), then dotted in integers, so results match
// llama.cpp's numerics up to float summation order. Weight rows are split over OpenMP threads; each
// weight block is loaded and decoded once for up to 16 tokens (the rows of the call). K must be a multiple of 32.
// Returns false (and computes nothing) when t has no fast path (the caller then dequantizes row by row).
// Batch-invariant: out[t][n] is bit-identical whatever T, N, the other tokens and rows of the call, the
// thread count and the level are (each token is quantized alone; each output is one lane whose
// operations do not depend on its neighbours).
bool matmul_quant(float* out, const float* x, const void* W, DType t, int T, int N, int K);

// matmul_quant at an explicit level (throws if unsupported here): parity tests and benchmarks.
bool matmul_quant_at(CpuLevel level, float* out, const float* x, const void* W, DType t, int T, int N, int K);

// One output of a group of matmuls that share their input x (T, K): out (T, N) = x * W^T.
struct MatmulPart {
  float* out;
  const void* W;
  DType t;
  int N;
};

// matmul_quant of every part over the same x in one call: the activations are quantized once and the
// parts' row chunks are one pool of tasks (one fork-join instead of one per matrix: q/k/v, gate/up).
// Each output is bit-identical to matmul_quant's for its part alone. Returns false (computing nothing)
// unless every part has a fast path for the same kind of activation blocks (Q8_0/Q4_0/Q4_1 weights:
// all the same dtype).
bool matmul_quant_group(const MatmulPart* parts, int n_parts, const float* x, int T, int K);

// The activation quantizer of matmul_quant, in natural block order (for tests): q (T, K) int8,
// d (T, K/32) fp16-rounded scales, s (T, K/32) fp16(d * sum q) as float.
void quantize_activations(int8_t* q, float* d, float* s, const float* x, int T, int K);

}  // namespace specdec::cpu
