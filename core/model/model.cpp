// Backend-independent parts of the model interface: KV cache rollback/compaction bookkeeping and
// tree attention masks.
#include "core/model/model.h"

#include "core/error.h"

namespace specdec {

void KVCache::truncate(int n) {
  SPECDEC_CHECK(n >= 0 && n <= n_, "KV cache truncate to 0..", n_, ", got ", n);
  n_ = n;
}

void KVCache::check_compact(int base, std::span<const int32_t> rows) const {
  SPECDEC_CHECK(base >= 0 && base <= n_, "KV cache compact base in 0..", n_, ", got ", base);
  int prev = -1;
  for (size_t i = 0; i < rows.size(); ++i) {
    const int r = rows[i];
    SPECDEC_CHECK(r > prev && base + r < n_, "KV cache compact rows strictly increasing and < ", n_ - base, ", got ", r,
                  " at ", i);
    prev = r;
  }
}

void KVCache::copy_prefix(const KVCache& src, int n) {
  SPECDEC_FAIL("this KV cache type cannot copy a prefix from another cache (", src.size(), " slots, ", n, " asked)");
}

void KVCache::compact(int base, std::span<const int32_t> rows) {
  check_compact(base, rows);
  for (size_t i = 0; i < rows.size(); ++i)
    if (rows[i] != static_cast<int>(i)) move_slot(base + rows[i], base + static_cast<int>(i));
  n_ = base + static_cast<int>(rows.size());
}

int forward_layers(const ForwardRequest& r, const KVCache& c) {
  if (r.n_layers < 0) return c.n_layers();
  SPECDEC_CHECK(r.n_layers >= 1 && r.n_layers <= c.n_layers(), "a forward over 1..", c.n_layers(),
                " layers (the cache's), got n_layers = ", r.n_layers);
  return r.n_layers;
}

void build_tree_mask(std::span<const int32_t> parents, int n_past, std::vector<uint8_t>& mask,
                     std::vector<int32_t>& positions) {
  const int T = static_cast<int>(parents.size());
  const int S = n_past + T;
  mask.assign(static_cast<size_t>(T) * S, 0);
  positions.resize(T);
  std::vector<int32_t> depth(T, 0);
  for (int t = 0; t < T; ++t) {
    const int p = parents[t];
    SPECDEC_CHECK(p >= -1 && p < t, "tree parent of node ", t, " in -1..", t - 1, ", got ", p);
    uint8_t* row = mask.data() + static_cast<size_t>(t) * S;
    for (int s = 0; s < n_past; ++s) row[s] = 1;
    if (p >= 0) {  // inherit the parent's ancestors within the block
      const uint8_t* prow = mask.data() + static_cast<size_t>(p) * S;
      for (int j = 0; j < T; ++j) row[n_past + j] = prow[n_past + j];
      depth[t] = depth[p] + 1;
    }
    row[n_past + t] = 1;
    positions[t] = n_past + depth[t];
  }
}

}  // namespace specdec
