#include "kernels/cpu/op_profile.h"

#include <atomic>
#include <mutex>

namespace specdec::cpu {
namespace {
std::atomic<bool> g_on{false};
std::mutex g_mu;
OpTimes g_times;
}  // namespace

std::string_view op_name(Op op) {
  switch (op) {
    case Op::Embed:
      return "embedding rows";
    case Op::Norm:
      return "rmsnorm";
    case Op::MatmulQKV:
      return "matmul q/k/v";
    case Op::RopeCache:
      return "rope + cache write";
    case Op::Attention:
      return "attention";
    case Op::MatmulO:
      return "matmul o";
    case Op::MatmulFfn:
      return "matmul gate/up/down";
    case Op::Swiglu:
      return "swiglu";
    case Op::Residual:
      return "residual adds";
    case Op::LmHead:
      return "lm head";
    case Op::Other:
      return "other";
    case Op::kCount:
      break;
  }
  return "?";
}

double OpTimes::total_us() const {
  double s = 0;
  for (double u : us) s += u;
  return s;
}

void op_profile_enable(bool on) { g_on.store(on, std::memory_order_relaxed); }
bool op_profile_enabled() { return g_on.load(std::memory_order_relaxed); }

void op_profile_add(Op op, double us) {
  std::lock_guard<std::mutex> lock(g_mu);
  g_times.us[static_cast<int>(op)] += us;
  ++g_times.calls[static_cast<int>(op)];
}

OpTimes op_profile_take() {
  std::lock_guard<std::mutex> lock(g_mu);
  OpTimes t = g_times;
  g_times = OpTimes{};
  return t;
}

}  // namespace specdec::cpu
