// Attention over the KV cache: tiles of key slots through shared memory, fp32 on the CUDA cores, the key
// slots cut into fixed splits (flash-decoding split-K where the grid is small) with a deterministic
// combine. CPU twin: specdec::cpu::attention (kernels/cpu/ops.h); the per-row softmax arithmetic is in
// online_softmax.cuh, where tests/kernels/test_online_softmax_host.cpp runs it on the CPU.
//
// Batch invariance, by construction. The output row of query (sequence b, token t, head h) is bit-identical
// whatever B, the other sequences, T_b, max_T, max_S, the SM count, the query tiling and the path the launch
// takes, and whatever slots (masked, or past the row's last attended slot) the row's CTA scans: a
// verification block equals its single-token steps, a batch equals its sequences run alone. The row's value
// is this function of its query and of the ordered list of the slots it attends (s, k_s, v_s), and nothing
// else:
//   1. Splits at fixed positions: split i is the slots [i*L, (i+1)*L), L = kAttentionSplit = 256, whatever
//      the launch (a CTA's scan is cut at S_b, and for causal rows past its last row's slot: only slots no
//      row of it attends).
//   2. Score of slot s: q.k_s by fma in increasing d from 0 (one lane, one chain), times 1/sqrt(D) in one
//      rounding; -inf where the row does not attend s (masked, causal future, past S_b or the scan).
//   3. Per split, a streaming softmax in increasing slot order from (m, l, acc) = (-inf, 0, 0), slot by
//      slot, not tile by tile (online_softmax.cuh): m' = max(m, score) (a warp prefix-max scan: a max does
//      not round, so the scan's order is free), alpha = 1 exactly if m' == m, else exp(m - m'); w =
//      exp(score - m'); l = l*alpha + w; acc[d] = acc[d]*alpha + w*v[d] (every lane sums l itself, in slot
//      order: no tree reduction). An unattended slot has alpha = 1 and w = +0: l and acc keep their bits
//      (v finite: every slot < S_b of the cache is), so its count and position do not matter, and
//      neither do the tile boundaries. A split that attends nothing gives the neutral partial (-inf, 0, 0).
//   4. The partials are folded in increasing split order, always, by fold_begin / fold_term
//      (online_softmax.cuh): a neutral partial is skipped (an exact no-op, no exp(-inf - -inf)), a side
//      whose max is the new max is scaled by exactly 1, an empty fold takes the first partial as it is
//      (up to a zero's sign, see 5).
//   5. out = acc / l, a zero made +0 (an unattended slot can turn the sign of a zero acc, nothing else:
//      fma(+0, v, -0) = +0). Every step rounds explicitly (__fmaf_rn / __fmul_rn / __fadd_rn / __fdiv_rn),
//      so no instantiation (head dim, 16- or 64-row tiles, pipeline depth) contracts anything differently.
// So slots past the row's last attended one (the rest of a verification block, a longer cache, more splits
// of a larger max_S) change nothing, and the launch enters no step: the query tile only decides which rows
// share a K/V tile (each row's chains are its own), the launch only decides which kernel folds the
// partials (below), not how. No atomics: the same inputs give the same bits on every run.
// Trees: within a split the result depends only on the attended slots in order, not on masked slots
// between them, so a tree node equals its branch run as a causal chain bit for bit when each ancestor's
// slot in the tree and in the chain lie in the same split (e.g. the whole tree block within one L-aligned
// split). A tree block across a split boundary may fold a branch's slots differently (fp32 rounding).
//
// Work decomposition. The query rows of one (sequence b, kv head) are the T_b * G pairs (t, g) of its G =
// Hq/Hkv query heads, flattened as r = t*G + g, so the heads of a GQA group and the tokens of a block
// share every K/V tile. A CTA owns kM consecutive rows (a query tile) and either every split of the
// sequence, folding each split into the row's fold in registers as it ends (grid_splits = 1), or one split,
// writing its partial to a workspace that combine_kernel folds (grid_splits > 1, split-K: when B x Hkv x
// query tiles would leave the GPU idle; both fold the same partials with the same code, so they give the
// same bits):
//   grid = (grid_splits, ceil(max_T*G / kM), B*Hkv), kWarps warps, each warp kRows = kM/kWarps rows.
// It streams its slots through shared memory in tiles of kTile = 32 slots (K and V), a kStages-deep
// cp.async ring (kStages - 1 tiles in flight while one is used; a tile never straddles a split). Per tile,
// lane j scores slot j for each of the warp's rows (K rows padded to D+4 floats: conflict-free float4
// reads; Q rows are broadcast reads), a shuffle scan gives each slot's running max, lane j writes its
// slot's w and alpha to shared memory, and in the P.V product lane l accumulates head dims l, l+32, ... of
// each row in registers, in slot order (the alpha multiplies are skipped where every alpha of the tile is
// 1: they would not change a bit).
#include <cstdint>
#include <algorithm>
#include <type_traits>

#include "kernels/cuda/attention.cuh"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/online_softmax.cuh"

namespace specdec::cuda {
namespace {

constexpr int kTile = kAttentionTile;               // key slots per tile: one per lane when scoring
constexpr int kSplit = kAttentionSplit;             // key slots per split, at fixed positions
constexpr int kMaxD = 256;                          // head dims per lane <= kMaxD / 32 on the generic path
constexpr int kCtasPerSm = 4;                       // split-K when the grid has fewer than this many CTAs per SM
constexpr size_t kMaxWorkspace = size_t{64} << 20;  // split-K partials beyond this: the CTAs fold instead

struct Params {
  float* out;
  const float* q;
  const int32_t* row0;
  const int32_t* n_past;
  const float* const* k;
  const float* const* v;
  const uint8_t* const* mask;  // may be null itself: every sequence causal
  int B, max_T, Hq, Hkv, G, D;
  int64_t ld_kv;
  float scale;
  // 1: a CTA runs every split of its sequence and writes out. > 1: CTA x runs split x (the last one also
  // any split past it: S_b > max_S, a broken bound) and writes its partial; combine_kernel folds them.
  int grid_splits;
  float* part_acc;  // [grid_splits][B][max_T][Hq][D] when grid_splits > 1
  float2* part_ml;  // [grid_splits][B][max_T][Hq]: (m, l) of the same partials
};

// Floats of dynamic shared memory: Q tile (M x D), the ring of K tiles (stages x kTile x (D+4)) and V
// tiles (stages x kTile x D), the weights and factors of a tile (2 x M x kTile). Every part starts 16-byte
// aligned because D % 4 == 0.
size_t smem_floats(int M, int D, int stages) {
  return static_cast<size_t>(M) * D + static_cast<size_t>(stages) * kTile * (2 * D + 4) +
         2 * static_cast<size_t>(M) * kTile;
}

// cp.async (sm_80+): global -> shared without a register round trip; src_ok false writes zeros (the
// slots past the key range, so that 0 * garbage cannot make a NaN in P.V).
__device__ __forceinline__ void cp_async_16(float* smem, const float* gmem, bool src_ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_ok ? 16 : 0) : "memory");
#else
  *reinterpret_cast<float4*>(smem) = src_ok ? *reinterpret_cast<const float4*>(gmem) : make_float4(0.f, 0.f, 0.f, 0.f);
#endif
}
__device__ __forceinline__ void cp_async_4(float* smem, const float* gmem, bool src_ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(src_ok ? 4 : 0) : "memory");
#else
  *smem = src_ok ? *gmem : 0.f;
#endif
}
__device__ __forceinline__ void cp_async_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int kPending>  // wait until at most kPending committed groups of this thread are in flight
__device__ __forceinline__ void cp_async_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
#endif
}

// kD: head dim (64, 128), or 0 for any multiple of 4 up to kMaxD read from p.D. kStages: tiles in the
// cp.async ring (>= 2).
template <int kD, int kWarps, int kRows, int kStages>
__global__ void __launch_bounds__(kWarps * 32, 1) attention_kernel(const Params p) {
  constexpr int kM = kWarps * kRows;                       // query rows per CTA
  constexpr int kDimsPerLane = kD ? kD / 32 : kMaxD / 32;  // P.V accumulators per row and lane
  static_assert(kD % 32 == 0, "templated head dims are multiples of the warp size");
  static_assert(kStages >= 2, "a ring of at least two tiles");
  const int D = kD ? kD : p.D;
  const int ldk = D + 4;  // padded K rows in shared memory

  const int b = blockIdx.z / p.Hkv, kvh = blockIdx.z % p.Hkv;
  const int row0 = p.row0[b];
  const int T = p.row0[b + 1] - row0;
  const int n_past = p.n_past[b];
  const int S = n_past + T;
  // Rows past max_T (a broken contract) are left unwritten rather than overrunning the partials.
  const int rows = min(T, p.max_T) * p.G;
  const int r_first = blockIdx.y * kM;
  const int seq_splits = attention_splits(S);
  int split_begin = 0, split_end = seq_splits;
  if (p.grid_splits > 1) {
    split_begin = blockIdx.x;
    split_end = blockIdx.x + 1 == p.grid_splits ? seq_splits : min(seq_splits, split_begin + 1);
  }
  // Whole-CTA exits, before any barrier: a query tile past this sequence's rows, or a split past its slots
  // (the combine reads only the splits that hold slots of S_b, and each of those CTAs writes its partial).
  if (r_first >= rows || split_begin >= split_end) return;
  const uint8_t* mask = p.mask ? p.mask[b] : nullptr;
  // The slots this CTA scans: [begin, end), its splits' slots cut at S_b, and for causal rows past the
  // tile's last row's own slot (no row of the tile attends a slot past that).
  const int begin = split_begin * kSplit;
  const int end = min(mask ? S : min(S, n_past + (min(rows, r_first + kM) - 1) / p.G + 1), split_end * kSplit);
  const int n_tiles = end > begin ? (end - begin + kTile - 1) / kTile : 0;

  extern __shared__ float4 smem4[];
  float* sQ = reinterpret_cast<float*>(smem4);  // [kM][D]
  float* sK = sQ + kM * D;                      // [kStages][kTile][ldk]
  float* sV = sK + kStages * kTile * ldk;       // [kStages][kTile][D]
  float* sW = sV + kStages * kTile * D;         // [kM][kTile]: the tile's weights w
  float* sA = sW + kM * kTile;                  // [kM][kTile]: the tile's factors alpha

  const float* kb = p.k[b] + static_cast<int64_t>(kvh) * D;
  const float* vb = p.v[b] + static_cast<int64_t>(kvh) * D;
  // 16-byte copies need 16-byte aligned rows; any other stride or base takes the 4-byte path.
  const bool vec = p.ld_kv % 4 == 0 && (reinterpret_cast<uintptr_t>(kb) | reinterpret_cast<uintptr_t>(vb)) % 16 == 0;
  // Issues tile `tile` into its ring stage (nothing past the last tile) and commits a group either way, so
  // that every thread has committed exactly one group per tile index. Slots past `end` are zero-filled.
  auto load_tile = [&](int tile) {
    if (tile < n_tiles) {
      const int s0 = begin + tile * kTile, stage = tile % kStages;
      float* dk = sK + stage * kTile * ldk;
      float* dv = sV + stage * kTile * D;
      if (vec) {
        const int per_row = D / 4;
        for (int i = threadIdx.x; i < kTile * per_row; i += blockDim.x) {
          const int j = i / per_row, c = (i - j * per_row) * 4;
          const bool ok = s0 + j < end;
          const int64_t off = ok ? static_cast<int64_t>(s0 + j) * p.ld_kv + c : 0;
          cp_async_16(dk + j * ldk + c, kb + off, ok);
          cp_async_16(dv + j * D + c, vb + off, ok);
        }
      } else {
        for (int i = threadIdx.x; i < kTile * D; i += blockDim.x) {
          const int j = i / D, c = i - j * D;
          const bool ok = s0 + j < end;
          const int64_t off = ok ? static_cast<int64_t>(s0 + j) * p.ld_kv + c : 0;
          cp_async_4(dk + j * ldk + c, kb + off, ok);
          cp_async_4(dv + j * D + c, vb + off, ok);
        }
      }
    }
    cp_async_commit();
  };
#pragma unroll
  for (int tile = 0; tile < kStages - 1; ++tile) load_tile(tile);  // in flight while Q is staged

  const int64_t q_ld = static_cast<int64_t>(p.Hq) * D;  // floats per token row of q and out
  for (int i = threadIdx.x; i < kM * D; i += blockDim.x) {
    const int rl = i / D, d = i - rl * D, r = r_first + rl;
    float x = 0.f;
    if (r < rows) {
      const int t = r / p.G, h = kvh * p.G + r % p.G;
      x = p.q[static_cast<int64_t>(row0 + t) * q_ld + static_cast<int64_t>(h) * D + d];
    }
    sQ[i] = x;
  }

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wr0 = warp * kRows;  // the warp's first row within the tile
  const bool warp_busy = r_first + wr0 < rows;
  // Per row: the fold of the finished splits (m, l the same in every lane; this lane's head dims), and the
  // streaming state of the current split.
  SoftmaxFold fold[kRows];
  float facc[kRows][kDimsPerLane], m[kRows], l[kRows], acc[kRows][kDimsPerLane];
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.f;
#pragma unroll
    for (int i = 0; i < kDimsPerLane; ++i) facc[r][i] = acc[r][i] = 0.f;
  }

  for (int tile = 0; tile < n_tiles; ++tile) {
    cp_async_wait<kStages - 2>();  // this tile's group is done (the later ones may still fly)
    __syncthreads();  // every thread's copies (and, the first time, sQ) are visible; stage (tile-1) is free
    load_tile(tile + kStages - 1);  // into the stage the previous tile used

    if (warp_busy) {
      const int stage = tile % kStages;
      const float* Kt = sK + stage * kTile * ldk;
      const float* Vt = sV + stage * kTile * D;
      const int slot = begin + tile * kTile + lane;

      // Scores: lane j takes slot j, for each of the warp's rows, by fma in increasing d.
      float sc[kRows];
#pragma unroll
      for (int r = 0; r < kRows; ++r) sc[r] = 0.f;
      const float* krow = Kt + lane * ldk;
#pragma unroll 4
      for (int c = 0; c < D; c += 4) {
        const float4 k4 = *reinterpret_cast<const float4*>(krow + c);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          const float4 q4 = *reinterpret_cast<const float4*>(sQ + (wr0 + r) * D + c);
          sc[r] = fma_rn(q4.x, k4.x, sc[r]);
          sc[r] = fma_rn(q4.y, k4.y, sc[r]);
          sc[r] = fma_rn(q4.z, k4.z, sc[r]);
          sc[r] = fma_rn(q4.w, k4.w, sc[r]);
        }
      }

      // The running max after each slot (an inclusive prefix-max scan over the lanes, from the row's max
      // so far), then lane j's weight and factor for slot j.
      bool rescale = false;
#pragma unroll
      for (int r = 0; r < kRows; ++r) {
        const int rr = r_first + wr0 + r;
        bool ok = rr < rows && slot < end;
        if (ok) {
          const int t = rr / p.G;
          ok = mask ? mask[static_cast<int64_t>(t) * S + slot] != 0 : slot <= n_past + t;
        }
        const float s = attention_score(sc[r], p.scale, ok);
        float run = s;
#pragma unroll
        for (int off = 1; off < 32; off <<= 1) {
          const float o = __shfl_up_sync(0xffffffffu, run, off);
          if (lane >= off) run = fmaxf(run, o);
        }
        run = fmaxf(run, m[r]);
        float prev = __shfl_up_sync(0xffffffffu, run, 1);
        if (lane == 0) prev = m[r];
        const float alpha = stream_alpha(prev, run);
        sW[(wr0 + r) * kTile + lane] = exp_shifted(s, run);
        sA[(wr0 + r) * kTile + lane] = alpha;
        rescale |= alpha != 1.f;
        m[r] = __shfl_sync(0xffffffffu, run, 31);
      }
      const bool any_rescale = __any_sync(0xffffffffu, rescale);
      __syncwarp();

      // P.V in slot order: lane l owns head dims l + 32*i of every row of the warp; every lane keeps l.
      // Without a rescale in the tile every alpha is 1 and the same steps run with the constant 1.
      auto pv = [&](auto with_alpha) {
#pragma unroll 4
        for (int j = 0; j < kTile; ++j) {
          float vj[kDimsPerLane];
#pragma unroll
          for (int i = 0; i < kDimsPerLane; ++i) {
            const int d = lane + 32 * i;
            vj[i] = (kD != 0 || d < D) ? Vt[j * D + d] : 0.f;
          }
#pragma unroll
          for (int r = 0; r < kRows; ++r) {
            const float w = sW[(wr0 + r) * kTile + j];
            const float a = decltype(with_alpha)::value ? sA[(wr0 + r) * kTile + j] : 1.f;
            l[r] = stream_l(l[r], a, w);
#pragma unroll
            for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] = stream_acc(acc[r][i], a, w, vj[i]);
          }
        }
      };
      if (any_rescale)
        pv(std::true_type{});
      else
        pv(std::false_type{});

      // The split ends with this tile: fold its partial into the row's fold (a neutral one is skipped)
      // and start the next split from (-inf, 0, 0).
      if (tile + 1 == n_tiles || ((tile + 1) * kTile) % kSplit == 0) {
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float ca, cb;
          if (fold_begin(fold[r], m[r], l[r], ca, cb)) {
#pragma unroll
            for (int i = 0; i < kDimsPerLane; ++i) facc[r][i] = fold_term(facc[r][i], ca, acc[r][i], cb);
          }
          m[r] = -INFINITY;
          l[r] = 0.f;
#pragma unroll
          for (int i = 0; i < kDimsPerLane; ++i) acc[r][i] = 0.f;
        }
      }
    }
  }
  cp_async_wait<0>();  // no copy may be left in flight at exit (the ring's tail groups are empty)

#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const int rr = r_first + wr0 + r;
    if (rr >= rows) break;
    const int t = rr / p.G, h = kvh * p.G + rr % p.G;
    if (p.grid_splits == 1) {
      float* o = p.out + static_cast<int64_t>(row0 + t) * q_ld + static_cast<int64_t>(h) * D;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (kD != 0 || d < D) o[d] = finish(facc[r][i], fold[r].l);
      }
    } else {  // the fold of this CTA's split(s): neutral where the row attends nothing there
      const int64_t part = ((static_cast<int64_t>(blockIdx.x) * p.B + b) * p.max_T + t) * p.Hq + h;
      float* pa = p.part_acc + part * D;
#pragma unroll
      for (int i = 0; i < kDimsPerLane; ++i) {
        const int d = lane + 32 * i;
        if (kD != 0 || d < D) pa[d] = facc[r][i];
      }
      if (lane == 0) p.part_ml[part] = make_float2(fold[r].m, fold[r].l);
    }
  }
}

// Split-K combine: one block per (t, b); each thread folds one output element's partials in split order,
// with the fold the CTAs use (fold_partial = fold_begin + fold_term), then finish(): the same bits as a
// CTA that ran every split itself.
__global__ void combine_kernel(const Params p) {
  const int t = blockIdx.x, b = blockIdx.y;
  const int row0 = p.row0[b];
  const int T = p.row0[b + 1] - row0;
  if (t >= T) return;
  const int n = min(attention_splits(p.n_past[b] + T), p.grid_splits);
  const int HD = p.Hq * p.D;
  for (int e = threadIdx.x; e < HD; e += blockDim.x) {
    const int h = e / p.D, d = e - h * p.D;
    SoftmaxFold f;
    float acc = 0.f;
    for (int s = 0; s < n; ++s) {
      const int64_t part = ((static_cast<int64_t>(s) * p.B + b) * p.max_T + t) * p.Hq + h;
      const float2 ml = p.part_ml[part];
      fold_partial(f, &acc, ml.x, ml.y, p.part_acc + part * p.D + d, 1);
    }
    p.out[static_cast<int64_t>(row0 + t) * HD + e] = finish(acc, f.l);
  }
}

// Query-tile rows kM of the launch that attention() picks for these shapes (see launch_for_rows below).
int query_tile_rows(int max_T, int G, int D) { return (D == 64 || D == 128) && max_T * G > 16 ? 64 : 16; }
constexpr int kMaxTileRows = 64;

// The split-K rule: split where the grid (B x Hkv x query tiles) leaves most of the GPU idle and the
// partials ([splits][B][max_T][Hq] x (D floats + (m, l))) fit the caller's workspace.
AttentionSplitPlan split_plan(int B, int max_T, int max_S, int Hq, int Hkv, int D, int sms, int kM,
                              size_t workspace_bytes) {
  AttentionSplitPlan plan;
  const int G = Hq / Hkv;
  const int q_tiles = (max_T * G + kM - 1) / kM;
  const int n_splits = attention_splits(max_S);
  const int64_t base_ctas = static_cast<int64_t>(B) * Hkv * q_tiles;
  const size_t n_part = static_cast<size_t>(n_splits) * B * max_T * Hq;
  const size_t acc_bytes = (n_part * D * sizeof(float) + 255) / 256 * 256;
  const size_t ws_bytes = acc_bytes + n_part * sizeof(float2);
  if (n_splits > 1 && base_ctas < static_cast<int64_t>(kCtasPerSm) * sms && ws_bytes <= kMaxWorkspace &&
      ws_bytes <= workspace_bytes) {
    plan.split_k = true;
    plan.splits = n_splits;
    plan.bytes = ws_bytes;
  }
  return plan;
}

template <int kD, int kWarps, int kRows, int kStages>
void launch(Params p, int max_S, cudaStream_t stream, AttentionWorkspace ws) {
  constexpr int kM = kWarps * kRows;
  const int q_tiles = (p.max_T * p.G + kM - 1) / kM;
  SPECDEC_CHECK(q_tiles <= 65535 && p.B * p.Hkv <= 65535, "attention grid within 65535 query tiles and ",
                "65535 sequences x kv heads, got ", q_tiles, " and ", p.B * p.Hkv);

  int device = 0, sms = 0;
  SPECDEC_CUDA_CHECK(cudaGetDevice(&device));
  SPECDEC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  // Split-K (a CTA per split, partials folded by combine_kernel) where the grid would leave most of the GPU
  // idle and the partials fit the caller's workspace; else each CTA folds its splits itself. Either way a
  // row's arithmetic is the same (see the top of this file): this only decides which kernel folds. No
  // allocation here: the workspace is the caller's (attention.cuh), so a captured graph holds none.
  const AttentionSplitPlan plan = split_plan(p.B, p.max_T, max_S, p.Hq, p.Hkv, p.D, sms, kM, ws.data ? ws.bytes : 0);
  const bool split_k = plan.split_k;
  p.grid_splits = plan.splits;
  if (split_k) {
    const size_t n_part = static_cast<size_t>(plan.splits) * p.B * p.max_T * p.Hq;
    const size_t acc_bytes = (n_part * p.D * sizeof(float) + 255) / 256 * 256;
    p.part_acc = static_cast<float*>(ws.data);
    p.part_ml = reinterpret_cast<float2*>(static_cast<char*>(ws.data) + acc_bytes);
  }

  const size_t smem = smem_floats(kM, p.D, kStages) * sizeof(float);
  if (smem > 48 * 1024)  // above the default limit a kernel must opt in (per device; cheap to repeat)
    SPECDEC_CUDA_CHECK(cudaFuncSetAttribute(attention_kernel<kD, kWarps, kRows, kStages>,
                                            cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  attention_kernel<kD, kWarps, kRows, kStages>
      <<<dim3(p.grid_splits, q_tiles, p.B * p.Hkv), kWarps * 32, smem, stream>>>(p);
  SPECDEC_CUDA_CHECK_LAUNCH();
  if (split_k) {
    combine_kernel<<<dim3(p.max_T, p.B), 128, 0, stream>>>(p);
    SPECDEC_CUDA_CHECK_LAUNCH();
  }
}

// Query tiles: 16 rows (4 warps x 4) when a sequence has few rows (decode, small verify blocks), so a CTA
// carries little idle Q; 64 rows (8 warps x 8) otherwise, so each K/V tile serves more rows. A row's
// arithmetic is the same in both (its own chains, in slot order). Ring depth: 4 tiles for D = 64, 3 for
// D = 128 (<= ~150 KB of shared memory with 64-row tiles), 2 on the generic path (D up to 256).
template <int kD, int kStages>
void launch_for_rows(const Params& p, int max_S, cudaStream_t stream, AttentionWorkspace ws) {
  if (p.max_T * p.G <= 16)
    launch<kD, 4, 4, kStages>(p, max_S, stream, ws);
  else
    launch<kD, 8, 8, kStages>(p, max_S, stream, ws);
}

}  // namespace

size_t attention_workspace_bytes(int max_S_bound, int Hq, int D, int sms) {
  // A split-K call has B x Hkv x q_tiles < kCtasPerSm x sms CTAs, and B x max_T x Hq <= B x Hkv x q_tiles x kM
  // (q_tiles = ceil(max_T x G / kM), kM <= 64): so fewer than kCtasPerSm x sms x 64 partial rows per split.
  if (max_S_bound <= 0 || Hq <= 0 || D <= 0 || sms <= 0) return 0;
  const size_t rows = static_cast<size_t>(kCtasPerSm) * sms * kMaxTileRows;
  const size_t n_part = static_cast<size_t>(attention_splits(max_S_bound)) * rows;
  const size_t bytes = (n_part * D * sizeof(float) + 255) / 256 * 256 + n_part * sizeof(float2);
  return attention_splits(max_S_bound) > 1 ? std::min(bytes, kMaxWorkspace) : 0;
}

size_t attention_workspace_bytes_for_device(int max_S_bound, int Hq, int D, int device) {
  int sms = 0;
  SPECDEC_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return attention_workspace_bytes(max_S_bound, Hq, D, sms);
}

AttentionSplitPlan attention_split_plan(int B, int max_T, int max_S, int Hq, int Hkv, int D, int sms,
                                        size_t workspace_bytes) {
  return split_plan(B, max_T, max_S, Hq, Hkv, D, sms, query_tile_rows(max_T, Hq / Hkv, D), workspace_bytes);
}

void attention(float* out, const float* q, const AttentionBatch& batch, int B, int max_T, int max_S, int Hq, int Hkv,
               int D, int64_t ld_kv, cudaStream_t stream, AttentionWorkspace workspace) {
  SPECDEC_CHECK(B >= 0 && max_T >= 0 && max_S >= max_T, "attention bounds B >= 0, 0 <= max_T <= max_S, got B=", B,
                " max_T=", max_T, " max_S=", max_S);
  if (B == 0 || max_T == 0) return;
  SPECDEC_CHECK(Hkv > 0 && Hq > 0 && Hq % Hkv == 0, "attention query heads a multiple of kv heads, got ", Hq, "/", Hkv);
  SPECDEC_CHECK(D > 0 && D % 4 == 0 && D <= kMaxD, "attention head dim a multiple of 4 in 4..", kMaxD, ", got ", D);
  SPECDEC_CHECK(ld_kv >= static_cast<int64_t>(Hkv) * D, "attention kv row stride >= Hkv*D = ", Hkv * D, ", got ",
                ld_kv);
  SPECDEC_CHECK(batch.row0 && batch.n_past && batch.k && batch.v, "attention batch arrays row0, n_past, k, v set");
  Params p{};
  p.out = out;
  p.q = q;
  p.row0 = batch.row0;
  p.n_past = batch.n_past;
  p.k = batch.k;
  p.v = batch.v;
  p.mask = batch.mask;
  p.B = B;
  p.max_T = max_T;
  p.Hq = Hq;
  p.Hkv = Hkv;
  p.G = Hq / Hkv;
  p.D = D;
  p.ld_kv = ld_kv;
  p.scale = 1.0f / sqrtf(static_cast<float>(D));
  if (D == 64)
    launch_for_rows<64, 4>(p, max_S, stream, workspace);
  else if (D == 128)
    launch_for_rows<128, 3>(p, max_S, stream, workspace);
  else
    launch<0, 4, 4, 2>(p, max_S, stream, workspace);
}

}  // namespace specdec::cuda
