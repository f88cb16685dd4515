// parallel_for (parallel.h): one process-wide pool of workers that spin briefly between calls, then
// sleep on a condition variable.
//
// Stopping. A worker starts when the OS first schedules it, which may be after the destructor has
// bumped the generation it reads as `seen`: waiting for the generation alone would then never end
// (the process hung at exit, once in ~50 runs of test_cpu_ops on 2 busy cores). Every wait therefore
// also ends on stop_.
//
// Claiming. `next` packs (generation << 32 | next task index). A call bumps the generation and resets
// `next` before it writes the job's fields, so a late worker that read an older generation fails its
// compare-exchange and never runs a task of a job it did not see published; a successful claim means
// the job is live, and it stays live until that task reports done (the caller waits for all n).
#include "kernels/cpu/parallel.h"

#include <immintrin.h>
#include <omp.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <mutex>
#include <thread>
#include <vector>

namespace specdec::cpu {

namespace {

using TaskFn = void (*)(void*, int);
using Clock = std::chrono::steady_clock;

thread_local bool tl_in_task = false;  // this thread is running a task: a nested call runs serially

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  _mm_pause();
#endif
}

class Pool {
 public:
  ~Pool() {
    stop_.store(true);
    gen_.fetch_add(1);
    wake_all();
    for (auto& t : workers_) t.join();
  }

  void run(int n, TaskFn task, void* ctx, int threads) {
    std::unique_lock<std::mutex> busy(call_mu_, std::try_to_lock);
    if (!busy.owns_lock()) {  // another thread's call is running: serial on this caller
      for (int i = 0; i < n; ++i) task(ctx, i);
      return;
    }
    grow(threads - 1);
    const uint32_t g = gen_.load() + 1;
    next_.store(static_cast<uint64_t>(g) << 32);  // first: stale claims now fail
    done_.store(0);
    n_.store(n);
    task_.store(task);
    ctx_.store(ctx);
    wanted_.store(threads - 1);
    gen_.store(g);
    if (sleepers_.load() > 0) wake_all();
    const auto t0 = Clock::now();
    const int mine = claim_and_run(g);
    // wait for the tasks workers claimed; yield now and then so a worker that lost its core to
    // another process can get it back
    const auto t1 = Clock::now();
    for (int spin = 0; done_.load(std::memory_order_acquire) + mine < n; ++spin) {
      cpu_relax();
      if ((spin & 1023) == 1023) sched_yield();
    }
    // A claimed task that kept the caller waiting longer than its own share took (and 100 us): a
    // worker lost its core. Run the calls of the next kSoloUs serially: on a loaded machine one thread
    // that keeps its core beats two that wait for each other.
    const auto stall = Clock::now() - t1;
    if (stall > std::chrono::microseconds(100) && stall > t1 - t0)
      solo_until_.store((Clock::now() + std::chrono::microseconds(kSoloUs)).time_since_epoch().count(),
                        std::memory_order_relaxed);
  }

  // Whether calls should run serially now (a recent call stalled on a descheduled worker).
  bool solo() const { return Clock::now().time_since_epoch().count() < solo_until_.load(std::memory_order_relaxed); }

  int workers() {
    std::lock_guard<std::mutex> lock(grow_mu_);
    return static_cast<int>(workers_.size());
  }

 private:
  // Claims tasks of generation g until none is left; returns how many this thread ran when it is the
  // caller (workers report theirs through done_).
  int claim_and_run(uint32_t g, bool worker = false) {
    int ran = 0;
    for (;;) {
      uint64_t v = next_.load();
      uint32_t i = 0;
      for (;;) {
        if (static_cast<uint32_t>(v >> 32) != g) return ran;
        i = static_cast<uint32_t>(v);
        if (i >= static_cast<uint32_t>(n_.load())) return ran;
        if (next_.compare_exchange_weak(v, v + 1)) break;
      }
      tl_in_task = true;
      task_.load()(ctx_.load(), static_cast<int>(i));
      tl_in_task = false;
      if (worker)
        done_.fetch_add(1, std::memory_order_release);
      else
        ++ran;
    }
  }

  // Wakes sleeping workers. A worker registers in sleepers_ before it checks gen_ under sleep_mu_, and
  // callers bump gen_ before they read sleepers_ (all sequentially consistent), so either the caller
  // sees the sleeper or the sleeper sees the new generation; taking the mutex before notifying closes
  // the window between the sleeper's check and its wait.
  void wake_all() {
    { std::lock_guard<std::mutex> lock(sleep_mu_); }
    sleep_cv_.notify_all();
  }

  void grow(int want) {
    std::lock_guard<std::mutex> lock(grow_mu_);
    while (static_cast<int>(workers_.size()) < want) {
      const int id = static_cast<int>(workers_.size()) + 1;
      workers_.emplace_back([this, id] { worker_loop(id); });
    }
  }

  void worker_loop(int id) {
    uint32_t seen = gen_.load();
    for (;;) {
      // spin for a while (the forward's calls come microseconds apart), then sleep
      const auto spin_until = Clock::now() + std::chrono::microseconds(kSpinUs);
      uint32_t g;
      for (int spin = 0; (g = gen_.load(std::memory_order_acquire)) == seen && !stop_.load(); ++spin) {
        if ((spin & 255) == 255 && Clock::now() > spin_until) {
          sleepers_.fetch_add(1);
          {
            std::unique_lock<std::mutex> lock(sleep_mu_);
            sleep_cv_.wait(lock, [&] { return gen_.load() != seen || stop_.load(); });
          }
          sleepers_.fetch_sub(1);
        } else {
          cpu_relax();
        }
      }
      seen = g;
      if (stop_.load()) return;
      if (id <= wanted_.load()) claim_and_run(g, true);
    }
  }

  static constexpr int kSpinUs = 200;
  static constexpr int kSoloUs = 20000;

  std::atomic<uint64_t> next_{0};
  std::atomic<uint32_t> gen_{0};
  std::atomic<int> done_{0}, n_{0}, wanted_{0}, sleepers_{0};
  std::atomic<TaskFn> task_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<bool> stop_{false};
  std::atomic<Clock::rep> solo_until_{0};
  std::mutex call_mu_, grow_mu_, sleep_mu_;
  std::condition_variable sleep_cv_;
  std::vector<std::thread> workers_;
};

Pool& pool() {
  static Pool p;
  return p;
}

// SPECDEC_PARALLEL=omp: an OpenMP parallel loop over the tasks instead (the old fork-join, with its
// barrier: for comparisons).
bool use_omp() {
  static const bool omp = [] {
    const char* e = std::getenv("SPECDEC_PARALLEL");
    return e != nullptr && std::string_view(e) == "omp";
  }();
  return omp;
}

}  // namespace

void parallel_for(int n, void (*task)(void* ctx, int i), void* ctx, int threads) {
  if (n <= 0) return;
  if (threads <= 0) threads = omp_get_max_threads();
  if (threads <= 1 || n == 1 || tl_in_task) {
    for (int i = 0; i < n; ++i) task(ctx, i);
    return;
  }
  if (use_omp()) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(std::min(threads, n))
    for (int i = 0; i < n; ++i) task(ctx, i);
    return;
  }
  Pool& p = pool();
  if (p.solo()) {
    for (int i = 0; i < n; ++i) task(ctx, i);
    return;
  }
  p.run(n, task, ctx, std::min(threads, n));
}

int parallel_workers() { return pool().workers(); }

}  // namespace specdec::cpu
