// The CUDA kv_compact against KVCache::compact itself: a host cache whose move_slot copies slots runs the
// CPU twin's loop, and the GPU result must equal it bit for bit, overlapping moves included (gpu label:
// skipped without a device).
#include <cuda_runtime.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <random>
#include <span>
#include <vector>

#include "core/error.h"
#include "core/model/model.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/kv_cache.cuh"
#include "tests/support/cuda_buffer.h"

namespace {

using specdec::test::DeviceBuffer;

// [n_layers][capacity][kv_dim] floats on the host; compact() is KVCache::compact, the CPU twin.
class HostCache : public specdec::KVCache {
 public:
  HostCache(std::vector<float> data, int capacity, int n_layers, int kv_dim)
      : KVCache(capacity, n_layers), data_(std::move(data)), kv_dim_(kv_dim) {
    advance(capacity);  // every slot holds a candidate
  }
  const std::vector<float>& data() const { return data_; }

 protected:
  void move_slot(int from, int to) override {
    for (int l = 0; l < n_layers(); ++l) {
      const auto layer = data_.begin() + static_cast<int64_t>(l) * capacity() * kv_dim_;
      std::copy_n(layer + static_cast<int64_t>(from) * kv_dim_, kv_dim_, layer + static_cast<int64_t>(to) * kv_dim_);
    }
  }

 private:
  std::vector<float> data_;
  int kv_dim_;
};

struct Shape {
  int n_layers, capacity, kv_dim, base;
};

// Runs kv_compact on a copy of `cache` placed `offset` floats into its device buffer (offset 1: not
// 16-byte aligned) and requires the result to equal KVCache::compact's, every slot of every layer.
void check_compact(const Shape& sh, const std::vector<int32_t>& rows, int offset, uint32_t seed) {
  std::mt19937 g(seed);
  std::normal_distribution<float> nd;
  std::vector<float> cache(static_cast<size_t>(sh.n_layers) * sh.capacity * sh.kv_dim);
  for (auto& x : cache) x = nd(g);

  HostCache ref(cache, sh.capacity, sh.n_layers, sh.kv_dim);
  ref.compact(sh.base, std::span<const int32_t>(rows));

  std::vector<float> padded(offset, 0.f);
  padded.insert(padded.end(), cache.begin(), cache.end());
  DeviceBuffer<float> dcache(padded);
  DeviceBuffer<int32_t> drows(rows);
  // Scratch of exactly the documented size, filled with garbage that must not leak into the cache.
  DeviceBuffer<float> scratch(std::vector<float>(rows.size() * sh.kv_dim * sh.n_layers, -7.f));
  specdec::cuda::kv_compact(dcache.get() + offset, sh.n_layers, sh.capacity, sh.kv_dim, sh.base, drows.get(),
                            static_cast<int>(rows.size()), scratch.get(), nullptr);
  specdec::cuda::device_synchronize();
  const std::vector<float> got = dcache.download();

  INFO("layers " << sh.n_layers << " capacity " << sh.capacity << " kv_dim " << sh.kv_dim << " base " << sh.base
                 << " offset " << offset << " n_rows " << rows.size());
  REQUIRE(std::equal(got.begin() + offset, got.end(), ref.data().begin(), ref.data().end()));
  REQUIRE(std::all_of(got.begin(), got.begin() + offset, [](float x) { return x == 0.f; }));
}

// A random strictly increasing subset of 0..n-1 with each element kept with probability p.
std::vector<int32_t> random_rows(int n, double p, std::mt19937& g) {
  std::bernoulli_distribution keep(p);
  std::vector<int32_t> rows;
  for (int r = 0; r < n; ++r)
    if (keep(g)) rows.push_back(r);
  return rows;
}

}  // namespace

TEST_CASE("cuda kv_compact equals KVCache::compact, overlapping moves included", "[gpu][kernels][kv]") {
  std::mt19937 g(42);
  uint32_t seed = 1;
  for (const Shape sh :
       {Shape{1, 8, 4, 0}, Shape{3, 16, 37, 2}, Shape{2, 12, 64, 5}, Shape{4, 40, 1024, 7}, Shape{2, 300, 256, 100}}) {
    const int n = sh.capacity - sh.base;  // candidate slots after base
    std::vector<std::vector<int32_t>> row_sets = {
        {1, 2, 3},  // every destination is also the next row's source
        {0, 2, 5},  // a slot that stays, then moves
        {3},        // a single row
        {0},        // a single row that stays: nothing moves
        {},         // nothing kept
        {n - 1},    // the last candidate to the front
    };
    std::vector<int32_t> all(n);
    for (int i = 0; i < n; ++i) all[i] = i;
    row_sets.push_back(all);                                               // all rows: nothing moves
    row_sets.push_back(std::vector<int32_t>(all.begin() + 1, all.end()));  // all but the first: a shift by one
    for (double p : {0.2, 0.5, 0.9}) row_sets.push_back(random_rows(n, p, g));
    for (const auto& rows : row_sets) {
      if (!rows.empty() && rows.back() >= n) continue;  // {0, 2, 5} needs n > 5
      for (int offset : {0, 1}) check_compact(sh, rows, offset, seed++);
    }
  }
}

TEST_CASE("cuda kv_compact: K and V as one array of 2 x n_layers layers", "[gpu][kernels][kv]") {
  // A caller may keep K and V of every layer in one allocation and compact both in one call.
  check_compact({2 * 6, 24, 128, 3}, {0, 1, 4, 6, 7, 13, 20}, 0, 77);
}

TEST_CASE("cuda kv_compact rejects ranges past the capacity before launching", "[gpu][kernels][kv]") {
  int32_t* fake_rows = reinterpret_cast<int32_t*>(16);
  float* fake = reinterpret_cast<float*>(16);
  REQUIRE_THROWS_AS(specdec::cuda::kv_compact(fake, 2, 10, 8, 8, fake_rows, 3, fake, nullptr), specdec::Error);
  REQUIRE_THROWS_AS(specdec::cuda::kv_compact(fake, 2, 10, 8, -1, fake_rows, 1, fake, nullptr), specdec::Error);
  REQUIRE_THROWS_AS(specdec::cuda::kv_compact(fake, 2, 10, 0, 0, fake_rows, 1, fake, nullptr), specdec::Error);
  specdec::cuda::kv_compact(fake, 2, 10, 8, 3, fake_rows, 0, fake, nullptr);  // nothing kept: nothing to do
}
