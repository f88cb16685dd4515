// The per-row softmax arithmetic of the CUDA attention kernel (attention.cu), as __host__ __device__
// functions so that tests/kernels/test_online_softmax_host.cpp runs the very same steps on the CPU.
//
// One query row's result is built from fixed key splits: split i holds the slots [i*L, (i+1)*L), L =
// kAttentionSplit, whatever the launch. Within a split the row runs a streaming softmax over the slots in
// increasing order, from (m, l, acc) = (-inf, 0, 0): for each slot s with score sigma_s (-inf where the row
// does not attend s)
//   m' = max(m, sigma_s), alpha = stream_alpha(m, m'), w = exp_shifted(sigma_s, m')
//   l = stream_l(l, alpha, w), acc[d] = stream_acc(acc[d], alpha, w, v_s[d]), m = m'
// An unattended slot leaves m as it is, so alpha is exactly 1 (not exp(0)) and w = +0: l and acc keep
// their bits (l + 0 = l; fma(+0, v, acc) = acc for finite v, up to the sign of a zero acc, see finish()).
// The splits' partials (m, l, acc) are then folded in increasing split order (fold_begin / fold_term),
// a neutral partial (m = -inf: the row attends nothing there) being skipped, and finish() normalises.
// Every step rounds in a fixed way (explicit round-to-nearest intrinsics on the device: nvcc never fuses
// them into FMAs differently from one kernel instantiation to another).
#pragma once

#include <cuda_runtime.h>

#include <cmath>

namespace specdec::cuda {

// Key slots per tile of the attention kernel (one per lane when scoring).
constexpr int kAttentionTile = 32;
// L: key slots per split. Split boundaries sit at multiples of L whatever the launch, so that a row's
// arithmetic never depends on the launch geometry; a multiple of the tile. 256: a decode step of a model
// with few kv heads still gets Hkv * S / 256 CTAs (48 for 3 kv heads at S = 4096), each a short chain of
// 8 tiles; the partials stay small (rows x D per 256 slots of 2 x D).
constexpr int kAttentionSplit = 256;
static_assert(kAttentionSplit % kAttentionTile == 0, "a split is a whole number of key tiles");

// Splits that hold slots of a sequence with S key slots: ceil(S / L), 0 for S <= 0.
__host__ __device__ constexpr int attention_splits(int S) { return S > 0 ? (S - 1) / kAttentionSplit + 1 : 0; }

// fp32 operations with a fixed rounding each (never contracted into an FMA, never reassociated).
__host__ __device__ inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
__host__ __device__ inline float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
__host__ __device__ inline float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
__host__ __device__ inline float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fdiv_rn(a, b);
#else
  return a / b;
#endif
}
__host__ __device__ inline float fma_rn(float a, float b, float c) {
#ifdef __CUDA_ARCH__
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}

// The score of an attended slot from its dot product q.k (summed by fma in increasing d from 0); -inf for
// a slot the row does not attend.
__host__ __device__ inline float attention_score(float dot, float scale, bool attended) {
  return attended ? mul_rn(dot, scale) : -INFINITY;
}

// exp(s - m) for a score that may be masked (s = -inf): +0 for a masked score, also when the split
// attends nothing (m = -inf too, where s - m would be NaN).
__host__ __device__ inline float exp_shifted(float s, float m) { return s == -INFINITY ? 0.f : expf(sub_rn(s, m)); }

// One slot of a split's streaming softmax, the running max moving from m to m_new = max(m, score): the
// factor of the state so far, exactly 1 when the max does not move, 0 when nothing was attended before.
__host__ __device__ inline float stream_alpha(float m, float m_new) { return m == m_new ? 1.f : exp_shifted(m, m_new); }
// l * alpha + w, one rounding (= l + w exactly when alpha is 1).
__host__ __device__ inline float stream_l(float l, float alpha, float w) { return fma_rn(l, alpha, w); }
// acc * alpha (exact when alpha is 1), then + w * v in one rounding.
__host__ __device__ inline float stream_acc(float acc, float alpha, float w, float v) {
  return fma_rn(w, v, mul_rn(acc, alpha));
}

// Running fold of the split partials of one row: m the max score so far (-inf while only neutral partials
// were folded), l the sum of the weights rescaled to m. The accumulators acc[d] are the caller's.
struct SoftmaxFold {
  float m = -INFINITY;
  float l = 0.f;
};

// The fold of one term: a * ca + b * cb, one product rounded, then one fma.
__host__ __device__ inline float fold_term(float a, float ca, float b, float cb) {
  return fma_rn(a, ca, mul_rn(b, cb));
}

// Starts folding the partial (m_b, l_b, acc_b) of the next split into f. A neutral partial (m_b = -inf)
// returns false and changes nothing: the caller skips it, so it is an exact no-op (and no exp(-inf - -inf)
// is ever taken). Otherwise f.m becomes max(f.m, m_b), f.l = fold_term(f.l, ca, l_b, cb), and the caller
// must set every acc[d] = fold_term(acc[d], ca, acc_b[d], cb). A side whose max is the new max gets a
// factor of exactly 1 (not exp(0)); an empty f (m = -inf) gets 0, so the first partial is taken as it is.
__host__ __device__ inline bool fold_begin(SoftmaxFold& f, float m_b, float l_b, float& ca, float& cb) {
  if (m_b == -INFINITY) return false;
  const float m = fmaxf(f.m, m_b);
  ca = f.m == m ? 1.f : exp_shifted(f.m, m);
  cb = m_b == m ? 1.f : exp_shifted(m_b, m);
  f.l = fold_term(f.l, ca, l_b, cb);
  f.m = m;
  return true;
}

// fold_begin and the accumulators of one partial together (the combine kernel's and the host's form).
__host__ __device__ inline void fold_partial(SoftmaxFold& f, float* acc, float m_b, float l_b, const float* acc_b,
                                             int n) {
  float ca, cb;
  if (!fold_begin(f, m_b, l_b, ca, cb)) return;
  for (int d = 0; d < n; ++d) acc[d] = fold_term(acc[d], ca, acc_b[d], cb);
}

// The output element from the fold: acc / l, with a zero result always +0 (an unattended slot may have
// turned a zero accumulator's sign, and nothing else: this makes the sign of zero not depend on it).
__host__ __device__ inline float finish(float acc, float l) { return add_rn(div_rn(acc, l), 0.f); }

}  // namespace specdec::cuda
