// Checks for GPU results against a reference that cannot pass by accident.
//  - error norms that fail on any NaN: std::max(d, NaN) returns d, so a max-abs loop over a partly-NaN
//    result reports the error of its finite part; error_norm counts NaNs and makes the norm +inf instead;
//  - sentinels for bit-identity checks: a buffer filled with fresh_sentinel() (a NaN whose payload is new at
//    every call) can equal no computed value and no other buffer's fill, and unwritten() counts the elements
//    a kernel left as they were.
// Host-only (no CUDA header); tests/kernels/test_gpu_harness.cpp tests them on the CPU.
#pragma once

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <vector>

namespace specdec::test {

struct ErrorNorm {
  double max_abs_err = 0;  // max |got - ref| over the finite pairs
  double max_abs_ref = 0;  // max |ref| over the finite ref values
  size_t non_finite = 0;   // elements where got or ref is NaN or inf (and they differ), counted as failures
  size_t first_non_finite = 0;
  bool size_mismatch = false;
  // max_abs_err / max_abs_ref; +inf when anything above failed (so `normalized() <= tol` is false).
  double normalized() const {
    if (size_mismatch || non_finite > 0) return std::numeric_limits<double>::infinity();
    return max_abs_err / std::max(max_abs_ref, 1e-30);
  }
};

inline ErrorNorm error_norm(std::span<const float> got, std::span<const float> ref) {
  ErrorNorm e;
  if (got.size() != ref.size()) {
    e.size_mismatch = true;
    return e;
  }
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = got[i], r = ref[i];
    if (!std::isfinite(g) || !std::isfinite(r)) {
      // equal infinities (same sign) are fine; NaN never is
      if (std::isnan(g) || std::isnan(r) || g != r) {
        if (e.non_finite++ == 0) e.first_non_finite = i;
      }
      continue;
    }
    const double d = std::fabs(g - r);
    if (d > e.max_abs_err) e.max_abs_err = d;
    if (std::fabs(r) > e.max_abs_ref) e.max_abs_ref = std::fabs(r);
  }
  return e;
}

// Normalised max-abs error; +inf on any NaN / inf mismatch / size mismatch.
inline double norm_err(std::span<const float> got, std::span<const float> ref) {
  return error_norm(got, ref).normalized();
}

// A quiet NaN with a payload no other call of this process returned.
inline float fresh_sentinel() {
  static std::atomic<uint32_t> n{1};
  uint32_t payload = 0;
  while (payload == 0 || payload == 0x3fffffu)  // never the NaNs hardware makes (0x7fc00000, 0x7fffffff)
    payload = 0x3fffffu & (0x2a5a5u + 0x9e37u * n.fetch_add(1));
  const uint32_t bits = 0x7fc00000u | payload;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Elements of v whose bits are exactly the sentinel's (left unwritten).
inline size_t unwritten(std::span<const float> v, float sentinel) {
  uint32_t s;
  std::memcpy(&s, &sentinel, sizeof s);
  size_t n = 0;
  for (float x : v) {
    uint32_t b;
    std::memcpy(&b, &x, sizeof b);
    n += b == s;
  }
  return n;
}

// Bit equality that also needs every element finite: two results that are both NaN somewhere (unwritten
// NaN-filled buffers, a NaN the kernel produced twice) are not "the same result".
inline bool bit_equal_finite(std::span<const float> a, std::span<const float> b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (!std::isfinite(a[i])) return false;
  return a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

}  // namespace specdec::test
