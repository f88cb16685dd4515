// CPU kernels of the Llama forward: the reference for kernels/cuda and the fast path on the CPU.
// Signatures: outputs first, raw pointers + sizes, row-major. Each CUDA op in kernels/cuda has the same
// argument order plus a stream.
#pragma once

#include <cstdint>

#include "kernels/cpu/dtype.h"
#include "kernels/cpu/quant.h"

namespace specdec::cpu {

// out (T,H) = x (T,H) / rms(x row) * w (H); eps inside the sqrt. out may alias x.
void rmsnorm(float* out, const float* x, const float* w, int T, int H, float eps);

// Reference RMSNorm accumulating in double: the obvious version, for parity tests.
void rmsnorm_ref(float* out, const float* x, const float* w, int T, int H, float eps);

// Dot product of n floats with a fixed summation order (independent of alignment and call shape).
float dot_f32(const float* a, const float* b, int n);

// out (T,N) = x (T,K) * W^T, W (N,K) row-major of dtype wt (quantized rows dequantized or dotted in place).
// Batch-invariant: row t of the result is bit-identical whatever T is. F32 weights: each output is
// dot_f32's sum, vectorized for the CPU level (cpu_level(): scalar, avx2, avx512; the same bits at every
// level), four weight rows sharing each load of a token's row.
void matmul(float* out, const float* x, const void* W, DType wt, int T, int N, int K);

// matmul for several weight matrices sharing the input x (T, K) (q/k/v; gate/up): one activation
// quantization and one fork-join when all are of the same quantized type (matmul_quant_group), else one
// matmul each. Every output has matmul's bits.
void matmul_group(const MatmulPart* parts, int n_parts, const float* x, int T, int K);

// The f32 matmul at an explicit level (throws if this machine lacks it): parity tests and benchmarks.
void matmul_f32_at(CpuLevel level, float* out, const float* x, const float* w, int T, int N, int K);

// Dequantize n consecutive elements (n a multiple of the block size) of dtype t into out.
void dequantize_row(float* out, const void* src, DType t, int64_t n);

// exp(x) in float (the attention's and swiglu's exp): std::exp's correctly rounded value in all but about 1 in
// 2,000 arguments (then 1 ulp off); below -103.9 it gives 0, above 88.72 infinity. exp_f32_n: y[i] =
// exp_f32(x[i]), vectorized for cpu_level() with the same bits at every level; y may alias x.
float exp_f32(float x);
void exp_f32_n(float* y, const float* x, int64_t n);

// RoPE in two steps: the (cos, sin) pairs of T positions (cs: T x head_dim, pair i at 2i) once per forward,
// then applied to any number of (T, n_heads*head_dim) rows; rope() is the two in one.
void rope_table(float* cs, const int32_t* pos, int T, int head_dim, float theta);
void rope_apply(float* x, const float* cs, int T, int n_heads, int head_dim);

// Rotary embedding in place, llama2.c / GGML "normal" layout: adjacent pairs (2i, 2i+1) of each head
// rotate by pos * theta^(-2i/head_dim). x is (T, n_heads*head_dim); pos (T).
void rope(float* x, const int32_t* pos, int T, int n_heads, int head_dim, float theta);

// x[i] += y[i] for i < n (the residual add).
void add(float* x, const float* y, int64_t n);

// out (T,F) = silu(gate) * up, gate and up (T,F). out may alias gate.
void swiglu(float* out, const float* gate, const float* up, int T, int F);

// In place softmax of each of the T rows of length n.
void softmax(float* x, int T, int n);

// Attention for T query tokens over S = n_past + T key slots with an explicit mask.
// out (T, Hq*D); q (T, Hq*D) already roped; k, v: cache rows (S, Hkv*D) with row stride ld_kv floats;
// mask (T, S) bytes, 1 = attend (row t must attend to at least one slot). GQA: query head h reads kv
// head h / (Hq/Hkv). Scores accumulate in fp32 over d in order; a max-subtracted softmax with exp_f32 and a
// 16-lane sum over the unmasked slots by rank (the same for a tree branch as for a chain); each output element sums its
// slots in order. Each cached key and value is read once for all T queries (a verification block costs little more
// attention than one token). Vectorized for cpu_level() (scalar, avx2, avx512: the same bits at each).
void attention(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T, int S, int Hq,
               int Hkv, int D, int64_t ld_kv);

// The same attention as plain loops, one (token, head) at a time: the reference that attention equals
// bit for bit (its fast loop order only regroups independent elements), and the CPU twin of the CUDA
// kernel's semantics.
void attention_ref(float* out, const float* q, const float* k, const float* v, const uint8_t* mask, int T, int S,
                   int Hq, int Hkv, int D, int64_t ld_kv);

}  // namespace specdec::cpu
