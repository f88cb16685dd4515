// A timeline of the CPU forward by kind of op: off by default (one relaxed atomic load per op), on for
// `specdec bench decode --ops` and profiling. Wall-clock microseconds on the calling thread, summed per
// kind across calls until taken; a parallel op's time includes waiting for its slowest worker, so the
// kinds add up to the forward's wall time.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string_view>

namespace specdec::cpu {

enum class Op : uint8_t {
  Embed,
  Norm,
  MatmulQKV,
  RopeCache,
  Attention,
  MatmulO,
  MatmulFfn,
  Swiglu,
  Residual,
  LmHead,
  Other,
  kCount
};
constexpr int kOpKinds = static_cast<int>(Op::kCount);

std::string_view op_name(Op op);

struct OpTimes {
  std::array<double, kOpKinds> us{};
  std::array<int64_t, kOpKinds> calls{};
  double total_us() const;
};

void op_profile_enable(bool on);
bool op_profile_enabled();
void op_profile_add(Op op, double us);
OpTimes op_profile_take();  // the sums so far; resets them

// Times its scope as one op of a kind when the profile is on.
class OpScope {
 public:
  explicit OpScope(Op op) : op_(op), on_(op_profile_enabled()) {
    if (on_) t0_ = std::chrono::steady_clock::now();
  }
  ~OpScope() {
    if (on_)
      op_profile_add(op_, std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0_).count());
  }
  OpScope(const OpScope&) = delete;
  OpScope& operator=(const OpScope&) = delete;

 private:
  Op op_;
  bool on_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace specdec::cpu
