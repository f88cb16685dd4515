// Per-sequence acceptance logic of the CUDA acceptance kernels (kernels/cuda/acceptance.cu), written once
// for the device and for the host test that replays it against verifiers/rules.cpp
// (tests/kernels/test_device_logic_host.cpp). The reference is the greedy rule and speculative_walk<double>
// (verifiers/tree_walk.h) with its Philox source: same walk, same draws in the same order, the residual
// max(r - q, 0) and its normalisation in double with the sum in vocabulary order, so the same path and
// the same next token bit for bit. C++17, no std:: containers.
#pragma once

#include <cstdint>

#include "core/sampling/philox.h"
#include "kernels/cuda/sample_row.cuh"

namespace specdec::cuda::walk {

struct WalkResult {
  int32_t len;   // accepted draft nodes; -1: the walk could not run (see speculative_walk)
  int32_t next;  // the emitted token (correction or bonus); -1 with len = -1
};

// Greedy rule on one block of T nodes (block-local parents, parents[0] = -1, parents[i] < i):
// from the root, take the first child (block order) whose token is target_argmax[node]; stop when none
// is. path: the first max_depth accepted nodes (the caller pads); len counts all of them.
SPECDEC_ROW_HD WalkResult greedy_walk(const int32_t* tokens, const int32_t* parents, int T,
                                      const int32_t* target_argmax, int32_t* path, int max_depth) {
  if (T < 1) return WalkResult{0, -1};
  int node = 0, len = 0;
  for (;;) {
    const int32_t best = target_argmax[node];
    int next_node = -1;
    for (int c = node + 1; c < T; ++c) {  // the children of node, in block order
      if (parents[c] == node && tokens[c] == best) {
        next_node = c;
        break;
      }
    }
    if (next_node < 0) return WalkResult{len, best};
    if (len < max_depth) path[len] = next_node;
    ++len;
    node = next_node;
  }
}

// One sequence's block for the speculative rule. Rows are block-local: row i of p is the target's
// distribution after node i (after sampling filters, as logits_to_probs gives it); row i of q is the
// distribution node i's token was drawn from (row 0 unused); q == nullptr: one-hot at each token.
struct SpecBlock {
  int T = 0;
  const int32_t* tokens = nullptr;
  const int32_t* parents = nullptr;
  const float* p = nullptr;  // (T, V)
  const float* q = nullptr;  // (T, V) or null
  int V = 0;
  uint64_t seed = 0, request = 0;
  uint32_t step = 0;
};

// Sees the walk: test(node, accepted, u) for every Bernoulli test, final_weights(V, w) with the weights
// w(v) of the final categorical draw. The kernels pass NoObserver; the host test records both.
struct NoObserver {
  SPECDEC_ROW_HD void test(int, bool, double) const {}
  template <class W>
  SPECDEC_ROW_HD void final_weights(int, const W&) const {}
};

// PhiloxSource::categorical of verifiers/rules.cpp over w(0..V-1) >= 0 (row::cdf_draw): S = the sum of
// all weights in order, then the first v with u * S < the running sum of the positive weights; the last
// positive one if round-off leaves u * S unreached (-1 if there is none).
// checkpoint: block-shared scratch of max_segments doubles.
template <class Block, class Weight>
SPECDEC_ROW_DEV int32_t categorical(Block& blk, int V, Weight w, double u, double* checkpoint, int max_segments) {
  return row::cdf_draw(blk, V, w, u, -1, checkpoint, max_segments);
}

// speculative_walk<double> of verifiers/tree_walk.h on one block, drawing uniform(seed, request, step,
// draw) with draw = 0, 1, ... in the CPU rule's order (one per Bernoulli test, one for the final
// categorical). As verifiers/rules.cpp, every p row and q row is used divided by its double sum (index
// order). The residual r after j rejected siblings is never stored: r[v] is recomputed from p[v] and the
// q[v] of those siblings with the sums kept in blk's scratch (r_j = max(r_{j-1} - q_j, 0) / s_j), the same
// double operations as the CPU's in-place update, so the same bits. A rejection that leaves a zero
// residual (impossible for distributions; the CPU throws) returns len = -1, next = -1.
// Tokens outside [0, V) are never accepted (the CPU indexes out of bounds there). A node with more than
// blk.scratch_len() / 4 rejected children since its residual last reset returns len = -1, next = -1.
template <class Block, class Observer>
SPECDEC_ROW_DEV WalkResult speculative_walk(Block& blk, const SpecBlock& s, int32_t* path, int max_depth,
                                            Observer& observe) {
  if (s.T < 1) return WalkResult{0, -1};
  // f64 scratch: the first half holds categorical()'s checkpoints, the second per rejected sibling j
  // the residual's sum (sums[2j]) and the sibling's q row sum (sums[2j + 1]).
  const int half = blk.scratch_len() / 2;
  double* checkpoints = blk.f64_scratch();
  double* sums = checkpoints + half;
  int32_t* rejected = blk.i32_scratch();
  const int64_t V = s.V;
  auto add = [](double& acc, int, double x) {
    acc += x;
    return false;
  };
  // The double sum of a row, in index order (the CPU's).
  auto row_sum = [&](const float* row) {
    return blk.sequential(
        s.V, 0.0, [row](int v) { return static_cast<double>(row[v]); }, add);
  };
  // q of child c at v, normalised by its row sum qs (1 for one-hot).
  auto q_at = [&](int c, int v, double qs) {
    if (s.q) return static_cast<double>(s.q[c * V + v]) / qs;
    return v == s.tokens[c] ? 1.0 : 0.0;
  };
  auto has_children = [&](int node) {
    for (int c = node + 1; c < s.T; ++c)
      if (s.parents[c] == node) return true;
    return false;
  };

  uint32_t draw = 0;
  int node = 0, len = 0;
  for (;;) {
    const float* p_row = s.p + node * V;
    const double ps = row_sum(p_row);
    int n_rej = 0;  // siblings rejected since r was last p(node): rejected[0, n_rej), sums[0, 2 n_rej)
    auto residual = [&](int v) {
      double r = static_cast<double>(p_row[v]) / ps;
      for (int j = 0; j < n_rej; ++j) {
        const double qv = q_at(rejected[j], v, sums[2 * j + 1]);
        r = r > qv ? row::sub_rn(r, qv) : 0.0;
        r = r / sums[2 * j];
      }
      return r;
    };
    bool moved = false;
    for (int c = node + 1; c < s.T; ++c) {
      if (s.parents[c] != node) continue;
      const int tok = s.tokens[c];
      const bool in_vocab = tok >= 0 && tok < s.V;
      const double qs = s.q ? row_sum(s.q + c * V) : 1.0;
      const double qx = in_vocab ? q_at(c, tok, qs) : 0.0;
      const double rx = in_vocab ? residual(tok) : 0.0;
      double a = 0.0;
      if (qx > 0.0) a = rx >= qx ? 1.0 : rx / qx;
      const double u = uniform(s.seed, s.request, s.step, draw++);
      const bool ok = u < a;
      observe.test(c, ok, u);
      if (ok) {
        if (blk.leader() && len < max_depth) path[len] = c;
        ++len;
        node = c;
        moved = true;
        break;
      }
      // r = norm(max(0, r - q_c)): only its sum is kept.
      const double sum = blk.sequential(
          s.V, 0.0,
          [&](int v) {
            const double r = residual(v), qv = q_at(c, v, qs);
            return r > qv ? row::sub_rn(r, qv) : 0.0;
          },
          add);
      if (!(sum > 0.0)) return WalkResult{-1, -1};
      if (2 * (n_rej + 1) > half) return WalkResult{-1, -1};
      if (blk.leader()) {
        rejected[n_rej] = c;
        sums[2 * n_rej] = sum;
        sums[2 * n_rej + 1] = qs;
      }
      blk.barrier();
      ++n_rej;
    }
    if (!moved) {
      const double u = uniform(s.seed, s.request, s.step, draw++);
      observe.final_weights(s.V, residual);
      return WalkResult{len, categorical(blk, s.V, residual, u, checkpoints, half)};
    }
    if (!has_children(node)) {  // a leaf reached by acceptance: the bonus token from p(leaf)
      const float* leaf = s.p + node * V;
      const double leaf_sum = row_sum(leaf);
      auto target = [leaf, leaf_sum](int v) { return static_cast<double>(leaf[v]) / leaf_sum; };
      const double u = uniform(s.seed, s.request, s.step, draw++);
      observe.final_weights(s.V, target);
      return WalkResult{len, categorical(blk, s.V, target, u, checkpoints, half)};
    }
  }
}

}  // namespace specdec::cuda::walk
