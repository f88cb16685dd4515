// A fork-join for the CPU forward's kernels that never waits at a barrier for a thread that has not
// started: the quantized matmul and attention split their work into tasks, the calling thread and the
// pool's workers claim tasks from one atomic counter, and the call returns when every task is done.
// A worker that is descheduled (other processes on the cores) when a call starts claims nothing, so
// the caller does its share instead of waiting a scheduler time slice at an OpenMP barrier, which is
// what made 2-thread decode collapse on a loaded machine. Which thread runs a task never changes what
// the task computes: results stay bit-identical whatever the thread count or timing.
// A call whose caller then waited for a worker's task longer than its own share took (a worker lost
// its core mid-task) makes the calls of the next 20 ms run on the caller alone: under load, decode
// degrades to about the one-thread speed instead of collapsing.
// SPECDEC_PARALLEL=omp runs the tasks with an OpenMP loop instead (the former behaviour, to compare).
#pragma once

#include <type_traits>

namespace specdec::cpu {

// Runs task(ctx, i) for every i in [0, n), on the calling thread and up to threads - 1 pool workers
// (threads <= 0: omp_get_max_threads(), so OMP_NUM_THREADS and set_threads still choose). A task
// claimed by a worker that then loses its core is still waited for: keep tasks small. Nested or
// concurrent calls (a task calling parallel_for, two threads calling at once) run serially on their
// caller. Exceptions must not leave a task.
void parallel_for(int n, void (*task)(void* ctx, int i), void* ctx, int threads = 0);

template <typename F>
void parallel_for(int n, F&& f, int threads = 0) {
  using Fn = std::remove_reference_t<F>;
  parallel_for(
      n, [](void* c, int i) { (*static_cast<Fn*>(c))(i); }, const_cast<void*>(static_cast<const void*>(&f)), threads);
}

// Workers the pool has started so far (tests).
int parallel_workers();

}  // namespace specdec::cpu
