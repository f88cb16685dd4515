// The CUDA softmax, argmax, top-k and sample kernels against their CPU twins (gpu label: skipped without a
// device): softmax vs cpu::softmax within float rounding; argmax and top-k exactly, ties planted; sample vs
// Sampler on many rows: the same token every time, the same probabilities bit for bit where the CPU sums
// in a defined order (within one ulp where it sums in nth_element's, see kernels/cuda/sample_row.cuh).
#include <catch2/catch.hpp>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/sampling/philox.h"
#include "core/sampling/sampling.h"
#include "kernels/cpu/ops.h"
#include "kernels/cuda/device.h"
#include "kernels/cuda/sampling.cuh"
#include "tests/support/cuda_buffer.h"
#include "tests/support/shapes.h"

namespace shapes = specdec::test::shapes;

namespace {

using specdec::test::DeviceBuffer;
constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

// (T, n) logits: 0 normal, 1 wide, 2 quantized (ties), 3 with -inf holes, 4 all equal.
std::vector<float> make_logits(int T, int n, int shape, std::mt19937& g) {
  std::normal_distribution<float> nd(0.f, 1.f);
  std::uniform_real_distribution<float> ud(0.f, 1.f);
  std::vector<float> l(static_cast<size_t>(T) * n);
  for (auto& x : l) {
    const float z = nd(g);
    switch (shape) {
      case 0:
        x = z;
        break;
      case 1:
        x = 4.f * z;
        break;
      case 2:
        x = std::round(2.f * z) * 0.5f;
        break;
      case 3:
        x = ud(g) < 0.3f ? -kInf : 3.f * z;
        break;
      default:
        x = 1.5f;
        break;
    }
  }
  if (shape == 3)
    for (int t = 0; t < T; ++t) l[static_cast<size_t>(t) * n + g() % static_cast<uint32_t>(n)] = 2.f;
  return l;
}

std::span<const float> row_of(const std::vector<float>& x, int t, int n) {
  return std::span<const float>(x).subspan(static_cast<size_t>(t) * n, static_cast<size_t>(n));
}

}  // namespace

TEST_CASE("cuda softmax equals cpu::softmax within float rounding", "[gpu][kernels][sampling]") {
  std::mt19937 g(1);
  for (int n : shapes::kVocabs) {
    for (int T : {1, 7}) {
      const auto x = make_logits(T, n, n % 2, g);
      auto ref = x;
      specdec::cpu::softmax(ref.data(), T, n);
      DeviceBuffer<float> dx(x);
      specdec::cuda::softmax(dx.get(), T, n, nullptr);
      specdec::cuda::device_synchronize();
      const auto got = dx.download();
      for (size_t i = 0; i < got.size(); ++i) REQUIRE(got[i] == Approx(ref[i]).margin(1e-8).epsilon(2e-4));
    }
  }
}

TEST_CASE("cuda argmax is specdec::argmax, the lowest index on ties", "[gpu][kernels][sampling]") {
  std::mt19937 g(2);
  for (int n : {1, 2, 7, 37, 1002, 4099, 49152}) {
    const int T = 16;
    for (int shape = 0; shape < 5; ++shape) {
      auto x = make_logits(T, n, shape, g);
      for (int t = 0; t < T; ++t) {  // plant equal maxima at random places
        float* r = &x[static_cast<size_t>(t) * n];
        const float top = *std::max_element(r, r + n) + (t % 2 ? 0.f : 1.f);
        for (int j = 0; j < 1 + t % 3; ++j) r[g() % static_cast<uint32_t>(n)] = top;
        if (t == 5 && n > 1) r[n - 1] = std::nanf("");  // a NaN is never the maximum
      }
      DeviceBuffer<float> dx(x);
      DeviceBuffer<int32_t> dout(static_cast<size_t>(T));
      specdec::cuda::argmax(dout.get(), dx.get(), T, n, nullptr);
      specdec::cuda::device_synchronize();
      const auto got = dout.download();
      for (int t = 0; t < T; ++t) REQUIRE(got[static_cast<size_t>(t)] == specdec::argmax(row_of(x, t, n)));
    }
  }
}

TEST_CASE("cuda top_k gives the k largest, descending, ties by lower index", "[gpu][kernels][sampling]") {
  std::mt19937 g(3);
  for (int n : shapes::kVocabs) {
    for (int shape : {0, 2, 3, 4}) {
      const int T = 5;
      const auto x = make_logits(T, n, shape, g);
      for (int k : {1, 2, 5, 50, 1000, 1024}) {
        if (k > n) continue;
        DeviceBuffer<float> dx(x), dv(static_cast<size_t>(T) * k);
        DeviceBuffer<int32_t> di(static_cast<size_t>(T) * k);
        specdec::cuda::top_k(dv.get(), di.get(), dx.get(), T, n, k, nullptr);
        specdec::cuda::device_synchronize();
        const auto vals = dv.download();
        const auto idx = di.download();
        for (int t = 0; t < T; ++t) {
          std::vector<int32_t> order(static_cast<size_t>(n));
          for (int i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
          const float* r = &x[static_cast<size_t>(t) * n];
          std::stable_sort(order.begin(), order.end(), [r](int32_t a, int32_t b) { return r[a] > r[b]; });
          for (int j = 0; j < k; ++j) {
            INFO("n " << n << " shape " << shape << " k " << k << " row " << t << " rank " << j);
            REQUIRE(idx[static_cast<size_t>(t) * k + j] == order[static_cast<size_t>(j)]);
            REQUIRE(bits_of(vals[static_cast<size_t>(t) * k + j]) == bits_of(r[order[static_cast<size_t>(j)]]));
          }
        }
      }
    }
  }
}

TEST_CASE("cuda sample draws Sampler's token with logits_to_probs' distribution", "[gpu][kernels][sampling]") {
  std::mt19937 g(4);
  struct Config {
    float temperature;
    int top_k;
    float top_p;
  };
  const std::vector<Config> configs = {{0.f, 0, 1.f},   {0.5f, 0, 1.f},    {1.f, 0, 1.f},     {1.3f, 0, 1.f},
                                       {1.f, 1, 1.f},   {1.f, 5, 1.f},     {0.5f, 50, 1.f},   {1.3f, 2001, 1.f},
                                       {1.f, 0, 0.9f},  {1.3f, 0, 0.5f},   {0.5f, 0, 0.99f},  {1.f, 50, 0.9f},
                                       {1.3f, 5, 0.5f}, {1.f, 2001, 0.8f}, {1.f, 40000, 0.9f}};
  int rows = 0, exact = 0;
  for (int V : shapes::kVocabs) {
    const int T = V >= 32000 ? 6 : 16;
    for (const Config& c : configs) {
      for (int shape : {0, 1, 2, 3}) {
        if (V >= 32000 && shape % 2 == 1) continue;
        const auto logits = make_logits(T, V, shape, g);
        std::vector<uint64_t> request(static_cast<size_t>(T));
        std::vector<uint32_t> step(static_cast<size_t>(T)), draw(static_cast<size_t>(T));
        for (int t = 0; t < T; ++t) {
          request[static_cast<size_t>(t)] = g() % 4;
          step[static_cast<size_t>(t)] = static_cast<uint32_t>(g() % 100);
          draw[static_cast<size_t>(t)] = static_cast<uint32_t>(g() % 3);
        }
        specdec::cuda::DeviceSampling dp;
        dp.temperature = c.temperature;
        dp.top_k = c.top_k;
        dp.top_p = c.top_p;
        dp.seed = g();
        DeviceBuffer<float> dl(logits), dprobs(logits.size());
        DeviceBuffer<uint64_t> dreq(request);
        DeviceBuffer<uint32_t> dstep(step), ddraw(draw);
        DeviceBuffer<int32_t> dout(static_cast<size_t>(T));
        specdec::cuda::sample(dout.get(), dprobs.get(), dl.get(), T, V, dp, dreq.get(), dstep.get(), ddraw.get(),
                              nullptr);
        specdec::cuda::device_synchronize();
        const auto tokens = dout.download();
        const auto probs = dprobs.download();
        // Again: the same tokens, deterministic.
        specdec::cuda::sample(dout.get(), dprobs.get(), dl.get(), T, V, dp, dreq.get(), dstep.get(), ddraw.get(),
                              nullptr);
        specdec::cuda::device_synchronize();
        REQUIRE(dout.download() == tokens);

        const specdec::SamplingParams sp{c.temperature, c.top_k, c.top_p};
        specdec::Sampler sampler(sp, dp.seed);
        const bool use_k = c.top_k > 0 && c.top_k < V, use_p = c.top_p < 1.f && c.temperature != 0.f;
        // Where core/sampling's sums follow nth_element (sample_row.cuh): within one ulp, else bit for bit.
        const bool defined_order = c.temperature == 0.f || (!(use_k && c.top_k > V / 16) && !(use_p && !use_k));
        std::vector<float> want(static_cast<size_t>(V));
        for (int t = 0; t < T; ++t) {
          INFO("V " << V << " T " << c.temperature << " top_k " << c.top_k << " top_p " << c.top_p << " shape " << shape
                    << " row " << t);
          const auto row = row_of(logits, t, V);
          const auto tu = static_cast<size_t>(t);
          REQUIRE(tokens[tu] == sampler.sample(row, request[tu], step[tu], draw[tu]));
          specdec::logits_to_probs(row, sp, want);
          bool same = true;
          for (int i = 0; i < V; ++i) {
            const float a = probs[tu * V + i], b = want[static_cast<size_t>(i)];
            if (bits_of(a) == bits_of(b)) continue;
            same = false;
            REQUIRE_FALSE(defined_order);
            REQUIRE((a == 0.f) == (b == 0.f));
            REQUIRE(std::abs(static_cast<int64_t>(bits_of(a)) - static_cast<int64_t>(bits_of(b))) <= 1);
          }
          ++rows;
          exact += same ? 1 : 0;
        }
      }
    }
  }
  WARN("cuda sample: " << rows << " rows, tokens all equal to Sampler's, " << exact
                       << " with bit-identical probabilities");
}

TEST_CASE("cuda sample: rows logits_to_probs rejects give -1", "[gpu][kernels][sampling]") {
  const int V = 5, T = 3;
  std::vector<float> logits = {0.f,   std::nanf(""), 1.f,   2.f,   3.f,  //
                               0.f,   kInf,          1.f,   2.f,   3.f,  //
                               -kInf, -kInf,         -kInf, -kInf, -kInf};
  DeviceBuffer<float> dl(logits), dprobs(logits.size());
  DeviceBuffer<uint64_t> dreq(std::vector<uint64_t>(T, 0));
  DeviceBuffer<uint32_t> dstep(std::vector<uint32_t>(T, 0)), ddraw(std::vector<uint32_t>(T, 0));
  DeviceBuffer<int32_t> dout(T);
  specdec::cuda::DeviceSampling dp;
  dp.temperature = 1.f;
  specdec::cuda::sample(dout.get(), dprobs.get(), dl.get(), T, V, dp, dreq.get(), dstep.get(), ddraw.get(), nullptr);
  specdec::cuda::device_synchronize();
  for (int32_t t : dout.download()) REQUIRE(t == -1);
  for (float p : dprobs.download()) REQUIRE(p == 0.f);
}

TEST_CASE("cuda sample: bad parameters throw naming the key", "[gpu][kernels][sampling]") {
  specdec::cuda::DeviceSampling dp;
  dp.temperature = -1.f;
  REQUIRE_THROWS_WITH(specdec::cuda::sample(nullptr, nullptr, nullptr, 1, 4, dp, nullptr, nullptr, nullptr, nullptr),
                      Catch::Contains("temperature"));
  dp.temperature = 1.f;
  dp.top_p = 0.f;
  REQUIRE_THROWS_WITH(specdec::cuda::sample(nullptr, nullptr, nullptr, 1, 4, dp, nullptr, nullptr, nullptr, nullptr),
                      Catch::Contains("top_p"));
  REQUIRE_THROWS_WITH(specdec::cuda::top_k(nullptr, nullptr, nullptr, 1, 4, 5, nullptr), Catch::Contains("top_k"));
}
